// Reductions, pooling, loss, metrics and the optimizer on the webgpu backend.
import {
  MaxPoolResult,
  SgdOptions,
  SoftmaxCrossEntropyResult,
  checkDtype,
  checkSameShape,
  lossShapes,
  maxPoolBackwardShapes,
  maxPoolShape,
  sumShape,
} from '../../backend.js';
import { Shape, ShapeError, Tensor, shapeStr } from '../../tensor.js';
import { sumPlan } from '../../../kernels/reduce/sum.js';
import { maxPoolBackwardKernel, maxPoolKernel } from '../../../kernels/pool.js';
import { lossUniforms, softmaxCrossEntropyKernel, topkCorrectKernel, topkUniforms } from '../../../kernels/loss.js';
import { sgdKernel, sgdUniforms } from '../../../kernels/optim.js';
import type { WebGPUBackend } from '../backend.js';

/**
 * Records the passes of a sum of `src` (viewed as `shape`) over `axes` into `dst`; the
 * intermediate partial sums live in pooled buffers released as soon as they are recorded
 * (later GPU writes to a reused buffer are queue-ordered after these reads).
 */
function recordSum(be: WebGPUBackend, src: GPUBuffer, dst: GPUBuffer, shape: readonly number[], axes: readonly number[]): void {
  const passes = sumPlan(shape, axes);
  const outputs = shape.reduce((n, d, i) => (axes.includes(i) ? n : n * d), 1);
  let input = src;
  let held: Tensor | null = null;
  for (let i = 0; i < passes.length; i++) {
    const last = i === passes.length - 1;
    const out = last ? null : be.newTensor([passes[i].parts * outputs]);
    const target = out ? out.storage('sum').buffer : dst;
    be.rt.dispatch(passes[i].spec, [input, target]);
    held?.dispose();
    held = out;
    input = target;
  }
  held?.dispose();
}

function sumInto(be: WebGPUBackend, op: string, a: Tensor, srcBuf: GPUBuffer, outShape: readonly number[], axes: number[]): Tensor {
  const out = be.newTensor(outShape);
  const dst = out.storage(op).buffer;
  if (out.size === 0) return out;
  if (a.size === 0) {
    // Sums over an empty axis.
    be.rt.fillWords(dst, out.size, 0);
    return out;
  }
  if (axes.length === 0) {
    be.rt.copy(srcBuf, dst, a.size * 4);
    return out;
  }
  recordSum(be, srcBuf, dst, a.shape, axes);
  return out;
}

export function sum(be: WebGPUBackend, a: Tensor, axes: number[]): Tensor {
  checkDtype('sum', a, 'f32', 'operand');
  const { outShape, axes: norm } = sumShape('sum', a.shape, axes);
  const [buf] = be.buffers('sum', a);
  return sumInto(be, 'sum', a, buf, outShape, norm);
}

export function biasGrad(be: WebGPUBackend, g: Tensor): Tensor {
  checkDtype('biasGrad', g, 'f32', 'gradient');
  if (g.shape.length < 1) throw new ShapeError('biasGrad', `gradient must have at least one axis (channels last), got ${shapeStr(g.shape)}`);
  const rank = g.shape.length;
  const [buf] = be.buffers('biasGrad', g);
  const axes = Array.from({ length: rank - 1 }, (_, i) => i);
  return sumInto(be, 'biasGrad', g, buf, [g.shape[rank - 1]], axes);
}

export function maxPool2x2(be: WebGPUBackend, x: Tensor): MaxPoolResult {
  checkDtype('maxPool2x2', x, 'f32', 'input');
  const geo = maxPoolShape('maxPool2x2', x.shape);
  const [bx] = be.buffers('maxPool2x2', x);
  const shape = [geo.N, geo.Ho, geo.Wo, geo.C];
  const y = be.newTensor(shape);
  const argmax = be.newTensor(shape, 'u32');
  if (y.size > 0) be.rt.dispatch(maxPoolKernel(geo), [bx, y.storage('maxPool2x2').buffer, argmax.storage('maxPool2x2').buffer]);
  return { y, argmax };
}

