// The reference backend: plain TypeScript, float64 inside, written to be obviously
// correct rather than fast. The ground truth for every kernel test.
//
// Every op is a loop written straight from its definition in engine/backend.ts. Values
// are kept in float64 (outputs are not rounded to f32) so that a kernel compared against
// this backend is compared against the exact answer for its f32 inputs.
import {
  ConvBlockGates,
  ConvBlockOptions,
  ConvBlockResult,
  AnalogIOOptions,
  Backend,
  Conv2dOptions,
  PulsedUpdateOptions,
  checkAnalogIO,
  checkPulsedUpdate,
  checkRowAbsMax,
  ConvGeometry,
  MatmulOptions,
  MaxPoolResult,
  SgdOptions,
  SoftmaxCrossEntropyResult,
  checkAddBias,
  checkAccumulate,
  checkOneHot,
  checkImagesFromU8,
  checkScaleRows,
  checkBackend,
  checkDtype,
  checkFromArray,
  checkU32Values,
  checkLive,
  checkConcat,
  checkReshape,
  checkSameShape,
  conv2dBackwardDataShapes,
  conv2dBackwardFilterShapes,
  conv2dShapes,
  lossShapes,
  matmulShape,
  maxPoolBackwardShapes,
  maxPoolShape,
  sumShape,
} from '../backend.js';
import { DType, Shape, ShapeError, Storage, Tensor, shapeStr, sizeOf } from '../tensor.js';
import { composeConvBlock, composeConvBlockBackwardData } from '../fused.js';
import { uniformValues } from '../random.js';
import { SOFT_BOUND_MAX_RATE, drawGaussian, drawUniform } from '../../kernels/analog.js';

class HostStorage implements Storage {
  constructor(public data: Float64Array | null) {}
  release(): void {
    this.data = null;
  }
}

type HostTensor = Tensor<HostStorage>;

export class ReferenceBackend implements Backend {
  readonly name = 'reference';

  /** Checks that every tensor is live and lives here (same order and wording as webgpu); returns their data. */
  private data(op: string, ...ts: Tensor[]): Float64Array[] {
    checkLive(op, ...ts);
    checkBackend(op, this.name, ...ts);
    return ts.map((t) => (t as HostTensor).storage(op).data as Float64Array);
  }

  private make(shape: Shape, dtype: DType, data?: Float64Array): HostTensor {
    return new Tensor(shape, dtype, new HostStorage(data ?? new Float64Array(sizeOf(shape))), this.name);
  }

