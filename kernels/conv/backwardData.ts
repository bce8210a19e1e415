// conv2d backward-data: the transposed convolution as an implicit GEMM over (ky, kx, co),
// gathering from dy. rows = input pixels, columns = Ci, reduction = taps x Co.
//
// With stride s the input pixels split into s*s phases (iy % s, ix % s); within a phase
// the taps that reach it are fixed (those with (iy + pad - ky) % s == 0) and the dy pixel
// a tap reads is the phase coordinate plus a constant, so each phase is a stride-1 gather
// GEMM over its own taps only: no lane walks a tap that cannot contribute (for 3x3 stride
// 2 that is 9 taps -> 2.25 on average). The phases share one kernel and one dispatch, each
// owning whole workgroups, so the shader is compiled once, not s*s times (shader
// compilation on lavapipe takes seconds).
//
// The filter is first transposed to [KH, KW, Co, Ci], so the GEMM's B operand is read
// along Ci with adjacent lanes on adjacent addresses, as in the forward kernel.
import { KernelSpec, ceilDiv, grid, linearGroupIndex } from '../spec.js';
import type { BufferRef, KernelPlan } from '../algorithm.js';
import {
  ConvBackwardDataRequest,
  ConvGeometry,
  ConvTileConfig,
  GatherGemm,
  GatherPhase,
  SourceGates,
  checkTileConfig,
  defaultTile,
  gatherGemmKernel,
  convKey,
  tileConfigKey,
  tileConfigs,
} from './common.js';
import { sharedGatherGemmKernel } from './sharedTile.js';
import { SharedTileConfig, sharedTileConfigKey } from '../matmul/sharedTile.js';
import { ConvWinogradConfig, winogradBackwardData, winogradConfigKey, checkWinogradGemm, winogradGemmShape, winogradProblem } from './winograd.js';
import type { ConvBackwardDataConfig } from '../algorithms/conv2dBackwardData.js';

export type { ConvBackwardDataConfig };

/** The configs this file checks and generates (the registry's union may hold more algorithms). */
type DataGeneratorConfig = ConvTileConfig | SharedTileConfig | ConvWinogradConfig;

/** `subgroup`: the device's fixed subgroup size, which adds the subgroup-shared tiles. */
export function convBackwardDataConfigSpace(s: ConvGeometry, subgroup?: number): ConvTileConfig[] {
  return tileConfigs(s.Ci, s.N * Math.ceil(s.H / s.stride) * Math.ceil(s.W / s.stride), () => s.Co % 4 === 0, subgroup);
}

/** The config used without tuning (see defaultTile); rows are counted per phase. */
export function defaultConvBackwardDataConfig(s: ConvGeometry, subgroup?: number): ConvTileConfig {
  const vec4 = s.Ci % 4 === 0;
  return defaultTile(vec4 ? s.Ci / 4 : s.Ci, s.N * Math.ceil(s.H / s.stride) * Math.ceil(s.W / s.stride), vec4, subgroup);
}

export function checkConvBackwardDataConfig(s: ConvGeometry, c: DataGeneratorConfig): void {
  if (c.algo === 'winograd') {
    const problem = winogradProblem(s);
    if (problem) throw new Error(`conv2dBackwardData ${convKey(s, true)}: config ${winogradConfigKey(c)}: Winograd F(2x2,3x3) ${problem}`);
    checkWinogradGemm(winogradGemmShape(winogradBackwardData(s), c.chunk), c.matmul, Infinity);
    return;
  }
  if (c.algo === 'shared') {
    if (c.vec4 && s.Ci % 4 !== 0) throw new Error(`conv2dBackwardData ${convKey(s, true)}: config ${sharedTileConfigKey(c)} needs Ci % 4 == 0`);
    return;
  }
  checkTileConfig(`conv2dBackwardData ${convKey(s, true)}`, c);
  if (c.vec4 && s.Ci % 4 !== 0) throw new Error(`conv2dBackwardData ${convKey(s, true)}: config ${tileConfigKey(c)} needs Ci % 4 == 0`);
  if (c.kVec && s.Co % 4 !== 0) throw new Error(`conv2dBackwardData ${convKey(s, true)}: config ${tileConfigKey(c)} needs Co % 4 == 0`);
}

/** wT[t, co, ci] = w[t, ci, co] for the KH*KW taps t. Bindings: w, wT. */
export function filterTransposeKernel(s: ConvGeometry): KernelSpec {
  const total = s.KH * s.KW * s.Ci * s.Co;
  const wg = 64;
  const groups = ceilDiv(total, wg);
  const wgsl = `// conv2d filter transpose [${s.KH},${s.KW},${s.Ci},${s.Co}] -> [${s.KH},${s.KW},${s.Co},${s.Ci}]
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> wT: array<f32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${total}u) { return; }
  let t = i / ${s.Ci * s.Co}u;
  let co = (i / ${s.Ci}u) % ${s.Co}u;
  let ci = i % ${s.Ci}u;
  wT[i] = w[(t * ${s.Ci}u + ci) * ${s.Co}u + co];
}`;
  return { name: 'conv2dFilterTranspose', wgsl, bindings: ['read', 'rw'], workgroups: grid(groups) };
}

