// matmul on the webgpu backend.
import { MatmulOptions, matmulShape } from '../../backend.js';
import { Tensor } from '../../tensor.js';
import type { MatmulShape } from '../../../kernels/matmul/matmul.js';
import { AnyMatmulConfig, defaultMatmulPlan, matmulPlan } from '../../../kernels/algorithms/matmul.js';
import type { WebGPUBackend } from '../backend.js';
import { runPlan, storageLimit } from './plan.js';

/**
 * [M, K] x [K, N] -> [M, N]. `config` undefined: the tuner's cached config for this shape if
 * the backend has one; null (or no cached config): the default path (kernels/algorithms/matmul.ts
 * defaultMatmulPlan: a large transposed B is transposed first); with a config (the autotuner,
 * tests), exactly that algorithm's kernel runs on the operands as stored. A config the backend
 * cannot run (f16 on an f32 backend, other subgroups) is refused: reduced precision is never
 * reached by accident.
 */
export function matmul(be: WebGPUBackend, a: Tensor, b: Tensor, opts: MatmulOptions = {}, given?: AnyMatmulConfig | null): Tensor {
  const op = 'matmul';
  const { M, K, N } = matmulShape(a, b, opts);
  const [ba, bb] = be.buffers(op, a, b);
  if (M === 0 || N === 0) return be.newTensor([M, N]);
  const shape: MatmulShape = { M, K, N, transA: !!opts.transA, transB: !!opts.transB };
  const config = given === undefined ? be.tuner?.configFor('matmul', shape) : given ?? undefined;
  if (config) be.checkKernelConfig(op, 'matmul', config);
  // The plan first: a config that does not fit throws before anything is allocated or recorded.
  const plan = config ? matmulPlan(shape, config, false, storageLimit(be)) : defaultMatmulPlan(shape, be, storageLimit(be));
  const out = be.newTensor([M, N]);
  runPlan(be, op, plan, [ba, bb], [out.storage(op).buffer]);
  return out;
}
