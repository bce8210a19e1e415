// The register-blocked backward-filter with its split reduction (kernels/conv/backwardFilter.ts).
import { KernelAlgorithm, registerSeeds } from '../algorithm.js';
import { ConvBackwardFilterRequest, ConvGeometry, tileUses } from '../conv/common.js';
import {
  ConvBackwardFilterConfig,
  backwardFilterConfigKey,
  convBackwardFilterConfigSpace,
  convBackwardFilterKernels,
  defaultConvBackwardFilterConfig,
} from '../conv/backwardFilter.js';
import { backwardFilterSteps } from '../conv/splitSum.js';

export const filterRegister: KernelAlgorithm<ConvGeometry, ConvBackwardFilterConfig, ConvBackwardFilterRequest> = {
  algo: 'register',
  traits: { workgroupMemory: false, epilogue: false, gates: false },
  applies: () => true,
  space: (g, opts) => convBackwardFilterConfigSpace(g, opts.subgroupSize),
  defaultFor: (g, choices) => defaultConvBackwardFilterConfig(g, choices.defaultTileSubgroup, choices.parallelism),
  seeds: (g, choices) => registerSeeds(choices, (sg) => defaultConvBackwardFilterConfig(g, sg, choices.parallelism)),
  key: backwardFilterConfigKey,
  uses: tileUses,
  plan: (g, c) => backwardFilterSteps(convBackwardFilterKernels(g, c)),
};
