// Exact lazy skipping, the convergence stop, the FLOP model's schedule and the energy trace,
// on the float64 reference backend (and the lazy rule once on webgpu).
import { describe, expect, it } from 'vitest';
import { Backend, ReferenceBackend, Tensor } from '../engine/index.js';
import {
  EnergyTrace,
  Scheme,
  disposeNudged,
  epGradient,
  layerEnergies,
  newNudgeStats,
  nudge,
  readEnergyTrace,
} from '../pcn/ep.js';
import { lazySkippedUpdates, phaseCounts, stepFlops } from '../pcn/cost.js';
import { smallNet, vgg10, vgg5 } from '../pcn/models.js';
import { ModelSpec, Network, disposeState } from '../pcn/network.js';
import { cosine, freshSeed, gpu, randomValues, relErr, rng, tinyPcnSpec } from './helpers.js';

// Seven layers so that a short schedule leaves the lower ones unreached.
const spec: ModelSpec = {
  name: 'deep-tiny',
  input: [8, 8, 2],
  classes: 3,
  layers: [
    { kind: 'conv', out: 4, pool: false },
    { kind: 'conv', out: 5, pool: true },
    { kind: 'conv', out: 6, pool: false },
    { kind: 'conv', out: 6, pool: true },
    { kind: 'dense', out: 12 },
    { kind: 'dense', out: 9 },
    { kind: 'dense', out: 3 },
  ],
  convFan: 'in',
  outputGain: 1,
};
const L = spec.layers.length;

function setup(seed: string, be: Backend = new ReferenceBackend() as unknown as Backend, N = 5) {
  const net = new Network(be, spec);
  net.init(seed);
  const r = rng(seed);
  const x = be.fromArray(randomValues(N * 128, r), [N, 8, 8, 2]);
  const y = be.fromArray(Array.from({ length: N }, () => Math.floor(r() * 3)), [N], 'u32');
  return { be, net, x, y };
}

async function flat(be: Backend, ps: { w: Tensor; b: Tensor }[]): Promise<Float64Array[]> {
  return Promise.all(ps.flatMap((p) => [be.read(p.w), be.read(p.b)]));
}

function maxAbs(a: Float64Array[]): number {
  return Math.max(...a.map((t) => Math.max(...Array.from(t, Math.abs))));
}

describe('exact lazy skipping', () => {
  it.each(['centered', 'random', 'backward'] as Scheme[])('%s: the same gradients as without skipping, bit for bit, while skipping', async (scheme) => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const free = net.forward(x);
    for (const K of [1, 2, 3, 5]) {
      const stats = newNudgeStats(L);
      const lazy = await flat(be, await epGradient(net, free, y, { beta: 0.1, K, scheme, signSeed: seed, stats }));
      const full = await flat(be, await epGradient(net, free, y, { beta: 0.1, K, scheme, signSeed: seed, lazy: false }));
      lazy.forEach((g, i) => expect(relErr(g, full[i]), `tensor ${i} K ${K} seed ${seed}`).toBe(0));
      expect(maxAbs(full)).toBeGreaterThan(0);
      const phases = scheme === 'centered' ? 2 : 1;
      expect(stats.skipped, `K ${K}`).toBe(phases * lazySkippedUpdates(L, K));
    }
    disposeState(free);
  });

  it('the same on webgpu (f32 kernels), where skipping must also be exact', async () => {
    // The net and batch of test/pcn-train.test.ts: the same kernels, compiled once.
    const seed = freshSeed();
    const be = await gpu();
    const net = new Network(be, smallNet('c4p,c6p,d12', [9, 9, 3], 5));
    net.init(seed);
    const r = rng(seed);
    const x = be.fromArray(randomValues(5 * 243, r), [5, 9, 9, 3]);
    const y = be.fromArray(Array.from({ length: 5 }, () => Math.floor(r() * 5)), [5], 'u32');
    const free = net.forward(x);
    const lazy = await flat(be, await epGradient(net, free, y, { beta: 0.05, K: 1, scheme: 'centered' }));
    const full = await flat(be, await epGradient(net, free, y, { beta: 0.05, K: 1, scheme: 'centered', lazy: false }));
    lazy.forEach((g, i) => expect(relErr(g, full[i]), `tensor ${i} seed ${seed}`).toBe(0));
    // K = 1 reaches layers 3 and 4 only: layers 1 and 2 get exactly zero gradients.
    expect(maxAbs(lazy.slice(0, 4))).toBe(0);
    expect(maxAbs(lazy.slice(4))).toBeGreaterThan(0);
    disposeState(free);
    x.dispose();
    y.dispose();
  });

  it('the work counted in a run is what the FLOP model schedules', async () => {
    const seed = freshSeed();
    const { net, x, y } = setup(seed);
    const free = net.forward(x);
    for (const [K, lazy, sweep] of [[1, true, 'async'], [2, true, 'async'], [4, true, 'async'], [3, false, 'async'], [2, false, 'sync']] as const) {
      const stats = newNudgeStats(L);
      disposeNudged(await nudge(net, free, y, { beta: 0.1, K, lazy, sweep, stats }));
      const model = phaseCounts(L, K, { lazy, sweep });
      expect(stats.pre, `K ${K} lazy ${lazy} ${sweep}`).toEqual(model.pre);
      expect(stats.vjp, `K ${K} lazy ${lazy} ${sweep}`).toEqual(model.vjp);
      expect(stats.skipped).toBe(model.skipped);
      expect(stats.updates + stats.skipped).toBe(K * L);
    }
    disposeState(free);
  });

  it('the FLOP model gives the paper\'s ratios for VGG10 at 224 (about 10.7x BP with skipping, 14x without)', () => {
    const s = vgg10([224, 224, 3], 1000);
    const lazy = stepFlops(s, 10, 'centered');
    const full = stepFlops(s, 10, 'centered', { lazy: false });
    expect(lazy.bp / 1e9).toBeGreaterThan(44);
    expect(lazy.bp / 1e9).toBeLessThan(46);
    expect(lazy.ratio).toBeGreaterThan(10.2);
    expect(lazy.ratio).toBeLessThan(11.2);
    expect(full.ratio).toBeGreaterThan(13.5);
    expect(full.ratio).toBeLessThan(14.5);
    // One phase costs about half (plus the shared free phase).
    expect(stepFlops(s, 10, 'random').ratio).toBeLessThan(lazy.ratio / 1.8);
    expect(lazySkippedUpdates(10, 10)).toBe(20);
    expect(stepFlops(vgg5([32, 32, 3], 10), 5, 'centered').counts.skipped).toBe(lazySkippedUpdates(5, 5));
  });
});

