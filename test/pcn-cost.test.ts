// The MSE cost and the clamping alternative (PAPER.md): BP's MSE gradient against finite
// differences, EP nudged with MSE and EP with a clamped output against BP on MSE as beta -> 0,
// on the float64 reference backend; the one-hot op's bad-label rows on webgpu.
import { describe, expect, it } from 'vitest';
import { Backend, ReferenceBackend } from '../engine/index.js';
import { epGradient, nudge, disposeNudged } from '../pcn/ep.js';
import { costWithGrad } from '../pcn/loss.js';
import { disposeState } from '../pcn/network.js';
import { freshSeed, gpu, randomValues, relErr, rng, readGrads, tinyPcnSetup } from './helpers.js';

const setup = (seed: string, N = 8) => tinyPcnSetup(seed, N, 'tiny-mse');
const gradients = readGrads;

/** ||g - want|| / ||want|| over all tensors together. */
function totalRelErr(g: Float64Array[], want: Float64Array[]): number {
  let d = 0;
  let n = 0;
  g.forEach((gi, i) => {
    for (let j = 0; j < gi.length; j++) {
      d += (gi[j] - want[i][j]) ** 2;
      n += want[i][j] ** 2;
    }
  });
  return Math.sqrt(d / n);
}

describe('MSE cost and the clamping alternative (reference backend)', () => {
  it('costWithGrad(mse): loss 1/2 ||h - onehot||^2 averaged, gradient = its derivative', async () => {
    const be = new ReferenceBackend() as unknown as Backend;
    const r = rng(freshSeed());
    const N = 5;
    const C = 7;
    const h = randomValues(N * C, r, -2, 2);
    const labels = Array.from({ length: N }, () => Math.floor(r() * C));
    const { loss, grad } = costWithGrad(be, be.fromArray(h, [N, C]), be.fromArray(labels, [N], 'u32'), 'mse', 'mean');
    let want = 0;
    const wantGrad = new Float64Array(N * C);
    for (let n = 0; n < N; n++)
      for (let j = 0; j < C; j++) {
        const d = h[n * C + j] - (labels[n] === j ? 1 : 0);
        want += (d * d) / 2 / N;
        wantGrad[n * C + j] = d / N;
      }
    expect((await be.read(loss))[0]).toBeCloseTo(want, 10);
    expect(relErr(await be.read(grad), wantGrad)).toBeLessThan(1e-12);
    const sum = costWithGrad(be, be.fromArray(h, [N, C]), be.fromArray(labels, [N], 'u32'), 'mse', 'sum');
    expect((await be.read(sum.loss))[0]).toBeCloseTo(want * N, 9);
  });

  it('BP on MSE matches finite differences of the MSE loss', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed, 3);
    const g = await gradients(be, net.backprop(x, y, 'mse').grads);
    const lossAt = async () => {
      const s = net.forward(x);
      const { loss } = costWithGrad(be, s.h[net.depth], y, 'mse', 'mean');
      const v = (await be.read(loss))[0];
      disposeState(s);
      return v;
    };
    // A few entries of every tensor, central differences (float64: h = 1e-6 is clean).
    const params = net.params().flatMap((p) => [p.w, p.b]);
    for (const [t, tensor] of params.entries()) {
      const vals = await be.read(tensor);
      for (const j of [0, Math.floor(vals.length / 2), vals.length - 1]) {
        // Parameters are stored as f32: the step actually taken is the rounded one.
        let taken = 0;
        const probe = async (delta: number) => {
          const v = Float64Array.from(vals);
          v[j] = Math.fround(v[j] + delta);
          taken += delta > 0 ? v[j] : -v[j];
          const p = net.params()[Math.floor(t / 2)];
          const fresh = be.fromArray(v, tensor.shape).keep();
          if (t % 2 === 0) p.w = fresh;
          else p.b = fresh;
          const l = await lossAt();
          if (t % 2 === 0) p.w = tensor;
          else p.b = tensor;
          fresh.dispose();
          return l;
        };
        const diff = (await probe(1e-6)) - (await probe(-1e-6));
        const fd = diff / taken;
        // A small step rarely crosses a ReLU kink or a pool tie (where the slope jumps).
        expect(Math.abs(fd - g[t][j]), `tensor ${t}[${j}] seed ${seed}: fd ${fd} vs bp ${g[t][j]}`).toBeLessThan(1e-8 + 1e-3 * Math.abs(fd));
      }
    }
  });

  it('EP nudged with MSE: centered matches BP on MSE (second order), forward first order', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const bp = await gradients(be, net.backprop(x, y, 'mse').grads);
    const free = net.forward(x);
    const errAt = async (scheme: 'forward' | 'centered', beta: number) =>
      totalRelErr(await gradients(be, await epGradient(net, free, y, { beta, K: 20, scheme, cost: 'mse' })), bp);
    const f1 = await errAt('forward', 1e-4);
    const f2 = await errAt('forward', 1e-5);
    const c1 = await errAt('centered', 2e-4);
    const c2 = await errAt('centered', 2e-5);
    expect(f1 / f2, `seed ${seed}`).toBeGreaterThan(5);
    expect(f1 / f2, `seed ${seed}`).toBeLessThan(20);
    expect(c1 / c2, `seed ${seed}`).toBeGreaterThan(30);
    expect(c2, `seed ${seed}`).toBeLessThan(1e-6);
    // The cross-entropy gradient is another vector: nudging with MSE must not give it.
    const bpCe = await gradients(be, net.backprop(x, y, 'ce').grads);
    expect(totalRelErr(bpCe, bp)).toBeGreaterThan(0.05);
    disposeState(free);
  });

  it('clamping: h_L is set once to (1 - beta) h_L^0 + beta y and held; the estimate converges in beta, close to (not equal to) BP on MSE', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const free = net.forward(x);
    const beta = 0.3;
    const s = await nudge(net, free, y, { beta, K: 6, clamp: true });
    const h0 = await be.read(free.h[net.depth]);
    const labels = await be.read(y);
    const hL = await be.read(s.h[net.depth]);
    const want = h0.map((v, i) => (1 - beta) * v + beta * (labels[Math.floor(i / 4)] === i % 4 ? 1 : 0));
    expect(relErr(hL, want)).toBeLessThan(1e-14);
    disposeNudged(s);
    const bp = await gradients(be, net.backprop(x, y, 'mse').grads);
    const est = async (scheme: 'forward' | 'centered', b: number) => gradients(be, await epGradient(net, free, y, { beta: b, K: 40, scheme, clamp: true }));
    // The beta -> 0 limit of the clamped estimate (the centered one at a tiny beta).
    const lim = await est('centered', 1e-6);
    // One-phase: first order in beta; centered: the +-beta clamps are symmetric about h_L^0.
    // (Small betas: at 1e-3 a few batches put a unit within the nudge of a ReLU kink.)
    const f1 = totalRelErr(await est('forward', 1e-4), lim);
    const f2 = totalRelErr(await est('forward', 1e-5), lim);
    expect(f1 / f2, `seed ${seed}`).toBeGreaterThan(5);
    expect(f1 / f2, `seed ${seed}`).toBeLessThan(20);
    expect(totalRelErr(await est('centered', 1e-4), lim), `seed ${seed}`).toBeLessThan(1e-2 * f2);
    // That limit is not BP's MSE gradient (the relaxed hidden layers take up part of the
    // output error, so the estimate is shorter), but it points the same way.
    let ab = 0, aa = 0, bb = 0;
    lim.forEach((li, i) => li.forEach((v, j) => ((ab += v * bp[i][j]), (aa += v * v), (bb += bp[i][j] ** 2))));
    expect(ab / Math.sqrt(aa * bb), `seed ${seed}`).toBeGreaterThan(0.95);
    expect(totalRelErr(lim, bp), `seed ${seed}`).toBeGreaterThan(1e-3);
    disposeState(free);
  });
});

describe('oneHot on webgpu', () => {
  it('marks a row whose label is out of range as NaN (so a bad label cannot train silently)', async () => {
    const be = await gpu();
    const t = be.oneHot(be.fromArray([2, 7, 0], [3], 'u32'), 4);
    const v = await be.read(t);
    expect(Array.from(v.slice(0, 4))).toEqual([0, 0, 1, 0]);
    expect(Array.from(v.slice(4, 8)).every(Number.isNaN)).toBe(true);
    expect(Array.from(v.slice(8))).toEqual([1, 0, 0, 0]);
    expect(() => be.oneHot(be.fromArray([1], [1]), 4)).toThrow(/u32/);
  });
});
