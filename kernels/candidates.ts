// Every kernel config the autotuner may try per op and shape, across algorithms: the
// register-blocked spaces (won on lavapipe), the workgroup-memory tiled ones (meant for
// discrete GPUs) and, for a 1x1 stride-1 unpadded conv, the conv run as a matmul. Each
// candidate is correct for its shape; configKey names it stably (cache files keep it).
import { ConvShape, tileConfigKey } from './conv/common.js';
import {
  ConvForwardConfig,
  convAsMatmulShape,
  convForwardConfigKey,
  convForwardConfigSpace,
  convIsMatmul,
  sharedConvForwardConfigSpace,
} from './conv/forward.js';
import {
  ConvBackwardDataConfig,
  convBackwardDataConfigSpace,
  sharedConvBackwardDataConfigSpace,
} from './conv/backwardData.js';
import {
  AnyConvBackwardFilterConfig,
  anyBackwardFilterConfigKey,
  convBackwardFilterConfigSpace,
} from './conv/backwardFilter.js';
import { sharedBackwardFilterConfigSpace } from './conv/sharedTile.js';
import { AnyMatmulConfig, MatmulShape, anyMatmulConfigKey, matmulConfigSpace } from './matmul/matmul.js';
import { sharedMatmulConfigSpace, sharedTileConfigKey } from './matmul/sharedTile.js';

export type AnyKernelConfig = ConvForwardConfig | ConvBackwardDataConfig | AnyConvBackwardFilterConfig | AnyMatmulConfig;

/**
 * A stable name for any config of any op: register-blocked keys as before (`r8c2v4...`,
 * backward-filter with `k<split>`), shared-tile keys start with `sh`, conv-as-matmul with `mm-`.
 */
export function configKey(c: AnyKernelConfig): string {
  if ('matmul' in c) return convForwardConfigKey(c);
  if ('splitK' in c) return anyBackwardFilterConfigKey(c);
  if (c.algo === 'shared') return sharedTileConfigKey(c);
  if ('wgX' in c && 'kUnroll' in c) return tileConfigKey(c);
  return anyMatmulConfigKey(c);
}

export function matmulCandidates(s: MatmulShape): AnyMatmulConfig[] {
  return [...matmulConfigSpace(s), ...sharedMatmulConfigSpace(s)];
}

export function convForwardCandidates(s: ConvShape): ConvForwardConfig[] {
  const out: ConvForwardConfig[] = [...convForwardConfigSpace(s), ...sharedConvForwardConfigSpace(s)];
  if (convIsMatmul(s)) for (const matmul of matmulCandidates(convAsMatmulShape(s))) out.push({ algo: 'matmul', matmul });
  return out;
}

export function convBackwardDataCandidates(s: ConvShape): ConvBackwardDataConfig[] {
  return [...convBackwardDataConfigSpace(s), ...sharedConvBackwardDataConfigSpace(s)];
}

export function convBackwardFilterCandidates(s: ConvShape): AnyConvBackwardFilterConfig[] {
  return [...convBackwardFilterConfigSpace(s), ...sharedBackwardFilterConfigSpace(s)];
}
