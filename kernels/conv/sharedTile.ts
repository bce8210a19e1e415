// The gathered implicit GEMM of conv2d forward and backward-data (common.ts GatherGemm)
// as a workgroup-memory tiled kernel (matmul/sharedTile.ts has the template and why).
//
// The reduction of a phase runs over its taps x K source channels, flattened, so a slice
// of BK steps may cross taps: small channel counts (Ci = 3 in a first layer) do not pad
// every tap to a whole slice. When K % BK == 0 a slice lies inside one tap, and the tap
// and the filter row are worked out once per slice instead of once per loaded element.
// A slots are spread along the reduction (adjacent invocations read adjacent channels of
// one source pixel); B slots along the columns (adjacent units of one filter row).
import { KernelSpec, ceilDiv } from '../spec.js';
import { ConvGeometry, GatherGemm, GatherPhase, gatedSource, gatherGemmBindings, convKey } from './common.js';
import { ConvBackwardFilterPlan, splitSumKernel } from './splitSum.js';
import {
  MAX_WORKGROUP_STORAGE_BYTES,
  SharedTileConfig,
  TileSpaceOptions,
  defaultSharedTileConfig,
  sharedTileConfigKey,
  sharedTileConfigs,
  sharedTileProblem,
  tileGemmKernel,
} from '../matmul/sharedTile.js';

