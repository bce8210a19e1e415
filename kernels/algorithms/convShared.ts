// The workgroup-memory tiled implicit GEMMs (kernels/conv/sharedTile.ts) for conv2d forward
// and backward-data (the latter with a block's gates too; a forward block's epilogue needs a
// pooling window in one invocation, which this tiling strides across the workgroup).
import { KernelAlgorithm, sharedSeeds } from '../algorithm.js';
import { ConvBackwardDataRequest, ConvForwardAlgorithm, ConvGeometry, convKey, forwardArgs } from '../conv/common.js';
import { convForwardKernel } from '../conv/forward.js';
import { backwardDataSteps, convBlockBackwardDataKernels } from '../conv/backwardData.js';
import { SharedTileConfig, defaultSharedTileConfig, sharedGemmCandidates, sharedTileConfigKey, sharedTileUses } from '../matmul/sharedTile.js';

/** GEMM rows of the backward-data phases (the register tiles count them so too). */
const dataRows = (g: ConvGeometry) => g.N * Math.ceil(g.H / g.stride) * Math.ceil(g.W / g.stride);

export const convForwardShared: ConvForwardAlgorithm<SharedTileConfig> = {
  algo: 'shared',
  traits: { workgroupMemory: true, epilogue: false, gates: false },
  applies: () => true,
  space: (g, opts) => sharedGemmCandidates(g.N * g.Ho * g.Wo, g.Co, opts),
  defaultFor: () => null,
  seeds: (g, choices) => sharedSeeds(choices, (f16) => defaultSharedTileConfig(g.N * g.Ho * g.Wo, g.Co, f16)),
  key: sharedTileConfigKey,
  uses: sharedTileUses,
  plan: (g, c, req, maxStorageBytes) => {
    if (req.epilogue) throw new Error(`${req.op} ${convKey(g, true)}: config ${sharedTileConfigKey(c)}: the shared-tile kernel has no conv-block epilogue (use a register config)`);
    return { tmp: [], steps: [{ kernel: convForwardKernel(g, req.bias, c, maxStorageBytes), args: forwardArgs(req) }] };
  },
};

export const convBackwardDataShared: KernelAlgorithm<ConvGeometry, SharedTileConfig, ConvBackwardDataRequest> = {
  algo: 'shared',
  traits: { workgroupMemory: true, epilogue: false, gates: true },
  applies: () => true,
  space: (g, opts) => sharedGemmCandidates(dataRows(g), g.Ci, opts),
  defaultFor: () => null,
  seeds: (g, choices) => sharedSeeds(choices, (f16) => defaultSharedTileConfig(dataRows(g), g.Ci, f16)),
  key: sharedTileConfigKey,
  uses: sharedTileUses,
  plan: (g, c, req, maxStorageBytes) => backwardDataSteps(g, convBlockBackwardDataKernels(g, req.gates, c, maxStorageBytes), req),
};
