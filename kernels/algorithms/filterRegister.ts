// The register-blocked backward-filter with its split reduction (kernels/conv/backwardFilter.ts).
import { KernelAlgorithm, registerSeeds, registerUses } from '../algorithm.js';
import { ConvBackwardFilterRequest, ConvGeometry } from '../conv/common.js';
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
  uses: registerUses,
  plan: (g, c) => backwardFilterSteps(convBackwardFilterKernels(g, c)),
};
