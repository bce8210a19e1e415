// The ops the autotuner knows: for each, the problem key, the candidate configs, how to
// run one on random inputs, its FLOP count, and a float64 reference for single output
// elements (so a candidate can be checked on the exact shape it is tuned for without
// computing the whole reference output).
import { createHash } from 'node:crypto';
import { ConvGeometry } from '../backend.js';
import { Tensor } from '../tensor.js';
import type { WebGPUBackend } from '../webgpu/backend.js';
import * as convOps from '../webgpu/ops/conv.js';
import * as linalgOps from '../webgpu/ops/linalg.js';
import * as conv from '../../kernels/conv/forward.js';
import * as convData from '../../kernels/conv/backwardData.js';
import * as convFilter from '../../kernels/conv/backwardFilter.js';
import * as convCommon from '../../kernels/conv/common.js';
import * as mm from '../../kernels/matmul/matmul.js';
import * as mmT from '../../kernels/matmul/transpose.js';
import * as mmShared from '../../kernels/matmul/sharedTile.js';
import * as convShared from '../../kernels/conv/sharedTile.js';
import * as cand from '../../kernels/candidates.js';
import { convKey } from '../../kernels/conv/common.js';
import type { MatmulShape } from '../../kernels/matmul/matmul.js';
import * as winograd from '../../kernels/conv/winograd.js';
import * as splitSum from '../../kernels/conv/splitSum.js';
import type { KernelChoices } from '../../kernels/algorithm.js';
import * as fwdAlgos from '../../kernels/algorithms/conv2d.js';
import * as dataAlgos from '../../kernels/algorithms/conv2dBackwardData.js';
import * as filterAlgos from '../../kernels/algorithms/conv2dBackwardFilter.js';
import * as mmAlgos from '../../kernels/algorithms/matmul.js';
import * as wgslWinograd from '../../kernels/algorithms/convWinograd.js';
import * as plan from '../webgpu/ops/plan.js';

export type TunableOpName = 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter' | 'matmul';

export type Problem = ConvGeometry | MatmulShape;

/**
 * Bump when a change to the kernels is not visible in the generator sources hashed below
 * (a generator's helpers must be listed too: String(f) holds only f's own body).
 */
const KERNEL_SET_VERSION = 1;

export type { KernelChoices };

/** An op the tuner measures: P its problem (a geometry), C its configs (the family's tagged union). */
export interface TunableOp<P extends Problem = Problem, C = unknown> {
  name: TunableOpName;
  key(p: P): string;
  /**
   * Every config the tuner may try (the op's default path is tried separately, as `null`).
   * `opts.precision` 'f16' adds the f16 configs (never by default); `opts.maxStorageBytes`
   * is the device's workgroup memory (default: the portable 16 KB).
   */
  candidates(p: P, opts?: cand.TileSpaceOptions): C[];
  /**
   * The config the op's default path uses on this backend (its subgroup and parallelism
   * settings), when that path is one candidate kernel (skipped as a duplicate).
   */
  defaultConfig(p: P, be: KernelChoices): C | null;
  /**
   * The starting point of each other algorithm (the workgroup-memory tiled kernels' GPU
   * defaults in the backend's precision, and for the convs the register defaults with and
   * without the backend's subgroup tiles): measured right after the default, whatever the
   * budget, so a search that climbs from the default cannot miss a whole algorithm.
   */
  seeds(p: P, be: KernelChoices): C[];
  /** What a config needs (f16 math: the probe allows its rounding). */
  uses(c: C): cand.KernelUses;
  flops(p: P): number;
  /** Input shapes, in the order run() takes them. */
  inputShapes(p: P): number[][];
  /** Records the op with `config` (null: the op's own default) and returns its output. */
  run(be: WebGPUBackend, p: P, inputs: Tensor[], config: C | null): Tensor;
  /** Output element `i` in float64 from the host copies of the inputs. */
  reference(p: P, host: Float32Array[], i: number): number;
  /** Generator code whose change invalidates measurements. */
  sources: unknown[];
}

export { convKey };

export function matmulKey(p: MatmulShape): string {
  return `${p.M}x${p.K}x${p.N}${p.transA ? ' A^T' : ''}${p.transB ? ' B^T' : ''}`;
}

