// The one interface every backend implements, and the shape rules all of them share.
// Layout: activations are NHWC (channels innermost, so channels are the GEMM reduction
// axis of a convolution and loads along them are contiguous); conv filters are
// [KH, KW, Cin, Cout] (HWIO), i.e. a row-major [KH*KW*Cin, Cout] GEMM operand.
import { DType, Shape, ShapeError, Tensor, shapeStr, sizeOf } from './tensor.js';
import type { ConvGeometry } from '../kernels/conv/common.js';
import type { PulsedUpdateUniforms } from '../kernels/analog.js';

export interface Conv2dOptions {
  stride?: 1 | 2;
  pad?: 0 | 1;
}

export interface MatmulOptions {
  /** Use A^T: A is stored [K, M]. */
  transA?: boolean;
  /** Use B^T: B is stored [N, K]. */
  transB?: boolean;
}

export interface SgdOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Nesterov momentum (PyTorch semantics). Default true. */
  nesterov?: boolean;
}

export interface MaxPoolResult {
  /** [N, floor(H/2), floor(W/2), C] */
  y: Tensor;
  /** u32 [N, floor(H/2), floor(W/2), C]: which of the 2x2 window won (0..3, row-major). */
  argmax: Tensor;
}

export interface SoftmaxCrossEntropyResult {
  /** f32 [1]: mean (or sum) over the batch of -log softmax(logits)[label]. */
  loss: Tensor;
  /** f32 [N, C]: gradient of that loss with respect to the logits. */
  grad: Tensor;
}

/** One IO stage of an analog tile (see kernels/analog.ts for the exact formula). */
export interface AnalogIOOptions {
  /** 'dac': the input stage, x / rowScale[n] (noise management), result left normalized.
   *  'adc': the output stage, x / (tileScale * 2^t) with t from bound management, result scaled back. */
  mode: 'dac' | 'adc';
  /** Std of additive Gaussian noise, in normalized units (>= 0; 0: none). */
  noiseStd: number;
  /** Clip to [-bound, bound] in normalized units (> 0; Infinity: no clipping). */
  bound: number;
  /** Quantize to 2^bits - 1 levels spanning [-bound, bound] (0: none; else 2..24, needs a finite bound). */
  bits: number;
  /** adc with a row scale: most halvings bound management may apply (default 0). */
  maxHalvings?: number;
  /** u32 stream key of the noise (see kernels/analog.ts streamKey). */
  key: number;
}

/**
 * A pulsed update in units of the tile scale omega (see kernels/analog.ts pulsedUpdateKernel):
 * the kernel's uniforms (dwMin with its device-to-device and cycle-to-cycle spread, up/down
 * asymmetry, bounds, write noise, maxPulses, and the u32 deviceKey (constant per tile) and
 * updateKey (this update's draws)), plus whether the bounds are soft (a kernel variant).
 */
export interface PulsedUpdateOptions extends PulsedUpdateUniforms {
  softBounds: boolean;
}

/**
 * A conv layer in one pass (see Backend.convBlock): a = maxPool2x2?(conv2d(x, w) + bias), then
 * optionally h = ReLU(a + add) and the ReLU-masked residual r = (a > 0 ? h - a : 0), which is
 * reluMask(h - ReLU(a), a): the error of a state h against the prediction ReLU(a), already
 * masked for the VJP through the ReLU.
 */
export interface ConvBlockOptions extends Conv2dOptions {
  /** A 2x2 max pool (stride 2) after the bias; odd trailing rows/columns are dropped. */
  pool?: boolean;
  /** Also write h = ReLU(a + add) (ReLU(a) without `add`). */
  relu?: boolean;
  /** Added to a before the ReLU; a's shape. Needs `relu`. */
  add?: Tensor | null;
  /** Also write r (needs `relu`). */
  residual?: boolean;
}

export interface ConvBlockResult {
  /** maxPool2x2?(conv2d(x, w) + bias). */
  a: Tensor;
  /** u32, the pool's winners as maxPool2x2 gives them (with `pool`). */
  argmax: Tensor | null;
  /** ReLU(a + add) (with `relu`). */
  h: Tensor | null;
  /** (a > 0 ? h - a : 0) (with `residual`). */
  r: Tensor | null;
}

