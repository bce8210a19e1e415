// A training step on webgpu does what it does on the float64 reference backend: the whole
// chain (forward, mod-PGD nudging, EP gradient, fused SGD) on the GPU kernels.
import { describe, expect, it } from 'vitest';
import { Backend } from '../engine/index.js';
import { smallNet } from '../pcn/models.js';
import { Network } from '../pcn/network.js';
import { Sgd } from '../pcn/optim.js';
import { TrainConfig, epochOrder, trainStep } from '../pcn/train.js';
import { freshSeed, gpu, randomValues, ref, relErr, rng } from './helpers.js';

async function paramsAfterSteps(be: Backend, cfg: TrainConfig, xs: Float32Array[], ys: number[][]): Promise<Float64Array[]> {
  const net = new Network(be, smallNet('c4p,c6p,d12', [9, 9, 3], 5));
  net.init(cfg.seed);
  const sgd = new Sgd(be, cfg.sgd, net.params());
  for (let s = 0; s < xs.length; s++) {
    const x = be.fromArray(xs[s], [ys[s].length, 9, 9, 3]);
    const y = be.fromArray(ys[s], [ys[s].length], 'u32');
    const loss = trainStep(net, sgd, x, y, cfg, cfg.sgd.lr, s);
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
