// What both backward-filter forms (register-blocked, backwardFilter.ts, and workgroup-memory
// tiled, sharedTile.ts) dispatch: a main kernel, and with a split reduction the pass that sums
// the partial results.
import { KernelSpec, ceilDiv, grid, linearGroupIndex } from '../spec.js';
import type { KernelPlan } from '../algorithm.js';

export interface ConvBackwardFilterPlan {
  /** Bindings x, dy, out: out is dw when splitK == 1, else the scratch partial sums. */
  main: KernelSpec;
  /** Floats of scratch the main kernel writes when there is a reduce pass (splitK * |dw|). */
  scratchFloats: number;
  /** Bindings scratch, dw; null when splitK == 1. */
  reduce: KernelSpec | null;
}

/** The plan's steps: main (x, dy -> dw, or the scratch partial sums), then the sum (scratch -> dw). */
export function backwardFilterSteps(p: ConvBackwardFilterPlan): KernelPlan {
  if (!p.reduce) return { tmp: [], steps: [{ kernel: p.main, args: [{ in: 0 }, { in: 1 }, { out: 0 }] }] };
  return {
    tmp: [p.scratchFloats],
    steps: [
      { kernel: p.main, args: [{ in: 0 }, { in: 1 }, { tmp: 0 }] },
      { kernel: p.reduce, args: [{ tmp: 0 }, { out: 0 }] },
    ],
  };
}

/** out[i] = sum over k < parts of part[k * n + i]. Bindings: part, out. */
export function splitSumKernel(n: number, parts: number, vec4: boolean): KernelSpec {
  const ty = vec4 ? 'vec4<f32>' : 'f32';
  const count = vec4 ? n / 4 : n;
  const wg = 64;
  const terms = Array.from({ length: parts }, (_, k) => `part[i + ${k * count}u]`).join(' + ');
  const wgsl = `// sum of ${parts} partial results of ${n} floats
@group(0) @binding(0) var<storage, read> part: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> out: array<${ty}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${count}u) { return; }
  out[i] = ${terms};
}`;
  return { name: 'conv2dSplitSum', wgsl, bindings: ['read', 'rw'], workgroups: grid(ceilDiv(count, wg)) };
}
