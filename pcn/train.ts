// Training and evaluation loops for EP and BP on the same network, optimizer and data.
import { Backend, Tensor, scope } from '../engine/index.js';
import { seededPermutation } from '../engine/random.js';
import { EnergyPoint, EnergyTrace, Scheme, Sweep, epGradient, readEnergyTrace } from './ep.js';
import { Params } from './layers.js';
import { Network, disposeState } from './network.js';
import { Sgd, SgdConfig, cosineLr } from './optim.js';
import { Cost, costWithGrad } from './loss.js';

/** What training needs from a data set: the tools/ data loaders implement it. */
export interface LabelledImages {
  /** [H, W, C] */
  shape: [number, number, number];
  classes: number;
  count: number;
  /** Normalized float32 NHWC images and u32 labels of the given examples. */
  batch(indices: ArrayLike<number>): { x: Float32Array; y: Uint32Array };
  /**
   * Optional asynchronous form (images decoded off the main thread); used when present.
   * `epoch` (training only) lets augmentation depend on (epoch, example) alone.
   */
  loadBatch?(indices: ArrayLike<number>, epoch?: number): Promise<{ x: Float32Array; y: Uint32Array }>;
  /** Optional hint: these examples are asked for next, so decoding can start now. */
  prefetch?(indices: ArrayLike<number>, epoch?: number): void;
  /**
   * Optional: the images as NHWC bytes, normalized on the device with `normalization`
   * (Backend.imagesFromU8; a quarter of a float32 upload). Used instead of loadBatch when
   * both are present.
   */
  loadBatchU8?(indices: ArrayLike<number>, epoch?: number): Promise<{ x: Uint8Array; y: Uint32Array }>;
  normalization?: { mean: number[]; std: number[] };
}

/** A host batch: normalized float32 images, or bytes that imagesTensor normalizes on the device. */
export interface HostBatch {
  x: Float32Array | Uint8Array;
  y: Uint32Array;
}

/** A batch from either kind of data set; `next` lets an asynchronous loader decode ahead. */
export async function loadBatch(data: LabelledImages, indices: ArrayLike<number>, next?: ArrayLike<number>, epoch?: number): Promise<HostBatch> {
  const u8 = data.loadBatchU8 && data.normalization ? data.loadBatchU8.bind(data) : undefined;
  if (!u8 && !data.loadBatch) return data.batch(indices);
  const b = u8 ? u8(indices, epoch) : data.loadBatch!(indices, epoch);
  if (next && next.length > 0) data.prefetch?.(next, epoch);
  return b;
}

/** The device tensor [N, ...data.shape] of a host batch's images. */
export function imagesTensor(be: Backend, data: LabelledImages, x: Float32Array | Uint8Array, n: number): Tensor {
  const shape = [n, ...data.shape];
  if (!(x instanceof Uint8Array)) return be.fromArray(x, shape);
  if (!data.normalization) throw new Error('a data set that returns bytes must give their normalization');
  return be.imagesFromU8(x, shape, data.normalization.mean, data.normalization.std);
}

export type Algorithm = 'ep-centered' | 'ep-forward' | 'ep-backward' | 'ep-random' | 'bp';

export interface TrainConfig {
  algorithm: Algorithm;
  epochs: number;
  batch: number;
  beta: number;
  K: number;
  sweep?: Sweep;
  /** Exact lazy skipping of layers the nudge has not reached (default true; see NudgeOptions). */
  lazy?: boolean;
  /** Convergence stop of the relaxation, relative to beta (default off; see NudgeOptions). */
  tol?: number;
  /** ep-centered: both phases as one double batch (see EpOptions.doubleBatch). */
  doubleBatch?: boolean;
  /** The cost trained on (default 'ce'); EP nudges with it, BP descends it. */
  cost?: Cost;
  /** EP: clamp the output instead of nudging it (see NudgeOptions.clamp). */
  clamp?: boolean;
  sgd: SgdConfig;
  seed: string;
}

