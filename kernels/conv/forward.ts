// conv2d forward as an implicit GEMM: rows = N*Ho*Wo output pixels, columns = Co, reduction
// = KH*KW*Ci, the activation operand gathered tap by tap (out-of-range taps read zero).
import { KernelSpec } from '../spec.js';
import {
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
import { SharedTileConfig, sharedTileConfigKey, sharedTileConfigs } from '../matmul/sharedTile.js';
import { AnyMatmulConfig, MatmulShape, anyMatmulConfigKey } from '../matmul/matmul.js';

/**
 * A 1x1, stride-1, unpadded conv2d is exactly the matmul [N*H*W, Ci] x [Ci, Co] on the same
 * buffers: this runs it with that matmul config (the bias, if any, in an epilogue or an
 * addBias pass; engine/webgpu/ops/conv.ts).
 */
export interface ConvMatmulConfig {
  algo: 'matmul';
  matmul: AnyMatmulConfig;
}

/** Register-blocked implicit GEMM (no `algo`), workgroup-memory tiled ('shared'), or 1x1 as matmul. */
export type ConvForwardConfig = ConvTileConfig | SharedTileConfig | ConvMatmulConfig;

export function convForwardConfigKey(c: ConvForwardConfig): string {
  if (c.algo === 'shared') return sharedTileConfigKey(c);
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

/** The workgroup-memory tiled configs for this shape (for discrete GPUs). */
export function sharedConvForwardConfigSpace(s: ConvShape): SharedTileConfig[] {
  return sharedTileConfigs(s.N * s.Ho * s.Wo, s.Co);
}

/** Every config the autotuner may try for this shape; each one is correct for it. */
export function convForwardConfigSpace(s: ConvShape): ConvTileConfig[] {
  return tileConfigs(s.Co, s.N * s.Ho * s.Wo, () => s.Ci % 4 === 0);
}

/** The config used without tuning (see defaultTile). */
export function defaultConvForwardConfig(s: ConvShape): ConvTileConfig {
  const vec4 = s.Co % 4 === 0;
  return defaultTile(vec4 ? s.Co / 4 : s.Co, s.N * s.Ho * s.Wo, vec4);
}

export function checkConvForwardConfig(s: ConvShape, c: ConvForwardConfig): void {
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
export function convForwardKernel(s: ConvShape, bias: boolean, cfg: ConvForwardConfig = defaultConvForwardConfig(s)): KernelSpec {
  checkConvForwardConfig(s, cfg);
  if (cfg.algo === 'matmul') throw new Error(`conv2d ${shapeKey(s)}: the 'matmul' algorithm runs as a matmul, not a conv kernel`);
  const gemm: GatherGemm = {
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
  return cfg.algo === 'shared' ? sharedGatherGemmKernel(gemm, cfg) : gatherGemmKernel(gemm, cfg);
}