/** The gates between a conv block's output and its conv (see Backend.convBlockBackwardData). */
export interface ConvBlockGates extends Conv2dOptions {
  /** dy is at the pooled output: route it to the pool's winners (maxPool2x2's argmax) first. */
  argmax?: Tensor | null;
  /** The ReLU backward first: dy where reluAt > 0, else 0 (reluAt has dy's shape). */
  reluAt?: Tensor | null;
}

export interface Backend {
  readonly name: string;

  // Creation and transfer.
  fromArray(data: ArrayLike<number>, shape: Shape, dtype?: DType): Tensor;
  zeros(shape: Shape): Tensor;
  /** Seeded uniform in [low, high): the same values on every backend for the same seed. */
  uniform(shape: Shape, low: number, high: number, seed: string | number): Tensor;
  /** Reads a tensor back to the host (float64 copies of the values). */
  read(t: Tensor): Promise<Float64Array>;
  /** Copies a tensor into a new one. */
  clone(t: Tensor): Tensor;
  /** Same data viewed with another shape of equal size (a copy on backends that need one). */
  reshape(t: Tensor, shape: Shape): Tensor;
  /** Joins tensors of one dtype and equal trailing shape along the first axis (a batch). */
  concat(ts: Tensor[]): Tensor;

  // Elementwise, all operands of one shape.
  add(a: Tensor, b: Tensor): Tensor;
  sub(a: Tensor, b: Tensor): Tensor;
  mul(a: Tensor, b: Tensor): Tensor;
  scale(a: Tensor, s: number): Tensor;
  /** alpha * x + y */
  axpy(alpha: number, x: Tensor, y: Tensor): Tensor;
  relu(a: Tensor): Tensor;
  /** g where x > 0, else 0: the ReLU backward. */
  reluMask(g: Tensor, x: Tensor): Tensor;

  /** In place: acc += x (same shapes, different tensors); sums gradients without a new tensor. */
  accumulate(acc: Tensor, x: Tensor): void;

  /** x + bias broadcast over every axis but the last (bias [C], x [..., C]). */
  addBias(x: Tensor, bias: Tensor): Tensor;
  /** x[n, ...] * s[n]: a per-example scale (x [N, ...], s [N]). */
  scaleRows(x: Tensor, s: Tensor): Tensor;

  // Reductions.
  /** Sums over the given axes (removed from the shape). */
  sum(a: Tensor, axes: number[]): Tensor;
  /** Sums over every axis but the last: the bias gradient of an NHWC or [N, F] tensor. */
  biasGrad(g: Tensor): Tensor;