/** The Winograd generators (their GEMM is matmulKernel, and the op code is convOps'). */
const WINOGRAD_SOURCES = [convCommon.blockStores, convCommon.poolWindow, convCommon.blockEpilogueDecls, winograd.winogradPlan, winograd.transform2d, winograd.inputT, winograd.filterT, winograd.outputT, winograd.filterTransformKernel, winograd.inputTransformKernel, winograd.outputTransformKernel, winograd.winogradTiling, winograd.winogradConfigSpace, winograd.defaultWinogradConfig, winograd.winogradPreferred, wgslWinograd.winogradSteps, mm.matmulKernel, mm.defaultMatmulConfig, mm.matmulConfigSpace];

const convFlops = (g: ConvGeometry) => 2 * g.N * g.Ho * g.Wo * g.Co * g.KH * g.KW * g.Ci;

/** The source of every method of a registry's algorithms. */
function algorithmSources(registry: readonly object[]): unknown[] {
  return registry.flatMap((a) => Object.values(a).filter((v) => typeof v === 'function'));
}

/** x[n, iy, ix, ci] or 0 outside the image. */
function xAt(g: ConvGeometry, x: Float32Array, n: number, iy: number, ix: number, ci: number): number {
  if (iy < 0 || ix < 0 || iy >= g.H || ix >= g.W) return 0;
  return x[((n * g.H + iy) * g.W + ix) * g.Ci + ci];
}

const conv2dOp: TunableOp<ConvGeometry, fwdAlgos.ConvForwardConfig> = {
  name: 'conv2d',
  key: (g) => convKey(g),
  candidates: (g, opts) => fwdAlgos.convForwardCandidates(g, opts),
  defaultConfig: (g, be) => fwdAlgos.defaultConvForward(g, be),
  seeds: (g, be) => fwdAlgos.convForwardSeeds(g, be),
  uses: (c) => cand.configUses('conv2d', c),
  flops: convFlops,
  inputShapes: (g) => {
    return [[g.N, g.H, g.W, g.Ci], [g.KH, g.KW, g.Ci, g.Co]];
  },
  run: (be, g, [x, w], config) => {
    return convOps.conv2d(be, x, w, null, { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }, config);
  },
  reference: (g, [x, w], i) => {
    const co = i % g.Co;
    const ox = Math.floor(i / g.Co) % g.Wo;
    const oy = Math.floor(i / (g.Co * g.Wo)) % g.Ho;
    const n = Math.floor(i / (g.Co * g.Wo * g.Ho));
    let s = 0;
    for (let ky = 0; ky < g.KH; ky++)
      for (let kx = 0; kx < g.KW; kx++)
        for (let ci = 0; ci < g.Ci; ci++) {
          s += xAt(g, x, n, oy * g.stride + ky - g.pad, ox * g.stride + kx - g.pad, ci) * w[((ky * g.KW + kx) * g.Ci + ci) * g.Co + co];
        }
    return s;
  },
  sources: [cand.convForwardCandidates, mmShared.subgroupMatrixTileConfigs, mmShared.sharedGemmCandidates, convShared.sharedGatherGemmKernel, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, mmShared.sharedTileConfigs, mmShared.sharedMatmulKernel, conv.convForwardKernel, conv.convForwardConfigSpace, conv.defaultConvForwardConfig, ...algorithmSources(fwdAlgos.CONV_FORWARD_ALGORITHMS), ...algorithmSources(mmAlgos.MATMUL_ALGORITHMS), fwdAlgos.convBlockForwardConfig, conv.convBlockConfig, conv.convBlockKernel, ...WINOGRAD_SOURCES, convCommon.gatherGemmKernel, convCommon.tileConfigs, convOps.conv2d, convOps.convBlock, plan.runPlan],
};