export interface ConvBackwardDataPlan {
  /** Run first: w -> wT (a scratch tensor of KH*KW*Ci*Co floats). */
  transpose: KernelSpec;
  /** Then this, bindings dy, wT, dx: writes every element of dx. */
  gemm: KernelSpec;
}

/** A backward-data plan's steps: w -> wT (scratch), then dy, wT, [gates] -> dx. */
export function backwardDataSteps(s: ConvGeometry, p: ConvBackwardDataPlan, req: ConvBackwardDataRequest): KernelPlan {
  const gates: BufferRef[] = [];
  if (req.gates.argmax) gates.push({ in: 2 + gates.length });
  if (req.gates.reluAt) gates.push({ in: 2 + gates.length });
  return {
    tmp: [s.KH * s.KW * s.Co * s.Ci],
    steps: [
      { kernel: p.transpose, args: [{ in: 1 }, { tmp: 0 }] },
      { kernel: p.gemm, args: [{ in: 0 }, { tmp: 0 }, ...gates, { out: 0 }] },
    ],
  };
}

/** The s*s phases of the input grid and, for each, the taps that reach it. */
export function backwardDataPhases(s: ConvGeometry): GatherPhase[] {
  const st = s.stride;
  const phases: GatherPhase[] = [];
  for (let py = 0; py < st; py++) {
    for (let px = 0; px < st; px++) {
      // Taps with (py + pad - ky) % st == 0 reach this phase: ky = ky0, ky0 + st, ...
      const ky0 = (py + s.pad) % st;
      const kx0 = (px + s.pad) % st;
      phases.push({
        destH: ceilDiv(s.H - py, st),
        destW: ceilDiv(s.W - px, st),
        outY0: py,
        outX0: px,
        nTy: ky0 < s.KH ? ceilDiv(s.KH - ky0, st) : 0,
        // dy row = (iy + pad - ky) / st = qy + (py + pad - ky0) / st - ty
        yBase: (py + s.pad - ky0) / st,
        ky0,
        nTx: kx0 < s.KW ? ceilDiv(s.KW - kx0, st) : 0,
        xBase: (px + s.pad - kx0) / st,
        kx0,
      });
    }
  }
  return phases;
}

/** dx = conv2d^T(dy, w), as the kernels to run in order. */
export function convBackwardDataKernels(s: ConvGeometry, cfg: DataGeneratorConfig = defaultConvBackwardDataConfig(s), maxStorageBytes?: number): ConvBackwardDataPlan {
  return convBlockBackwardDataKernels(s, { argmax: false, reluAt: false }, cfg, maxStorageBytes);
}

/**
 * The backward-data of a conv block: conv2d^T of dy gated on the way in (common.ts
 * SourceGates: the ReLU's mask and the pool's routing fused into the GEMM's loads, so no
 * conv-shaped gradient is ever written). The gemm's bindings: dy, wT, [argmax], [reluAt], dx;
 * with argmax, dy, argmax and reluAt are at the pooled grid. Both algorithms take the gates.
 */
export function convBlockBackwardDataKernels(
  s: ConvGeometry,
  gates: SourceGates,
  cfg: DataGeneratorConfig = defaultConvBackwardDataConfig(s),
  /** The device's workgroup memory, for the shared-tile algorithm (default: the portable 16 KB). */
  maxStorageBytes?: number,
): ConvBackwardDataPlan {
  checkConvBackwardDataConfig(s, cfg);
  if (cfg.algo === 'winograd') throw new Error(`conv2dBackwardData ${convKey(s, true)}: the 'winograd' algorithm is not one gather GEMM (kernels/conv/winograd.ts)`);
  const gated = gates.argmax || gates.reluAt;
  if (gates.argmax && (s.Ho < 2 || s.Wo < 2)) throw new Error(`convBlockBackwardData ${convKey(s, true)}: a 2x2 pool needs a conv output of at least 2x2`);
  const gateKey = [gates.reluAt ? 'relu' : '', gates.argmax ? 'pool' : ''].filter(Boolean).join('+');
  const gemm: GatherGemm = {
    name: gated ? 'convBlockBackwardData' : 'conv2dBackwardData',
    comment: `${gated ? 'convBlockBackwardData' : 'conv2dBackwardData'} ${convKey(s, true)}${gated ? ` gates ${gateKey}` : ''}`,
    srcGates: gated ? gates : undefined,
    N: s.N,
    phases: backwardDataPhases(s),
    outH: s.H,
    outW: s.W,
    outStep: s.stride,
    srcH: s.Ho,
    srcW: s.Wo,
    srcStep: 1,
    K: s.Co,
    colsN: s.Ci,
    KW: s.KW,
    yDir: -1,
    kyStep: s.stride,
    xDir: -1,
    kxStep: s.stride,
    bias: false,
  };
  const kernel = cfg.algo === 'shared' ? sharedGatherGemmKernel(gemm, cfg, maxStorageBytes) : gatherGemmKernel(gemm, cfg);
  return { transpose: filterTransposeKernel(s), gemm: kernel };
}
