// SGD with (Nesterov) momentum and weight decay, PyTorch semantics, fused into one pass
// that updates param and velocity in place. lr, momentum and weight decay come through the
// uniform block, so a learning-rate schedule does not compile a new pipeline per step.
import { KernelSpec, grid, linearGroupIndex } from './spec.js';

/** Bytes of the uniform block: lr, momentum, weightDecay, padding. */
export const SGD_UNIFORM_BYTES = 16;

/** The uniform block sgdKernel expects. */
export function sgdUniforms(lr: number, momentum: number, weightDecay: number): Float32Array {
  return new Float32Array([lr, momentum, weightDecay, 0]);
}

/**
 * g = grad + wd * param; v = momentum * v + g; param -= lr * (nesterov ? g + momentum * v : v).
 * Bindings: param (rw), grad, velocity (rw), uniform {lr, momentum, weightDecay}.
 */
export function sgdKernel(n: number, nesterov: boolean, wg = 64): KernelSpec {
  const vec = n % 4 === 0 ? 4 : 1;
  const ty = vec === 4 ? 'vec4<f32>' : 'f32';
  const count = n / vec;
  const wgsl = `// sgd${nesterov ? ' nesterov' : ''} n=${n}
struct U { lr: f32, momentum: f32, weightDecay: f32 }
@group(0) @binding(0) var<storage, read_write> param: array<${ty}>;
@group(0) @binding(1) var<storage, read> grad: array<${ty}>;
@group(0) @binding(2) var<storage, read_write> velocity: array<${ty}>;
@group(0) @binding(3) var<uniform> u: U;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${count}u) { return; }
  let p = param[i];
  let g = grad[i] + u.weightDecay * p;
  let v = u.momentum * velocity[i] + g;
  velocity[i] = v;
  param[i] = p - u.lr * ${nesterov ? '(g + u.momentum * v)' : 'v'};
}`;
  return {
    name: 'sgd',
    wgsl,
    bindings: ['rw', 'read', 'rw', 'uniform'],
    workgroups: grid(Math.ceil(count / wg)),
    uniformBytes: SGD_UNIFORM_BYTES,
  };
}
