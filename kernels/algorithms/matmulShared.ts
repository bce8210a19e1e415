// The workgroup-memory tiled matmul (kernels/matmul/sharedTile.ts: f32, f16 and subgroup-matrix tiles).
import { KernelAlgorithm, sharedSeeds } from '../algorithm.js';
import type { MatmulRequest, MatmulShape } from '../matmul/matmul.js';
import { SharedTileConfig, defaultSharedMatmulConfig, sharedGemmCandidates, sharedMatmulKernel, sharedTileConfigKey, sharedTileUses } from '../matmul/sharedTile.js';

export const matmulShared: KernelAlgorithm<MatmulShape, SharedTileConfig, MatmulRequest> = {
  algo: 'shared',
  traits: { workgroupMemory: true, epilogue: false, gates: false },
  applies: () => true,
  space: (s, opts) => sharedGemmCandidates(s.M, s.N, opts),
  defaultFor: () => null,
  seeds: (s, choices) => sharedSeeds(choices, (f16) => defaultSharedMatmulConfig(s, f16)),
  key: sharedTileConfigKey,
  uses: sharedTileUses,
  plan: (s, c, req, maxStorageBytes) => {
    const kernel = sharedMatmulKernel(s, c, req.bias, maxStorageBytes);
    return { tmp: [], steps: [{ kernel, args: req.bias ? [{ in: 0 }, { in: 1 }, { in: 2 }, { out: 0 }] : [{ in: 0 }, { in: 1 }, { out: 0 }] }] };
  },
};
