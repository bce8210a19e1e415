// Every kernel config the autotuner may try per op and shape, across algorithms: the
// register-blocked spaces (won on lavapipe), the workgroup-memory tiled ones (meant for
// discrete GPUs) and, for a 1x1 stride-1 unpadded conv, the conv run as a matmul. Each
// candidate is correct for its shape; configKey names it stably (cache files keep it).
//
// Precision is the caller's choice, never a default: the f16 variants of the shared-tile
// configs (f16 staging and multiply, kernels/matmul/sharedTile.ts) are candidates only with
// `precision: 'f16'`; so are the subgroup-matrix tiles (tensor cores) with f16 components,
// offered where the device has subgroup matrices (`matrices`); sharedGemmCandidates lists them
// all for a GEMM. `maxStorageBytes` (the device's workgroup memory; default the portable 16 KB) bounds every shared-tile space, conv and matmul alike; the generators are given the
// same limit when they run a config.
import { ConvShape, tileConfigKey } from './conv/common.js';
import {
  ConvForwardConfig,
  convAsMatmulShape,
  convForwardConfigKey,
  convForwardConfigSpace,
  convIsMatmul,
  winogradForwardConfigSpace,
} from './conv/forward.js';
import {
  ConvBackwardDataConfig,
  convBackwardDataConfigSpace,
  winogradBackwardDataConfigSpace,
} from './conv/backwardData.js';
import {
  AnyConvBackwardFilterConfig,
  anyBackwardFilterConfigKey,
  convBackwardFilterConfigSpace,
} from './conv/backwardFilter.js';
import { SharedBackwardFilterConfig, sharedBackwardFilterConfigSpace } from './conv/sharedTile.js';
import { AnyMatmulConfig, MatmulShape, anyMatmulConfigKey, matmulConfigSpace } from './matmul/matmul.js';
import { SharedTileConfig, TileSpaceOptions, sharedGemmCandidates, sharedTileConfigKey } from './matmul/sharedTile.js';

export type { KernelPrecision, TileSpaceOptions } from './matmul/sharedTile.js';

export type AnyKernelConfig = ConvForwardConfig | ConvBackwardDataConfig | AnyConvBackwardFilterConfig | AnyMatmulConfig;

/**
 * A stable name for any config of any op: register-blocked keys as before (`r8c2v4...`,
 * backward-filter with `k<split>`), shared-tile keys start with `sh`, conv-as-matmul with `mm-`,
 * Winograd with `wino-`.
 */
export function configKey(c: AnyKernelConfig): string {
  if ('matmul' in c) return convForwardConfigKey(c);
  if ('splitK' in c) return anyBackwardFilterConfigKey(c);
  if (c.algo === 'shared') return sharedTileConfigKey(c);
  if ('wgX' in c && 'kUnroll' in c) return tileConfigKey(c);
  return anyMatmulConfigKey(c);
}

/** `opts.maxStorageBytes` lets the shared-tile matmul space use the device's workgroup memory. */
export function matmulCandidates(s: MatmulShape, opts: TileSpaceOptions = {}): AnyMatmulConfig[] {
  return [...matmulConfigSpace(s, opts.subgroupSize), ...sharedGemmCandidates(s.M, s.N, opts)];
}

export function convForwardCandidates(s: ConvShape, opts: TileSpaceOptions = {}): ConvForwardConfig[] {
  const out: ConvForwardConfig[] = [
    ...convForwardConfigSpace(s, opts.subgroupSize),
    ...sharedGemmCandidates(s.N * s.Ho * s.Wo, s.Co, opts),
    ...winogradForwardConfigSpace(s, opts),
  ];
  if (convIsMatmul(s)) for (const matmul of matmulCandidates(convAsMatmulShape(s), opts)) out.push({ algo: 'matmul', matmul });
  return out;
}

export function convBackwardDataCandidates(s: ConvShape, opts: TileSpaceOptions = {}): ConvBackwardDataConfig[] {
  return [
    ...convBackwardDataConfigSpace(s, opts.subgroupSize),
    ...sharedGemmCandidates(s.N * Math.ceil(s.H / s.stride) * Math.ceil(s.W / s.stride), s.Ci, opts),
    ...winogradBackwardDataConfigSpace(s, opts),
  ];
}

/**
 * With f16, backward-filter gets only the 'mul' variants: its reduction runs over every
 * output pixel of the batch (thousands of terms per split chunk), far past what an f16
 * accumulator (11 significant bits) can sum.
 */
export function convBackwardFilterCandidates(s: ConvShape, opts: TileSpaceOptions = {}): AnyConvBackwardFilterConfig[] {
  const shared = sharedBackwardFilterConfigSpace(s, opts);
  const out: AnyConvBackwardFilterConfig[] = [...convBackwardFilterConfigSpace(s, opts.subgroupSize), ...shared];
  if (opts.precision === 'f16') for (const c of shared) out.push({ ...c, f16: 'mul' } as SharedBackwardFilterConfig);
  return out;
}