/** `maxStorageBytes`: the device's workgroup memory (default: the portable 16 KB). */
export function sharedGatherGemmKernel(g: GatherGemm, cfg: SharedTileConfig, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): KernelSpec {
  const problem = sharedTileProblem(cfg, maxStorageBytes);
  if (problem) throw new Error(`${g.name}: config ${sharedTileConfigKey(cfg)}: ${problem}`);
  if (cfg.vec4 && g.colsN % 4 !== 0) throw new Error(`${g.name}: vec4 columns need ${g.colsN} % 4 == 0`);
  const phases = g.phases.filter((p) => p.destH > 0 && p.destW > 0);
  if (phases.length === 0) throw new Error(`${g.name}: no output pixels`);
  // The conv-block epilogue needs a window's 4 rows in one invocation; tile rows here are strided.
  if (g.epilogue) throw new Error(`${g.name}: the shared-tile kernel has no conv-block epilogue (use a register config)`);
  const srcPool = !!g.srcGates?.argmax;
  const srcRelu = !!g.srcGates?.reluAt;
  const gs = gatedSource(g);
  const { vec4, BM } = cfg;
  const units = vec4 ? g.colsN / 4 : g.colsN;
  const colTy = vec4 ? 'vec4<f32>' : 'f32';
  const BNu = vec4 ? cfg.BN / 4 : cfg.BN;
  const colGroups = ceilDiv(units, BNu);
  const phaseGroups = phases.map((p) => colGroups * ceilDiv(g.N * p.destH * p.destW, BM));
  const phaseStart = phaseGroups.map((_, k) => phaseGroups.slice(0, k).reduce((a, b) => a + b, 0));
  const groups = phaseStart[phases.length - 1] + phaseGroups[phases.length - 1];
  const K = g.K;
  const sliceInTap = K % cfg.BK === 0;

  // A per-phase value: a constant when every phase has the same one, else chosen by `ph`.
  const pick = (f: (p: GatherPhase) => number): string => {
    const vals = phases.map((p) => `${f(p) >>> 0}u`);
    if (vals.every((v) => v === vals[0])) return vals[0];
    return vals.slice(1).reduce((expr, v, k) => `select(${expr}, ${v}, ph == ${k + 1}u)`, vals[0]);
  };
  const dir = (d: number) => `${d >= 0 ? '+' : '-'} ${Math.abs(d)}u`;

  const head: string[] = [];
  if (phases.length > 1) {
    head.push(`let ph = ${phaseStart.slice(1).map((st) => `select(0u, 1u, g >= ${st}u)`).join(' + ')};`);
    head.push(`let gp = g - ${pick((p) => phaseStart[phases.indexOf(p)])};`);
  } else {
    head.push('let gp = g;');
  }
  head.push(
    `let tileRow = (gp / ${colGroups}u) * ${BM}u;`,
    `let tileCol = (gp % ${colGroups}u) * ${BNu}u;`,
    `let destW = ${pick((p) => p.destW)};`,
    `let plane = ${pick((p) => p.destH * p.destW)};`,
    `let rowsTotal = ${pick((p) => g.N * p.destH * p.destW)};`,
    `let nTx = ${pick((p) => Math.max(1, p.nTx))};`,
    'let kBegin = 0u;',
    `let kTotal = ${pick((p) => p.nTy * p.nTx * K)};`,
    `let ky0 = ${pick((p) => p.ky0)};`,
    `let kx0 = ${pick((p) => p.kx0)};`,
    // Offsets may be negative: u32 addition wraps, and the `< srcH` test rejects the result.
    `let yBase = ${pick((p) => p.yBase)};`,
    `let xBase = ${pick((p) => p.xBase)};`,
    `let outY0 = ${pick((p) => p.outY0)};`,
    `let outX0 = ${pick((p) => p.outX0)};`,
  );

  // Tap (ty, tx) of reduction step `r` -> source offsets and filter row base.
  const tapLines = (sfx: string, t: string): string[] => [
    `let ty${sfx} = ${t} / nTx;`,
    `let tx${sfx} = ${t} % nTx;`,
    `let yo${sfx} = yBase ${dir(g.yDir)} * ty${sfx};`,
    `let xo${sfx} = xBase ${dir(g.xDir)} * tx${sfx};`,
    `let wt${sfx} = ((ky0 + ty${sfx} * ${g.kyStep}u) * ${g.KW}u + kx0 + tx${sfx} * ${g.kxStep}u) * ${K}u;`,
  ];
  const slice = sliceInTap ? [`let kb = k0 % ${K}u;`, ...tapLines('S', `k0 / ${K}u`)] : [];

  const aLoad = (p: number): string[] => {
    const out: string[] = [];
    let sfx = 'S';
    let ch: string;
    let inK: string;
    if (sliceInTap) {
      ch = `kb + akk${p}`;
      inK = '';
    } else {
      sfx = `A${p}`;
      out.push(`let ak${p}c = min(ak${p}, max(kTotal, 1u) - 1u);`);
      out.push(...tapLines(sfx, `ak${p}c / ${K}u`));
      ch = `ak${p}c % ${K}u`;
      inK = `ak${p} < kTotal && `;
    }
    out.push(`let iy${p} = sy${p} + yo${sfx};`);
    out.push(`let ix${p} = sx${p} + xo${sfx};`);
    out.push(`let aok${p} = ${inK}iy${p} < ${gs.limH}u && ix${p} < ${gs.limW}u;`);
    if (!srcPool && !srcRelu) {
      out.push(`let av${p} = select(0.0, src[select(0u, ((nb${p} + iy${p}) * ${g.srcW}u + ix${p}) * ${K}u + ${ch}, aok${p})], aok${p});`);
      return out;
    }
    // The source at the pooled pixel, only where the pool's winner is here and reluAt > 0.
    const pix = srcPool ? `(nb${p} + iy${p} / 2u) * ${gs.W}u + ix${p} / 2u` : `(nb${p} + iy${p}) * ${g.srcW}u + ix${p}`;
    out.push(`let si${p} = select(0u, (${pix}) * ${K}u + ${ch}, aok${p});`);
    const conds = [`aok${p}`];
    if (srcPool) conds.push(`argm[si${p}] == (iy${p} % 2u) * 2u + ix${p} % 2u`);
    if (srcRelu) conds.push(`reluAt[si${p}] > 0.0`);
    out.push(`let av${p} = select(0.0, src[si${p}], ${conds.join(' && ')});`);
    return out;
  };
  const zero = vec4 ? 'vec4<f32>(0.0)' : '0.0';
  const bLoad = (q: number): string[] => {
    if (sliceInTap) return [`let bv${q} = wmat[(wtS + kb + bkk${q}) * ${units}u + bu${q}];`];
    return [
      `let bkc${q} = min(bk${q}, max(kTotal, 1u) - 1u);`,
      `let bt${q} = bkc${q} / ${K}u;`,
      `let bw${q} = ((ky0 + (bt${q} / nTx) * ${g.kyStep}u) * ${g.KW}u + kx0 + (bt${q} % nTx) * ${g.kxStep}u) * ${K}u + bkc${q} % ${K}u;`,
      `let bv${q} = select(${zero}, wmat[bw${q} * ${units}u + bu${q}], bk${q} < kTotal);`,
    ];
  };

  const { decls, bindings } = gatherGemmBindings(g, false, colTy);

  return tileGemmKernel(
    {
      name: g.name,
      comment: g.comment,
      decls,
      bindings,
      groups,
      units,
      head,
      aAlongK: true,
      aOnce: (p) => [
        `let n${p} = ar${p} / plane;`,
        `let sy${p} = ((ar${p} % plane) / destW) * ${g.srcStep}u;`,
        `let sx${p} = (ar${p} % destW) * ${g.srcStep}u;`,
        `let nb${p} = n${p} * ${gs.H}u;`,
      ],
      aLoad,
      bAlongK: false,
      bLoad,
      slice,
      storeRow: (i) => [
        `let on${i} = orow${i} / plane;`,
        `let oq${i} = orow${i} % plane;`,
        `let ob${i} = ((on${i} * ${g.outH}u + (oq${i} / destW) * ${g.outStep}u + outY0) * ${g.outW}u + (oq${i} % destW) * ${g.outStep}u + outX0) * ${units}u;`,
      ],
      store: (i, j, v) => `out[ob${i} + ou${j}] = ${v}${g.bias ? ` + bias[ou${j}]` : ''};`,
    },
    cfg,
    maxStorageBytes,
  );
}

