// matmul on the webgpu backend.
import { MatmulOptions, matmulShape } from '../../backend.js';
import { Tensor } from '../../tensor.js';
import { MatmulConfig, MatmulShape, defaultMatmulConfig, matmulKernel, transposeBFirst } from '../../../kernels/matmul/matmul.js';
import { transposeKernel } from '../../../kernels/matmul/transpose.js';
import type { WebGPUBackend } from '../backend.js';

/**
 * [M, K] x [K, N] -> [M, N]. Without `config`, a large transposed B is transposed first and
 * the plain kernel runs with its default config; with one (the autotuner, tests), exactly
 * that kernel runs on the operands as stored.
 */
export function matmul(be: WebGPUBackend, a: Tensor, b: Tensor, opts: MatmulOptions = {}, config?: MatmulConfig): Tensor {
  const op = 'matmul';
  const { M, K, N } = matmulShape(a, b, opts);
  const [ba, bb] = be.buffers(op, a, b);
  const out = be.newTensor([M, N]);
  if (M === 0 || N === 0) return out;
  const shape: MatmulShape = { M, K, N, transA: !!opts.transA, transB: !!opts.transB };
  const dst = out.storage(op).buffer;
  if (config || !transposeBFirst(shape)) {
    be.rt.dispatch(matmulKernel(shape, config ?? defaultMatmulConfig(shape)), [ba, bb, dst]);
    return out;
  }
  // B is stored [N, K]; make it [K, N]. The temporary goes back to the pool right away:
  // later GPU writes to its buffer are queue-ordered after this matmul reads it.
  const bt = be.newTensor([K, N]);
  const btBuf = bt.storage(op).buffer;
  be.rt.dispatch(transposeKernel(N, K), [bb, btBuf]);
  const plain = { ...shape, transB: false };
  be.rt.dispatch(matmulKernel(plain, defaultMatmulConfig(plain)), [ba, btBuf, dst]);
  bt.dispose();
  return out;
}