  fromArray(data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
    checkFromArray('fromArray', data, shape);
    if (dtype === 'u32') checkU32Values(data, shape);
    const out = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (dtype === 'u32') {
        out[i] = v;
      } else {
        // The GPU stores f32: round the same way so both backends start from the same values.
        out[i] = Math.fround(v);
      }
    }
    return this.make(shape, dtype, out);
  }

  concat(ts: Tensor[]): Tensor {
    const shape = checkConcat(ts);
    const parts = this.data('concat', ...ts);
    const out = new Float64Array(sizeOf(shape));
    let offset = 0;
    for (const p of parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return this.make(shape, ts[0].dtype, out);
  }

  zeros(shape: Shape): Tensor {
    return this.make(shape, 'f32');
  }

  uniform(shape: Shape, low: number, high: number, seed: string | number): Tensor {
    return this.fromArray(uniformValues(sizeOf(shape), low, high, seed), shape);
  }

  async read(t: Tensor): Promise<Float64Array> {
    const [d] = this.data('read', t);
    return Float64Array.from(d);
  }

  clone(t: Tensor): Tensor {
    const [d] = this.data('clone', t);
    return this.make(t.shape, t.dtype, Float64Array.from(d));
  }

  reshape(t: Tensor, shape: Shape): Tensor {
    checkReshape('reshape', t, shape);
    const [d] = this.data('reshape', t);
    return this.make(shape, t.dtype, Float64Array.from(d));
  }

  // -------------------------------------------------------------------------
  // Elementwise

  private binary(op: string, a: Tensor, b: Tensor, f: (x: number, y: number) => number): Tensor {
    const shape = checkSameShape(op, a, b);
    const [da, db] = this.data(op, a, b);
    const out = new Float64Array(da.length);
    for (let i = 0; i < out.length; i++) out[i] = f(da[i], db[i]);
    return this.make(shape, 'f32', out);
  }

  private unary(op: string, a: Tensor, f: (x: number) => number): Tensor {
    const shape = checkSameShape(op, a);
    const [da] = this.data(op, a);
    const out = new Float64Array(da.length);
    for (let i = 0; i < out.length; i++) out[i] = f(da[i]);
    return this.make(shape, 'f32', out);
  }

  add(a: Tensor, b: Tensor): Tensor {
    return this.binary('add', a, b, (x, y) => x + y);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.binary('sub', a, b, (x, y) => x - y);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary('mul', a, b, (x, y) => x * y);
  }
  scale(a: Tensor, s: number): Tensor {
    return this.unary('scale', a, (x) => s * x);
  }
  axpy(alpha: number, x: Tensor, y: Tensor): Tensor {
    return this.binary('axpy', x, y, (u, v) => alpha * u + v);
  }
  relu(a: Tensor): Tensor {
    return this.unary('relu', a, (x) => (x > 0 ? x : 0));
  }
  reluMask(g: Tensor, x: Tensor): Tensor {
    return this.binary('reluMask', g, x, (gv, xv) => (xv > 0 ? gv : 0));
  }

  /** x + bias broadcast along the last axis (not in the Backend interface; webgpu has it too). */
  accumulate(acc: Tensor, x: Tensor): void {
    checkAccumulate(acc, x);
    const [da, dx] = this.data('accumulate', acc, x);
    for (let i = 0; i < da.length; i++) da[i] += dx[i];
  }

  addBias(x: Tensor, bias: Tensor): Tensor {
    const C = checkAddBias(x, bias);
    const [dx, db] = this.data('addBias', x, bias);
    const out = new Float64Array(dx.length);
    for (let i = 0; i < out.length; i++) out[i] = dx[i] + db[i % C];
    return this.make(x.shape, 'f32', out);
  }

  scaleRows(x: Tensor, sc: Tensor): Tensor {
    const per = checkScaleRows(x, sc);
    const [dx, ds] = this.data('scaleRows', x, sc);
    const out = new Float64Array(dx.length);
    for (let i = 0; i < out.length; i++) out[i] = dx[i] * ds[Math.floor(i / per)];
    return this.make(x.shape, 'f32', out);
  }

  // -------------------------------------------------------------------------
  // Reductions

  sum(a: Tensor, axes: number[]): Tensor {
    checkDtype('sum', a, 'f32', 'operand');
    const { outShape, axes: summed } = sumShape('sum', a.shape, axes);
    const [da] = this.data('sum', a);
    const out = new Float64Array(sizeOf(outShape));
    const rank = a.shape.length;
    const kept = [...Array(rank).keys()].filter((i) => !summed.includes(i));
    const index = new Array<number>(rank).fill(0);
    // Walk every input element with its multi-index; its output index uses the kept axes only.
    for (let flat = 0; flat < da.length; flat++) {
      let rem = flat;
      for (let ax = rank - 1; ax >= 0; ax--) {
        index[ax] = rem % a.shape[ax];
        rem = Math.floor(rem / a.shape[ax]);
      }
      let o = 0;
      for (const ax of kept) o = o * a.shape[ax] + index[ax];
      out[o] += da[flat];
    }
    return this.make(outShape, 'f32', out);
  }

  biasGrad(g: Tensor): Tensor {
    const op = 'biasGrad';
    checkDtype(op, g, 'f32', 'gradient');
    if (g.shape.length < 1) throw new ShapeError(op, `gradient must have at least one axis (channels last), got ${shapeStr(g.shape)}`);
    const [dg] = this.data(op, g);
    const C = g.shape[g.shape.length - 1];
    const out = new Float64Array(C);
    for (let i = 0; i < dg.length; i++) out[i % C] += dg[i];
    return this.make([C], 'f32', out);
  }

  // -------------------------------------------------------------------------
  // Linear algebra

  matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
    const { M, K, N } = matmulShape(a, b, opts);
    const [da, db] = this.data('matmul', a, b);
    // A(m,k) and B(k,n) read through the stored layout.
    const A = opts.transA ? (m: number, k: number) => da[k * M + m] : (m: number, k: number) => da[m * K + k];
    const B = opts.transB ? (k: number, n: number) => db[n * K + k] : (k: number, n: number) => db[k * N + n];
    const out = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += A(m, k) * B(k, n);
        out[m * N + n] = s;
      }
    }
    return this.make([M, N], 'f32', out);
  }

  conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): Tensor {
    const g = conv2dShapes(x, w, bias, opts);
    const [dx, dw] = this.data('conv2d', x, w);
    const db = bias ? this.data('conv2d', bias)[0] : null;
    const { N, Ho, Wo, Co } = g;
    const out = new Float64Array(N * Ho * Wo * Co);
    for (let n = 0; n < N; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          for (let co = 0; co < Co; co++) {
            let s = db ? db[co] : 0;
            forEachTap(g, oy, ox, (xIdxBase, wIdxBase) => {
              for (let ci = 0; ci < g.Ci; ci++) s += dx[n * g.H * g.W * g.Ci + xIdxBase + ci] * dw[wIdxBase + ci * Co + co];
            });
            out[((n * Ho + oy) * Wo + ox) * Co + co] = s;
          }
    return this.make([N, Ho, Wo, Co], 'f32', out);
  }

  conv2dBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, opts?: Conv2dOptions): Tensor {
    const g = conv2dBackwardDataShapes(dy, w, inputShape, opts);
    const [ddy, dw] = this.data('conv2dBackwardData', dy, w);
    const { N, H, W, Ci, Ho, Wo, Co } = g;
    // Scatter form of the adjoint: every (output, tap) pair that conv2d reads x through
    // sends dy * w back to that x element.
    const out = new Float64Array(N * H * W * Ci);
    for (let n = 0; n < N; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          forEachTap(g, oy, ox, (xIdxBase, wIdxBase) => {
            for (let ci = 0; ci < Ci; ci++) {
              let s = 0;
              for (let co = 0; co < Co; co++) s += ddy[((n * Ho + oy) * Wo + ox) * Co + co] * dw[wIdxBase + ci * Co + co];
              out[n * H * W * Ci + xIdxBase + ci] += s;
            }
          });
    return this.make(inputShape, 'f32', out);
  }

  conv2dBackwardFilter(x: Tensor, dy: Tensor, filterShape: Shape, opts?: Conv2dOptions): Tensor {
    const g = conv2dBackwardFilterShapes(x, dy, filterShape, opts);
    const [dx, ddy] = this.data('conv2dBackwardFilter', x, dy);
    const { N, H, W, Ci, Ho, Wo, Co } = g;
    const out = new Float64Array(sizeOf(filterShape));
    for (let n = 0; n < N; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          forEachTap(g, oy, ox, (xIdxBase, wIdxBase) => {
            for (let ci = 0; ci < Ci; ci++)
              for (let co = 0; co < Co; co++)
                out[wIdxBase + ci * Co + co] += dx[n * H * W * Ci + xIdxBase + ci] * ddy[((n * Ho + oy) * Wo + ox) * Co + co];
          });
    return this.make(filterShape, 'f32', out);
  }

  // The fused conv block is defined by its composition (engine/fused.ts); here it runs as that.
  convBlock(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvBlockOptions): ConvBlockResult {
    return composeConvBlock(this, x, w, bias, opts);
  }
  convBlockBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, gates?: ConvBlockGates): Tensor {
    return composeConvBlockBackwardData(this, dy, w, inputShape, gates);
  }

  // -------------------------------------------------------------------------
  // Pooling

  maxPool2x2(x: Tensor): MaxPoolResult {
    const op = 'maxPool2x2';
    checkDtype(op, x, 'f32', 'input');
    const { N, H, W, C, Ho, Wo } = maxPoolShape(op, x.shape);
    const [dx] = this.data(op, x);
    const y = new Float64Array(N * Ho * Wo * C);
    const arg = new Float64Array(N * Ho * Wo * C);
    for (let n = 0; n < N; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          for (let c = 0; c < C; c++) {
            let best = -Infinity;
            let win = 0;
            for (let k = 0; k < 4; k++) {
              const iy = 2 * oy + (k >> 1);
              const ix = 2 * ox + (k & 1);
              const v = dx[((n * H + iy) * W + ix) * C + c];
              // Strictly greater replaces: the first of equal values wins.
              if (k === 0 || v > best) {
                best = v;
                win = k;
              }
            }
            const o = ((n * Ho + oy) * Wo + ox) * C + c;
            y[o] = best;
            arg[o] = win;
          }
    const shape = [N, Ho, Wo, C];
    return { y: this.make(shape, 'f32', y), argmax: this.make(shape, 'u32', arg) };
  }

  maxPool2x2Backward(dy: Tensor, argmax: Tensor, inputShape: Shape): Tensor {
    const op = 'maxPool2x2Backward';
    const { N, H, W, C, Ho, Wo } = maxPoolBackwardShapes(dy, argmax, inputShape);
    const [ddy, darg] = this.data(op, dy, argmax);
    const out = new Float64Array(sizeOf(inputShape));
    for (let n = 0; n < N; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          for (let c = 0; c < C; c++) {
            const o = ((n * Ho + oy) * Wo + ox) * C + c;
            const k = darg[o];
            if (!(k >= 0 && k < 4 && Number.isInteger(k))) {
              throw new RangeError(`${op}: argmax ${k} at output [${n},${oy},${ox},${c}] is not a 2x2 window index (0..3)`);
            }
            const iy = 2 * oy + (k >> 1);
            const ix = 2 * ox + (k & 1);
            out[((n * H + iy) * W + ix) * C + c] = ddy[o];
          }
    return this.make(inputShape, 'f32', out);
  }

  // -------------------------------------------------------------------------
  // Loss and metrics

  softmaxCrossEntropyGrad(logits: Tensor, labels: Tensor, scale: number): Tensor {
    const op = 'softmaxCrossEntropyGrad';
    lossShapes(op, logits, labels);
    if (!Number.isFinite(scale)) throw new ShapeError(op, `scale must be a finite number, got ${scale}`);
    return this.make([...logits.shape], 'f32', this.softmaxRows(op, logits, labels, scale).grad);
  }

  softmaxCrossEntropy(logits: Tensor, labels: Tensor, reduction: 'mean' | 'sum' = 'mean'): SoftmaxCrossEntropyResult {
    const op = 'softmaxCrossEntropy';
    const { N } = lossShapes(op, logits, labels);
    if (reduction !== 'mean' && reduction !== 'sum') throw new ShapeError(op, `reduction must be 'mean' or 'sum', got '${String(reduction)}'`);
    const div = reduction === 'mean' ? N : 1;
    const { loss, grad } = this.softmaxRows(op, logits, labels, 1 / div);
    return { loss: this.make([1], 'f32', Float64Array.of(loss / div)), grad: this.make([...logits.shape], 'f32', grad) };
  }

  /** Summed -log softmax(z)[label] over the rows, and scale * (softmax(z) - onehot) per row. */
  private softmaxRows(op: string, logits: Tensor, labels: Tensor, scale: number): { loss: number; grad: Float64Array } {
    const [N, C] = logits.shape;
    const [dz, dl] = this.data(op, logits, labels);
    const grad = new Float64Array(N * C);
    let loss = 0;
    for (let n = 0; n < N; n++) {
      const label = dl[n];
      if (label >= C) throw new RangeError(`${op}: label ${label} in row ${n} is out of range for ${C} classes (logits ${shapeStr(logits.shape)})`);
      let max = -Infinity;
      for (let c = 0; c < C; c++) max = Math.max(max, dz[n * C + c]);
      let denom = 0;
      for (let c = 0; c < C; c++) denom += Math.exp(dz[n * C + c] - max);
      const logDenom = Math.log(denom);
      loss += -(dz[n * C + label] - max - logDenom);
      for (let c = 0; c < C; c++) grad[n * C + c] = scale * (Math.exp(dz[n * C + c] - max - logDenom) - (c === label ? 1 : 0));
    }
    return { loss, grad };
  }

  imagesFromU8(data: Uint8Array, shape: Shape, mean: readonly number[], std: readonly number[]): Tensor {
    const C = checkImagesFromU8(data, shape, mean, std);
    const out = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = (data[i] / 255 - mean[i % C]) / std[i % C];
    return this.make([...shape], 'f32', out);
  }

  oneHot(labels: Tensor, classes: number): Tensor {
    const N = checkOneHot(labels, classes);
    const [dl] = this.data('oneHot', labels);
    const out = new Float64Array(N * classes);
    for (let n = 0; n < N; n++) {
      if (dl[n] < classes) out[n * classes + dl[n]] = 1;
      else out.fill(NaN, n * classes, (n + 1) * classes);
    }
    return this.make([N, classes], 'f32', out);
  }

  topkCorrect(logits: Tensor, labels: Tensor, k: number): Tensor {
    const op = 'topkCorrect';
    const { N, C } = lossShapes(op, logits, labels);
    if (!Number.isInteger(k) || k < 1) throw new ShapeError(op, `k must be a positive integer, got ${k}`);
    const [dz, dl] = this.data(op, logits, labels);
    let correct = 0;
    for (let n = 0; n < N; n++) {
      const label = dl[n];
      if (label >= C) continue; // no such class: never correct
      const target = dz[n * C + label];
      let rank = 0;
      let finite = true;
      for (let j = 0; j < C; j++) {
        const v = dz[n * C + j];
        if (j !== label && v >= target) rank++;
        finite &&= Number.isFinite(v);
      }
      // A row with a NaN or infinite logit is never correct.
      if (finite && rank < k) correct++;
    }
    return this.make([1], 'f32', Float64Array.of(correct));
  }

  // -------------------------------------------------------------------------
  // Optimizer

  sgdNesterov(param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void {
    const op = 'sgdNesterov';
    checkDtype(op, param, 'f32', 'param');
    checkSameShape(op, param, grad, velocity);
    // In place: aliased operands would read values this update has already overwritten.
    if (param === grad || param === velocity || grad === velocity) {
      throw new ShapeError(op, 'param, grad and velocity must be three different tensors');
    }
    for (const [name, x] of Object.entries({ lr: opts.lr, momentum: opts.momentum, weightDecay: opts.weightDecay })) {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new ShapeError(op, `${name} must be a finite number, got ${x}`);
    }
    const [p, g, v] = this.data(op, param, grad, velocity);
    const { lr, momentum, weightDecay } = opts;
    const nesterov = opts.nesterov ?? true;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + weightDecay * p[i];
      v[i] = momentum * v[i] + gi;
      const step = nesterov ? gi + momentum * v[i] : v[i];
      p[i] -= lr * step;
    }
  }

  // -------------------------------------------------------------------------
  // Analog-tile primitives: the formulas of kernels/analog.ts, in float64, with the same draws.

  analogIO(x: Tensor, opts: AnalogIOOptions, rowScale?: Tensor | null, tileScale?: Tensor | null): Tensor {
    const op = 'analogIO';
    const { perRow, step } = checkAnalogIO(x, opts, rowScale, tileScale);
    const [dx] = this.data(op, x);
    const dr = rowScale ? this.data(op, rowScale)[0] : null;
    const dt = tileScale ? this.data(op, tileScale)[0] : null;
    const bound = opts.bound;
    const maxHalvings = opts.maxHalvings ?? 0;
    const omega = dt && dt[0] > 0 ? dt[0] : 1;
    const out = new Float64Array(dx.length);
    for (let i = 0; i < dx.length; i++) {
      const row = Math.floor(i / perRow);
      let pre: number;
      if (opts.mode === 'dac') pre = dr && dr[row] > 0 ? dr[row] : 1;
      else {
        let f = 1;
        if (dr) {
          const m = dr[row] / omega;
          for (let t = 0; t < maxHalvings && !(m <= bound * f); t++) f *= 2;
        }
        pre = omega * f;
      }
      let v = dx[i] / pre;
      if (opts.noiseStd > 0) v += opts.noiseStd * drawGaussian(opts.key, i, 0);
      if (Number.isFinite(bound)) v = Math.min(bound, Math.max(-bound, v));
      if (step > 0) v = Math.floor(v / step + 0.5) * step;
      out[i] = opts.mode === 'adc' ? v * pre : v;
    }
    return this.make(x.shape, 'f32', out);
  }

  rowAbsMax(x: Tensor): Tensor {
    const { rows, perRow } = checkRowAbsMax(x);
    const [dx] = this.data('rowAbsMax', x);
    const out = new Float64Array(rows);
    for (let i = 0; i < dx.length; i++) {
      const r = Math.floor(i / perRow);
      out[r] = Math.max(out[r], Math.abs(dx[i]));
    }
    return this.make([rows], 'f32', out);
  }

  pulsedUpdate(w: Tensor, dw: Tensor, tileScale: Tensor, o: PulsedUpdateOptions): void {
    const op = 'pulsedUpdate';
    checkPulsedUpdate(w, dw, tileScale, o);
    const [dwv, ddw, dts] = this.data(op, w, dw, tileScale);
    const omega = dts[0] > 0 ? dts[0] : 1;
    for (let i = 0; i < dwv.length; i++) {
      const scale = Math.max(0, 1 + o.dwMinDtod * drawGaussian(o.deviceKey, i, 0));
      const asym = Math.min(1, Math.max(-1, o.upDown + o.upDownDtod * drawGaussian(o.deviceKey, i, 2)));
      const wmax = omega * o.wMax * Math.max(0, 1 + o.boundsDtod * drawGaussian(o.deviceKey, i, 4));
      const wmin = omega * o.wMin * Math.max(0, 1 + o.boundsDtod * drawGaussian(o.deviceKey, i, 6));
      const d = ddw[i];
      const w0 = dwv[i];
      const step = omega * o.dwMin * scale * (d > 0 ? 1 + asym : 1 - asym);
      if (step <= 0 || d === 0) continue;
      const pulses = Math.min(Math.floor(Math.abs(d) / step + drawUniform(o.updateKey, i, 0)), o.maxPulses);
      if (pulses <= 0) continue;
      const nEff = Math.max(0, pulses + o.dwMinCtoc * Math.sqrt(pulses) * drawGaussian(o.updateKey, i, 1));
      let w1: number;
      if (o.softBounds) {
        const b = d > 0 ? wmax : wmin;
        const rate = Math.min(SOFT_BOUND_MAX_RATE, Math.max(0, step / Math.max(Math.abs(b), 1e-30)));
        w1 = b - (b - w0) * Math.pow(1 - rate, nEff);
      } else w1 = w0 + Math.sign(d) * step * nEff;
      w1 += omega * o.writeNoise * drawGaussian(o.updateKey, i, 3);
      dwv[i] = Math.min(wmax, Math.max(wmin, w1));
    }
  }

  async sync(): Promise<void> {}
}

/**
 * Calls tap(xOffset, wOffset) for every filter tap of output (oy, ox) that lands inside
 * the input: xOffset = (iy*W + ix)*Ci within one image, wOffset = (ky*KW + kx)*Ci*Co.
 * Taps in the zero padding are skipped (they contribute 0).
 */
function forEachTap(g: ConvGeometry, oy: number, ox: number, tap: (xOffset: number, wOffset: number) => void): void {
  for (let ky = 0; ky < g.KH; ky++) {
    const iy = oy * g.stride + ky - g.pad;
    if (iy < 0 || iy >= g.H) continue;
    for (let kx = 0; kx < g.KW; kx++) {
      const ix = ox * g.stride + kx - g.pad;
      if (ix < 0 || ix >= g.W) continue;
      tap((iy * g.W + ix) * g.Ci, (ky * g.KW + kx) * g.Ci * g.Co);
    }
  }
}
