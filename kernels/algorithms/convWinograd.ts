// Winograd F(2x2, 3x3) (kernels/conv/winograd.ts) for 3x3 stride-1 conv2d forward (also as a
// conv block: the epilogue runs in the output transform) and backward-data (without gates:
// the input transform mixes 16 pixels, so per-pixel gates cannot be applied in its loads).
import { KernelAlgorithm, KernelChoices, KernelPlan, registerSeeds } from '../algorithm.js';
import { BufferRef } from '../algorithm.js';
import { ConvBackwardDataRequest, ConvForwardAlgorithm, ConvGeometry, convKey, forwardArgs } from '../conv/common.js';
import { checkConvForwardConfig } from '../conv/forward.js';
import { checkConvBackwardDataConfig } from '../conv/backwardData.js';
import {
  ConvWinogradConfig,
  WinogradPlan,
  WinogradProblem,
  defaultWinogradConfig,
  winogradBackwardData,
  winogradConfigKey,
  winogradConfigSpace,
  winogradForward,
  winogradPlan,
  winogradPreferred,
  winogradProblem,
} from '../conv/winograd.js';
import { matmulUses } from './matmul.js';

/**
 * The filter transform once, then per chunk of tiles the input transform, the 16 batched GEMMs
 * and the output transform, which reads the op's inputs after src and w (bias, a block's
 * addend) and writes all its outputs: `args`, the bindings the direct kernel would take
 * (forwardArgs). Scratch: U, V, M.
 */
export function winogradSteps(p: WinogradPlan, args: BufferRef[]): KernelPlan {
  const reads = args.filter((r) => 'in' in r && r.in >= 2);
  const outs = args.filter((r) => 'out' in r);
  const steps: KernelPlan['steps'] = [{ kernel: p.filter, args: [{ in: 1 }, { tmp: 0 }] }];
  for (let c = 0; c < p.chunks; c++) {
    const t0 = new Uint32Array([c * p.chunk, 0, 0, 0]);
    steps.push(
      { kernel: p.input, args: [{ in: 0 }, { tmp: 1 }], uniform: t0 },
      { kernel: p.gemm, args: [{ tmp: 1 }, { tmp: 0 }, { tmp: 2 }] },
      { kernel: p.output, args: [{ tmp: 2 }, ...reads, ...outs], uniform: t0 },
    );
  }
  return { tmp: [p.uFloats, p.vFloats, p.mFloats], steps };
}

/** The default where the backend lets defaults use Winograd and winogradPreferred says so. */
function preferred(g: ConvGeometry, p: WinogradProblem, choices: KernelChoices): ConvWinogradConfig | null {
  return choices.winogradDefaults && winogradPreferred(g, p, choices.defaultTileSubgroup) ? defaultWinogradConfig(p, choices.defaultTileSubgroup) : null;
}

const applies = (g: ConvGeometry) => winogradProblem(g) === null;
const uses = (c: ConvWinogradConfig) => matmulUses(c.matmul);

export const convForwardWinograd: ConvForwardAlgorithm<ConvWinogradConfig> = {
  algo: 'winograd',
  traits: { workgroupMemory: false, epilogue: true, gates: false },
  applies,
  space: (g, opts) => winogradConfigSpace(winogradForward(g), opts),
  defaultFor: (g, choices) => preferred(g, winogradForward(g), choices),
  seeds: (g, choices) => registerSeeds(choices, (sg) => defaultWinogradConfig(winogradForward(g), sg)),
  key: winogradConfigKey,
  uses,
  plan: (g, c, req, maxStorageBytes) => {
    checkConvForwardConfig(g, c);
    return winogradSteps(winogradPlan(winogradForward(g), req.bias, c, req.op, req.epilogue, maxStorageBytes), forwardArgs(req));
  },
  blockAccepts: () => true,
  blockDefaultFor: (g, _e, choices) => preferred(g, winogradForward(g), choices),
};

export const convBackwardDataWinograd: KernelAlgorithm<ConvGeometry, ConvWinogradConfig, ConvBackwardDataRequest> = {
  algo: 'winograd',
  traits: { workgroupMemory: false, epilogue: false, gates: false },
  applies,
  space: (g, opts) => winogradConfigSpace(winogradBackwardData(g), opts),
  defaultFor: (g, choices) => preferred(g, winogradBackwardData(g), choices),
  seeds: (g, choices) => registerSeeds(choices, (sg) => defaultWinogradConfig(winogradBackwardData(g), sg)),
  key: winogradConfigKey,
  uses,
  plan: (g, c, req, maxStorageBytes) => {
    if (req.gates.argmax || req.gates.reluAt) throw new Error(`${req.op} ${convKey(g, true)}: config ${winogradConfigKey(c)}: Winograd cannot gate its loads (use a register or shared-tile config)`);
    checkConvBackwardDataConfig(g, c);
    return winogradSteps(winogradPlan(winogradBackwardData(g), false, c, req.op, undefined, maxStorageBytes), forwardArgs({ op: req.op, bias: false }));
  },
};
