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
import * as winograd from '../../kernels/conv/winograd.js';

export type TunableOpName = 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter' | 'matmul';

export interface MatmulProblem {
  M: number;
  K: number;
  N: number;
  transA: boolean;
  transB: boolean;
}

export type Problem = ConvGeometry | MatmulProblem;

/**
 * Bump when a change to the kernels is not visible in the generator sources hashed below
 * (a generator's helpers must be listed too: String(f) holds only f's own body).
 */
const KERNEL_SET_VERSION = 1;

/** What a backend decides about its kernels: what defaults and seeds depend on (a WebGPUBackend has them). */
export type KernelChoices = Pick<WebGPUBackend, 'precision' | 'subgroupTiles' | 'defaultTileSubgroup' | 'parallelism' | 'winogradDefaults'>;

export interface TunableOp {
  name: TunableOpName;
  key(p: Problem): string;
  /**
   * Every config the tuner may try (the op's default path is tried separately, as `null`).
   * `opts.precision` 'f16' adds the f16 configs (never by default); `opts.maxStorageBytes`
   * is the device's workgroup memory (default: the portable 16 KB).
   */
  candidates(p: Problem, opts?: cand.TileSpaceOptions): unknown[];
  /**
   * The config the op's default path uses on this backend (its subgroup and parallelism
   * settings), when that path is one candidate kernel (skipped as a duplicate).
   */
  defaultConfig(p: Problem, be: KernelChoices): unknown | null;
  /**
   * The starting point of each other algorithm (the workgroup-memory tiled kernels' GPU
   * defaults in the backend's precision, and for the convs the register defaults with and
   * without the backend's subgroup tiles): measured right after the default, whatever the
   * budget, so a search that climbs from the default cannot miss a whole algorithm.
   */
  seeds(p: Problem, be: KernelChoices): unknown[];
  flops(p: Problem): number;
  /** Input shapes, in the order run() takes them. */
  inputShapes(p: Problem): number[][];
  /** Records the op with `config` (null: the op's own default) and returns its output. */
  run(be: WebGPUBackend, p: Problem, inputs: Tensor[], config: unknown | null): Tensor;
  /** Output element `i` in float64 from the host copies of the inputs. */
  reference(p: Problem, host: Float32Array[], i: number): number;
  /** Generator code whose change invalidates measurements. */
  sources: unknown[];
}

export function convKey(g: ConvGeometry): string {
  return `${g.N}x${g.H}x${g.W}x${g.Ci}->${g.Co} k${g.KH}x${g.KW} s${g.stride} p${g.pad}`;
}

export function matmulKey(p: MatmulProblem): string {
  return `${p.M}x${p.K}x${p.N}${p.transA ? ' A^T' : ''}${p.transB ? ' B^T' : ''}`;
}

/** The shared-tile GPU default, and with f16 its f16 variants (so the search reaches them whatever the budget). */
/** A conv's register default with and without the backend's subgroup tiles (whichever is not its default gets measured early). */
function registerSeeds<T>(be: KernelChoices, tile: (subgroup?: number) => T): T[] {
  return be.subgroupTiles ? [tile(), tile(be.subgroupTiles)] : [tile()];
}

function tileSeeds(tile: (f16?: 'mul' | 'acc') => mmShared.SharedTileConfig, precision?: cand.KernelPrecision): unknown[] {
  return precision === 'f16' ? [tile(), tile('mul'), tile('acc')] : [tile()];
}

/** The Winograd generators (their GEMM is matmulKernel, and the op code is convOps'). */
const WINOGRAD_SOURCES = [convCommon.blockStores, convCommon.poolWindow, convCommon.blockEpilogueDecls, winograd.winogradPlan, winograd.transform2d, winograd.inputT, winograd.filterT, winograd.outputT, winograd.filterTransformKernel, winograd.inputTransformKernel, winograd.outputTransformKernel, winograd.winogradTiling, winograd.winogradConfigSpace, winograd.defaultWinogradConfig, winograd.winogradPreferred, mm.matmulKernel, mm.defaultMatmulConfig, mm.matmulConfigSpace];

const convFlops = (p: Problem) => {
  const g = p as ConvGeometry;
  return 2 * g.N * g.Ho * g.Wo * g.Co * g.KH * g.KW * g.Ci;
};

/** x[n, iy, ix, ci] or 0 outside the image. */
function xAt(g: ConvGeometry, x: Float32Array, n: number, iy: number, ix: number, ci: number): number {
  if (iy < 0 || ix < 0 || iy >= g.H || ix >= g.W) return 0;
  return x[((n * g.H + iy) * g.W + ix) * g.Ci + ci];
}

