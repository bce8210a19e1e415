// The workgroup-memory tiled backward-filter with its split reduction (kernels/conv/sharedTile.ts).
import { KernelAlgorithm } from '../algorithm.js';
import { ConvBackwardFilterRequest, ConvGeometry } from '../conv/common.js';
import {
  SharedBackwardFilterConfig,
  defaultSharedBackwardFilterConfig,
  sharedBackwardFilterConfigKey,
  sharedBackwardFilterConfigSpace,
  sharedBackwardFilterKernels,
} from '../conv/sharedTile.js';
import { backwardFilterSteps } from '../conv/splitSum.js';
import { sharedTileUses } from '../matmul/sharedTile.js';

export const filterShared: KernelAlgorithm<ConvGeometry, SharedBackwardFilterConfig, ConvBackwardFilterRequest> = {
  algo: 'shared',
  traits: { workgroupMemory: true, epilogue: false, gates: false },
  applies: () => true,
  /**
   * With f16, only the 'mul' variants: the reduction runs over every output pixel of the batch
   * (thousands of terms per split chunk), far past what an f16 accumulator (11 significant
   * bits) can sum.
   */
  space: (g, opts) => {
    const f32 = sharedBackwardFilterConfigSpace(g, opts);
    return opts.precision === 'f16' ? [...f32, ...f32.map((c): SharedBackwardFilterConfig => ({ ...c, f16: 'mul' }))] : f32;
  },
  defaultFor: () => null,
  seeds: (g, choices) => {
    const c = defaultSharedBackwardFilterConfig(g);
    return choices.precision === 'f16' ? [c, { ...c, f16: 'mul' }] : [c];
  },
  key: sharedBackwardFilterConfigKey,
  uses: sharedTileUses,
  plan: (g, c, _req, maxStorageBytes) => backwardFilterSteps(sharedBackwardFilterKernels(g, c, maxStorageBytes)),
};
