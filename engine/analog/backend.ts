// The analog backend: a decorator over any backend (webgpu, reference) that runs every
// matmul and convolution through a model of an analog crossbar tile and writes weight
// updates as device pulses. In the spirit of IBM's AIHWKIT tiles; see README.md here.
//
// What a tile is: a weight tensor, identified by object identity, the first time it is
// used as the weight operand of an MVM: the filter of conv2d / conv2dBackwardData, the
// right operand B of matmul(A, B) and matmul(A, B, {transB}) (activations are rows on the
// left, the layers' convention). matmul(A, B, {transA}) and conv2dBackwardFilter are
// weight-gradient uses (outer products the hardware forms from its pulse drivers): their
// operands pass through the backward DAC, and no tile is involved. Tiles are numbered
// 1, 2, ... in order of first use, which a deterministic program repeats exactly; every
// random stream is keyed by (seed, tile, purpose, per-tile counter), so a run reproduces
// from its seed on any backend.
import {
  AnalogIOOptions,
  Backend,
  Conv2dOptions,
  ConvBlockGates,
  ConvBlockOptions,
  ConvBlockResult,
  MatmulOptions,
  MaxPoolResult,
  PulsedUpdateOptions,
  SgdOptions,
  SoftmaxCrossEntropyResult,
} from '../backend.js';
import { DType, Shape, Tensor } from '../tensor.js';
import { streamKey } from '../../kernels/analog.js';
import { composeConvBlock, composeConvBlockBackwardData } from '../fused.js';
import { DeviceModel, IOConfig, inputStageActive, ioIsIdeal, outputStageActive } from './model.js';

/** What each stream key is for (the third coordinate of streamKey). */
const PURPOSE = { dac: 1, adc: 2, program: 3, device: 4, update: 5, gradA: 6, gradB: 7 } as const;

interface Tile {
  readonly id: number;
  /** omega: max |W| when the tile was first programmed; the unit of every device quantity. */
  readonly omega: Tensor;
  /** IO draws so far (one counter for all of this tile's IO stages). */
  reads: number;
  /** Updates written so far. */
  writes: number;
  /** W plus programming noise, valid until the next write. */
  programmed: Tensor | null;
}

export interface AnalogBackendOptions {
  /** u32 run seed of every random stream. */
  seed: number;
}

export class AnalogBackend implements Backend {
  readonly name: string;
  private readonly tiles = new Map<Tensor, Tile>();
  /** Counter of the weight-gradient stream (no tile). */
  private gradReads = 0;

  constructor(
    readonly inner: Backend,
    readonly model: DeviceModel,
    readonly opts: AnalogBackendOptions,
  ) {
    if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new Error(`analog backend: seed must be a u32, got ${opts.seed}`);
    this.name = `analog(${inner.name})`;
  }

  /** Number of tiles seen so far. */
  get tileCount(): number {
    return this.tiles.size;
  }

  /** Releases the tiles' own tensors (tile scales, programmed copies). */
  dispose(): void {
    for (const t of this.tiles.values()) {
      t.omega.dispose();
      t.programmed?.dispose();
    }
    this.tiles.clear();
  }

  private tile(w: Tensor): Tile {
    let t = this.tiles.get(w);
    if (!t) {
      const flat = this.inner.reshape(w, [1, w.size]);
      const omega = this.inner.rowAbsMax(flat).keep();
      flat.dispose();
      t = { id: this.tiles.size + 1, omega, reads: 0, writes: 0, programmed: null };
      this.tiles.set(w, t);
    }
    return t;
  }

  /**
   * Whether an MVM through w is the plain digital one (then the wrapped op runs as it is,
   * bit for bit). w still becomes a tile when updates are pulsed, so that its update is.
   */
  private exactReads(io: IOConfig, w: Tensor): boolean {
    if (!ioIsIdeal(io) || this.model.programNoise > 0) return false;
    if (this.model.update) this.tile(w);
    return true;
  }

  /** The conductances the tile holds: W, or W plus this programming's noise. */
  private weights(w: Tensor, tile: Tile): Tensor {
    if (this.model.programNoise <= 0) return w;
    if (!tile.programmed) {
      const key = streamKey(this.opts.seed, tile.id, PURPOSE.program, tile.writes);
      tile.programmed = this.inner
        .analogIO(w, { mode: 'adc', noiseStd: this.model.programNoise, bound: Infinity, bits: 0, key }, null, tile.omega)
        .keep();
    }
    return tile.programmed;
  }

  private dacOptions(io: IOConfig, key: number): AnalogIOOptions {
    return { mode: 'dac', noiseStd: io.inNoise, bound: io.inBound ?? Infinity, bits: io.inBits, key };
  }