export function maxPool2x2Backward(be: WebGPUBackend, dy: Tensor, argmax: Tensor, inputShape: Shape): Tensor {
  const geo = maxPoolBackwardShapes(dy, argmax, inputShape);
  const [bdy, barg] = be.buffers('maxPool2x2Backward', dy, argmax);
  const dx = be.newTensor(inputShape);
  if (dx.size > 0) be.rt.dispatch(maxPoolBackwardKernel(geo), [bdy, barg, dx.storage('maxPool2x2Backward').buffer]);
  return dx;
}

export function softmaxCrossEntropy(be: WebGPUBackend, logits: Tensor, labels: Tensor, reduction: 'mean' | 'sum'): SoftmaxCrossEntropyResult {
  const op = 'softmaxCrossEntropy';
  const { N, C } = lossShapes(op, logits, labels);
  if (reduction !== 'mean' && reduction !== 'sum') throw new ShapeError(op, `reduction must be 'mean' or 'sum', got '${String(reduction)}'`);
  const [bx, bl] = be.buffers(op, logits, labels);
  const grad = be.newTensor([N, C]);
  const loss = be.newTensor([1]);
  if (N === 0 || C === 0) {
    // No rows: an empty sum (a mean of nothing is NaN). No classes: every label is out of range.
    be.rt.fillWords(loss.storage(op).buffer, 1, N === 0 && reduction === 'sum' ? 0 : 0x7fc00000);
    return { loss, grad };
  }
  const rowLoss = be.newTensor([N]);
  const rowBuf = rowLoss.storage(op).buffer;
  be.rt.dispatch(softmaxCrossEntropyKernel(N, C), [bx, bl, grad.storage(op).buffer, rowBuf], lossUniforms(reduction === 'mean' ? 1 / N : 1));
  recordSum(be, rowBuf, loss.storage(op).buffer, [N], [0]);
  rowLoss.dispose();
  return { loss, grad };
}

/** scale * (softmax - onehot) without the loss: the kernel built without its loss output. */
export function softmaxCrossEntropyGrad(be: WebGPUBackend, logits: Tensor, labels: Tensor, scale: number): Tensor {
  const op = 'softmaxCrossEntropyGrad';
  const { N, C } = lossShapes(op, logits, labels);
  if (!Number.isFinite(scale)) throw new ShapeError(op, `scale must be a finite number, got ${scale}`);
  const [bx, bl] = be.buffers(op, logits, labels);
  const grad = be.newTensor([N, C]);
  if (N > 0 && C > 0) be.rt.dispatch(softmaxCrossEntropyKernel(N, C, false), [bx, bl, grad.storage(op).buffer], lossUniforms(scale));
  return grad;
}

export function topkCorrect(be: WebGPUBackend, logits: Tensor, labels: Tensor, k: number): Tensor {
  const op = 'topkCorrect';
  const { N, C } = lossShapes(op, logits, labels);
  if (!Number.isInteger(k) || k < 1) throw new ShapeError(op, `k must be a positive integer, got ${k}`);
  const [bx, bl] = be.buffers(op, logits, labels);
  const out = be.newTensor([1]);
  if (N === 0 || C === 0) {
    be.rt.fillWords(out.storage(op).buffer, 1, 0);
    return out;
  }
  const rows = be.newTensor([N]);
  const rowBuf = rows.storage(op).buffer;
  // Clamped so it fits a u32; any k >= C makes every row with a valid label and finite logits correct.
  be.rt.dispatch(topkCorrectKernel(N, C), [bx, bl, rowBuf], topkUniforms(Math.min(k, C)));
  recordSum(be, rowBuf, out.storage(op).buffer, [N], [0]);
  rows.dispose();
  return out;
}

export function sgdNesterov(be: WebGPUBackend, param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void {
  const op = 'sgdNesterov';
  checkSameShape(op, param, grad, velocity);
  if (param === grad || param === velocity || grad === velocity) {
    throw new ShapeError(op, 'param, grad and velocity must be three different tensors');
  }
  for (const [name, v] of Object.entries({ lr: opts.lr, momentum: opts.momentum, weightDecay: opts.weightDecay })) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ShapeError(op, `${name} must be a finite number, got ${v}`);
  }
  const bufs = be.buffers(op, param, grad, velocity);
  if (param.size === 0) return;
  be.rt.dispatch(sgdKernel(param.size, opts.nesterov ?? true), bufs, sgdUniforms(opts.lr, opts.momentum, opts.weightDecay));
}