  // Linear algebra.
  /** [M, K] x [K, N] -> [M, N], either operand optionally stored transposed. */
  matmul(a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor;
  /** x [N, H, W, Ci], w [KH, KW, Ci, Co], bias [Co] -> [N, Ho, Wo, Co]. */
  conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): Tensor;
  /** dy [N, Ho, Wo, Co], w [KH, KW, Ci, Co] -> dx of shape inputShape [N, H, W, Ci]. */
  conv2dBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, opts?: Conv2dOptions): Tensor;
  /** x [N, H, W, Ci], dy [N, Ho, Wo, Co] -> dw [KH, KW, Ci, Co] of shape filterShape. */
  conv2dBackwardFilter(x: Tensor, dy: Tensor, filterShape: Shape, opts?: Conv2dOptions): Tensor;

  // Fused conv layer (engine/fused.ts has the composition every backend must equal).
  /** conv2d + bias [+ maxPool2x2] [+ h = ReLU(a + add)] [+ r = a > 0 ? h - a : 0] in one pass. */
  convBlock(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvBlockOptions): ConvBlockResult;
  /**
   * conv2dBackwardData(maxPool2x2Backward(reluMask(dy, reluAt), argmax, convShape), w, inputShape):
   * the VJP of a conv block with respect to its input, dy given at the block's output. With
   * neither gate it is conv2dBackwardData.
   */
  convBlockBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, gates?: ConvBlockGates): Tensor;

  // Pooling.
  maxPool2x2(x: Tensor): MaxPoolResult;
  /** Routes dy to the winners: dx has inputShape, zeros elsewhere (also odd trailing rows/cols). */
  maxPool2x2Backward(dy: Tensor, argmax: Tensor, inputShape: Shape): Tensor;

  // Loss and metrics.
  /** logits f32 [N, C], labels u32 [N]. */
  softmaxCrossEntropy(logits: Tensor, labels: Tensor, reduction?: 'mean' | 'sum'): SoftmaxCrossEntropyResult;
  /**
   * f32 [N, C]: scale * (softmax(logits) - onehot(labels)), the gradient of softmaxCrossEntropy
   * alone, for loops that never read the loss (a relaxation's output-layer update).
   */
  softmaxCrossEntropyGrad(logits: Tensor, labels: Tensor, scale: number): Tensor;
  /** f32 [1]: how many rows have their label among the k largest logits (ties count against; a row with a non-finite logit never does). */
  topkCorrect(logits: Tensor, labels: Tensor, k: number): Tensor;
  /** f32 [N, classes]: 1 at each row's label, else 0; a row whose label is >= classes is all NaN. */
  oneHot(labels: Tensor, classes: number): Tensor;

  // Optimizer, in place on param and velocity.
  sgdNesterov(param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void;

  // Analog-tile primitives (used by engine/analog; same random draws on every backend).
  /** x [N, ...] -> one IO stage; rowScale [N] and tileScale [1] as AnalogIOOptions describes. */
  analogIO(x: Tensor, opts: AnalogIOOptions, rowScale?: Tensor | null, tileScale?: Tensor | null): Tensor;
  /** x [N, ...] -> [N]: max |x| over every axis but the first. */
  rowAbsMax(x: Tensor): Tensor;
  /** In place on w: moves w toward w + dw by device pulses; tileScale [1] is omega. */
  pulsedUpdate(w: Tensor, dw: Tensor, tileScale: Tensor, opts: PulsedUpdateOptions): void;

  /**
   * Images uploaded as bytes and normalized on the device: data holds N*H*W*C uint8 values
   * (NHWC, channels last); out = (byte / 255 - mean[c]) / std[c] as f32 [N, H, W, C]. A
   * quarter of the bytes of a float32 upload.
   */
  imagesFromU8(data: Uint8Array, shape: Shape, mean: readonly number[], std: readonly number[]): Tensor;

  /** Waits until all recorded work has finished. */
  sync(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Shape rules, checked before any work is recorded.

export function checkLive(op: string, ...ts: Tensor[]): void {
  for (const t of ts) t.storage(op);
}

export function checkBackend(op: string, backendName: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.backendName !== backendName) {
      throw new ShapeError(op, `tensor #${t.id} lives on backend '${t.backendName}', not '${backendName}'`);
    }
  }
}

export function checkDtype(op: string, t: Tensor, dtype: DType, what: string): void {
  if (t.dtype !== dtype) throw new ShapeError(op, `${what} must be ${dtype}, got ${t.dtype} ${shapeStr(t.shape)}`);
}

export function checkSameShape(op: string, ...ts: Tensor[]): Shape {
  const s = ts[0].shape;
  for (const t of ts) {
    if (t.shape.length !== s.length || t.shape.some((d, i) => d !== s[i])) {
      throw new ShapeError(op, `shapes must match, got ${ts.map((x) => shapeStr(x.shape)).join(' and ')}`);
    }
  }
  for (const t of ts) checkDtype(op, t, 'f32', 'operand');
  return s;
}

/** Checks an in-place accumulate: same shape, f32, not the same tensor. */
export function checkAccumulate(acc: Tensor, x: Tensor): void {
  checkSameShape('accumulate', acc, x);
  if (acc === x) throw new ShapeError('accumulate', 'acc and x must be different tensors');
}

