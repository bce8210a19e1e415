// matmul on the webgpu backend.
import { MatmulOptions } from '../../backend.js';
import { Tensor } from '../../tensor.js';
import type { WebGPUBackend } from '../backend.js';

export function matmul(be: WebGPUBackend, a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor {
  throw new Error('matmul: not implemented on webgpu yet');
}
