// A training step on webgpu does what it does on the float64 reference backend: the whole
// chain (forward, mod-PGD nudging, EP gradient, fused SGD) on the GPU kernels.
import { describe, expect, it } from 'vitest';
import { Backend } from '../engine/index.js';
import { smallNet } from '../pcn/models.js';
import { Network } from '../pcn/network.js';
import { Sgd } from '../pcn/optim.js';
import { LabelledImages, TrainConfig, epochOrder, train, trainOrder, trainStep } from '../pcn/train.js';
import { freshSeed, gpu, randomValues, ref, relErr, rng } from './helpers.js';

async function paramsAfterSteps(be: Backend, cfg: TrainConfig, xs: Float32Array[], ys: number[][]): Promise<Float64Array[]> {
  const net = new Network(be, smallNet('c4p,c6p,d12', [9, 9, 3], 5));
  net.init(cfg.seed);
  const sgd = new Sgd(be, cfg.sgd, net.params());
  for (let s = 0; s < xs.length; s++) {
    const x = be.fromArray(xs[s], [ys[s].length, 9, 9, 3]);
    const y = be.fromArray(ys[s], [ys[s].length], 'u32');
    const loss = await trainStep(net, sgd, x, y, cfg, cfg.sgd.lr, s);
    loss.dispose();
    x.dispose();
    y.dispose();
  }
  const out = await Promise.all(net.params().flatMap((p) => [be.read(p.w), be.read(p.b)]));
  sgd.dispose();
  return out;
}