export function checkRank(op: string, t: Tensor, rank: number, what: string): void {
  if (t.shape.length !== rank) {
    throw new ShapeError(op, `${what} must have rank ${rank}, got ${shapeStr(t.shape)}`);
  }
}

export function matmulShape(a: Tensor, b: Tensor, opts: MatmulOptions = {}): { M: number; K: number; N: number } {
  const op = 'matmul';
  checkRank(op, a, 2, 'A');
  checkRank(op, b, 2, 'B');
  checkDtype(op, a, 'f32', 'A');
  checkDtype(op, b, 'f32', 'B');
  const [M, Ka] = opts.transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [Kb, N] = opts.transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (Ka !== Kb) {
    throw new ShapeError(
      op,
      `inner dimensions differ: A${opts.transA ? '^T' : ''} ${shapeStr(a.shape)} x B${opts.transB ? '^T' : ''} ${shapeStr(b.shape)} (${Ka} vs ${Kb})`,
    );
  }
  return { M, K: Ka, N };
}

/** A convolution's geometry, as the kernel generators take it (one definition for both). */
export type { ConvGeometry };

function convOpts(op: string, opts: Conv2dOptions = {}): { stride: number; pad: number } {
  const stride = opts.stride ?? 1;
  const pad = opts.pad ?? 0;
  if (stride !== 1 && stride !== 2) throw new ShapeError(op, `stride must be 1 or 2, got ${stride}`);
  if (pad !== 0 && pad !== 1) throw new ShapeError(op, `pad must be 0 or 1, got ${pad}`);
  return { stride, pad };
}

export function convGeometry(op: string, xShape: Shape, wShape: Shape, opts?: Conv2dOptions): ConvGeometry {
  const { stride, pad } = convOpts(op, opts);
  if (xShape.length !== 4) throw new ShapeError(op, `input must be NHWC (rank 4), got ${shapeStr(xShape)}`);
  if (wShape.length !== 4) throw new ShapeError(op, `filter must be [KH,KW,Ci,Co] (rank 4), got ${shapeStr(wShape)}`);
  const [N, H, W, Ci] = xShape;
  const [KH, KW, Cw, Co] = wShape;
  if (!((KH === 3 && KW === 3) || (KH === 1 && KW === 1))) {
    throw new ShapeError(op, `only 3x3 and 1x1 filters are supported, got ${KH}x${KW} in filter ${shapeStr(wShape)}`);
  }
  if (Cw !== Ci) {
    throw new ShapeError(op, `input has ${Ci} channels but filter ${shapeStr(wShape)} expects ${Cw} (input ${shapeStr(xShape)})`);
  }
  const Ho = Math.floor((H + 2 * pad - KH) / stride) + 1;
  const Wo = Math.floor((W + 2 * pad - KW) / stride) + 1;
  if (Ho <= 0 || Wo <= 0 || N <= 0 || Ci <= 0 || Co <= 0) {
    throw new ShapeError(op, `empty output for input ${shapeStr(xShape)}, filter ${shapeStr(wShape)}, stride ${stride}, pad ${pad}`);
  }
  return { N, H, W, Ci, Co, KH, KW, Ho, Wo, stride, pad };
}

export function conv2dShapes(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): ConvGeometry {
  const op = 'conv2d';
  checkDtype(op, x, 'f32', 'input');
  checkDtype(op, w, 'f32', 'filter');
  const g = convGeometry(op, x.shape, w.shape, opts);
  if (bias) {
    checkDtype(op, bias, 'f32', 'bias');
    if (bias.shape.length !== 1 || bias.shape[0] !== g.Co) {
      throw new ShapeError(op, `bias must be [${g.Co}], got ${shapeStr(bias.shape)}`);
    }
  }
  return g;
}

