// Sums over arbitrary axes as a sequence of passes, each summing chunks of at most
// `chunk` elements serially. A long reduction (a bias gradient over 2*56*56 rows, a loss
// over a batch) thus becomes a tree of short serial sums: the f32 rounding error grows with
// the chunk length and the number of levels, not with the reduction length.
import { KernelSpec, grid, linearGroupIndex } from '../spec.js';

/** One axis of a strided view: `size` indices, `stride` elements apart. */
export interface StridedDim {
  size: number;
  stride: number;
}

/** Elements a pass sums serially per output; lower means more passes, less rounding. */
export const REDUCE_CHUNK = 64;

export interface ReducePass {
  spec: KernelSpec;
  /** Partial sums this pass writes: parts * outputs, partition-major. */
  parts: number;
}

/** Drops size-1 dims and merges neighbours that are contiguous with each other. */
export function mergeDims(dims: StridedDim[]): StridedDim[] {
  const out: StridedDim[] = [];
  for (const d of dims) {
    if (d.size === 1) continue;
    const last = out[out.length - 1];
    if (last && last.stride === d.size * d.stride) {
      out[out.length - 1] = { size: last.size * d.size, stride: d.stride };
    } else out.push({ ...d });
  }
  return out;
}

function sizeOfDims(dims: StridedDim[]): number {
  return dims.reduce((n, d) => n * d.size, 1);
}

/** WGSL statements that turn a linear index `v` into an element offset `name` over row-major `dims`. */
function offsetCode(name: string, v: string, dims: StridedDim[]): string {
  if (dims.length === 0) return `  let ${name} = 0u;`;
  if (dims.length === 1) return `  let ${name} = ${v} * ${dims[0].stride}u;`;
  const lines = [`  var ${name} = 0u;`, `  var ${name}Rest = ${v};`];
  for (let d = dims.length - 1; d >= 0; d--) {
    const { size, stride } = dims[d];
    if (d === 0) lines.push(`  ${name} += ${name}Rest * ${stride}u;`);
    else lines.push(`  ${name} += (${name}Rest % ${size}u) * ${stride}u; ${name}Rest = ${name}Rest / ${size}u;`);
  }
  return lines.join('\n');
}

/**
 * One pass: out[p * outputs + o] = sum over j < chunk of in[kept(o) + reduced(p + j * parts)],
 * where parts = ceil(R / chunk) and R is the reduced size. Strided partitions keep adjacent
 * invocations on adjacent elements whichever axes are reduced. Bindings: in, out.
 */
export function reducePassKernel(kept: StridedDim[], reduced: StridedDim[], chunk = REDUCE_CHUNK, wg = 64): ReducePass {
  const k = mergeDims(kept);
  const r = mergeDims(reduced);
  const outputs = sizeOfDims(k);
  const R = sizeOfDims(r);
  if (R < 1 || outputs < 1) throw new Error(`reducePassKernel: empty reduction (${outputs} outputs of ${R} elements)`);
  const parts = Math.ceil(R / chunk);
  const steps = Math.min(chunk, R);
  const total = outputs * parts;
  const guard = parts * steps === R ? '' : `if (r >= ${R}u) { break; }`;
  const wgsl = `// sum pass: ${outputs} outputs x ${R} elements in ${parts} parts of ${steps}
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = ${linearGroupIndex} * ${wg}u + li;
  if (t >= ${total}u) { return; }
  let o = t % ${outputs}u;
  let p = t / ${outputs}u;
${offsetCode('base', 'o', k)}
  var acc = 0.0;
  for (var j = 0u; j < ${steps}u; j++) {
    let r = p + j * ${parts}u;
    ${guard}
${offsetCode('off', 'r', r).replace(/^ {2}/gm, '    ')}
    acc += src[base + off];
  }
  dst[t] = acc;
}`;
  return { spec: { name: 'sum', wgsl, bindings: ['read', 'rw'], workgroups: grid(Math.ceil(total / wg)) }, parts };
}

/** Row-major strides of a shape, as strided dims. */
export function stridedDims(shape: readonly number[]): StridedDim[] {
  const dims: StridedDim[] = [];
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    dims.unshift({ size: shape[d], stride });
    stride *= shape[d];
  }
  return dims;
}

/**
 * The passes that sum `shape` over `axes` (sorted, distinct, at least one, nothing empty):
 * the first reads the input, each later one sums the previous partials ([parts, outputs]),
 * the last one has parts == 1 and writes the result in the kept axes' row-major order.
 */
export function sumPlan(shape: readonly number[], axes: readonly number[], chunk = REDUCE_CHUNK): ReducePass[] {
  const dims = stridedDims(shape);
  const kept = dims.filter((_, i) => !axes.includes(i));
  const reduced = dims.filter((_, i) => axes.includes(i));
  const outputs = sizeOfDims(kept);
  const passes = [reducePassKernel(kept, reduced, chunk)];
  while (passes[passes.length - 1].parts > 1) {
    const parts = passes[passes.length - 1].parts;
    passes.push(reducePassKernel([{ size: outputs, stride: 1 }], [{ size: parts, stride: outputs }], chunk));
  }
  return passes;
}
