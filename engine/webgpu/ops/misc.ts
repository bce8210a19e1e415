// Reductions, pooling, loss, metrics and the optimizer on the webgpu backend.
import { MaxPoolResult, SgdOptions, SoftmaxCrossEntropyResult } from '../../backend.js';
import { Shape, Tensor } from '../../tensor.js';
import type { WebGPUBackend } from '../backend.js';

export function sum(be: WebGPUBackend, a: Tensor, axes: number[]): Tensor {
  throw new Error('sum: not implemented on webgpu yet');
}
export function biasGrad(be: WebGPUBackend, g: Tensor): Tensor {
  throw new Error('biasGrad: not implemented on webgpu yet');
}
export function maxPool2x2(be: WebGPUBackend, x: Tensor): MaxPoolResult {
  throw new Error('maxPool2x2: not implemented on webgpu yet');
}
export function maxPool2x2Backward(be: WebGPUBackend, dy: Tensor, argmax: Tensor, inputShape: Shape): Tensor {
  throw new Error('maxPool2x2Backward: not implemented on webgpu yet');
}
export function softmaxCrossEntropy(be: WebGPUBackend, logits: Tensor, labels: Tensor, reduction: 'mean' | 'sum'): SoftmaxCrossEntropyResult {
  throw new Error('softmaxCrossEntropy: not implemented on webgpu yet');
}
export function topkCorrect(be: WebGPUBackend, logits: Tensor, labels: Tensor, k: number): Tensor {
  throw new Error('topkCorrect: not implemented on webgpu yet');
}
export function sgdNesterov(be: WebGPUBackend, param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void {
  throw new Error('sgdNesterov: not implemented on webgpu yet');
}