const conv2dBackwardDataOp: TunableOp<ConvGeometry, dataAlgos.ConvBackwardDataConfig> = {
  name: 'conv2dBackwardData',
  key: (g) => convKey(g),
  candidates: (g, opts) => dataAlgos.convBackwardDataCandidates(g, opts),
  defaultConfig: (g, be) => dataAlgos.defaultConvBackwardData(g, be),
  seeds: (g, be) => dataAlgos.convBackwardDataSeeds(g, be),
  uses: (c) => cand.configUses('conv2dBackwardData', c),
  flops: convFlops,
  inputShapes: (g) => {
    return [[g.N, g.Ho, g.Wo, g.Co], [g.KH, g.KW, g.Ci, g.Co]];
  },
  run: (be, g, [dy, w], config) => {
    return convOps.conv2dBackwardData(be, dy, w, [g.N, g.H, g.W, g.Ci], { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }, config);
  },
  reference: (g, [dy, w], i) => {
    const ci = i % g.Ci;
    const ix = Math.floor(i / g.Ci) % g.W;
    const iy = Math.floor(i / (g.Ci * g.W)) % g.H;
    const n = Math.floor(i / (g.Ci * g.W * g.H));
    let s = 0;
    for (let ky = 0; ky < g.KH; ky++) {
      const ty = iy + g.pad - ky;
      if (ty < 0 || ty % g.stride !== 0 || ty / g.stride >= g.Ho) continue;
      const oy = ty / g.stride;
      for (let kx = 0; kx < g.KW; kx++) {
        const tx = ix + g.pad - kx;
        if (tx < 0 || tx % g.stride !== 0 || tx / g.stride >= g.Wo) continue;
        const ox = tx / g.stride;
        const dyBase = ((n * g.Ho + oy) * g.Wo + ox) * g.Co;
        const wBase = ((ky * g.KW + kx) * g.Ci + ci) * g.Co;
        for (let co = 0; co < g.Co; co++) s += dy[dyBase + co] * w[wBase + co];
      }
    }
    return s;
  },
  sources: [cand.convBackwardDataCandidates, mmShared.subgroupMatrixTileConfigs, mmShared.sharedGemmCandidates, convShared.sharedGatherGemmKernel, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, mmShared.sharedTileConfigs, convData.convBackwardDataKernels, convData.backwardDataPhases, convData.filterTransposeKernel, convData.convBackwardDataConfigSpace, convData.defaultConvBackwardDataConfig, convData.convBlockBackwardDataKernels, convData.backwardDataSteps, ...algorithmSources(dataAlgos.CONV_BACKWARD_DATA_ALGORITHMS), ...algorithmSources(mmAlgos.MATMUL_ALGORITHMS), dataAlgos.gatedBackwardDataConfig, ...WINOGRAD_SOURCES, convCommon.gatherGemmKernel, convCommon.tileConfigs, convOps.conv2dBackwardData, convOps.convBlockBackwardData, plan.runPlan],
};

const conv2dBackwardFilterOp: TunableOp<ConvGeometry, filterAlgos.AnyConvBackwardFilterConfig> = {
  name: 'conv2dBackwardFilter',
  key: (g) => convKey(g),
  candidates: (g, opts) => filterAlgos.convBackwardFilterCandidates(g, opts),
  defaultConfig: (g, be) => filterAlgos.defaultConvBackwardFilter(g, be),
  seeds: (g, be) => filterAlgos.convBackwardFilterSeeds(g, be),
  uses: (c) => cand.configUses('conv2dBackwardFilter', c),
  flops: convFlops,
  inputShapes: (g) => {
    return [[g.N, g.H, g.W, g.Ci], [g.N, g.Ho, g.Wo, g.Co]];
  },
  run: (be, g, [x, dy], config) => {
    return convOps.conv2dBackwardFilter(be, x, dy, [g.KH, g.KW, g.Ci, g.Co], { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }, config);
  },
  reference: (g, [x, dy], i) => {
    const co = i % g.Co;
    const ci = Math.floor(i / g.Co) % g.Ci;
    const t = Math.floor(i / (g.Co * g.Ci));
    const ky = Math.floor(t / g.KW);
    const kx = t % g.KW;
    let s = 0;
    for (let n = 0; n < g.N; n++)
      for (let oy = 0; oy < g.Ho; oy++)
        for (let ox = 0; ox < g.Wo; ox++) {
          const v = xAt(g, x, n, oy * g.stride + ky - g.pad, ox * g.stride + kx - g.pad, ci);
          if (v !== 0) s += v * dy[((n * g.Ho + oy) * g.Wo + ox) * g.Co + co];
        }
    return s;
  },
  sources: [cand.convBackwardFilterCandidates, convShared.sharedBackwardFilterConfigSpace, convShared.sharedBackwardFilterKernels, ...algorithmSources(filterAlgos.CONV_BACKWARD_FILTER_ALGORITHMS), splitSum.backwardFilterSteps, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, convFilter.convBackwardFilterKernels, splitSum.splitSumKernel, convFilter.convBackwardFilterConfigSpace, convFilter.defaultConvBackwardFilterConfig, convCommon.tileConfigs, convOps.conv2dBackwardFilter, plan.runPlan],
};

