// A 1x1, stride-1, unpadded conv2d as the matmul [N*H*W, Ci] x [Ci, Co] on the same buffers,
// with any matmul algorithm's config (the bias in its epilogue or an addBias pass).
import { ConvForwardAlgorithm, convKey } from '../conv/common.js';
import { ConvMatmulConfig, checkConvForwardConfig, convAsMatmulShape, convIsMatmul } from '../conv/forward.js';
import { anyMatmulConfigKey, matmulCandidates, matmulPlan, matmulUses } from './matmul.js';

export const convForwardMatmul: ConvForwardAlgorithm<ConvMatmulConfig> = {
  algo: 'matmul',
  traits: { workgroupMemory: false, epilogue: false, gates: false },
  applies: convIsMatmul,
  space: (g, opts) => matmulCandidates(convAsMatmulShape(g), opts).map((matmul) => ({ algo: 'matmul', matmul })),
  defaultFor: () => null,
  seeds: () => [],
  key: (c) => `mm-${anyMatmulConfigKey(c.matmul)}`,
  uses: (c) => matmulUses(c.matmul),
  plan: (g, c, req, maxStorageBytes) => {
    if (req.epilogue) throw new Error(`${req.op} ${convKey(g, true)}: config mm-${anyMatmulConfigKey(c.matmul)}: the conv-as-matmul has no conv-block epilogue`);
    checkConvForwardConfig(g, c);
    return matmulPlan(convAsMatmulShape(g), c.matmul, req.bias, maxStorageBytes);
  },
};
