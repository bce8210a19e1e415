// conv2d forward as an implicit GEMM: rows = N*Ho*Wo output pixels, columns = Co, reduction
// = KH*KW*Ci, the activation operand gathered tap by tap (out-of-range taps read zero).
import { KernelSpec } from '../spec.js';
import {
  BlockEpilogue,
  ConvGeometry,
  ConvTileConfig,
  checkTileConfig,
  defaultTile,
  GatherGemm,
  gatherGemmKernel,
  convKey,
  tileConfigKey,
  tileConfigs,
} from './common.js';
import { sharedGatherGemmKernel } from './sharedTile.js';
import { SharedTileConfig, sharedTileConfigKey } from '../matmul/sharedTile.js';
import type { MatmulShape } from '../matmul/matmul.js';
import { AnyMatmulConfig, anyMatmulConfigKey } from '../algorithms/matmul.js';
import type { ConvForwardConfig } from '../algorithms/conv2d.js';
import { ConvWinogradConfig, winogradConfigKey, checkWinogradGemm, winogradForward, winogradGemmShape, winogradProblem } from './winograd.js';

export type { ConvForwardConfig };

/** The configs this file checks and generates (the registry's union may hold more algorithms). */
type ForwardGeneratorConfig = ConvTileConfig | SharedTileConfig | ConvMatmulConfig | ConvWinogradConfig;

/**
 * A 1x1, stride-1, unpadded conv2d is exactly the matmul [N*H*W, Ci] x [Ci, Co] on the same
 * buffers: this runs it with that matmul config (the bias, if any, in an epilogue or an
 * addBias pass; engine/webgpu/ops/conv.ts).
 */
export interface ConvMatmulConfig {
  algo: 'matmul';
  matmul: AnyMatmulConfig;
}

/** Whether the conv is a plain matmul on its buffers (the 'matmul' algorithm applies). */
export function convIsMatmul(s: ConvGeometry): boolean {
  return s.KH === 1 && s.KW === 1 && s.stride === 1 && s.pad === 0;
}

/** The matmul a 1x1 conv is: [N*H*W, Ci] x [Ci, Co]. */
export function convAsMatmulShape(s: ConvGeometry): MatmulShape {
  return { M: s.N * s.H * s.W, K: s.Ci, N: s.Co, transA: false, transB: false };
}

/**
 * Every config the autotuner may try for this shape; each one is correct for it. With
 * `subgroup` (the device's fixed subgroup size) the subgroup-shared tiles too.
 */
export function convForwardConfigSpace(s: ConvGeometry, subgroup?: number): ConvTileConfig[] {
  return tileConfigs(s.Co, s.N * s.Ho * s.Wo, () => s.Ci % 4 === 0, subgroup);
}

/** The config used without tuning (see defaultTile; `subgroup`: share the activation loads). */
export function defaultConvForwardConfig(s: ConvGeometry, subgroup?: number): ConvTileConfig {
  const vec4 = s.Co % 4 === 0;
  return defaultTile(vec4 ? s.Co / 4 : s.Co, s.N * s.Ho * s.Wo, vec4, subgroup);
}

export function checkConvForwardConfig(s: ConvGeometry, c: ForwardGeneratorConfig): void {
  if (c.algo === 'winograd') {
    const problem = winogradProblem(s);
    if (problem) throw new Error(`conv2d ${convKey(s, true)}: config ${winogradConfigKey(c)}: Winograd F(2x2,3x3) ${problem}`);
    checkWinogradGemm(winogradGemmShape(winogradForward(s), c.chunk), c.matmul, Infinity);
    return;
  }
  if (c.algo === 'matmul') {
    if (!convIsMatmul(s)) throw new Error(`conv2d ${convKey(s, true)}: config mm-${anyMatmulConfigKey(c.matmul)} needs a 1x1 kernel, stride 1, pad 0`);
    return;
  }
  if (c.algo === 'shared') {
    if (c.vec4 && s.Co % 4 !== 0) throw new Error(`conv2d ${convKey(s, true)}: config ${sharedTileConfigKey(c)} needs Co % 4 == 0`);
    return;
  }
  checkTileConfig(`conv2d ${convKey(s, true)}`, c);
  if (c.vec4 && s.Co % 4 !== 0) throw new Error(`conv2d ${convKey(s, true)}: config ${tileConfigKey(c)} needs Co % 4 == 0`);
  if (c.kVec && s.Ci % 4 !== 0) throw new Error(`conv2d ${convKey(s, true)}: config ${tileConfigKey(c)} needs Ci % 4 == 0`);
}

/**
 * y = conv2d(x, w) (+ bias). Bindings: x, w, [bias], y. The 'matmul' algorithm is not one
 * kernel of this family: its caller runs the matmul (see ConvMatmulConfig).
 */