export function conv2dBackwardDataShapes(dy: Tensor, w: Tensor, inputShape: Shape, opts?: Conv2dOptions): ConvGeometry {
  const op = 'conv2dBackwardData';
  checkDtype(op, dy, 'f32', 'dy');
  checkDtype(op, w, 'f32', 'filter');
  const g = convGeometry(op, inputShape, w.shape, opts);
  const want = [g.N, g.Ho, g.Wo, g.Co];
  if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(op, `dy must be ${shapeStr(want)} for input ${shapeStr(inputShape)} and filter ${shapeStr(w.shape)}, got ${shapeStr(dy.shape)}`);
  }
  return g;
}

export function conv2dBackwardFilterShapes(x: Tensor, dy: Tensor, filterShape: Shape, opts?: Conv2dOptions): ConvGeometry {
  const op = 'conv2dBackwardFilter';
  checkDtype(op, x, 'f32', 'input');
  checkDtype(op, dy, 'f32', 'dy');
  const g = convGeometry(op, x.shape, filterShape, opts);
  const want = [g.N, g.Ho, g.Wo, g.Co];
  if (dy.shape.length !== 4 || dy.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(op, `dy must be ${shapeStr(want)} for input ${shapeStr(x.shape)} and filter ${shapeStr(filterShape)}, got ${shapeStr(dy.shape)}`);
  }
  return g;
}

export function maxPoolShape(op: string, xShape: Shape): { N: number; H: number; W: number; C: number; Ho: number; Wo: number } {
  if (xShape.length !== 4) throw new ShapeError(op, `input must be NHWC (rank 4), got ${shapeStr(xShape)}`);
  const [N, H, W, C] = xShape;
  const Ho = Math.floor(H / 2);
  const Wo = Math.floor(W / 2);
  if (Ho === 0 || Wo === 0) throw new ShapeError(op, `input ${shapeStr(xShape)} is smaller than the 2x2 window`);
  return { N, H, W, C, Ho, Wo };
}

export function maxPoolBackwardShapes(dy: Tensor, argmax: Tensor, inputShape: Shape) {
  const op = 'maxPool2x2Backward';
  const g = maxPoolShape(op, inputShape);
  checkDtype(op, dy, 'f32', 'dy');
  checkDtype(op, argmax, 'u32', 'argmax');
  const want = [g.N, g.Ho, g.Wo, g.C];
  for (const [t, what] of [[dy, 'dy'], [argmax, 'argmax']] as const) {
    if (t.shape.length !== 4 || t.shape.some((d, i) => d !== want[i])) {
      throw new ShapeError(op, `${what} must be ${shapeStr(want)} for input ${shapeStr(inputShape)}, got ${shapeStr(t.shape)}`);
    }
  }
  return g;
}

export function lossShapes(op: string, logits: Tensor, labels: Tensor): { N: number; C: number } {
  checkRank(op, logits, 2, 'logits');
  checkDtype(op, logits, 'f32', 'logits');
  checkDtype(op, labels, 'u32', 'labels');
  const [N, C] = logits.shape;
  if (labels.shape.length !== 1 || labels.shape[0] !== N) {
    throw new ShapeError(op, `labels must be [${N}] for logits ${shapeStr(logits.shape)}, got ${shapeStr(labels.shape)}`);
  }
  return { N, C };
}

/** imagesFromU8's rules; returns the channel count. */
export function checkImagesFromU8(data: Uint8Array, shape: Shape, mean: readonly number[], std: readonly number[]): number {
  const op = 'imagesFromU8';
  if (!(data instanceof Uint8Array)) throw new ShapeError(op, 'data must be a Uint8Array');
  if (shape.length !== 4) throw new ShapeError(op, `shape must be [N, H, W, C] (rank 4), got ${shapeStr(shape)}`);
  if (data.length !== sizeOf(shape)) throw new ShapeError(op, `${data.length} bytes given for shape ${shapeStr(shape)} (${sizeOf(shape)} elements)`);
  const C = shape[3];
  if (mean.length !== C || std.length !== C) throw new ShapeError(op, `mean and std need one value per channel (${C}), got ${mean.length} and ${std.length}`);
  for (let c = 0; c < C; c++) {
    if (!Number.isFinite(mean[c])) throw new ShapeError(op, `mean[${c}] must be finite, got ${mean[c]}`);
    if (!(std[c] > 0) || !Number.isFinite(std[c])) throw new ShapeError(op, `std[${c}] must be positive and finite, got ${std[c]}`);
  }
  return C;
}

