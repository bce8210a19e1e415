// conv2d forward as an implicit GEMM: rows = N*Ho*Wo output pixels, columns = Co, reduction
// = KH*KW*Ci, the activation operand gathered tap by tap (out-of-range taps read zero).
import { KernelSpec } from '../spec.js';
import {
  ConvShape,
  ConvTileConfig,
  checkTileConfig,
  defaultTile,
  gatherGemmKernel,
  shapeKey,
  tileConfigKey,
  tileConfigs,
} from './common.js';

export type ConvForwardConfig = ConvTileConfig;

/** Every config the autotuner may try for this shape; each one is correct for it. */
export function convForwardConfigSpace(s: ConvShape): ConvForwardConfig[] {
  return tileConfigs(s.Co, s.N * s.Ho * s.Wo, () => s.Ci % 4 === 0);
}

/** The config used without tuning (see defaultTile). */
export function defaultConvForwardConfig(s: ConvShape): ConvForwardConfig {
  const vec4 = s.Co % 4 === 0;
  return defaultTile(vec4 ? s.Co / 4 : s.Co, s.N * s.Ho * s.Wo, vec4);
}

export function checkConvForwardConfig(s: ConvShape, c: ConvForwardConfig): void {
  checkTileConfig(`conv2d ${shapeKey(s)}`, c);
  if (c.vec4 && s.Co % 4 !== 0) throw new Error(`conv2d ${shapeKey(s)}: config ${tileConfigKey(c)} needs Co % 4 == 0`);
  if (c.kVec && s.Ci % 4 !== 0) throw new Error(`conv2d ${shapeKey(s)}: config ${tileConfigKey(c)} needs Ci % 4 == 0`);
}

/** y = conv2d(x, w) (+ bias). Bindings: x, w, [bias], y. */
export function convForwardKernel(s: ConvShape, bias: boolean, cfg: ConvForwardConfig = defaultConvForwardConfig(s)): KernelSpec {
  checkConvForwardConfig(s, cfg);
  return gatherGemmKernel(
    {
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
    },
    cfg,
  );
}