export interface StepMetrics {
  epoch: number;
  step: number;
  lr: number;
  loss: number;
  imagesPerSec: number;
}

export interface EvalMetrics {
  top1: number;
  top5: number;
  loss: number;
  count: number;
}

export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

/** A seeded permutation of 0..n-1 for one epoch. */
export function epochOrder(n: number, seed: string, epoch: number): Uint32Array {
  return seededPermutation(n, `${seed}/epoch${epoch}`);
}

/**
 * The training images of one epoch, in order, when training on `n` of `count`: all of them
 * in epochOrder, or with a limit a fixed subset (the first n of epoch 0's order, so a
 * one-epoch run is the same either way) that later epochs reshuffle, as a PyTorch Subset of
 * random indices under a shuffling DataLoader does: the run sees n distinct images in all.
 */
export function trainOrder(count: number, n: number, seed: string, epoch: number): Uint32Array {
  if (n >= count || epoch === 0) return epochOrder(count, seed, epoch).subarray(0, Math.min(n, count));
  const subset = epochOrder(count, seed, 0);
  return seededPermutation(n, `${seed}/subset/epoch${epoch}`).map((i) => subset[i]);
}

/**
 * One optimizer step; returns the mean cost (cfg.cost) of the free phase (a tensor [1]).
 * `traces` collects the energy of every nudged phase (see EnergyTrace). Only a convergence
 * stop (cfg.tol) reads the device during the step.
 */
export async function trainStep(
  net: Network,
  sgd: Sgd,
  x: Tensor,
  y: Tensor,
  cfg: TrainConfig,
  lr: number,
  globalStep: number,
  traces?: EnergyTrace[],
): Promise<Tensor> {
  if (cfg.algorithm === 'bp') {
    return scope(() => {
      const r = net.backprop(x, y, cfg.cost);
      sgd.step(net.params(), r.grads, lr);
      return r.loss;
    });
  }
  // An awaited step cannot run in one synchronous scope: the EP code disposes what it
  // creates itself.
  const free = net.forward(x);
  let loss: Tensor | undefined;
  let grads: Params[];
  try {
    const c = costWithGrad(net.be, free.h[net.depth], y, cfg.cost ?? 'ce', 'mean');
    c.grad.dispose();
    loss = c.loss;
    grads = await epGradient(net, free, y, {
      beta: cfg.beta,
      K: cfg.K,
      scheme: cfg.algorithm.slice(3) as Scheme,
      sweep: cfg.sweep,
      lazy: cfg.lazy,
      tol: cfg.tol,
      doubleBatch: cfg.doubleBatch,
      signSeed: `${cfg.seed}/sign/${globalStep}`,
      traces,
      cost: cfg.cost,
      clamp: cfg.clamp,
    });
  } catch (e) {
    loss?.dispose();
    throw e;
  } finally {
    disposeState(free);
  }
  sgd.step(net.params(), grads, lr);
  return loss;
}

/** Top-1, top-5 and the mean cost (cross-entropy unless `cost` says otherwise) of the free phase. */
export async function evaluate(net: Network, data: LabelledImages, batch: number, limit = data.count, cost: Cost = 'ce'): Promise<EvalMetrics> {
  const be = net.be;
  const n = Math.min(limit, data.count);
  let top1 = 0;
  let top5 = 0;
  let lossSum = 0;
  for (let start = 0; start < n; start += batch) {
    const idx = Array.from({ length: Math.min(batch, n - start) }, (_, i) => start + i);
    const { x, y } = await loadBatch(data, idx, Array.from({ length: Math.max(0, Math.min(batch, n - start - batch)) }, (_, i) => start + batch + i));
    const [t1, t5, l] = scope(() => {
      const tx = imagesTensor(be, data, x, idx.length);
      const ty = be.fromArray(y, [idx.length], 'u32');
      const logits = net.logits(tx);
      const c = costWithGrad(be, logits, ty, cost, 'sum');
      return [be.topkCorrect(logits, ty, 1), be.topkCorrect(logits, ty, Math.min(5, data.classes)), c.loss];
    });
    top1 += (await be.read(t1))[0];
    top5 += (await be.read(t5))[0];
    lossSum += (await be.read(l))[0];
    for (const t of [t1, t5, l]) t.dispose();
  }
  return { top1: top1 / n, top5: top5 / n, loss: lossSum / n, count: n };
}