  /**
   * One MVM through a tile: normalize rows (noise management), DAC, the exact MVM on the
   * (programmed) weights, ADC in units of omega with bound management, rows scaled back.
   */
  private mvm(io: IOConfig, w: Tensor, x: Tensor, run: (x: Tensor, w: Tensor) => Tensor): Tensor {
    if (this.exactReads(io, w)) return run(x, w);
    const be = this.inner;
    const tile = this.tile(w);
    const wp = this.weights(w, tile);
    const owned: Tensor[] = [];
    let s: Tensor | null = null;
    let xin = x;
    if (inputStageActive(io)) {
      if (io.noiseManagement) owned.push((s = be.rowAbsMax(x)));
      xin = be.analogIO(x, this.dacOptions(io, streamKey(this.opts.seed, tile.id, PURPOSE.dac, tile.reads++)), s);
      owned.push(xin);
    }
    let y = run(xin, wp);
    if (outputStageActive(io)) {
      const m = io.boundManagement ? be.rowAbsMax(y) : null;
      if (m) owned.push(m);
      owned.push(y);
      const key = streamKey(this.opts.seed, tile.id, PURPOSE.adc, tile.reads++);
      y = be.analogIO(
        y,
        { mode: 'adc', noiseStd: io.outNoise, bound: io.outBound ?? Infinity, bits: io.outBits, maxHalvings: io.maxHalvings, key },
        m,
        tile.omega,
      );
    }
    if (s) {
      owned.push(y);
      y = be.scaleRows(y, s);
    }
    for (const t of owned) t.dispose();
    return y;
  }

  /** A weight-gradient operand: rows normalized, through the backward DAC, scaled back. */
  private gradOperand(t: Tensor, purpose: number): Tensor | null {
    const io = this.model.backward;
    if (!inputStageActive(io)) return null;
    const be = this.inner;
    const s = io.noiseManagement ? be.rowAbsMax(t) : null;
    const q = be.analogIO(t, this.dacOptions(io, streamKey(this.opts.seed, 0, purpose, this.gradReads++)), s);
    if (!s) return q;
    const out = be.scaleRows(q, s);
    q.dispose();
    s.dispose();
    return out;
  }

  private gradientUse(a: Tensor, b: Tensor, run: (a: Tensor, b: Tensor) => Tensor): Tensor {
    const qa = this.gradOperand(a, PURPOSE.gradA);
    const qb = this.gradOperand(b, PURPOSE.gradB);
    const out = run(qa ?? a, qb ?? b);
    qa?.dispose();
    qb?.dispose();
    return out;
  }

  // -------------------------------------------------------------------------
  // The MVMs.

  matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
    if (opts.transA) return this.gradientUse(a, b, (qa, qb) => this.inner.matmul(qa, qb, opts));
    const io = opts.transB ? this.model.backward : this.model.forward;
    return this.mvm(io, b, a, (x, w) => this.inner.matmul(x, w, opts));
  }

  conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): Tensor {
    const io = this.model.forward;
    if (this.exactReads(io, w)) return this.inner.conv2d(x, w, bias, opts);
    const y = this.mvm(io, w, x, (xq, wp) => this.inner.conv2d(xq, wp, null, opts));
    if (!bias) return y;
    const out = this.inner.addBias(y, bias);
    y.dispose();
    return out;
  }

  conv2dBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, opts?: Conv2dOptions): Tensor {
    return this.mvm(this.model.backward, w, dy, (d, wp) => this.inner.conv2dBackwardData(d, wp, inputShape, opts));
  }

  conv2dBackwardFilter(x: Tensor, dy: Tensor, filterShape: Shape, opts?: Conv2dOptions): Tensor {
    return this.gradientUse(x, dy, (qx, qd) => this.inner.conv2dBackwardFilter(qx, qd, filterShape, opts));
  }

  // -------------------------------------------------------------------------
  // Updates: digital momentum SGD computes the desired change; a tile receives it as pulses.

  sgdNesterov(param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void {
    const tile = this.tiles.get(param);
    const update = this.model.update;
    if (!tile || !update) {
      this.inner.sgdNesterov(param, grad, velocity, opts);
      if (tile) this.wrote(tile);
      return;
    }
    const be = this.inner;
    const target = be.clone(param);
    be.sgdNesterov(target, grad, velocity, opts);
    const dw = be.sub(target, param);
    target.dispose();
    be.pulsedUpdate(param, dw, tile.omega, {
      ...update,
      deviceKey: streamKey(this.opts.seed, tile.id, PURPOSE.device),
      updateKey: streamKey(this.opts.seed, tile.id, PURPOSE.update, tile.writes),
    });
    dw.dispose();
    this.wrote(tile);
  }

  private wrote(tile: Tile): void {
    tile.writes++;
    tile.programmed?.dispose();
    tile.programmed = null;
  }

  // -------------------------------------------------------------------------
  // Everything else is digital: the wrapped backend's ops as they are.

  fromArray(data: ArrayLike<number>, shape: Shape, dtype?: DType): Tensor {
    return this.inner.fromArray(data, shape, dtype);
  }
  imagesFromU8(data: Uint8Array, shape: Shape, mean: readonly number[], std: readonly number[]): Tensor {
    return this.inner.imagesFromU8(data, shape, mean, std);
  }
  zeros(shape: Shape): Tensor {
    return this.inner.zeros(shape);
  }
  uniform(shape: Shape, low: number, high: number, seed: string | number): Tensor {
    return this.inner.uniform(shape, low, high, seed);
  }
  read(t: Tensor): Promise<Float64Array> {
    return this.inner.read(t);
  }
  clone(t: Tensor): Tensor {
    return this.inner.clone(t);
  }
  reshape(t: Tensor, shape: Shape): Tensor {
    return this.inner.reshape(t, shape);
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.inner.add(a, b);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.inner.sub(a, b);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.inner.mul(a, b);
  }
  scale(a: Tensor, s: number): Tensor {
    return this.inner.scale(a, s);
  }
  axpy(alpha: number, x: Tensor, y: Tensor): Tensor {
    return this.inner.axpy(alpha, x, y);
  }
  relu(a: Tensor): Tensor {
    return this.inner.relu(a);
  }
  reluMask(g: Tensor, x: Tensor): Tensor {
    return this.inner.reluMask(g, x);
  }
  addBias(x: Tensor, bias: Tensor): Tensor {
    return this.inner.addBias(x, bias);
  }
  scaleRows(x: Tensor, s: Tensor): Tensor {
    return this.inner.scaleRows(x, s);
  }
  sum(a: Tensor, axes: number[]): Tensor {
    return this.inner.sum(a, axes);
  }
  biasGrad(g: Tensor): Tensor {
    return this.inner.biasGrad(g);
  }
  // Composed from this backend's own conv (so the tile model applies to the conv inside).
  convBlock(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvBlockOptions): ConvBlockResult {
    return composeConvBlock(this, x, w, bias, opts);
  }
  convBlockBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, gates?: ConvBlockGates): Tensor {
    return composeConvBlockBackwardData(this, dy, w, inputShape, gates);
  }
  // Gradient sums are digital (the optimizer's side), as biasGrad is.
  accumulate(acc: Tensor, x: Tensor): void {
    this.inner.accumulate(acc, x);
  }
  maxPool2x2(x: Tensor): MaxPoolResult {
    return this.inner.maxPool2x2(x);
  }
  maxPool2x2Backward(dy: Tensor, argmax: Tensor, inputShape: Shape): Tensor {
    return this.inner.maxPool2x2Backward(dy, argmax, inputShape);
  }
  softmaxCrossEntropy(logits: Tensor, labels: Tensor, reduction?: 'mean' | 'sum'): SoftmaxCrossEntropyResult {
    return this.inner.softmaxCrossEntropy(logits, labels, reduction);
  }
  softmaxCrossEntropyGrad(logits: Tensor, labels: Tensor, scale: number): Tensor {
    return this.inner.softmaxCrossEntropyGrad(logits, labels, scale);
  }
  topkCorrect(logits: Tensor, labels: Tensor, k: number): Tensor {
    return this.inner.topkCorrect(logits, labels, k);
  }
  oneHot(labels: Tensor, classes: number): Tensor {
    return this.inner.oneHot(labels, classes);
  }
  analogIO(x: Tensor, opts: AnalogIOOptions, rowScale?: Tensor | null, tileScale?: Tensor | null): Tensor {
    return this.inner.analogIO(x, opts, rowScale, tileScale);
  }
  concat(ts: Tensor[]): Tensor {
    return this.inner.concat(ts);
  }
  rowAbsMax(x: Tensor): Tensor {
    return this.inner.rowAbsMax(x);
  }
  pulsedUpdate(w: Tensor, dw: Tensor, tileScale: Tensor, opts: PulsedUpdateOptions): void {
    this.inner.pulsedUpdate(w, dw, tileScale, opts);
  }
  sync(): Promise<void> {
    return this.inner.sync();
  }
}