export function convForwardKernel(s: ConvGeometry, bias: boolean, cfg: ForwardGeneratorConfig = defaultConvForwardConfig(s), maxStorageBytes?: number): KernelSpec {
  checkConvForwardConfig(s, cfg);
  if (cfg.algo === 'matmul' || cfg.algo === 'winograd') throw new Error(`conv2d ${convKey(s, true)}: the '${cfg.algo}' algorithm is not one kernel (see its config type)`);
  const gemm = forwardGemm(s, bias);
  return cfg.algo === 'shared' ? sharedGatherGemmKernel(gemm, cfg, maxStorageBytes) : gatherGemmKernel(gemm, cfg);
}

function epilogueKey(e: BlockEpilogue): string {
  return ['pool', 'add', 'relu', 'residual'].filter((k) => e[k as keyof BlockEpilogue]).join('+') || 'plain';
}

/** Why a register config cannot run this conv block, or null. */
export function blockConfigProblem(s: ConvGeometry, e: BlockEpilogue, c: ConvTileConfig): string | null {
  try {
    checkConvForwardConfig(s, c);
  } catch (err) {
    return (err as Error).message;
  }
  if (e.pool && c.rows % 4 !== 0) return `pooling needs rows per invocation % 4 == 0, got ${c.rows}`;
  return null;
}

/**
 * The config a conv block runs with: the plain conv2d's (tuned) config of the same geometry
 * when the fused kernel can run it, else the default register tile (at least 4 rows with
 * pool). The fused kernel is register-blocked only: the shared-tile template strides an
 * invocation's rows across the tile, so a pooling window is not in one invocation, and the
 * 'matmul' and 'winograd' algorithms are different kernel families. `subgroup` as for defaultConvForwardConfig.
 */
export function convBlockConfig(s: ConvGeometry, e: BlockEpilogue, tuned?: ConvForwardConfig, subgroup?: number): ConvTileConfig {
  if (tuned && tuned.algo === 'register' && blockConfigProblem(s, e, tuned) === null) return tuned;
  const vec4 = s.Co % 4 === 0;
  const rowsTotal = e.pool ? s.N * Math.floor(s.Ho / 2) * Math.floor(s.Wo / 2) * 4 : s.N * s.Ho * s.Wo;
  const c = defaultTile(vec4 ? s.Co / 4 : s.Co, rowsTotal, vec4, subgroup);
  return e.pool ? { ...c, rows: Math.max(4, c.rows) } : c;
}

/**
 * A conv block in one kernel: conv2d + bias, then the epilogue (pool, add, ReLU, residual).
 * Bindings: x, w, [bias], [add], a, [argmax (u32, with pool)], [h (relu)], [r (residual)].
 */
export function convBlockKernel(s: ConvGeometry, bias: boolean, e: BlockEpilogue, cfg: ConvTileConfig = convBlockConfig(s, e)): KernelSpec {
  const problem = blockConfigProblem(s, e, cfg);
  if (problem) throw new Error(`convBlock ${convKey(s, true)}: config ${tileConfigKey(cfg)}: ${problem}`);
  const Hp = Math.floor(s.Ho / 2);
  const Wp = Math.floor(s.Wo / 2);
  if (e.pool && (Hp === 0 || Wp === 0)) throw new Error(`convBlock ${convKey(s, true)}: a 2x2 pool needs a conv output of at least 2x2`);
  const gemm: GatherGemm = {
    ...forwardGemm(s, bias),
    name: 'convBlock',
    comment: `convBlock ${convKey(s, true)}${bias ? ' +bias' : ''} ${epilogueKey(e)}`,
    epilogue: e,
  };
  if (e.pool) {
    gemm.phases = [{ ...gemm.phases[0], destH: Hp, destW: Wp }];
    gemm.outH = Hp;
    gemm.outW = Wp;
  }
  return gatherGemmKernel(gemm, cfg);
}

export function forwardGemm(s: ConvGeometry, bias: boolean): GatherGemm {
  return {
    name: 'conv2d',
    comment: `conv2d ${convKey(s, true)}${bias ? ' +bias' : ''}`,
    N: s.N,
    phases: [
      { destH: s.Ho, destW: s.Wo, outY0: 0, outX0: 0, nTy: s.KH, yBase: -s.pad, ky0: 0, nTx: s.KW, xBase: -s.pad, kx0: 0 },
    ],
    outH: s.Ho,
    outW: s.Wo,
    outStep: 1,
    srcH: s.H,
    srcW: s.W,
    srcStep: s.stride,
    K: s.Ci,
    colsN: s.Co,
    KW: s.KW,
    yDir: 1,
    kyStep: 1,
    xDir: 1,
    kxStep: 1,
    bias,
  };
}