export function checkOneHot(labels: Tensor, classes: number): number {
  const op = 'oneHot';
  checkDtype(op, labels, 'u32', 'labels');
  checkRank(op, labels, 1, 'labels');
  if (!Number.isInteger(classes) || classes < 1) throw new ShapeError(op, `classes must be a positive integer, got ${classes}`);
  return labels.shape[0];
}

export function sumShape(op: string, shape: Shape, axes: number[]): { outShape: number[]; axes: number[] } {
  const rank = shape.length;
  const norm = axes.map((a) => (a < 0 ? a + rank : a));
  for (let i = 0; i < norm.length; i++) {
    const a = norm[i];
    if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(op, `axis ${axes[i]} out of range for ${shapeStr(shape)}`);
    if (norm.indexOf(a) !== i) throw new ShapeError(op, `axis ${axes[i]} repeated in [${axes.join(',')}]`);
  }
  const outShape = shape.filter((_, i) => !norm.includes(i));
  return { outShape, axes: norm.sort((x, y) => x - y) };
}

export function checkAddBias(x: Tensor, bias: Tensor): number {
  const op = 'addBias';
  checkDtype(op, x, 'f32', 'input');
  checkDtype(op, bias, 'f32', 'bias');
  const C = x.shape[x.shape.length - 1];
  if (x.shape.length === 0 || bias.shape.length !== 1 || bias.shape[0] !== C) {
    throw new ShapeError(op, `bias must be [${C ?? '?'}] for input ${shapeStr(x.shape)}, got ${shapeStr(bias.shape)}`);
  }
  return C;
}

export function checkScaleRows(x: Tensor, s: Tensor): number {
  const op = 'scaleRows';
  checkDtype(op, x, 'f32', 'input');
  checkDtype(op, s, 'f32', 'scales');
  if (x.shape.length === 0 || s.shape.length !== 1 || s.shape[0] !== x.shape[0]) {
    throw new ShapeError(op, `scales must be [${x.shape[0] ?? '?'}] for input ${shapeStr(x.shape)}, got ${shapeStr(s.shape)}`);
  }
  return x.shape[0] === 0 ? 0 : x.size / x.shape[0];
}

/** Checks a concat along axis 0; returns the output shape. */
export function checkConcat(ts: Tensor[]): Shape {
  const op = 'concat';
  if (ts.length === 0) throw new ShapeError(op, 'needs at least one tensor');
  const first = ts[0];
  if (first.shape.length === 0) throw new ShapeError(op, 'tensors need a first axis to join along, got a scalar');
  for (const t of ts) {
    if (t.dtype !== first.dtype) throw new ShapeError(op, `dtypes differ: ${first.dtype} and ${t.dtype}`);
    if (t.shape.length !== first.shape.length || t.shape.some((d, i) => i > 0 && d !== first.shape[i])) {
      throw new ShapeError(op, `shapes must agree past the first axis, got ${ts.map((x) => shapeStr(x.shape)).join(' and ')}`);
    }
  }
  return [ts.reduce((n, t) => n + t.shape[0], 0), ...first.shape.slice(1)];
}

export function checkReshape(op: string, t: Tensor, shape: Shape): void {
  if (sizeOf(shape) !== t.size) throw new ShapeError(op, `cannot view ${shapeStr(t.shape)} (${t.size} elements) as ${shapeStr(shape)}`);
}

export function checkFromArray(op: string, data: ArrayLike<number>, shape: Shape): void {
  if (data.length !== sizeOf(shape)) {
    throw new ShapeError(op, `${data.length} values given for shape ${shapeStr(shape)} (${sizeOf(shape)} elements)`);
  }
}

/** u32 tensors hold integers in [0, 2^32): anything else would wrap or truncate on the GPU. */
export function checkU32Values(data: ArrayLike<number>, shape: Shape): void {
  if (data instanceof Uint32Array) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`fromArray: u32 tensor ${shapeStr(shape)} given ${v} at index ${i}; u32 values must be integers in [0, 2^32)`);
    }
  }
}

