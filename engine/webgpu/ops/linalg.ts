// matmul on the webgpu backend.
import { MatmulOptions, matmulShape } from '../../backend.js';
import { Tensor } from '../../tensor.js';
import {
  AnyMatmulConfig,
  MatmulShape,
  anyMatmulConfigKey,
  anyMatmulKernel,
  defaultMatmulConfig,
  matmulKernel,
  transposeBFirst,
} from '../../../kernels/matmul/matmul.js';
import { transposeKernel } from '../../../kernels/matmul/transpose.js';
import type { WebGPUBackend } from '../backend.js';

/**
 * [M, K] x [K, N] -> [M, N]. `config` undefined: the tuner's cached config for this shape if
 * the backend has one; null (or no cached config): a large transposed B is transposed first
 * and the plain kernel runs with its default config; with a config (the autotuner, tests), exactly
 * that kernel (register-blocked, or workgroup-memory tiled with `algo: 'shared'`) runs on
 * the operands as stored. A config that computes in f16 runs only on a backend whose
 * precision is 'f16': reduced precision is never reached by accident.
 */
export function matmul(be: WebGPUBackend, a: Tensor, b: Tensor, opts: MatmulOptions = {}, given?: AnyMatmulConfig | null): Tensor {
  const op = 'matmul';
  const { M, K, N } = matmulShape(a, b, opts);
  const [ba, bb] = be.buffers(op, a, b);
  if (M === 0 || N === 0) return be.newTensor([M, N]);
  const shape: MatmulShape = { M, K, N, transA: !!opts.transA, transB: !!opts.transB };
  const config = given === undefined ? (be.tuner?.configFor('matmul', shape) as AnyMatmulConfig | undefined) : given ?? undefined;
  if (config?.algo === 'shared' && config.f16 && be.precision !== 'f16') {
    throw new Error(`matmul config ${anyMatmulConfigKey(config)} computes in f16, but the backend's precision is '${be.precision}' (set precision 'f16' to allow it)`);
  }
  be.checkSubgroupConfig(op, config);
  if (config || !transposeBFirst(shape)) {
    // The kernel first: a config that does not fit throws before anything is allocated or recorded.
    const spec = anyMatmulKernel(shape, config ?? defaultMatmulConfig(shape, be.defaultTileSubgroup), be.rt.device.limits.maxComputeWorkgroupStorageSize);
    const out = be.newTensor([M, N]);
    be.rt.dispatch(spec, [ba, bb, out.storage(op).buffer]);
    return out;
  }
  const out = be.newTensor([M, N]);
  const dst = out.storage(op).buffer;
  // B is stored [N, K]; make it [K, N]. The temporary goes back to the pool right away:
  // later GPU writes to its buffer are queue-ordered after this matmul reads it.
  const bt = be.newTensor([K, N]);
  const btBuf = bt.storage(op).buffer;
  be.rt.dispatch(transposeKernel(N, K), [bb, btBuf]);
  const plain = { ...shape, transB: false };
  be.rt.dispatch(matmulKernel(plain, defaultMatmulConfig(plain, be.defaultTileSubgroup)), [ba, btBuf, dst]);
  bt.dispose();
  return out;
}
