// conv2d forward as an implicit GEMM: rows = N*Ho*Wo output pixels, columns = Co, reduction
// = KH*KW*Ci, the activation operand gathered tap by tap (out-of-range taps read zero).
import { KernelSpec } from '../spec.js';
import {
  BlockEpilogue,
  ConvShape,
  ConvTileConfig,
  checkTileConfig,
  defaultTile,
  GatherGemm,
  gatherGemmKernel,
  shapeKey,
  tileConfigKey,
  tileConfigs,
} from './common.js';
import { sharedGatherGemmKernel } from './sharedTile.js';
import { SharedTileConfig, TileSpaceOptions, sharedTileConfigKey } from '../matmul/sharedTile.js';
import { AnyMatmulConfig, MatmulShape, anyMatmulConfigKey } from '../matmul/matmul.js';
import {
  ConvWinogradConfig,
  defaultWinogradConfig,
  winogradConfigKey,
  checkWinogradGemm,
  winogradConfigSpace,
  winogradForward,
  winogradGemmShape,
  winogradPreferred,
  winogradProblem,
} from './winograd.js';

/**
 * A 1x1, stride-1, unpadded conv2d is exactly the matmul [N*H*W, Ci] x [Ci, Co] on the same
 * buffers: this runs it with that matmul config (the bias, if any, in an epilogue or an
 * addBias pass; engine/webgpu/ops/conv.ts).
 */
export interface ConvMatmulConfig {
  algo: 'matmul';
  matmul: AnyMatmulConfig;
}

/**
 * Register-blocked implicit GEMM (no `algo`), workgroup-memory tiled ('shared'), 1x1 as
 * matmul, or (3x3 stride 1) Winograd F(2x2, 3x3) (kernels/conv/winograd.ts).
 */
export type ConvForwardConfig = ConvTileConfig | SharedTileConfig | ConvMatmulConfig | ConvWinogradConfig;

export function convForwardConfigKey(c: ConvForwardConfig): string {
  if (c.algo === 'shared') return sharedTileConfigKey(c);
  if (c.algo === 'winograd') return winogradConfigKey(c);
  if (c.algo === 'matmul') return `mm-${anyMatmulConfigKey(c.matmul)}`;
  return tileConfigKey(c);
}

/** Whether the conv is a plain matmul on its buffers (the 'matmul' algorithm applies). */
export function convIsMatmul(s: ConvShape): boolean {
  return s.KH === 1 && s.KW === 1 && s.stride === 1 && s.pad === 0;
}

/** The matmul a 1x1 conv is: [N*H*W, Ci] x [Ci, Co]. */
export function convAsMatmulShape(s: ConvShape): MatmulShape {
  return { M: s.N * s.H * s.W, K: s.Ci, N: s.Co, transA: false, transB: false };
}

/**
 * Every config the autotuner may try for this shape; each one is correct for it. With
 * `subgroup` (the device's fixed subgroup size) the subgroup-shared tiles too.
 */
export function convForwardConfigSpace(s: ConvShape, subgroup?: number): ConvTileConfig[] {
  return tileConfigs(s.Co, s.N * s.Ho * s.Wo, () => s.Ci % 4 === 0, subgroup);
}

/** The config used without tuning (see defaultTile; `subgroup`: share the activation loads). */
export function defaultConvForwardConfig(s: ConvShape, subgroup?: number): ConvTileConfig {
  const vec4 = s.Co % 4 === 0;
  return defaultTile(vec4 ? s.Co / 4 : s.Co, s.N * s.Ho * s.Wo, vec4, subgroup);
}

/**
 * The config the op's default path runs: with `winograd` (the backend lets defaults use it)
 * Winograd where winogradPreferred says so, else the register default.
 */
export function defaultConvForwardAlgorithm(s: ConvShape, subgroup?: number, winograd = false): ConvTileConfig | ConvWinogradConfig {
  const p = winogradForward(s);
  return winograd && winogradPreferred(s, p, subgroup) ? defaultWinogradConfig(p, subgroup) : defaultConvForwardConfig(s, subgroup);
}

/** The Winograd configs for this shape (none unless 3x3 stride 1); `opts` as for the other spaces. */
export function winogradForwardConfigSpace(s: ConvShape, opts: TileSpaceOptions = {}): ConvWinogradConfig[] {
  return winogradProblem(s) === null ? winogradConfigSpace(winogradForward(s), opts) : [];
}

