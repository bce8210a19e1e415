// Images arrive as bytes (a quarter of a float32 upload) and are normalized on the device.
import { KernelSpec, f32Lit, grid, linearGroupIndex } from './spec.js';

/**
 * out[i] = byte[i] * scale[c] - shift[c], c = i % C, with scale = 1 / (255 std[c]) and
 * shift = mean[c] / std[c]: (byte / 255 - mean) / std, the loader's CPU normalization.
 * The bytes come packed four to a u32 word, little-endian (byte i is bits 8*(i%4) of word
 * i/4; the tail word is zero-padded); one invocation unpacks one word. Per-channel constants
 * are inlined: a run uses one mean/std, so this compiles once per batch shape.
 * Bindings: packed (u32 words), out (f32).
 */
export function imagesFromU8Kernel(total: number, mean: readonly number[], std: readonly number[], wg = 64): KernelSpec {
  const C = mean.length;
  const words = Math.ceil(total / 4);
  const scale = std.map((s) => f32Lit(1 / (255 * s))).join(', ');
  const shift = mean.map((m, c) => f32Lit(m / std[c])).join(', ');
  const wgsl = `// imagesFromU8 n=${total} C=${C}
@group(0) @binding(0) var<storage, read> packed: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<private> scale: array<f32, ${C}> = array<f32, ${C}>(${scale});
var<private> shift: array<f32, ${C}> = array<f32, ${C}>(${shift});
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let w = ${linearGroupIndex} * ${wg}u + li;
  if (w >= ${words}u) { return; }
  let word = packed[w];
  for (var k = 0u; k < 4u; k++) {
    let i = w * 4u + k;
    if (i >= ${total}u) { return; }
    let c = i % ${C}u;
    out[i] = f32((word >> (8u * k)) & 255u) * scale[c] - shift[c];
  }
}`;
  return { name: 'imagesFromU8', wgsl, bindings: ['read', 'rw'], workgroups: grid(Math.ceil(words / wg)) };
}
