// The register-blocked matmul (kernels/matmul/matmul.ts) as an algorithm of the matmul family.
import { KernelAlgorithm, KernelPlan, registerSeeds, registerUses } from '../algorithm.js';
import { addBiasKernel } from '../elementwise.js';
import { MatmulConfig, MatmulRequest, MatmulShape, defaultMatmulConfig, matmulConfigKey, matmulConfigSpace, matmulKernel, transposeBFirst } from '../matmul/matmul.js';

export const matmulRegister: KernelAlgorithm<MatmulShape, MatmulConfig, MatmulRequest> = {
  algo: 'register',
  traits: { workgroupMemory: false, epilogue: false, gates: false },
  applies: () => true,
  space: (s, opts) => matmulConfigSpace(s, opts.subgroupSize),
  // With a large transposed B the default path transposes first (matmul.ts transposeBFirst): no config of the space.
  defaultFor: (s, choices) => (transposeBFirst(s) ? null : defaultMatmulConfig(s, choices.defaultTileSubgroup)),
  seeds: (s, choices) => registerSeeds(choices, (sg) => defaultMatmulConfig(s, sg)),
  key: matmulConfigKey,
  uses: registerUses,
  plan: (s, c, req): KernelPlan => {
    const kernel = matmulKernel(s, c);
    if (!req.bias) return { tmp: [], steps: [{ kernel, args: [{ in: 0 }, { in: 1 }, { out: 0 }] }] };
    // No bias epilogue here: the product into scratch, then an addBias pass.
    const bias = addBiasKernel(s.M * s.N, s.N);
    return {
      tmp: [s.M * s.N],
      steps: [
        { kernel, args: [{ in: 0 }, { in: 1 }, { tmp: 0 }] },
        { kernel: bias, args: [{ tmp: 0 }, { in: 2 }, { out: 0 }] },
      ],
    };
  },
};