export function checkConvForwardConfig(s: ConvShape, c: ConvForwardConfig): void {
  if (c.algo === 'winograd') {
    const problem = winogradProblem(s);
    if (problem) throw new Error(`conv2d ${shapeKey(s)}: config ${winogradConfigKey(c)}: Winograd F(2x2,3x3) ${problem}`);
    checkWinogradGemm(winogradGemmShape(winogradForward(s), c.chunk), c.matmul, Infinity);
    return;
  }
  if (c.algo === 'matmul') {
    if (!convIsMatmul(s)) throw new Error(`conv2d ${shapeKey(s)}: config ${convForwardConfigKey(c)} needs a 1x1 kernel, stride 1, pad 0`);
    return;
  }
  if (c.algo === 'shared') {
    if (c.vec4 && s.Co % 4 !== 0) throw new Error(`conv2d ${shapeKey(s)}: config ${sharedTileConfigKey(c)} needs Co % 4 == 0`);
    return;
  }
  checkTileConfig(`conv2d ${shapeKey(s)}`, c);
  if (c.vec4 && s.Co % 4 !== 0) throw new Error(`conv2d ${shapeKey(s)}: config ${tileConfigKey(c)} needs Co % 4 == 0`);
  if (c.kVec && s.Ci % 4 !== 0) throw new Error(`conv2d ${shapeKey(s)}: config ${tileConfigKey(c)} needs Ci % 4 == 0`);
}

/**
 * y = conv2d(x, w) (+ bias). Bindings: x, w, [bias], y. The 'matmul' algorithm is not one
 * kernel of this family: its caller runs the matmul (see ConvMatmulConfig).
 */
export function convForwardKernel(s: ConvShape, bias: boolean, cfg: ConvForwardConfig = defaultConvForwardConfig(s), maxStorageBytes?: number): KernelSpec {
  checkConvForwardConfig(s, cfg);
  if (cfg.algo === 'matmul' || cfg.algo === 'winograd') throw new Error(`conv2d ${shapeKey(s)}: the '${cfg.algo}' algorithm is not one kernel (see its config type)`);
  const gemm = forwardGemm(s, bias);
  return cfg.algo === 'shared' ? sharedGatherGemmKernel(gemm, cfg, maxStorageBytes) : gatherGemmKernel(gemm, cfg);
}

function epilogueKey(e: BlockEpilogue): string {
  return ['pool', 'add', 'relu', 'residual'].filter((k) => e[k as keyof BlockEpilogue]).join('+') || 'plain';
}

/** Why a register config cannot run this conv block, or null. */
function blockConfigProblem(s: ConvShape, e: BlockEpilogue, c: ConvTileConfig): string | null {
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
export function convBlockConfig(s: ConvShape, e: BlockEpilogue, tuned?: ConvForwardConfig, subgroup?: number): ConvTileConfig {
  if (tuned && (tuned.algo === undefined || tuned.algo === 'register') && blockConfigProblem(s, e, tuned) === null) return tuned;
  const vec4 = s.Co % 4 === 0;
  const rowsTotal = e.pool ? s.N * Math.floor(s.Ho / 2) * Math.floor(s.Wo / 2) * 4 : s.N * s.Ho * s.Wo;
  const c = defaultTile(vec4 ? s.Co / 4 : s.Co, rowsTotal, vec4, subgroup);
  return e.pool ? { ...c, rows: Math.max(4, c.rows) } : c;
}

/**
 * A conv block in one kernel: conv2d + bias, then the epilogue (pool, add, ReLU, residual).
 * Bindings: x, w, [bias], [add], a, [argmax (u32, with pool)], [h (relu)], [r (residual)].
 */
export function convBlockKernel(s: ConvShape, bias: boolean, e: BlockEpilogue, cfg: ConvTileConfig = convBlockConfig(s, e)): KernelSpec {
  const problem = blockConfigProblem(s, e, cfg);
  if (problem) throw new Error(`convBlock ${shapeKey(s)}: config ${tileConfigKey(cfg)}: ${problem}`);
  const Hp = Math.floor(s.Ho / 2);
  const Wp = Math.floor(s.Wo / 2);
  if (e.pool && (Hp === 0 || Wp === 0)) throw new Error(`convBlock ${shapeKey(s)}: a 2x2 pool needs a conv output of at least 2x2`);
  const gemm: GatherGemm = {
    ...forwardGemm(s, bias),
    name: 'convBlock',
    comment: `convBlock ${shapeKey(s)}${bias ? ' +bias' : ''} ${epilogueKey(e)}`,
    epilogue: e,
  };
  if (e.pool) {
    gemm.phases = [{ ...gemm.phases[0], destH: Hp, destW: Wp }];
    gemm.outH = Hp;
    gemm.outW = Wp;
  }
  return gatherGemmKernel(gemm, cfg);
}

function forwardGemm(s: ConvShape, bias: boolean): GatherGemm {
  return {
    name: 'conv2d',
    comment: `conv2d ${shapeKey(s)}${bias ? ' +bias' : ''}`,
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
