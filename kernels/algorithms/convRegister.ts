// The register-blocked implicit GEMMs (kernels/conv/common.ts gatherGemmKernel) for conv2d
// forward (also as a conv block, with its epilogue) and backward-data (also with a block's gates).
import { KernelAlgorithm, KernelChoices, registerSeeds, registerUses } from '../algorithm.js';
import { ConvBackwardDataRequest, ConvForwardAlgorithm, ConvGeometry, ConvTileConfig, forwardArgs, tileConfigKey } from '../conv/common.js';
import { blockConfigProblem, convBlockConfig, convBlockKernel, convForwardConfigSpace, convForwardKernel, defaultConvForwardConfig } from '../conv/forward.js';
import { backwardDataSteps, convBackwardDataConfigSpace, convBlockBackwardDataKernels, defaultConvBackwardDataConfig } from '../conv/backwardData.js';

export const convForwardRegister: ConvForwardAlgorithm<ConvTileConfig> = {
  algo: 'register',
  traits: { workgroupMemory: false, epilogue: true, gates: false },
  applies: () => true,
  space: (g, opts) => convForwardConfigSpace(g, opts.subgroupSize),
  defaultFor: (g, choices) => defaultConvForwardConfig(g, choices.defaultTileSubgroup),
  seeds: (g, choices) => registerSeeds(choices, (sg) => defaultConvForwardConfig(g, sg)),
  key: tileConfigKey,
  uses: registerUses,
  plan: (g, c, req, maxStorageBytes) => {
    const kernel = req.epilogue ? convBlockKernel(g, req.bias, req.epilogue, c) : convForwardKernel(g, req.bias, c, maxStorageBytes);
    return { tmp: [], steps: [{ kernel, args: forwardArgs(req) }] };
  },
  blockAccepts: (g, e, c) => blockConfigProblem(g, e, c) === null,
  blockDefaultFor: (g, e, choices: KernelChoices) => convBlockConfig(g, e, undefined, choices.defaultTileSubgroup),
};

export const convBackwardDataRegister: KernelAlgorithm<ConvGeometry, ConvTileConfig, ConvBackwardDataRequest> = {
  algo: 'register',
  traits: { workgroupMemory: false, epilogue: false, gates: true },
  applies: () => true,
  space: (g, opts) => convBackwardDataConfigSpace(g, opts.subgroupSize),
  defaultFor: (g, choices) => defaultConvBackwardDataConfig(g, choices.defaultTileSubgroup),
  seeds: (g, choices) => registerSeeds(choices, (sg) => defaultConvBackwardDataConfig(g, sg)),
  key: tileConfigKey,
  uses: registerUses,
  plan: (g, c, req, maxStorageBytes) => backwardDataSteps(g, convBlockBackwardDataKernels(g, req.gates, c, maxStorageBytes), req),
};
