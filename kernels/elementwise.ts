// Elementwise kernels: one generator for every same-shape map. Shapes are baked in (the
// pipeline cache is keyed by the WGSL). When the size is a multiple of 4 the kernel works
// on vec4s, two per invocation: on lavapipe that is ~2.5x the scalar kernel (measured
// 4M-element add: 0.85 -> 2.4 GB/s), since each invocation is a SIMD lane.
import { KernelSpec, grid, linearGroupIndex } from './spec.js';

export type UnaryOp = 'relu' | 'scale' | 'copy';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'axpy' | 'reluMask';

export interface ElementwiseConfig {
  /** 4: vec4 loads (needs n % 4 == 0); 1: scalars. */
  vector: 1 | 4;
  /** Items (scalars or vec4s) per invocation, strided by the invocation count. */
  perInvocation: number;
  workgroupSize: number;
}

export function elementwiseConfig(n: number): ElementwiseConfig {
  return n % 4 === 0 ? { vector: 4, perInvocation: 2, workgroupSize: 64 } : { vector: 1, perInvocation: 1, workgroupSize: 256 };
}

// ZERO is replaced by a zero of the element type.
const binaryExpr: Record<BinaryOp, string> = {
  add: 'a[i] + b[i]',
  sub: 'a[i] - b[i]',
  mul: 'a[i] * b[i]',
  // alpha * a + b
  axpy: 'u.alpha * a[i] + b[i]',
  // b is the pre-activation: pass a where b > 0
  reluMask: 'select(ZERO, a[i], b[i] > ZERO)',
};

const unaryExpr: Record<UnaryOp, string> = {
  relu: 'max(a[i], ZERO)',
  scale: 'u.alpha * a[i]',
  copy: 'a[i]',
};

function needsScalar(op: string): boolean {
  return op === 'axpy' || op === 'scale';
}

function generate(op: string, arity: 1 | 2, expr: string, n: number, cfg: ElementwiseConfig): KernelSpec {
  if (cfg.vector === 4 && n % 4 !== 0) throw new Error(`${op}: vec4 config needs a size divisible by 4, got ${n}`);
  const ty = cfg.vector === 4 ? 'vec4<f32>' : 'f32';
  const count = n / cfg.vector;
  const threads = Math.ceil(count / cfg.perInvocation);
  const scalar = needsScalar(op);
  const e = expr.replaceAll('ZERO', `${ty}(0.0)`);
  let body = '';
  for (let k = 0; k < cfg.perInvocation; k++) {
    body += `  { let i = t + ${k * threads}u; if (i < ${count}u) { out[i] = ${e}; } }\n`;
  }
  const inputs = arity === 2 ? ['a', 'b'] : ['a'];
  const decls = inputs.map((name, i) => `@group(0) @binding(${i}) var<storage, read> ${name}: array<${ty}>;`);
  decls.push(`@group(0) @binding(${arity}) var<storage, read_write> out: array<${ty}>;`);
  if (scalar) decls.push(`struct U { alpha: f32 }\n@group(0) @binding(${arity + 1}) var<uniform> u: U;`);
  const wg = cfg.workgroupSize;
  const wgsl = `${decls.join('\n')}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = ${linearGroupIndex} * ${wg}u + li;
${body}}`;
  return {
    name: op,
    wgsl,
    bindings: [...inputs.map(() => 'read' as const), 'rw', ...(scalar ? (['uniform'] as const) : [])],
    workgroups: grid(Math.ceil(threads / wg)),
    uniformBytes: scalar ? 16 : undefined,
  };
}

/** out = op(a, b); bindings: a, b, out[, uniform {alpha}]. */
export function binaryKernel(op: BinaryOp, n: number, cfg: ElementwiseConfig = elementwiseConfig(n)): KernelSpec {
  return generate(op, 2, binaryExpr[op], n, cfg);
}

/** out = op(a); bindings: a, out[, uniform {alpha}]. */
export function unaryKernel(op: UnaryOp, n: number, cfg: ElementwiseConfig = elementwiseConfig(n)): KernelSpec {
  return generate(op, 1, unaryExpr[op], n, cfg);
}

/**
 * In place: out[i] += a[i]; bindings: a, out (the accumulator). One item per invocation:
 * generate()'s strided items may be visited twice by the last workgroup's spare invocations,
 * harmless for out = f(inputs) but not for a read-modify-write.
 */
export function accumulateKernel(n: number): KernelSpec {
  const vec = n % 4 === 0 ? 4 : 1;
  const ty = vec === 4 ? 'vec4<f32>' : 'f32';
  const count = n / vec;
  const wg = 64;
  const wgsl = `@group(0) @binding(0) var<storage, read> a: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> out: array<${ty}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${count}u) { return; }
  out[i] = out[i] + a[i];
}`;
  return { name: 'accumulate', wgsl, bindings: ['read', 'rw'], workgroups: grid(Math.ceil(count / wg)) };
}

/**
 * out[i] = x[i] + bias[i % C]: a bias broadcast over every axis but the last.
 * Bindings: x, bias, out. vec4 when C % 4 == 0 (then every vec4 lies inside one row).
 */
export function addBiasKernel(n: number, C: number): KernelSpec {
  const vec = C % 4 === 0 ? 4 : 1;
  const ty = vec === 4 ? 'vec4<f32>' : 'f32';
  const count = n / vec;
  const cv = C / vec;
  const wg = 64;
  const wgsl = `@group(0) @binding(0) var<storage, read> x: array<${ty}>;
@group(0) @binding(1) var<storage, read> bias: array<${ty}>;
@group(0) @binding(2) var<storage, read_write> out: array<${ty}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${count}u) { return; }
  out[i] = x[i] + bias[i % ${cv}u];
}`;
  return { name: 'addBias', wgsl, bindings: ['read', 'read', 'rw'], workgroups: grid(Math.ceil(count / wg)) };
}

/** out[i] = x[i] * s[i / per]: a per-row (per-example) scale. Bindings: x, s, out. */
export function scaleRowsKernel(n: number, per: number): KernelSpec {
  const wg = 64;
  const wgsl = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${n}u) { return; }
  out[i] = x[i] * s[i / ${per}u];
}`;
  return { name: 'scaleRows', wgsl, bindings: ['read', 'read', 'rw'], workgroups: grid(Math.ceil(n / wg)) };
}
