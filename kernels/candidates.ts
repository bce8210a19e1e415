// Every kernel config the autotuner may try per op and shape, across algorithms: each family's
// registry (kernels/algorithms/<op>.ts) lists its algorithms, and a family's candidates are
// their spaces in registry order (the register-blocked tiles, won on lavapipe; the
// workgroup-memory tiles, meant for discrete GPUs; Winograd for 3x3 stride-1 convs; a 1x1
// stride-1 unpadded conv run as a matmul). Each candidate is correct for its shape; configKey
// names it stably (cache files keep it).
//
// Precision is the caller's choice, never a default: the f16 variants of the shared-tile
// configs (f16 staging and multiply, kernels/matmul/sharedTile.ts) are candidates only with
// `precision: 'f16'`; so are the subgroup-matrix tiles (tensor cores) with f16 components,
// offered where the device has subgroup matrices (`matrices`). `maxStorageBytes` (the device's
// workgroup memory; default the portable 16 KB) bounds every shared-tile space, conv and matmul
// alike; the generators are given the same limit when they run a config.
import { KernelAlgorithm, KernelUses, algorithmOf } from './algorithm.js';
import { CONV_FORWARD_ALGORITHMS, ConvForwardConfig, convForwardCandidates } from './algorithms/conv2d.js';
import { CONV_BACKWARD_DATA_ALGORITHMS, ConvBackwardDataConfig, convBackwardDataCandidates } from './algorithms/conv2dBackwardData.js';
import { AnyConvBackwardFilterConfig, CONV_BACKWARD_FILTER_ALGORITHMS, convBackwardFilterCandidates } from './algorithms/conv2dBackwardFilter.js';
import { AnyMatmulConfig, MATMUL_ALGORITHMS, matmulCandidates } from './algorithms/matmul.js';

export type { KernelPrecision, TileSpaceOptions } from './matmul/sharedTile.js';
export type { KernelChoices, KernelUses } from './algorithm.js';
export type { ConvForwardConfig, ConvBackwardDataConfig, AnyConvBackwardFilterConfig, AnyMatmulConfig };
export { convForwardCandidates, convBackwardDataCandidates, convBackwardFilterCandidates, matmulCandidates };

/** The tunable op families. */
export type KernelFamily = 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter' | 'matmul';

/** The configs of each family, as a tagged union on `algo`. */
export interface FamilyConfig {
  conv2d: ConvForwardConfig;
  conv2dBackwardData: ConvBackwardDataConfig;
  conv2dBackwardFilter: AnyConvBackwardFilterConfig;
  matmul: AnyMatmulConfig;
}

export type AnyKernelConfig = FamilyConfig[KernelFamily];

const REGISTRIES: Record<KernelFamily, readonly KernelAlgorithm<unknown, { algo: string }, unknown>[]> = {
  conv2d: CONV_FORWARD_ALGORITHMS,
  conv2dBackwardData: CONV_BACKWARD_DATA_ALGORITHMS,
  conv2dBackwardFilter: CONV_BACKWARD_FILTER_ALGORITHMS,
  matmul: MATMUL_ALGORITHMS,
};

/** The algorithm of `family` that a config names (throws for a tag the family does not have). */
function algorithm<F extends KernelFamily>(family: F, c: FamilyConfig[F]): KernelAlgorithm<unknown, FamilyConfig[F], unknown> {
  return algorithmOf(REGISTRIES[family], c, family);
}

/**
 * A stable name for a config of a family, from its algorithm: register-blocked keys
 * (`r8c2v4...`, backward-filter with `k<split>`), shared-tile keys start with `sh`,
 * conv-as-matmul with `mm-`, Winograd with `wino-`.
 */
export function configKey<F extends KernelFamily>(family: F, c: FamilyConfig[F]): string {
  return algorithm(family, c).key(c);
}

/** What a config of a family needs of the device and the backend's precision (f16, subgroups, subgroup matrices). */
export function configUses<F extends KernelFamily>(family: F, c: FamilyConfig[F]): KernelUses {
  return algorithm(family, c).uses(c);
}

/**
 * A config as stored before `algo` was required (tune caches keep configs as JSON): a
 * register tile (conv, backward-filter or matmul, also as a Winograd or conv-as-matmul GEMM)
 * gets its tag. Anything else is returned as it is.
 */
export function withAlgoTag(c: unknown): unknown {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) return c;
  const o = c as Record<string, unknown>;
  const out: Record<string, unknown> = o.algo === undefined && 'rows' in o ? { algo: 'register', ...o } : { ...o };
  if (out.matmul !== undefined) out.matmul = withAlgoTag(out.matmul);
  return out;
}