const conv2dOp: TunableOp = {
  name: 'conv2d',
  key: (p) => convKey(p as ConvGeometry),
  candidates: (p, opts) => cand.convForwardCandidates(p as ConvGeometry, opts),
  defaultConfig: (p, be) => conv.defaultConvForwardAlgorithm(p as ConvGeometry, be.defaultTileSubgroup, be.winogradDefaults),
  seeds: (p, be) => {
    const g = p as ConvGeometry;
    const tiles = registerSeeds(be, (sg) => conv.defaultConvForwardConfig(g, sg));
    const wino = winograd.winogradProblem(g) === null ? registerSeeds(be, (sg) => winograd.defaultWinogradConfig(winograd.winogradForward(g), sg)) : [];
    return [...tiles, ...wino, ...tileSeeds((f16) => mmShared.defaultSharedTileConfig(g.N * g.Ho * g.Wo, g.Co, f16), be.precision)];
  },
  flops: convFlops,
  inputShapes: (p) => {
    const g = p as ConvGeometry;
    return [[g.N, g.H, g.W, g.Ci], [g.KH, g.KW, g.Ci, g.Co]];
  },
  run: (be, p, [x, w], config) => {
    const g = p as ConvGeometry;
    return convOps.conv2d(be, x, w, null, { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }, config as conv.ConvForwardConfig | null);
  },
  reference: (p, [x, w], i) => {
    const g = p as ConvGeometry;
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
  sources: [cand.convForwardCandidates, mmShared.subgroupMatrixTileConfigs, mmShared.sharedGemmCandidates, convShared.sharedGatherGemmKernel, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, mmShared.sharedTileConfigs, mmShared.sharedMatmulKernel, conv.convForwardKernel, conv.convForwardConfigSpace, conv.defaultConvForwardConfig, conv.defaultConvForwardAlgorithm, conv.winogradForwardConfigSpace, ...WINOGRAD_SOURCES, convCommon.gatherGemmKernel, convCommon.tileConfigs, convOps.conv2d],
};

const conv2dBackwardDataOp: TunableOp = {
  name: 'conv2dBackwardData',
  key: (p) => convKey(p as ConvGeometry),
  candidates: (p, opts) => cand.convBackwardDataCandidates(p as ConvGeometry, opts),
  defaultConfig: (p, be) => convData.defaultConvBackwardDataAlgorithm(p as ConvGeometry, be.defaultTileSubgroup, be.winogradDefaults),
  seeds: (p, be) => {
    const g = p as ConvGeometry;
    const tiles = registerSeeds(be, (sg) => convData.defaultConvBackwardDataConfig(g, sg));
    const wino = winograd.winogradProblem(g) === null ? registerSeeds(be, (sg) => winograd.defaultWinogradConfig(winograd.winogradBackwardData(g), sg)) : [];
    return [...tiles, ...wino, ...tileSeeds((f16) => mmShared.defaultSharedTileConfig(g.N * Math.ceil(g.H / g.stride) * Math.ceil(g.W / g.stride), g.Ci, f16), be.precision)];
  },
  flops: convFlops,
  inputShapes: (p) => {
    const g = p as ConvGeometry;
    return [[g.N, g.Ho, g.Wo, g.Co], [g.KH, g.KW, g.Ci, g.Co]];
  },
  run: (be, p, [dy, w], config) => {
    const g = p as ConvGeometry;
    return convOps.conv2dBackwardData(be, dy, w, [g.N, g.H, g.W, g.Ci], { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }, config as convData.ConvBackwardDataConfig | null);
  },
  reference: (p, [dy, w], i) => {
    const g = p as ConvGeometry;
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
  sources: [cand.convBackwardDataCandidates, mmShared.subgroupMatrixTileConfigs, mmShared.sharedGemmCandidates, convShared.sharedGatherGemmKernel, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, mmShared.sharedTileConfigs, convData.convBackwardDataKernels, convData.backwardDataPhases, convData.filterTransposeKernel, convData.convBackwardDataConfigSpace, convData.defaultConvBackwardDataConfig, convData.defaultConvBackwardDataAlgorithm, convData.winogradBackwardDataConfigSpace, ...WINOGRAD_SOURCES, convCommon.gatherGemmKernel, convCommon.tileConfigs, convOps.conv2dBackwardData],
};

const conv2dBackwardFilterOp: TunableOp = {
  name: 'conv2dBackwardFilter',
  key: (p) => convKey(p as ConvGeometry),
  candidates: (p, opts) => cand.convBackwardFilterCandidates(p as ConvGeometry, opts),
  defaultConfig: (p, be) => convFilter.defaultConvBackwardFilterConfig(p as ConvGeometry, be.defaultTileSubgroup, be.parallelism),
  seeds: (p, be) => {
    const g = p as ConvGeometry;
    const tiles = registerSeeds(be, (sg) => convFilter.defaultConvBackwardFilterConfig(g, sg, be.parallelism));
    const c = convShared.defaultSharedBackwardFilterConfig(g);
    return [...tiles, ...(be.precision === 'f16' ? [c, { ...c, f16: 'mul' }] : [c])];
  },
  flops: convFlops,
  inputShapes: (p) => {
    const g = p as ConvGeometry;
    return [[g.N, g.H, g.W, g.Ci], [g.N, g.Ho, g.Wo, g.Co]];
  },
  run: (be, p, [x, dy], config) => {
    const g = p as ConvGeometry;
    return convOps.conv2dBackwardFilter(be, x, dy, [g.KH, g.KW, g.Ci, g.Co], { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }, config as convFilter.ConvBackwardFilterConfig | null);
  },
  reference: (p, [x, dy], i) => {
    const g = p as ConvGeometry;
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
  sources: [cand.convBackwardFilterCandidates, convShared.sharedBackwardFilterConfigSpace, convShared.sharedBackwardFilterKernels, convFilter.anyConvBackwardFilterKernels, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, convFilter.convBackwardFilterKernels, convFilter.splitSumKernel, convFilter.convBackwardFilterConfigSpace, convFilter.defaultConvBackwardFilterConfig, convCommon.tileConfigs, convOps.conv2dBackwardFilter],
};

const matmulOp: TunableOp = {
  name: 'matmul',
  key: (p) => matmulKey(p as MatmulProblem),
  candidates: (p, opts) => cand.matmulCandidates(p as MatmulProblem, opts),
  // With a large transposed B the default path transposes first: not one of the candidates.
  defaultConfig: (p, be) => (mm.transposeBFirst(p as MatmulProblem) ? null : mm.defaultMatmulConfig(p as MatmulProblem, be.defaultTileSubgroup)),
  seeds: (p, be) => [
    ...registerSeeds(be, (sg) => mm.defaultMatmulConfig(p as MatmulProblem, sg)),
    ...tileSeeds((f16) => mmShared.defaultSharedMatmulConfig(p as MatmulProblem, f16), be.precision),
  ],
  flops: (p) => {
    const s = p as MatmulProblem;
    return 2 * s.M * s.N * s.K;
  },
  inputShapes: (p) => {
    const s = p as MatmulProblem;
    return [s.transA ? [s.K, s.M] : [s.M, s.K], s.transB ? [s.N, s.K] : [s.K, s.N]];
  },
  run: (be, p, [a, b], config) => {
    const s = p as MatmulProblem;
    return linalgOps.matmul(be, a, b, { transA: s.transA, transB: s.transB }, config as mm.AnyMatmulConfig | null);
  },
  reference: (p, [a, b], i) => {
    const s = p as MatmulProblem;
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
  sources: [cand.matmulCandidates, mmShared.subgroupMatrixTileConfigs, mmShared.sharedGemmCandidates, mmShared.sharedMatmulKernel, mmShared.tileGemmKernel, mmShared.stagingSlots, mmShared.stageSlice, mmShared.matrixTileGemmKernel, mm.matmulKernel, mm.matmulConfigSpace, mm.defaultMatmulConfig, mm.transposeBFirst, mmT.transposeKernel, linalgOps.matmul],
};

export const TUNABLE_OPS: Record<TunableOpName, TunableOp> = {
  conv2d: conv2dOp,
  conv2dBackwardData: conv2dBackwardDataOp,
  conv2dBackwardFilter: conv2dBackwardFilterOp,
  matmul: matmulOp,
};

/** Canonical JSON of a config (sorted keys): how configs are compared and stored. */
export function canonicalConfig(c: unknown): string {
  if (c === null || typeof c !== 'object') return JSON.stringify(c);
  const o = c as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalConfig(o[k])}`)
    .join(',')}}`;
}

/** A short readable name of a config: its fields in order, e.g. rows=8 cols=2 vec4; a nested config in parentheses. */
export function configLabel(c: unknown): string {
  if (c === null) return 'default';
  return Object.entries(c as Record<string, unknown>)
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
