// 2x2 max pooling, stride 2, NHWC. Channels are innermost, so when C % 4 == 0 every
// invocation handles a vec4 of channels with one load per window position.
import { KernelSpec, grid, linearGroupIndex } from './spec.js';

export interface PoolGeometry {
  N: number;
  H: number;
  W: number;
  C: number;
  Ho: number;
  Wo: number;
}

function types(C: number) {
  const vec = C % 4 === 0 ? 4 : 1;
  return {
    vec,
    f: vec === 4 ? 'vec4<f32>' : 'f32',
    u: vec === 4 ? 'vec4<u32>' : 'u32',
    Cv: C / vec,
  };
}

/**
 * y = max of each 2x2 window, argmax = its position 2*dy+dx; the first position wins ties
 * (a later one must be strictly greater). Bindings: x, y, argmax (u32).
 */
export function maxPoolKernel(g: PoolGeometry, wg = 64): KernelSpec {
  const { f, u, Cv } = types(g.C);
  const count = g.N * g.Ho * g.Wo * Cv;
  const rowStride = g.W * Cv;
  const wgsl = `// maxPool2x2 [${g.N},${g.H},${g.W},${g.C}]
@group(0) @binding(0) var<storage, read> x: array<${f}>;
@group(0) @binding(1) var<storage, read_write> y: array<${f}>;
@group(0) @binding(2) var<storage, read_write> argmax: array<${u}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = ${linearGroupIndex} * ${wg}u + li;
  if (t >= ${count}u) { return; }
  let c = t % ${Cv}u;
  let ox = (t / ${Cv}u) % ${g.Wo}u;
  let oy = (t / ${Cv * g.Wo}u) % ${g.Ho}u;
  let n = t / ${Cv * g.Wo * g.Ho}u;
  let i = ((n * ${g.H}u + oy * 2u) * ${g.W}u + ox * 2u) * ${Cv}u + c;
  var best = x[i];
  var arg = ${u}(0u);
  let v1 = x[i + ${Cv}u];
  let w1 = v1 > best;
  best = select(best, v1, w1);
  arg = select(arg, ${u}(1u), w1);
  let v2 = x[i + ${rowStride}u];
  let w2 = v2 > best;
  best = select(best, v2, w2);
  arg = select(arg, ${u}(2u), w2);
  let v3 = x[i + ${rowStride + Cv}u];
  let w3 = v3 > best;
  best = select(best, v3, w3);
  arg = select(arg, ${u}(3u), w3);
  y[t] = best;
  argmax[t] = arg;
}`;
  return { name: 'maxPool2x2', wgsl, bindings: ['read', 'rw', 'rw'], workgroups: grid(Math.ceil(count / wg)) };
}

/**
 * dx[n, y, x, c] = dy at the pooled position when the argmax there points back at (y, x),
 * else 0; written for every input element (odd trailing rows/cols get 0), so no clearing
 * pass is needed. Bindings: dy, argmax (u32), dx.
 */
export function maxPoolBackwardKernel(g: PoolGeometry, wg = 64): KernelSpec {
  const { f, u, Cv } = types(g.C);
  const count = g.N * g.H * g.W * Cv;
  const wgsl = `// maxPool2x2Backward [${g.N},${g.H},${g.W},${g.C}]
@group(0) @binding(0) var<storage, read> dy: array<${f}>;
@group(0) @binding(1) var<storage, read> argmax: array<${u}>;
@group(0) @binding(2) var<storage, read_write> dx: array<${f}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = ${linearGroupIndex} * ${wg}u + li;
  if (t >= ${count}u) { return; }
  let c = t % ${Cv}u;
  let ix = (t / ${Cv}u) % ${g.W}u;
  let iy = (t / ${Cv * g.W}u) % ${g.H}u;
  let n = t / ${Cv * g.W * g.H}u;
  let ox = ix / 2u;
  let oy = iy / 2u;
  var v = ${f}(0.0);
  if (ox < ${g.Wo}u && oy < ${g.Ho}u) {
    let o = ((n * ${g.Ho}u + oy) * ${g.Wo}u + ox) * ${Cv}u + c;
    let here = ${u}((iy % 2u) * 2u + ix % 2u);
    v = select(${f}(0.0), dy[o], argmax[o] == here);
  }
  dx[t] = v;
}`;
  return { name: 'maxPool2x2Backward', wgsl, bindings: ['read', 'read', 'rw'], workgroups: grid(Math.ceil(count / wg)) };
}
