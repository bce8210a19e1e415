import { describe, expect, it } from 'vitest';
import { gpu, freshSeed, rng, randomValues } from './helpers.js';

describe('webgpu elementwise against plain JS, scalar and vec4 paths', () => {
  it.each([1, 1236, 1237, 4 * 70001 + 8])('add, sub, mul, scale, axpy, relu, reluMask at n=%i', async (n) => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    const a = randomValues(n, r);
    const b = randomValues(n, r);
    const ta = be.fromArray(a, [n]);
    const tb = be.fromArray(b, [n]);
    const cases: [string, Float64Array, (i: number) => number][] = [
      ['add', await be.read(be.add(ta, tb)), (i) => a[i] + b[i]],
      ['sub', await be.read(be.sub(ta, tb)), (i) => a[i] - b[i]],
      ['mul', await be.read(be.mul(ta, tb)), (i) => a[i] * b[i]],
      ['scale', await be.read(be.scale(ta, -1.5)), (i) => -1.5 * a[i]],
      ['axpy', await be.read(be.axpy(0.25, ta, tb)), (i) => 0.25 * a[i] + b[i]],
      ['relu', await be.read(be.relu(ta)), (i) => Math.max(0, a[i])],
      ['reluMask', await be.read(be.reluMask(ta, tb)), (i) => (b[i] > 0 ? a[i] : 0)],
    ];
    for (const [name, got, want] of cases) {
      for (let i = 0; i < n; i++) if (Math.abs(got[i] - want(i)) > 1e-6) expect.fail(`${name}[${i}] = ${got[i]}, want ${want(i)} (n ${n}, seed ${seed})`);
    }
  });
});