describe('convergence stop', () => {
  it('a tight tolerance stops early and gives the full schedule\'s gradients within tolerance', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const free = net.forward(x);
    // The relaxation contracts at different rates per net (measured: 20 to 60 iterations per
    // phase to 1e-8); K = 100 leaves room, and the full schedule is then converged too.
    const beta = 0.01;
    const K = 100;
    const full = await flat(be, await epGradient(net, free, y, { beta, K, scheme: 'centered' }));
    const stats = newNudgeStats(L);
    const stopped = await flat(be, await epGradient(net, free, y, { beta, K, scheme: 'centered', tol: 1e-6, stats }));
    expect(stats.iterations, `seed ${seed}`).toBeLessThan(2 * K);
    stopped.forEach((g, i) => expect(relErr(g, full[i]), `tensor ${i} seed ${seed}`).toBeLessThan(1e-4));
    // A loose tolerance stops sooner: the stop is real, not a no-op.
    const loose = newNudgeStats(L);
    await epGradient(net, free, y, { beta, K, scheme: 'centered', tol: 1e-2, stats: loose });
    expect(loose.iterations).toBeLessThan(stats.iterations);
    disposeState(free);
  });

  it('a nudge stopped after n iterations holds the state of n iterations without a stop, bit for bit', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const free = net.forward(x);
    const K = 100;
    const stats = newNudgeStats(L);
    const stopped = await nudge(net, free, y, { beta: 0.1, K, tol: 1e-3, stats });
    const n = stats.iterations;
    expect(n, `seed ${seed}`).toBeGreaterThan(1);
    expect(n, `seed ${seed}`).toBeLessThan(K);
    // Checking the stop only adds reads: the relaxation itself is the same.
    const plain = await nudge(net, free, y, { beta: 0.1, K: n });
    for (let k = 1; k <= L; k++) expect(relErr(await be.read(stopped.h[k]), await be.read(plain.h[k])), `layer ${k} seed ${seed}`).toBe(0);
    disposeNudged(stopped);
    disposeNudged(plain);
    disposeState(free);
  });
});

