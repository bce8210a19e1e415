// topkCorrect on rows with NaN or infinite logits: never a hit, on webgpu and the reference
// alike (a diverged model's NaN logits once ranked their label first: every comparison with
// NaN is false, so nothing counted against it).
import { describe, expect, it } from 'vitest';
import { Backend } from '../engine/index.js';
import { freshSeed, gpu, ref, rng } from './helpers.js';

const BAD = [NaN, Infinity, -Infinity];

async function count(be: Backend, logits: number[], shape: [number, number], labels: number[], k: number): Promise<number> {
  const z = be.fromArray(logits, shape);
  const l = be.fromArray(labels, [labels.length], 'u32');
  const t = be.topkCorrect(z, l, k);
  const v = (await be.read(t))[0];
  for (const x of [z, l, t]) x.dispose();
  return v;
}

describe('topkCorrect with non-finite logits', () => {
  it('a row with NaN, +Inf or -Inf anywhere (at the label or not) is never correct, for any k', async () => {
    const be = await gpu();
    for (const b of [ref, be]) {
      // The label's logit is the largest finite one in every row; row 0 stays finite.
      const rows = [
        [0, 5, 1],
        [NaN, NaN, NaN],
        [0, NaN, 1],
        [NaN, 5, 1],
        [0, 5, Infinity],
        [0, Infinity, 1],
        [-Infinity, 5, 1],
      ];
      const labels = rows.map(() => 1);
      for (const k of [1, 2, 3, 10]) expect(await count(b, rows.flat(), [rows.length, 3], labels, k), `${b.name} k=${k}`).toBe(1);
    }
  });

  it('webgpu matches the reference on random rows with non-finite logits sprinkled in', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const [N, C] of [[7, 10], [64, 10], [5, 1000], [33, 3]]) {
      const vals = Array.from({ length: N * C }, () => Math.floor(r() * 4) - 1.5);
      const labels = Array.from({ length: N }, () => Math.floor(r() * C));
      // About a third of the rows get one non-finite value, half of those at the label.
      for (let n = 0; n < N; n++) {
        if (r() < 1 / 3) vals[n * C + (r() < 0.5 ? labels[n] : Math.floor(r() * C))] = BAD[Math.floor(r() * BAD.length)];
      }
      for (const k of [1, 5, C]) {
        const want = await count(ref, vals, [N, C], labels, k);
        expect(await count(be, vals, [N, C], labels, k), `[${N},${C}] k=${k} (seed ${seed})`).toBe(want);
      }
    }
  });
});
