// Elementwise kernels: one generator for every same-shape map. Each invocation handles
// one element; shapes are baked in (the pipeline cache is keyed by the WGSL).
import { KernelSpec, grid, linearGroupIndex } from './spec.js';

export type UnaryOp = 'relu' | 'scale' | 'copy';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'axpy' | 'reluMask';

const WG = 256;

const binaryExpr: Record<BinaryOp, string> = {
  add: 'a[i] + b[i]',
  sub: 'a[i] - b[i]',
  mul: 'a[i] * b[i]',
  // alpha * a + b
  axpy: 'u.alpha * a[i] + b[i]',
  // b is the pre-activation: pass a where b > 0
  reluMask: 'select(0.0, a[i], b[i] > 0.0)',
};

const unaryExpr: Record<UnaryOp, string> = {
  relu: 'max(a[i], 0.0)',
  scale: 'u.alpha * a[i]',
  copy: 'a[i]',
};

function needsScalar(op: string): boolean {
  return op === 'axpy' || op === 'scale';
}

function body(n: number, expr: string): string {
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${WG}u + li;
  if (i >= ${n}u) { return; }
  out[i] = ${expr};
}`;
}

/** out = op(a, b); bindings: a, b, out[, uniform {alpha}]. */
export function binaryKernel(op: BinaryOp, n: number): KernelSpec {
  const scalar = needsScalar(op);
  const wgsl = `${scalar ? 'struct U { alpha: f32 }\n@group(0) @binding(3) var<uniform> u: U;\n' : ''}@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${body(n, binaryExpr[op])}`;
  return {
    name: op,
    wgsl,
    bindings: scalar ? ['read', 'read', 'rw', 'uniform'] : ['read', 'read', 'rw'],
    workgroups: grid(Math.ceil(n / WG)),
    uniformBytes: scalar ? 16 : undefined,
  };
}

/** out = op(a); bindings: a, out[, uniform {alpha}]. */
export function unaryKernel(op: UnaryOp, n: number): KernelSpec {
  const scalar = needsScalar(op);
  const wgsl = `${scalar ? 'struct U { alpha: f32 }\n@group(0) @binding(2) var<uniform> u: U;\n' : ''}@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${body(n, unaryExpr[op])}`;
  return {
    name: op,
    wgsl,
    bindings: scalar ? ['read', 'rw', 'uniform'] : ['read', 'rw'],
    workgroups: grid(Math.ceil(n / WG)),
    uniformBytes: scalar ? 16 : undefined,
  };
}
