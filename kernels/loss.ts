// Softmax cross-entropy and top-k accuracy: one workgroup per row of logits, the lanes
// striding over the classes and combining through a tree in workgroup memory. Both write
// one value per row; the sum over rows is a reduce pass (kernels/reduce/sum.ts), so the
// batch reduction stays on the GPU too.
import { KernelSpec, grid, linearGroupIndex } from './spec.js';

/** Lanes per row: a power of two (for the tree), about a quarter of the classes, 32..256. */
export function rowWorkgroupSize(C: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < C) wg *= 2;
  return wg;
}

// A quiet NaN made at run time: WGSL rejects NaN in constant expressions.
const runtimeNaN = (runtimeZeroU32: string) => `bitcast<f32>(0x7fc00000u | ${runtimeZeroU32})`;

function treeReduce(op: (a: string, b: string) => string, arr: string, wg: number): string {
  return `  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (li < s) { ${arr}[li] = ${op(`${arr}[li]`, `${arr}[li + s]`)}; }
    workgroupBarrier();
  }`;
}

/**
 * out[n, j] = 1 where j == labels[n], else 0; a label >= C makes its row NaN (as the losses
 * flag it). Bindings: labels (u32), out.
 */
export function oneHotKernel(N: number, C: number): KernelSpec {
  const wg = 64;
  const total = N * C;
  const wgsl = `// oneHot [${N},${C}]
@group(0) @binding(0) var<storage, read> labels: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${total}u) { return; }
  let label = labels[i / ${C}u];
  let nan = ${runtimeNaN('(label & 0u)')};
  out[i] = select(select(0.0, 1.0, i % ${C}u == label), nan, label >= ${C}u);
}`;
  return { name: 'oneHot', wgsl, bindings: ['read', 'rw'], workgroups: grid(Math.ceil(total / wg)) };
}

/** The uniform block of softmaxCrossEntropyKernel: the scale, 1/N for a mean or 1 for a sum. */
export function lossUniforms(scale: number): Float32Array {
  return new Float32Array([scale, 0, 0, 0]);
}

/** The uniform block of topkCorrectKernel. */
export function topkUniforms(k: number): Uint32Array {
  return new Uint32Array([k, 0, 0, 0]);
}

/**
 * rowLoss[n] = scale * (logsumexp(x[n]) - x[n, label]) and grad[n] = scale * (softmax(x[n]) -
 * onehot(label)), the max subtracted before exp. A label >= C gives NaN loss and gradient
 * for its row. The scale is a uniform so 'mean' and 'sum' share a pipeline (barrier-heavy
 * kernels are slow to compile on lavapipe). Bindings: logits, labels (u32), grad, rowLoss,
 * uniform {scale} (lossUniforms).
 */
export function softmaxCrossEntropyKernel(N: number, C: number, withLoss = true): KernelSpec {
  const wg = rowWorkgroupSize(C);
  // Without the loss (withLoss false) the rowLoss binding is absent and the uniform moves up.
  const wgsl = `// softmaxCrossEntropy${withLoss ? '' : 'Grad'} [${N},${C}]
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
${withLoss ? '@group(0) @binding(3) var<storage, read_write> rowLoss: array<f32>;' : ''}
struct U { scale: f32 }
@group(0) @binding(${withLoss ? 4 : 3}) var<uniform> u: U;
var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = ${linearGroupIndex};
  if (row >= ${N}u) { return; }
  let base = row * ${C}u;
  var m = x[base];
  for (var j = li; j < ${C}u; j += ${wg}u) { m = max(m, x[base + j]); }
  red[li] = m;
${treeReduce((a, b) => `max(${a}, ${b})`, 'red', wg)}
  let rowMax = red[0];
  workgroupBarrier();
  var expSum = 0.0;
  for (var j = li; j < ${C}u; j += ${wg}u) { expSum += exp(x[base + j] - rowMax); }
  red[li] = expSum;
${treeReduce((a, b) => `${a} + ${b}`, 'red', wg)}
  let total = red[0];
  let label = labels[row];
  let bad = label >= ${C}u;
  let nan = ${runtimeNaN('(label & 0u)')};
  for (var j = li; j < ${C}u; j += ${wg}u) {
    let p = exp(x[base + j] - rowMax) / total;
    let g = u.scale * (p - select(0.0, 1.0, j == label));
    grad[base + j] = select(g, nan, bad);
  }
${withLoss ? `  if (li == 0u) {
    let xl = x[base + min(label, ${C - 1}u)];
    rowLoss[row] = select(u.scale * (log(total) + rowMax - xl), nan, bad);
  }` : ''}
}`;
  return {
    name: withLoss ? 'softmaxCrossEntropy' : 'softmaxCrossEntropyGrad',
    wgsl,
    bindings: withLoss ? ['read', 'read', 'rw', 'rw', 'uniform'] : ['read', 'read', 'rw', 'uniform'],
    workgroups: grid(N),
    uniformBytes: 16,
  };
}

/**
 * rowCorrect[n] = 1 when #{ j != label : x[n, j] >= x[n, label] } < k, else 0 (ties count
 * against); 0 for a label >= C (no such class is never among the top k) and for a row with
 * any NaN or infinite logit (a diverged model ranks nothing). Bindings: logits, labels
 * (u32), rowCorrect, uniform {k} (topkUniforms; k <= C).
 */
export function topkCorrectKernel(N: number, C: number): KernelSpec {
  const wg = rowWorkgroupSize(C);
  const wgsl = `// topkCorrect [${N},${C}]
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> rowCorrect: array<f32>;
struct U { k: u32 }
@group(0) @binding(3) var<uniform> u: U;
var<workgroup> red: array<u32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = ${linearGroupIndex};
  if (row >= ${N}u) { return; }
  let base = row * ${C}u;
  let label = labels[row];
  let xl = x[base + min(label, ${C - 1}u)];
  var rank = 0u;
  var finite = true;
  for (var j = li; j < ${C}u; j += ${wg}u) {
    let v = x[base + j];
    rank += select(0u, 1u, j != label && v >= xl);
    // By the bits: comparisons with NaN may be folded away under WGSL's float rules.
    finite = finite && (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
  }
  // A non-finite logit ranks the row C, past any k; the sum saturates there.
  red[li] = select(${C}u, rank, finite);
${treeReduce((a, b) => `min(${a} + ${b}, ${C}u)`, 'red', wg)}
  if (li == 0u) {
    rowCorrect[row] = select(0.0, 1.0, red[0] < u.k && label < ${C}u);
  }
}`;
  return { name: 'topkCorrect', wgsl, bindings: ['read', 'read', 'rw', 'uniform'], workgroups: grid(N), uniformBytes: 16 };
}