const matmulOp: TunableOp<MatmulShape, mmAlgos.AnyMatmulConfig> = {
  name: 'matmul',
  key: (s) => matmulKey(s),
  candidates: (s, opts) => mmAlgos.matmulCandidates(s, opts),
  // With a large transposed B the default path transposes first: not one of the candidates.
  defaultConfig: (s, be) => mmAlgos.defaultMatmulAlgorithm(s, be),
  seeds: (s, be) => mmAlgos.matmulSeeds(s, be),
  uses: (c) => cand.configUses('matmul', c),
  flops: (s) => 2 * s.M * s.N * s.K,
  inputShapes: (s) => {
    return [s.transA ? [s.K, s.M] : [s.M, s.K], s.transB ? [s.N, s.K] : [s.K, s.N]];
  },
  run: (be, s, [a, b], config) => {
    return linalgOps.matmul(be, a, b, { transA: s.transA, transB: s.transB }, config);
  },
  reference: (s, [a, b], i) => {
    const row = Math.floor(i / s.N);
    const col = i % s.N;
    let acc = 0;
    for (let k = 0; k < s.K; k++) {
      const av = s.transA ? a[k * s.M + row] : a[row * s.K + k];
      const bv = s.transB ? b[col * s.K + k] : b[k * s.N + col];
      acc += av * bv;
    }
    return acc;
  },
  sources: [cand.matmulCandidates, mmShared.subgroupMatrixTileConfigs, mmShared.sharedGemmCandidates, mmShared.sharedMatmulKernel, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, mm.matmulKernel, mm.matmulConfigSpace, mm.defaultMatmulConfig, mm.transposeBFirst, mmT.transposeKernel, ...algorithmSources(mmAlgos.MATMUL_ALGORITHMS), mmAlgos.defaultMatmulPlan, linalgOps.matmul, plan.runPlan],
};

/** Each op's tunable definition, typed by its problem and config family. */
export interface TunableOps {
  conv2d: TunableOp<ConvGeometry, fwdAlgos.ConvForwardConfig>;
  conv2dBackwardData: TunableOp<ConvGeometry, dataAlgos.ConvBackwardDataConfig>;
  conv2dBackwardFilter: TunableOp<ConvGeometry, filterAlgos.AnyConvBackwardFilterConfig>;
  matmul: TunableOp<MatmulShape, mmAlgos.AnyMatmulConfig>;
}

export const TUNABLE_OPS: TunableOps = {
  conv2d: conv2dOp,
  conv2dBackwardData: conv2dBackwardDataOp,
  conv2dBackwardFilter: conv2dBackwardFilterOp,
  matmul: matmulOp,
};

/** An op's definition as the tuner handles any of them (problem and config not narrowed). */
export function tunableOp(name: TunableOpName): TunableOp {
  return TUNABLE_OPS[name];
}

/** Canonical JSON of a config (sorted keys): how configs are compared and stored. */
export function canonicalConfig(c: unknown): string {
  if (c === null || typeof c !== 'object') return JSON.stringify(c);
  const o = c as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalConfig(o[k])}`)
    .join(',')}}`;
}

/**
 * A short readable name of a config: its fields in order, e.g. rows=8 cols=2 vec4; a nested
 * config in parentheses. The register tiles' `algo` is left out, as before it was required.
 */
export function configLabel(c: unknown): string {
  if (c === null) return 'default';
  return Object.entries(c as Record<string, unknown>)
    .filter(([k, v]) => !(k === 'algo' && v === 'register'))
    .map(([k, v]) => (v === true ? k : v === false ? '' : v !== null && typeof v === 'object' ? `${k}(${configLabel(v)})` : `${k}=${String(v)}`))
    .filter(Boolean)
    .join(' ');
}

const sourceHashes = new Map<TunableOpName, string>();

/**
 * Hash of what an op's measurements depend on: the source text of its generators, config
 * space and op code (as the running program has them), and KERNEL_SET_VERSION. A change
 * to any of them makes earlier measurements stale.
 */
export function kernelSetHash(op: TunableOp): string {
  let h = sourceHashes.get(op.name);
  if (!h) {
    const hash = createHash('sha256').update(`v${KERNEL_SET_VERSION}/${op.name}`);
    for (const f of op.sources) hash.update(String(f));
    h = hash.digest('hex').slice(0, 16);
    sourceHashes.set(op.name, h);
  }
  return h;
}
