// Byte images to normalized f32 on the webgpu backend.
import { checkImagesFromU8 } from '../../backend.js';
import { Shape, Tensor } from '../../tensor.js';
import { imagesFromU8Kernel } from '../../../kernels/image.js';
import type { WebGPUBackend } from '../backend.js';

export function imagesFromU8(be: WebGPUBackend, data: Uint8Array, shape: Shape, mean: readonly number[], std: readonly number[]): Tensor {
  checkImagesFromU8(data, shape, mean, std);
  const out = be.newTensor(shape);
  const n = data.length;
  if (n === 0) return out;
  const words = Math.ceil(n / 4);
  // writeBuffer needs whole words: a view of the caller's bytes when it is aligned and
  // whole, else one padded copy.
  const aligned = n % 4 === 0 && data.byteOffset % 4 === 0;
  const host = aligned ? new Uint32Array(data.buffer, data.byteOffset, words) : new Uint32Array(words);
  if (!aligned) new Uint8Array(host.buffer).set(data);
  const packed = be.newTensor([words], 'u32');
  try {
    be.rt.upload(packed.storage('imagesFromU8').buffer, host);
    be.rt.dispatch(imagesFromU8Kernel(n, mean, std), [packed.storage('imagesFromU8').buffer, out.storage('imagesFromU8').buffer]);
  } finally {
    // The buffer returns to the pool; a later upload into it flushes this dispatch first.
    packed.dispose();
  }
  return out;
}
