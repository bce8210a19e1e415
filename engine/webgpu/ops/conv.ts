// conv2d forward, backward-data and backward-filter on the webgpu backend.
import { Conv2dOptions } from '../../backend.js';
import { Shape, Tensor } from '../../tensor.js';
import type { WebGPUBackend } from '../backend.js';

export function conv2d(be: WebGPUBackend, x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): Tensor {
  throw new Error('conv2d: not implemented on webgpu yet');
}
export function conv2dBackwardData(be: WebGPUBackend, dy: Tensor, w: Tensor, inputShape: Shape, opts?: Conv2dOptions): Tensor {
  throw new Error('conv2dBackwardData: not implemented on webgpu yet');
}
export function conv2dBackwardFilter(be: WebGPUBackend, x: Tensor, dy: Tensor, filterShape: Shape, opts?: Conv2dOptions): Tensor {
  throw new Error('conv2dBackwardFilter: not implemented on webgpu yet');
}