/** The shared-tile backward-filter config: a tile plus the split of the pixel reduction. */
export interface SharedBackwardFilterConfig extends SharedTileConfig {
  /** Chunks the N*Ho*Wo reduction is split into; > 1 adds a reduction pass (splitSumKernel). */
  splitK: number;
}

export function sharedBackwardFilterConfigKey(c: SharedBackwardFilterConfig): string {
  return `${sharedTileConfigKey(c)}k${c.splitK}`;
}

const FILTER_SPLITS = [1, 2, 4, 8, 16, 32, 64];
/** Scratch floats a split may use (64 MB): a big filter gets fewer splits. */
const MAX_SPLIT_SCRATCH_FLOATS = 1 << 24;

/** How many BK slices the pixel reduction has. */
function filterSlices(s: ConvGeometry, BK: number): number {
  return ceilDiv(s.N * s.Ho * s.Wo, BK);
}

/**
 * Shared-tile configs for backward-filter: every tile of the (taps*Ci) x Co GEMM, each with
 * the splits that leave every chunk at least one slice and keep the scratch within 64 MB.
 * A discrete GPU needs the large splits: the filter is small (few tiles) while the
 * reduction over pixels is long.
 */
export function sharedBackwardFilterConfigSpace(s: ConvGeometry, opts: TileSpaceOptions = {}): SharedBackwardFilterConfig[] {
  const out: SharedBackwardFilterConfig[] = [];
  const dwFloats = s.KH * s.KW * s.Ci * s.Co;
  for (const tile of sharedTileConfigs(s.KH * s.KW * s.Ci, s.Co, { maxStorageBytes: opts.maxStorageBytes }))
    for (const splitK of FILTER_SPLITS) {
      if (splitK > 1 && (splitK > filterSlices(s, tile.BK) || splitK * dwFloats > MAX_SPLIT_SCRATCH_FLOATS)) continue;
      out.push({ ...tile, splitK });
    }
  return out;
}

/** The GPU default: the default tile, split until there are some 256 workgroups. */
export function defaultSharedBackwardFilterConfig(s: ConvGeometry): SharedBackwardFilterConfig {
  const tile = defaultSharedTileConfig(s.KH * s.KW * s.Ci, s.Co);
  const tiles = ceilDiv(s.KH * s.KW * s.Ci, tile.BM) * ceilDiv(s.Co, tile.BN);
  const dwFloats = s.KH * s.KW * s.Ci * s.Co;
  let splitK = 1;
  while (
    splitK < 64 &&
    tiles * splitK < 256 &&
    splitK * 2 <= filterSlices(s, tile.BK) &&
    splitK * 2 * dwFloats <= MAX_SPLIT_SCRATCH_FLOATS
  )
    splitK *= 2;
  return { ...tile, splitK };
}

export function checkSharedBackwardFilterConfig(s: ConvGeometry, c: SharedBackwardFilterConfig, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): void {
  const what = `conv2dBackwardFilter ${convKey(s, true)}: config ${sharedBackwardFilterConfigKey(c)}`;
  const problem = sharedTileProblem(c, maxStorageBytes);
  if (problem) throw new Error(`${what}: ${problem}`);
  if (c.vec4 && s.Co % 4 !== 0) throw new Error(`${what} needs Co % 4 == 0`);
  if (!Number.isInteger(c.splitK) || c.splitK < 1 || (c.splitK > 1 && c.splitK > filterSlices(s, c.BK))) {
    throw new Error(`${what}: splitK must be 1 or in 2..${filterSlices(s, c.BK)} (one slice of ${c.BK} pixels per chunk)`);
  }
}