// ---------------------------------------------------------------------------
// Analog-tile primitives.

function checkFinite(op: string, name: string, v: number, min = -Infinity): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new ShapeError(op, `${name} must be a finite number${min > -Infinity ? ` >= ${min}` : ''}, got ${v}`);
  }
}

function checkKey(op: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ShapeError(op, `${name} must be a u32 integer, got ${v}`);
}

/** Checks an analogIO call; returns the elements per row and the quantization step (0: none). */
export function checkAnalogIO(x: Tensor, opts: AnalogIOOptions, rowScale?: Tensor | null, tileScale?: Tensor | null): { perRow: number; step: number } {
  const op = 'analogIO';
  checkDtype(op, x, 'f32', 'input');
  if (x.shape.length === 0) throw new ShapeError(op, 'input needs a leading (row) axis, got a scalar');
  if (opts.mode !== 'dac' && opts.mode !== 'adc') throw new ShapeError(op, `mode must be 'dac' or 'adc', got '${String(opts.mode)}'`);
  checkFinite(op, 'noiseStd', opts.noiseStd, 0);
  if (!(opts.bound > 0)) throw new ShapeError(op, `bound must be > 0 (Infinity for none), got ${opts.bound}`);
  if (!Number.isInteger(opts.bits) || opts.bits < 0 || opts.bits === 1 || opts.bits > 24) {
    throw new ShapeError(op, `bits must be 0 (no quantization) or an integer in 2..24, got ${opts.bits}`);
  }
  if (opts.bits > 0 && !Number.isFinite(opts.bound)) throw new ShapeError(op, `quantization to ${opts.bits} bits needs a finite bound`);
  const maxHalvings = opts.maxHalvings ?? 0;
  if (!Number.isInteger(maxHalvings) || maxHalvings < 0 || maxHalvings > 64) throw new ShapeError(op, `maxHalvings must be an integer in 0..64, got ${maxHalvings}`);
  if (maxHalvings > 0 && !Number.isFinite(opts.bound)) throw new ShapeError(op, 'bound management (maxHalvings > 0) needs a finite bound');
  checkKey(op, 'key', opts.key);
  const rows = x.shape[0];
  if (rowScale) {
    checkDtype(op, rowScale, 'f32', 'row scale');
    if (rowScale.shape.length !== 1 || rowScale.shape[0] !== rows) {
      throw new ShapeError(op, `row scale must be [${rows}] for input ${shapeStr(x.shape)}, got ${shapeStr(rowScale.shape)}`);
    }
  }
  if (tileScale) {
    if (opts.mode !== 'adc') throw new ShapeError(op, 'a tile scale applies to the adc stage only');
    checkDtype(op, tileScale, 'f32', 'tile scale');
    if (tileScale.shape.length !== 1 || tileScale.shape[0] !== 1) throw new ShapeError(op, `tile scale must be [1], got ${shapeStr(tileScale.shape)}`);
  }
  const step = opts.bits > 0 ? (2 * opts.bound) / (2 ** opts.bits - 2) : 0;
  return { perRow: rows === 0 ? 0 : x.size / rows, step };
}

export function checkRowAbsMax(x: Tensor): { rows: number; perRow: number } {
  const op = 'rowAbsMax';
  checkDtype(op, x, 'f32', 'input');
  if (x.shape.length === 0) throw new ShapeError(op, 'input needs a leading (row) axis, got a scalar');
  const rows = x.shape[0];
  return { rows, perRow: rows === 0 ? 0 : x.size / rows };
}