describe('energy trace and the gradient-only loss', () => {
  it('traces E per layer, C and F per iteration, from the free state on', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const free = net.forward(x);
    const K = 4;
    const traces: EnergyTrace[] = [];
    await epGradient(net, free, y, { beta: 0.2, K, scheme: 'centered', traces });
    expect(traces.length).toBe(2);
    const plus = await readEnergyTrace(be, traces[0], 0.2);
    expect(plus.length).toBe(K + 1);
    expect(plus[0].E).toBe(0);
    for (const p of plus) {
      expect(p.layers.length).toBe(L);
      expect(p.F).toBeCloseTo(p.E + 0.2 * p.C, 10);
    }
    // The nudge lowers the cost and raises the internal energy.
    expect(plus[K].C).toBeLessThan(plus[0].C);
    expect(plus[K].E).toBeGreaterThan(0);
    // The last point is the energy of the nudged state itself.
    const s = await nudge(net, free, y, { beta: 0.2, K });
    const direct = await layerEnergies(net, s);
    direct.forEach((e, k) => expect(plus[K].layers[k]).toBeCloseTo(e, 10));
    disposeNudged(s);
    expect(traces[0].layers.length).toBe(0); // read frees it
    disposeState(free);
  });

  it('softmaxCrossEntropyGrad is the scaled gradient of the summed loss (reference)', async () => {
    const be = new ReferenceBackend() as unknown as Backend;
    const r = rng(freshSeed());
    const z = be.fromArray(randomValues(6 * 7, r).map((v) => 4 * v), [6, 7]);
    const l = be.fromArray([0, 6, 3, 3, 1, 2], [6], 'u32');
    const want = (await be.read(be.softmaxCrossEntropy(z, l, 'sum').grad)).map((v) => -0.3 * v);
    expect(relErr(await be.read(be.softmaxCrossEntropyGrad(z, l, -0.3)), want)).toBeLessThan(1e-14);
    expect(() => be.softmaxCrossEntropyGrad(z, be.fromArray([0, 9, 0, 0, 0, 0], [6], 'u32'), 1)).toThrow(/out of range/);
  });
});

describe('top-down sweep (a faster schedule option)', () => {
  const tiny: ModelSpec = tinyPcnSpec();
  const minCosine = async (seed: string, K: number) => {
    const be = new ReferenceBackend() as unknown as Backend;
    const net = new Network(be, tiny);
    net.init(seed);
    const r = rng(seed);
    const x = be.fromArray(randomValues(8 * 72, r), [8, 6, 6, 2]);
    const y = be.fromArray(Array.from({ length: 8 }, () => Math.floor(r() * 4)), [8], 'u32');
    const bp = await flat(be, net.backprop(x, y).grads);
    const free = net.forward(x);
    const ep = await flat(be, await epGradient(net, free, y, { beta: 1e-4, K, scheme: 'centered', sweep: 'topdown' }));
    disposeState(free);
    return Math.min(...ep.map((g, i) => cosine(g, bp[i])));
  };

  it('converges to the BP gradient as beta -> 0 in three sweeps (one is not enough)', async () => {
    // Measured: K = 3 gives a worst-tensor cosine of 0.99984..0.99999 on these seeds, K = 1 0.87..0.96.
    for (const seed of ['t1', 't2', 't3']) {
      expect(await minCosine(seed, 3), `seed ${seed}`).toBeGreaterThan(0.999);
      expect(await minCosine(seed, 1), `seed ${seed}`).toBeLessThan(0.99);
    }
    const seed = freshSeed();
    expect(await minCosine(seed, 5), `seed ${seed}`).toBeGreaterThan(0.999);
  });

  it('its work is what the FLOP model schedules, and it costs VGG10 about half the paper\'s schedule', async () => {
    const { net, x, y } = setup(freshSeed());
    const free = net.forward(x);
    for (const K of [1, 3]) {
      const stats = newNudgeStats(L);
      disposeNudged(await nudge(net, free, y, { beta: 0.1, K, sweep: 'topdown', stats }));
      const model = phaseCounts(L, K, { sweep: 'topdown' });
      expect(stats.pre).toEqual(model.pre);
      expect(stats.vjp).toEqual(model.vjp);
      expect(stats.updates).toBe(K * L);
    }
    disposeState(free);
    const s = vgg10([224, 224, 3], 1000);
    expect(stepFlops(s, 3, 'centered', { sweep: 'topdown' }).ratio).toBeLessThan(0.55 * stepFlops(s, 10, 'centered').ratio);
  });
});

describe('double batch (both centered phases in one relaxation)', () => {
  it('gives the centered gradient in one relaxation', async () => {
    const seed = freshSeed();
    const { be, net, x, y } = setup(seed);
    const free = net.forward(x);
    for (const K of [2, 5]) {
      const two = await flat(be, await epGradient(net, free, y, { beta: 0.05, K, scheme: 'centered' }));
      const stats = newNudgeStats(L);
      const one = await flat(be, await epGradient(net, free, y, { beta: 0.05, K, scheme: 'centered', doubleBatch: true, stats }));
      // Not bit-equal: the per-example betas and scales are f32 tensors (beta rounded to f32,
      // ~1e-8 relative), where the two-phase path passes beta as a host number.
      one.forEach((g, i) => expect(relErr(g, two[i]), `tensor ${i} K ${K} seed ${seed}`).toBeLessThan(1e-6));
      expect(stats.iterations).toBe(K); // one relaxation, not two
    }
    await expect(epGradient(net, free, y, { beta: 0.05, K: 2, scheme: 'random', doubleBatch: true })).rejects.toThrow(/centered/);
    disposeState(free);
    // On webgpu the double batch runs only ops tested there against the reference (concat,
    // scaleRows and the relaxation's); a run here would compile every kernel for batch 2N.
  });
});
