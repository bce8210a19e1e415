// The matmul family's algorithms, in candidate order (the first applies everywhere).
import { ConfigOf, KernelChoices, KernelPlan, KernelUses, algorithmOf, defaultOf, seedsOf, spaceOf } from '../algorithm.js';
import type { KernelSpec } from '../spec.js';
import type { TileSpaceOptions } from '../matmul/sharedTile.js';
import { MatmulRequest, MatmulShape, defaultMatmulConfig, matmulKernel, transposeBFirst } from '../matmul/matmul.js';
import { transposeKernel } from '../matmul/transpose.js';
import { matmulRegister } from './matmulRegister.js';
import { matmulShared } from './matmulShared.js';

export const MATMUL_ALGORITHMS = [matmulRegister, matmulShared] as const;

/** Any matmul config: register-blocked or workgroup-memory tiled. */
export type AnyMatmulConfig = ConfigOf<(typeof MATMUL_ALGORITHMS)[number]>;

function matmulAlgorithm(c: AnyMatmulConfig) {
  return algorithmOf<MatmulShape, AnyMatmulConfig, MatmulRequest>(MATMUL_ALGORITHMS, c, 'matmul');
}

export function anyMatmulConfigKey(c: AnyMatmulConfig): string {
  return matmulAlgorithm(c).key(c);
}

export function matmulUses(c: AnyMatmulConfig): KernelUses {
  return matmulAlgorithm(c).uses(c);
}

/** The kernels of a matmul config; `bias`: bias[N] added to every row (inputs a, b, [bias]; output out). */
export function matmulPlan(s: MatmulShape, c: AnyMatmulConfig, bias: boolean, maxStorageBytes?: number): KernelPlan {
  return matmulAlgorithm(c).plan(s, c, { bias }, maxStorageBytes);
}

/** The one kernel of a matmul config without bias (bindings a, b, out). */
export function anyMatmulKernel(s: MatmulShape, c: AnyMatmulConfig, maxStorageBytes?: number): KernelSpec {
  return matmulPlan(s, c, false, maxStorageBytes).steps[0].kernel;
}

export function matmulCandidates(s: MatmulShape, opts: TileSpaceOptions = {}): AnyMatmulConfig[] {
  return spaceOf(MATMUL_ALGORITHMS, s, opts);
}

export function defaultMatmulAlgorithm(s: MatmulShape, choices: KernelChoices): AnyMatmulConfig | null {
  return defaultOf(MATMUL_ALGORITHMS, s, choices);
}

export function matmulSeeds(s: MatmulShape, choices: KernelChoices): AnyMatmulConfig[] {
  return seedsOf(MATMUL_ALGORITHMS, s, choices);
}

/**
 * The default path's plan: the family default's, or where none claims the shape (a large
 * transposed B) B transposed into scratch first and the plain register default on it.
 */
export function defaultMatmulPlan(s: MatmulShape, choices: KernelChoices, maxStorageBytes?: number): KernelPlan {
  const c = defaultMatmulAlgorithm(s, choices);
  if (c) return matmulPlan(s, c, false, maxStorageBytes);
  if (!transposeBFirst(s)) throw new Error(`matmul ${s.M}x${s.K}x${s.N}: no default algorithm`);
  const plain = { ...s, transB: false };
  return {
    tmp: [s.K * s.N],
    steps: [
      { kernel: transposeKernel(s.N, s.K), args: [{ in: 1 }, { tmp: 0 }] },
      { kernel: matmulKernel(plain, defaultMatmulConfig(plain, choices.defaultTileSubgroup)), args: [{ in: 0 }, { tmp: 0 }, { out: 0 }] },
    ],
  };
}