export function checkPulsedUpdate(w: Tensor, dw: Tensor, tileScale: Tensor, opts: PulsedUpdateOptions): void {
  const op = 'pulsedUpdate';
  checkSameShape(op, w, dw);
  if (w === dw) throw new ShapeError(op, 'w and dw must be different tensors');
  checkDtype(op, tileScale, 'f32', 'tile scale');
  if (tileScale.shape.length !== 1 || tileScale.shape[0] !== 1) throw new ShapeError(op, `tile scale must be [1], got ${shapeStr(tileScale.shape)}`);
  checkFinite(op, 'dwMin', opts.dwMin, 0);
  for (const k of ['dwMinDtod', 'dwMinCtoc', 'upDownDtod', 'boundsDtod', 'writeNoise'] as const) checkFinite(op, k, opts[k], 0);
  checkFinite(op, 'upDown', opts.upDown);
  if (Math.abs(opts.upDown) > 1) throw new ShapeError(op, `upDown must be in [-1, 1], got ${opts.upDown}`);
  checkFinite(op, 'wMax', opts.wMax, 0);
  checkFinite(op, 'wMin', opts.wMin);
  if (opts.wMin > 0) throw new ShapeError(op, `wMin must be <= 0, got ${opts.wMin}`);
  if (!Number.isInteger(opts.maxPulses) || opts.maxPulses < 1) throw new ShapeError(op, `maxPulses must be a positive integer, got ${opts.maxPulses}`);
  checkKey(op, 'deviceKey', opts.deviceKey);
  checkKey(op, 'updateKey', opts.updateKey);
}

// ---------------------------------------------------------------------------
// Fused conv blocks.

/** Checks a convBlock call; returns the conv geometry and the shape of a (pooled if pooling). */
export function convBlockShapes(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvBlockOptions): { g: ConvGeometry; aShape: Shape } {
  const op = 'convBlock';
  const g = conv2dShapes(x, w, bias, opts);
  let aShape: Shape = [g.N, g.Ho, g.Wo, g.Co];
  if (opts.pool) {
    const p = maxPoolShape(op, aShape);
    aShape = [p.N, p.Ho, p.Wo, p.C];
  }
  if ((opts.add || opts.residual) && !opts.relu) throw new ShapeError(op, '`add` and `residual` need `relu`');
  if (opts.add) {
    checkDtype(op, opts.add, 'f32', 'add');
    if (opts.add.shape.length !== 4 || opts.add.shape.some((d, i) => d !== aShape[i])) {
      throw new ShapeError(op, `add must be ${shapeStr(aShape)} (the block's output), got ${shapeStr(opts.add.shape)}`);
    }
  }
  return { g, aShape };
}

/** Checks a convBlockBackwardData call; returns the conv geometry and the shape dy must have. */
export function convBlockBackwardDataShapes(dy: Tensor, w: Tensor, inputShape: Shape, gates: ConvBlockGates = {}): { g: ConvGeometry; dyShape: Shape } {
  const op = 'convBlockBackwardData';
  checkDtype(op, dy, 'f32', 'dy');
  checkDtype(op, w, 'f32', 'filter');
  const g = convGeometry(op, inputShape, w.shape, gates);
  let dyShape: Shape = [g.N, g.Ho, g.Wo, g.Co];
  if (gates.argmax) {
    const p = maxPoolShape(op, dyShape);
    dyShape = [p.N, p.Ho, p.Wo, p.C];
    checkDtype(op, gates.argmax, 'u32', 'argmax');
  }
  const same = (t: Tensor) => t.shape.length === 4 && t.shape.every((d, i) => d === dyShape[i]);
  if (!same(dy)) throw new ShapeError(op, `dy must be ${shapeStr(dyShape)} for input ${shapeStr(inputShape)}, filter ${shapeStr(w.shape)}${gates.argmax ? ' and a 2x2 pool' : ''}, got ${shapeStr(dy.shape)}`);
  if (gates.argmax && !same(gates.argmax)) throw new ShapeError(op, `argmax must be ${shapeStr(dyShape)}, got ${shapeStr(gates.argmax.shape)}`);
  if (gates.reluAt) {
    checkDtype(op, gates.reluAt, 'f32', 'reluAt');
    if (!same(gates.reluAt)) throw new ShapeError(op, `reluAt must be ${shapeStr(dyShape)} (dy's shape), got ${shapeStr(gates.reluAt.shape)}`);
  }
  return { g, dyShape };
}