/** Where a run stands: the next step to take is `step` of epoch `epoch`. */
export interface Position {
  epoch: number;
  step: number;
  /** Sum and count of the losses of this epoch's steps so far (for its mean). */
  lossSum?: number;
  lossCount?: number;
  /** At an epoch's end: that epoch's mean train loss and test metrics (a finished run's result). */
  last?: { trainLoss: number; test: EvalMetrics };
}

export interface TrainHooks {
  onStep?(m: StepMetrics): void;
  onEpoch?(epoch: number, test: EvalMetrics, train: { loss: number; seconds: number }): void;
  /** Called with a finite, up-to-date state: every checkpointEvery steps and after each epoch. */
  onCheckpoint?(pos: Position, sgd: Sgd): Promise<void>;
  /** With opts.energyTrace: the energy of each nudged phase of the first step of each epoch. */
  onEnergyTrace?(epoch: number, phases: { beta: number; points: EnergyPoint[] }[]): void;
  /** At the start of each epoch and after every step (no device read): training images done in this epoch, of `total`. */
  onProgress?(p: { epoch: number; done: number; total: number; lastLoss: number | null }): void;
}



/** Trains for cfg.epochs; reads the loss every `logEvery` steps and stops on a non-finite loss. */
export async function train(
  net: Network,
  trainSet: LabelledImages,
  testSet: LabelledImages,
  cfg: TrainConfig,
  hooks: TrainHooks = {},
  opts: {
    logEvery?: number;
    trainLimit?: number;
    testLimit?: number;
    checkpointEvery?: number;
    /** Resume: the position to continue from and the optimizer's velocities. */
    start?: Position;
    velocity?: Float32Array[];
    /** Trace the energy of the first step of each epoch (hooks.onEnergyTrace; not with a double batch, whose halves mix both signs of beta). */
    energyTrace?: boolean;
  } = {},
): Promise<{ test: EvalMetrics; seconds: number }> {
  const be: Backend = net.be;
  const sgd = new Sgd(be, cfg.sgd, net.params());
  if (opts.velocity) {
    if (opts.velocity.length !== sgd.velocity.length) throw new Error(`resume: ${opts.velocity.length} velocity tensors for ${sgd.velocity.length} parameters`);
    sgd.velocity.forEach((v, i) => {
      const restored = be.fromArray(opts.velocity![i], v.shape).keep();
      v.dispose();
      sgd.velocity[i] = restored;
    });
  }
  const n = Math.min(opts.trainLimit ?? trainSet.count, trainSet.count);
  const stepsPerEpoch = Math.floor(n / cfg.batch);
  if (stepsPerEpoch < 1) throw new Error(`train: batch ${cfg.batch} is larger than the ${n} training images`);
  const total = stepsPerEpoch * cfg.epochs;
  const logEvery = opts.logEvery ?? 10;
  const t0 = performance.now();
  let test: EvalMetrics = { top1: 0, top5: 0, loss: NaN, count: 0 };
  const start = opts.start ?? { epoch: 0, step: 0 };
  let step = start.epoch * stepsPerEpoch + start.step;
  // The epoch's loss sum stays on the device, so every step counts without a read per step.
  let lossSum: Tensor | undefined;
  try {
    for (let epoch = start.epoch; epoch < cfg.epochs; epoch++) {
      const order = trainOrder(trainSet.count, n, cfg.seed, epoch);
      const te = performance.now();
      const resumed = epoch === start.epoch;
      lossSum = be.fromArray([resumed ? start.lossSum ?? 0 : 0], [1]);
      let tLog = performance.now();
      let lastLoss: number | null = null;
      const firstStep = epoch === start.epoch ? start.step : 0;
      hooks.onProgress?.({ epoch, done: firstStep * cfg.batch, total: stepsPerEpoch * cfg.batch, lastLoss: null });
      for (let s = firstStep; s < stepsPerEpoch; s++, step++) {
        const { x, y } = await loadBatch(trainSet, order.subarray(s * cfg.batch, (s + 1) * cfg.batch), s + 1 < stepsPerEpoch ? order.subarray((s + 1) * cfg.batch, (s + 2) * cfg.batch) : undefined, epoch);
        const lr = cosineLr(cfg.sgd, step, total);
        const tx = imagesTensor(be, trainSet, x, cfg.batch);
        const ty = be.fromArray(y, [cfg.batch], 'u32');
        const traces: EnergyTrace[] | undefined = opts.energyTrace && s === 0 && cfg.algorithm !== 'bp' && !cfg.doubleBatch ? [] : undefined;
        let loss: Tensor;
        try {
          // The random scheme's signs are seeded by the global step, so a resumed run draws the same.
          loss = await trainStep(net, sgd, tx, ty, cfg, lr, step, traces);
        } finally {
          tx.dispose();
          ty.dispose();
        }
        if (traces) {
          const signs = cfg.algorithm === 'ep-centered' ? [1, -1] : cfg.algorithm === 'ep-backward' ? [-1] : [1];
          const phases = [];
          for (const [i, t] of traces.entries()) phases.push({ beta: signs[i] * cfg.beta, points: await readEnergyTrace(be, t, signs[i] * cfg.beta) });
          hooks.onEnergyTrace?.(epoch, phases);
        }
        const checkpointNow = opts.checkpointEvery !== undefined && (s + 1) % opts.checkpointEvery === 0 && s < stepsPerEpoch - 1;
        const sum: Tensor = be.add(lossSum, loss);
        lossSum.dispose();
        lossSum = sum;
        if ((s + 1) % logEvery === 0 || s === stepsPerEpoch - 1 || checkpointNow) {
          const v = (await be.read(loss))[0];
          if (!Number.isFinite(v)) {
            throw new NonFiniteError(`loss became ${v} at epoch ${epoch + 1}, step ${s + 1} (lr ${lr.toExponential(2)}); lower the learning rate or beta`);
          }
          lastLoss = v;
          const now = performance.now();
          const steps = (s % logEvery) + 1;
          hooks.onStep?.({ epoch, step, lr, loss: v, imagesPerSec: (steps * cfg.batch * 1000) / (now - tLog) });
          tLog = now;
        }
        loss.dispose();
        hooks.onProgress?.({ epoch, done: (s + 1) * cfg.batch, total: stepsPerEpoch * cfg.batch, lastLoss });
        if (checkpointNow) await hooks.onCheckpoint?.({ epoch, step: s + 1, lossSum: (await be.read(lossSum))[0], lossCount: s + 1 }, sgd);
      }
      const trainLoss = (await be.read(lossSum))[0] / stepsPerEpoch;
      lossSum.dispose();
      lossSum = undefined;
      if (!Number.isFinite(trainLoss)) throw new NonFiniteError(`the train loss of epoch ${epoch + 1} became ${trainLoss}; lower the learning rate or beta`);
      test = await evaluate(net, testSet, 256, opts.testLimit, cfg.cost);
      hooks.onEpoch?.(epoch, test, { loss: trainLoss, seconds: (performance.now() - te) / 1000 });
      await hooks.onCheckpoint?.({ epoch: epoch + 1, step: 0, last: { trainLoss, test } }, sgd);
    }
  } finally {
    lossSum?.dispose();
    sgd.dispose();
  }
  return { test, seconds: (performance.now() - t0) / 1000 };
}