/**
 * dw[t, ci, co] = sum over pixels (n, oy, ox) of x[n, oy*s + ky - pad, ox*s + kx - pad, ci] *
 * dy[n, oy, ox, co]: rows = taps x Ci, columns = Co, reduction = N*Ho*Wo output pixels. A
 * slots are spread along the rows (adjacent invocations read adjacent channels of one input
 * pixel), B slots along the columns (adjacent channels of one dy pixel). With splitK > 1,
 * chunk sk writes its partial sums at sk * |dw| of the scratch (bindings x, dy, out).
 */
export function sharedBackwardFilterKernels(s: ConvGeometry, cfg: SharedBackwardFilterConfig, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): ConvBackwardFilterPlan {
  checkSharedBackwardFilterConfig(s, cfg, maxStorageBytes);
  const { N, H, W, Ci, Co, KW, Ho, Wo, stride: st, pad } = s;
  const { vec4, BM, BK, splitK } = cfg;
  const units = vec4 ? Co / 4 : Co;
  const colTy = vec4 ? 'vec4<f32>' : 'f32';
  const BNu = vec4 ? cfg.BN / 4 : cfg.BN;
  const rows = s.KH * KW * Ci;
  const P = N * Ho * Wo;
  const colGroups = ceilDiv(units, BNu);
  const tileGroups = colGroups * ceilDiv(rows, BM);
  const chunk = ceilDiv(ceilDiv(P, BK), splitK) * BK;
  const dwFloats = rows * Co;
  const zero = vec4 ? 'vec4<f32>(0.0)' : '0.0';
  const main = tileGemmKernel(
    {
      name: 'conv2dBackwardFilter',
      comment: `conv2dBackwardFilter ${convKey(s, true)} split ${splitK}`,
      decls: [
        '@group(0) @binding(0) var<storage, read> x: array<f32>;',
        `@group(0) @binding(1) var<storage, read> dy: array<${colTy}>;`,
        `@group(0) @binding(2) var<storage, read_write> out: array<${colTy}>;`,
      ],
      bindings: ['read', 'read', 'rw'],
      groups: tileGroups * splitK,
      units,
      head: [
        `let sk = g / ${tileGroups}u;`,
        `let gt = g % ${tileGroups}u;`,
        `let tileRow = (gt / ${colGroups}u) * ${BM}u;`,
        `let tileCol = (gt % ${colGroups}u) * ${BNu}u;`,
        `let rowsTotal = ${rows}u;`,
        `let kBegin = min(sk * ${chunk}u, ${P}u);`,
        `let kTotal = min(kBegin + ${chunk}u, ${P}u);`,
        `let outBase = sk * ${dwFloats / (vec4 ? 4 : 1)}u;`,
      ],
      aAlongK: false,
      aOnce: (p) => [
        `let t${p} = ar${p} / ${Ci}u;`,
        `let ci${p} = ar${p} % ${Ci}u;`,
        // u32 wraps below zero; the `< H` test rejects it.
        `let ky${p} = t${p} / ${KW}u - ${pad}u;`,
        `let kx${p} = t${p} % ${KW}u - ${pad}u;`,
      ],
      aLoad: (p) => [
        `let akc${p} = min(ak${p}, ${P - 1}u);`,
        `let pn${p} = akc${p} / ${Ho * Wo}u;`,
        `let pq${p} = akc${p} % ${Ho * Wo}u;`,
        `let iy${p} = (pq${p} / ${Wo}u) * ${st}u + ky${p};`,
        `let ix${p} = (pq${p} % ${Wo}u) * ${st}u + kx${p};`,
        `let aok${p} = ak${p} < kTotal && iy${p} < ${H}u && ix${p} < ${W}u;`,
        `let av${p} = select(0.0, x[select(0u, ((pn${p} * ${H}u + iy${p}) * ${W}u + ix${p}) * ${Ci}u + ci${p}, aok${p})], aok${p});`,
      ],
      bAlongK: false,
      bLoad: (q) => [`let bv${q} = select(${zero}, dy[min(bk${q}, ${P - 1}u) * ${units}u + bu${q}], bk${q} < kTotal);`],
      storeRow: () => [],
      store: (i, j, v) => `out[outBase + orow${i} * ${units}u + ou${j}] = ${v};`,
    },
    cfg,
    maxStorageBytes,
  );
  if (splitK === 1) return { main, scratchFloats: 0, reduce: null };
  return { main, scratchFloats: splitK * dwFloats, reduce: splitSumKernel(dwFloats, splitK, vec4) };
}
