// Transpose of a row-major [rows, cols] f32 matrix into [cols, rows]. The matmul op uses it
// to turn a transposed B into a plain one: reading B^T in the matmul kernel gathers four
// rows K apart per vec4, which at K = 1024 ran at half the plain kernel's speed on
// lavapipe, while the transpose costs a few percent of the product.
import { KernelSpec, grid, linearGroupIndex } from '../spec.js';

/** out[c, r] = src[r, c]. Bindings: src, out. Each invocation writes one output element, so writes are contiguous across lanes. */
export function transposeKernel(rows: number, cols: number, wg = 64): KernelSpec {
  const count = rows * cols;
  const wgsl = `// transpose [${rows},${cols}]
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = ${linearGroupIndex} * ${wg}u + li;
  if (t >= ${count}u) { return; }
  let r = t % ${rows}u;
  let c = t / ${rows}u;
  out[t] = src[r * ${cols}u + c];
}`;
  return { name: 'transpose', wgsl, bindings: ['read', 'rw'], workgroups: grid(Math.ceil(count / wg)) };
}