describe('training steps: webgpu against reference', () => {
  it.each(['ep-centered', 'ep-random', 'bp'] as const)('%s: parameters after 3 steps match', async (algorithm) => {
    const seed = freshSeed();
    const r = rng(seed);
    const N = 5;
    const xs = [0, 1, 2].map(() => randomValues(N * 243, r));
    const ys = [0, 1, 2].map(() => Array.from({ length: N }, () => Math.floor(r() * 5)));
    const cfg: TrainConfig = {
      algorithm,
      epochs: 1,
      batch: N,
      beta: 0.05,
      K: 4,
      seed,
      sgd: { lr: 0.05, momentum: 0.9, weightDecay: 1e-3, lrMin: 0 },
    };
    const g = await paramsAfterSteps(await gpu(), cfg, xs, ys);
    const c = await paramsAfterSteps(ref, cfg, xs, ys);
    for (let i = 0; i < c.length; i++) {
      // f32 against f64 through 3 steps of a nonlinear iteration: looser than one kernel.
      expect(relErr(g[i], c[i]), `tensor ${i}, ${algorithm}, seed ${seed}`).toBeLessThan(1e-4);
    }
    // The parameters moved.
    const init = await paramsAfterSteps(ref, { ...cfg, sgd: { ...cfg.sgd, lr: 0, weightDecay: 0 } }, xs, ys);
    expect(relErr(c[0], init[0])).toBeGreaterThan(1e-4);
  });

  it('epoch order is a seeded permutation, different per epoch', () => {
    const a = epochOrder(1000, 's', 0);
    const b = epochOrder(1000, 's', 0);
    const c = epochOrder(1000, 's', 1);
    expect([...a]).toEqual([...b]);
    expect([...a]).not.toEqual([...c]);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});

/** `count` random 9x9x3 images in 5 classes; `seen` collects the indices of every batch read. */
function data(seed: string, count: number, seen?: number[][]): LabelledImages {
  const r = rng(seed);
  const xs = randomValues(count * 243, r);
  const ys = Array.from({ length: count }, () => Math.floor(r() * 5));
  return {
    shape: [9, 9, 3],
    classes: 5,
    count,
    batch: (idx) => {
      seen?.push(Array.from(idx));
      return {
        x: Float32Array.from(Array.from(idx).flatMap((i) => Array.from(xs.subarray(i * 243, (i + 1) * 243)))),
        y: Uint32Array.from(Array.from(idx, (i) => ys[i])),
      };
    },
  };
}

describe('training loop hooks: energy trace, progress, convergence stop (reference backend)', () => {
  const cfg = (seed: string, extra: Partial<TrainConfig> = {}): TrainConfig => ({
    algorithm: 'ep-centered',
    epochs: 2,
    batch: 4,
    beta: 0.05,
    K: 3,
    seed,
    sgd: { lr: 0.02, momentum: 0.9, weightDecay: 0, lrMin: 0 },
    ...extra,
  });

  it('traces the first step of each epoch (both phases, K + 1 points) and reports progress per step', async () => {
    const seed = freshSeed();
    const net = new Network(ref, smallNet('c4p,d6', [9, 9, 3], 5));
    net.init(seed);
    const traces: { epoch: number; phases: { beta: number; points: { F: number; E: number }[] }[] }[] = [];
    const progress: [number, number, number][] = [];
    await train(net, data(seed, 12), data(seed + 't', 8), cfg(seed), {
      onEnergyTrace: (epoch, phases) => traces.push({ epoch, phases }),
      onProgress: (p) => progress.push([p.epoch, p.done, p.total]),
    }, { energyTrace: true });
    expect(traces.map((t) => t.epoch)).toEqual([0, 1]);
    for (const t of traces) {
      expect(t.phases.map((p) => p.beta)).toEqual([0.05, -0.05]);
      for (const p of t.phases) {
        expect(p.points.length).toBe(4);
        expect(p.points[0].E).toBe(0);
        expect(p.points[3].E).toBeGreaterThan(0);
      }
    }
    // Per epoch: the start (0 done), then after each of the 3 steps.
    expect(progress).toEqual([0, 1].flatMap((e) => [[e, 0, 12], [e, 4, 12], [e, 8, 12], [e, 12, 12]]));
  });

  it('a tight convergence stop trains like the full schedule', async () => {
    const seed = freshSeed();
    const run = async (extra: Partial<TrainConfig>) => {
      const net = new Network(ref, smallNet('c4p,d6', [9, 9, 3], 5));
      net.init(seed);
      await train(net, data(seed, 8), data(seed + 't', 4), cfg(seed, { epochs: 1, K: 30, ...extra }));
      return Promise.all(net.params().flatMap((p) => [ref.read(p.w), ref.read(p.b)]));
    };
    const full = await run({});
    const stopped = await run({ tol: 1e-7 });
    full.forEach((w, i) => expect(relErr(stopped[i], w), `tensor ${i} seed ${seed}`).toBeLessThan(1e-6));
  });
});

describe('the training loop: limited subsets and the epoch train loss (reference backend)', () => {
  const cfg = (seed: string, extra: Partial<TrainConfig> = {}): TrainConfig => ({
    algorithm: 'bp',
    epochs: 3,
    batch: 2,
    beta: 0.05,
    K: 2,
    seed,
    sgd: { lr: 0.05, momentum: 0.9, weightDecay: 0, lrMin: 0 },
    ...extra,
  });

  it('trainOrder: a limit is one fixed subset (epoch 0 as before), reshuffled each later epoch; no limit is epochOrder', () => {
    const seed = freshSeed();
    const first = trainOrder(50, 12, seed, 0);
    expect([...first]).toEqual([...epochOrder(50, seed, 0).subarray(0, 12)]);
    const sorted = (a: Uint32Array) => [...a].sort((x, y) => x - y);
    for (const e of [1, 2, 3]) {
      const o = trainOrder(50, 12, seed, e);
      expect(sorted(o), `epoch ${e}, seed ${seed}`).toEqual(sorted(first));
    }
    expect([...trainOrder(50, 12, seed, 1)]).not.toEqual([...trainOrder(50, 12, seed, 2)]);
    for (const e of [0, 1]) expect([...trainOrder(50, 50, seed, e)]).toEqual([...epochOrder(50, seed, e)]);
  });

  it('with trainLimit, every epoch trains on the same images', async () => {
    const seed = freshSeed();
    const seen: number[][] = [];
    const net = new Network(ref, smallNet('d6', [9, 9, 3], 5));
    net.init(seed);
    await train(net, data(seed, 40, seen), data(seed + 't', 4), cfg(seed), {}, { trainLimit: 8 });
    // 3 epochs of 4 steps of 2.
    expect(seen.length).toBe(12);
    const epochSet = (e: number) => seen.slice(4 * e, 4 * e + 4).flat().sort((a, b) => a - b);
    expect(new Set(epochSet(0)).size).toBe(8);
    expect(epochSet(1), `seed ${seed}`).toEqual(epochSet(0));
    expect(epochSet(2), `seed ${seed}`).toEqual(epochSet(0));
  });

  it("the epoch's train loss is the mean over all its steps, not only the logged ones", async () => {
    const seed = freshSeed();
    const run = async (logEvery: number) => {
      const net = new Network(ref, smallNet('d6', [9, 9, 3], 5));
      net.init(seed);
      const steps: number[] = [];
      const epochs: number[] = [];
      await train(net, data(seed, 10), data(seed + 't', 4), cfg(seed, { epochs: 2 }), {
        onStep: (m) => steps.push(m.loss),
        onEpoch: (_e, _t, tr) => epochs.push(tr.loss),
      }, { logEvery });
      return { steps, epochs };
    };
    const every = await run(1);
    expect(every.steps.length).toBe(10);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const want = [mean(every.steps.slice(0, 5)), mean(every.steps.slice(5))];
    // Logged every 1000 steps: only each epoch's last step is read, but all five count.
    const sparse = await run(1000);
    expect(sparse.steps.length).toBe(2);
    for (const [i, w] of want.entries()) {
      expect(Math.abs(every.epochs[i] - w), `epoch ${i}, seed ${seed}`).toBeLessThan(1e-12 * Math.abs(w) + 1e-12);
      expect(Math.abs(sparse.epochs[i] - w), `epoch ${i}, seed ${seed}`).toBeLessThan(1e-12 * Math.abs(w) + 1e-12);
    }
  });

  it('refuses a batch larger than the training set (no step would run)', async () => {
    const seed = freshSeed();
    const net = new Network(ref, smallNet('d6', [9, 9, 3], 5));
    net.init(seed);
    await expect(train(net, data(seed, 10), data(seed + 't', 4), cfg(seed), {}, { trainLimit: 1 })).rejects.toThrow(/batch 2 is larger than the 1 training images/);
  });
});
