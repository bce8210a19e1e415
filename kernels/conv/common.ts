// Pieces shared by the conv kernel generators: the geometry they take, the register-blocked
// tile config and its space, and the implicit-GEMM template that conv2d forward and
// backward-data both are.
//
// Layout of the work (as in kernels/matmul): each invocation computes `rows` output rows x
// `cols` column units (a unit is a vec4 of output channels when the channel count allows,
// else one channel). The units of one invocation are strided by the workgroup width, so
// adjacent invocations (SIMD lanes on lavapipe) read adjacent units of the filter while
// every lane of a workgroup row reads the same activation element (a broadcast).
// Accumulators are named variables, never a private array (dynamic indexing of private
// arrays is slow on lavapipe). A subgroup-shared tile (`subgroup`) gives every lane of a
// workgroup the same rows instead and passes the activations round with subgroupBroadcast:
// lavapipe loads per lane even where all lanes read one address (kernels/README.md).
//
// Measured on lavapipe (2 shared cores; 56x56x64->64 and 28x28x128->128, 3x3 pad 1):
// - 8 rows x 2 vec4 columns per lane was best, ~5-8 GFLOP/s wall for all three ops
//   (4 rows: ~30% slower; 4 columns: same speed, twice the compile time).
// - Unrolling the reduction loop by 2 or 4 was 1.5-3x SLOWER than no unroll, and vec4
//   activation loads along the reduction (kVec) ~2x slower in the forward kernel (each
//   vec4 lane load is four gathers there); kVec helps backward-filter, where one vec4
//   feeds four accumulator rows.
// - Lanes owning adjacent output rows instead of adjacent columns: ~2x slower.
// - Mesa fully unrolls loops whose trip count it knows; for a 3x3 x Ci=16 kernel that took
//   30 s of shader compilation (shared CPU). Reduction and tap loops therefore run to
//   `n * one`, where `one` is num_workgroups.z (always 1 under grid(), but unknown to the
//   compiler): 0.2 s.
import { BindingKind, KernelSpec, ceilDiv, defaultSubgroupTile, grid, linearGroupIndex, subgroupTileProblem } from '../spec.js';
import type { BufferRef, KernelAlgorithm, KernelChoices } from '../algorithm.js';

/** What a conv kernel is generated for (engine/backend.ts computes it from tensor shapes). */
export interface ConvGeometry {
  N: number;
  H: number;
  W: number;
  Ci: number;
  Co: number;
  KH: number;
  KW: number;
  Ho: number;
  Wo: number;
  stride: number;
  pad: number;
}

/** The register-blocked kernels' config (this file). */
export interface ConvTileConfig {
  algo: 'register';
  /** Output rows per invocation (pixels for forward/backward-data, filter rows (ci) for backward-filter). */
  rows: number;
  /** Column units per invocation. */
  cols: number;
  /** A column unit is a vec4 of channels (needs the column channel count % 4 == 0). */
  vec4: boolean;
  /** Load activations as vec4s along channels, four reduction steps (or four filter rows) per load. */
  kVec: boolean;
  /** Workgroup size along the columns (lanes that read adjacent units). */
  wgX: number;
  /** Workgroup size along the row blocks. */
  wgY: number;
  /** Reduction steps written out per loop iteration. */
  kUnroll: number;
  /**
   * Subgroup size S when the activation loads are shared through the subgroup: every lane of
   * a workgroup owns the same rows (wgY must be 1), lane j loads rows j, j + S, ... and
   * subgroupBroadcast hands each value to the others, so a subgroup loads each activation
   * once instead of once per lane. Needs the 'subgroups' feature and an adapter whose
   * subgroup size is always S.
   */
  subgroup?: number;
}

export function tileConfigKey(c: ConvTileConfig): string {
  return `r${c.rows}c${c.cols}${c.vec4 ? 'v4' : 's'}${c.kVec ? 'k4' : 'k1'}w${c.wgX}x${c.wgY}u${c.kUnroll}${c.subgroup ? `sg${c.subgroup}` : ''}`;
}

/**
 * A conv's name: the tuner's cache key; `withOutput` adds the output size, as the kernels'
 * comments and error messages give it.
 */
export function convKey(g: ConvGeometry, withOutput = false): string {
  return `${g.N}x${g.H}x${g.W}x${g.Ci}->${g.Co} k${g.KH}x${g.KW} s${g.stride} p${g.pad}${withOutput ? ` out ${g.Ho}x${g.Wo}` : ''}`;
}

export const TILE_ROWS = [1, 2, 4, 8];
export const TILE_COLS = [1, 2, 4];
/** Workgroup widths; the height makes 64 invocations (measured: the split barely matters on lavapipe). */
export const TILE_WG_X = [1, 2, 4, 8, 16, 32, 64];
/** Unrolling never paid on lavapipe (and costs shader compile time), so only up to 2. */
export const TILE_UNROLLS = [1, 2];
/** Rows of a subgroup-shared tile: 16 costs a subgroup of 8 two activation loads per step. */
export const SUBGROUP_TILE_ROWS = [1, 2, 4, 8, 16, 32];

/**
 * The tile configs worth trying for a GEMM with `colsN` output channels and `rowsTotal`
 * rows: every rows x cols x workgroup x unroll x vector-width combination except those
 * whose register tile or workgroup row is wider than the output needs (rows and lanes
 * past the edge only repeat work). `kVecOk(rows)` says whether vec4 loads along the
 * reduction channels are possible with that many rows. With `subgroup` (the device's fixed
 * subgroup size), also the subgroup-shared tiles: one row block per workgroup (wgY 1) of
 * 1-32 rows, workgroup widths from one subgroup to 64 lanes, no unroll.
 */
export function tileConfigs(colsN: number, rowsTotal: number, kVecOk: (rows: number) => boolean, subgroup?: number): ConvTileConfig[] {
  const out: ConvTileConfig[] = [];
  for (const vec4 of colsN % 4 === 0 ? [true, false] : [false]) {
    const units = vec4 ? colsN / 4 : colsN;
    for (const rows of TILE_ROWS) {
      if (rows > pow2AtLeast(rowsTotal)) continue;
      for (const kVec of kVecOk(rows) ? [true, false] : [false])
        for (const cols of TILE_COLS) {
          if (cols > 1 && cols > units) continue;
          for (const wgX of TILE_WG_X) {
            if (wgX > pow2AtLeast(Math.ceil(units / cols))) continue;
            for (const kUnroll of TILE_UNROLLS) out.push({ algo: 'register', rows, cols, vec4, kVec, wgX, wgY: 64 / wgX, kUnroll });
          }
        }
    }
    if (!subgroup) continue;
    for (const rows of SUBGROUP_TILE_ROWS) {
      if (rows > pow2AtLeast(rowsTotal)) continue;
      for (const kVec of kVecOk(rows) ? [true, false] : [false])
        for (const cols of TILE_COLS) {
          if (cols > 1 && cols > units) continue;
          const widest = Math.max(subgroup, pow2AtLeast(Math.ceil(units / cols)));
          for (let wgX = subgroup; wgX <= Math.min(64, widest); wgX *= 2) {
            out.push({ algo: 'register', rows, cols, vec4, kVec, wgX, wgY: 1, kUnroll: 1, subgroup });
          }
        }
    }
  }
  return out;
}

export function checkTileConfig(what: string, c: ConvTileConfig): void {
  for (const [k, v] of Object.entries({ rows: c.rows, cols: c.cols, wgX: c.wgX, wgY: c.wgY, kUnroll: c.kUnroll })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${what}: config ${tileConfigKey(c)}: ${k} must be a positive integer`);
  }
  if (c.wgX * c.wgY > 256) throw new Error(`${what}: config ${tileConfigKey(c)}: workgroup larger than 256 invocations`);
  const sgProblem = subgroupTileProblem(c);
  if (sgProblem) throw new Error(`${what}: config ${tileConfigKey(c)}: ${sgProblem}`);
}


export function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export function pow2AtMost(n: number, cap: number): number {
  let p = 1;
  while (p * 2 <= Math.min(n, cap)) p *= 2;
  return p;
}

/**
 * The register tile measured best on lavapipe (see the top of this file): 8 rows x 2
 * column units per lane, no K unroll, scalar activation loads. A workgroup row spans the
 * columns once (wgX * cols ~ units, capped at 32 lanes), since lanes past the edge compute
 * and throw away; 64 invocations per workgroup. With `subgroup`, a tile whose activation
 * loads are shared through the subgroup (one row block per workgroup, at least one subgroup
 * wide) and, since those loads are then cheap, 16 rows: on lavapipe every load is a per-lane
 * loop, and this made the forward conv 1.6-3x faster (kernels/README.md). Only where the columns
 * fill a subgroup: with fewer units than lanes the extra lanes would repeat a neighbour's work
 * (Fashion-MNIST's 16-32 channel convs: the whole main job ran 59 s instead of 46 s).
 */
export function defaultTile(units: number, rowsTotal: number, vec4: boolean, subgroup?: number): ConvTileConfig {
  const shared = subgroup ? defaultSubgroupTile(units, rowsTotal, subgroup) : null;
  if (shared) return { algo: 'register', ...shared, vec4, kVec: false, wgY: 1, kUnroll: 1, subgroup };
  const cols = units >= 2 ? 2 : 1;
  const wgX = Math.min(32, pow2AtLeast(Math.ceil(units / cols)));
  const rows = pow2AtMost(rowsTotal, 8);
  const wgY = Math.max(1, Math.floor(64 / wgX));
  return { algo: 'register', rows, cols, vec4, kVec: false, wgX, wgY, kUnroll: 1 };
}

/** u32 literal of a possibly negative offset: u32 addition wraps, so x + lit == x + off. */
export function u32Offset(off: number): string {
  return `${off >>> 0}u`;
}

/**
 * One phase of a gathered implicit GEMM: the destination pixels (n, qy*outStep + outY0,
 * qx*outStep + outX0) for n < N, qy < destH, qx < destW are its GEMM rows, and its taps
 * are j < nTy along y, with yOff = yBase + j*yDir and filter row ky = ky0 + j*kyStep
 * (likewise along x).
 */
export interface GatherPhase {
  destH: number;
  destW: number;
  outY0: number;
  outX0: number;
  nTy: number;
  yBase: number;
  ky0: number;
  nTx: number;
  xBase: number;
  kx0: number;
}

/**
 * An implicit GEMM with a gathered A operand, over one or more phases:
 *   out[n, qy*outStep+outY0, qx*outStep+outX0, col] =
 *     (bias[col] +) sum over the phase's taps (ty, tx) and k < K of
 *       src[n, qy*srcStep + yOff(ty), qx*srcStep + xOff(tx), k] * wmat[tapIndex(ty, tx), k, col]
 * source pixels outside [0, srcH) x [0, srcW) reading as zero; tapIndex = ky*KW + kx.
 * Each phase gets whole workgroups, so the phase is uniform across a workgroup and its
 * parameters are values the invocation picks once at the start.
 */
export interface GatherGemm {
  name: string;
  comment: string;
  N: number;
  phases: GatherPhase[];
  outH: number;
  outW: number;
  outStep: number;
  srcH: number;
  srcW: number;
  srcStep: number;
  /** Reduction channels (source channels). */
  K: number;
  /** Output channels. */
  colsN: number;
  KW: number;
  yDir: number;
  kyStep: number;
  xDir: number;
  kxStep: number;
  bias: boolean;
  /** Gates on the source loads (the backward of a conv block's pool and ReLU); see SourceGates. */
  srcGates?: SourceGates;
  /** Replaces the plain store with a conv block's epilogue (forward only); see BlockEpilogue. */
  epilogue?: BlockEpilogue;
}

/**
 * The source is the gradient at a conv block's output, gated on the way in. With `argmax`,
 * src (and argmax, reluAt) are at the pooled grid floor(srcH/2) x floor(srcW/2): the GEMM's
 * source pixel (iy, ix) reads src at (iy/2, ix/2) only where the pool's winner there is
 * (iy%2)*2 + ix%2 (odd trailing rows/columns read 0). With `reluAt`, only where reluAt > 0.
 * Extra bindings after wmat: [argmax (u32)], [reluAt].
 * Measured on lavapipe (VGG5 layers, batch 32, busy 2-core machine): ~2.2x SLOWER than
 * maxPool2x2Backward + the plain kernel, since the gate is re-evaluated for every tap and
 * column block that reads a dy element (an extra load per A load in the inner loop); it
 * saves the conv-shaped gradient's memory traffic, which is what a discrete GPU pays for.
 */
export interface SourceGates {
  argmax: boolean;
  reluAt: boolean;
}

/**
 * A conv block's epilogue: a = acc + bias, pooled 2x2 with `pool` (then the one phase's
 * destH x destW is the pooled grid, and each run of 4 GEMM rows is one window, position
 * q = 2*dy + dx), h = max(a + add, 0) with `relu`, r = (a > 0 ? h - a : 0) with `residual`.
 * Bindings after wmat and bias: [add], a, [argmax (u32, with pool)], [h], [r].
 */
export interface BlockEpilogue {
  pool: boolean;
  add: boolean;
  relu: boolean;
  residual: boolean;
}

/** The gated source's spatial extent (the pooled grid with argmax) and the bound GEMM source pixels must be under. */
export function gatedSource(g: GatherGemm): { H: number; W: number; limH: number; limW: number } {
  if (!g.srcGates?.argmax) return { H: g.srcH, W: g.srcW, limH: g.srcH, limW: g.srcW };
  const H = Math.floor(g.srcH / 2);
  const W = Math.floor(g.srcW / 2);
  return { H, W, limH: 2 * H, limW: 2 * W };
}

/**
 * Declarations and binding kinds of a gather GEMM: src, wmat, [bias], [argm], [reluAt],
 * then the plain output or the epilogue's [add], a, [argmax], [h], [r].
 */
export function gatherGemmBindings(g: GatherGemm, srcVec: boolean, colTy: string): { decls: string[]; bindings: BindingKind[] } {
  const decls = [
    `@group(0) @binding(0) var<storage, read> src: array<${srcVec ? 'vec4<f32>' : 'f32'}>;`,
    `@group(0) @binding(1) var<storage, read> wmat: array<${colTy}>;`,
  ];
  const bindings: BindingKind[] = ['read', 'read'];
  const read = (d: string) => {
    decls.push(`@group(0) @binding(${bindings.length}) var<storage, read> ${d};`);
    bindings.push('read');
  };
  const rw = (d: string) => {
    decls.push(`@group(0) @binding(${bindings.length}) var<storage, read_write> ${d};`);
    bindings.push('rw');
  };
  if (g.bias) read(`bias: array<${colTy}>`);
  if (g.srcGates?.argmax) read(`argm: array<${srcVec ? 'vec4<u32>' : 'u32'}>`);
  if (g.srcGates?.reluAt) read(`reluAt: array<${srcVec ? 'vec4<f32>' : 'f32'}>`);
  const e = g.epilogue;
  if (!e) {
    rw(`out: array<${colTy}>`);
    return { decls, bindings };
  }
  blockEpilogueDecls(e, colTy, read, rw);
  return { decls, bindings };
}

/** A conv block epilogue's bindings, in order: [add], a, [argmax (u32)], [h], [r]. */
export function blockEpilogueDecls(e: BlockEpilogue, colTy: string, read: (decl: string) => void, rw: (decl: string) => void): void {
  if (e.add) read(`addend: array<${colTy}>`);
  rw(`outA: array<${colTy}>`);
  if (e.pool) rw(`outArg: array<${colTy === 'f32' ? 'u32' : 'vec4<u32>'}>`);
  if (e.relu) rw(`outH: array<${colTy}>`);
  if (e.residual) rw(`outR: array<${colTy}>`);
}

/** A conv block's stores of value `v` at element `o`: a, then h = max(a + add, 0) and r = (a > 0 ? h - a : 0). */
export function blockStores(e: BlockEpilogue, o: string, v: string, colTy: string): string[] {
  const zero = `${colTy}(0.0)`;
  const out = [`outA[${o}] = ${v};`];
  if (e.relu) {
    out.push(`let h = max(${e.add ? `${v} + addend[${o}]` : v}, ${zero});`, `outH[${o}] = h;`);
    if (e.residual) out.push(`outR[${o}] = select(${zero}, h - ${v}, ${v} > ${zero});`);
  }
  return out;
}

/**
 * The 2x2 max pool of a window's four values (positions 2*dy + dx) into `best` and `arg`, as
 * kernels/pool.ts: the first position wins ties, a later one must be strictly greater.
 */
export function poolWindow(values: string[], colTy: string): string[] {
  const argTy = colTy === 'f32' ? 'u32' : 'vec4<u32>';
  const out = [`var best = ${values[0]};`, `var arg = ${argTy}(0u);`];
  for (let q = 1; q < 4; q++) {
    out.push(`let v${q} = ${values[q]};`, `let win${q} = v${q} > best;`, `best = select(best, v${q}, win${q});`, `arg = select(arg, ${argTy}(${q}u), win${q});`);
  }
  return out;
}

/** The checks an epilogue or gates put on a gather GEMM and its row block. */
export function checkFusedGemm(g: GatherGemm, rowsPerInvocation: number | null): void {
  const e = g.epilogue;
  if (g.srcGates && e) throw new Error(`${g.name}: source gates and an epilogue do not go together`);
  if (!e) return;
  if ((e.add || e.residual) && !e.relu) throw new Error(`${g.name}: add and residual need relu`);
  if (g.phases.length !== 1 || g.outStep !== 1) throw new Error(`${g.name}: an epilogue needs one phase and outStep 1`);
  if (e.pool) {
    if (rowsPerInvocation !== null && rowsPerInvocation % 4 !== 0) {
      throw new Error(`${g.name}: a pooling epilogue needs rows per invocation % 4 == 0, got ${rowsPerInvocation}`);
    }
  }
}

export function gatherGemmKernel(g: GatherGemm, cfg: ConvTileConfig): KernelSpec {
  const { rows: R, cols: C, vec4, kVec, wgX, wgY, kUnroll: U } = cfg;
  const SG = cfg.subgroup ?? 0;
  if (vec4 && g.colsN % 4 !== 0) throw new Error(`${g.name}: vec4 columns need ${g.colsN} % 4 == 0`);
  if (kVec && g.K % 4 !== 0) throw new Error(`${g.name}: vec4 loads need ${g.K} reduction channels % 4 == 0`);
  const phases = g.phases.filter((p) => p.destH > 0 && p.destW > 0);
  if (phases.length === 0) throw new Error(`${g.name}: no output pixels`);
  checkFusedGemm(g, R);
  const epi = g.epilogue;
  // With a pooling epilogue a GEMM row is (pooled pixel, window position): 4 rows per destination pixel.
  const rowMul = epi?.pool ? 4 : 1;
  const srcPool = !!g.srcGates?.argmax;
  const srcRelu = !!g.srcGates?.reluAt;
  const gs = gatedSource(g);
  const units = vec4 ? g.colsN / 4 : g.colsN;
  const colTy = vec4 ? 'vec4<f32>' : 'f32';
  const KV = kVec ? g.K / 4 : g.K;
  const colGroups = ceilDiv(units, wgX * C);
  const phaseGroups = phases.map((p) => colGroups * ceilDiv(ceilDiv(g.N * p.destH * p.destW * rowMul, R), wgY));
  const phaseStart = phaseGroups.map((_, k) => phaseGroups.slice(0, k).reduce((a, b) => a + b, 0));
  const groups = phaseStart[phases.length - 1] + phaseGroups[phases.length - 1];

  // A per-phase value: a constant when every phase has the same one, else chosen by `ph`.
  const pick = (f: (p: GatherPhase) => number): string => {
    const vals = phases.map((p) => `${f(p) >>> 0}u`);
    if (vals.every((v) => v === vals[0])) return vals[0];
    return vals.slice(1).reduce((expr, v, k) => `select(${expr}, ${v}, ph == ${k + 1}u)`, vals[0]);
  };

  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);
  if (phases.length > 1) {
    emit(`  let ph = ${phaseStart.slice(1).map((st) => `select(0u, 1u, g >= ${st}u)`).join(' + ')};`);
    emit(`  let gp = g - ${pick((p) => phaseStart[phases.indexOf(p)])};`);
  } else {
    emit('  let gp = g;');
  }
  emit(`  let destW = ${pick((p) => p.destW)};`);
  emit(`  let plane = ${pick((p) => p.destH * p.destW)};`);
  emit(`  let total = ${pick((p) => g.N * p.destH * p.destW * rowMul)};`);
  emit(`  let outY0 = ${pick((p) => p.outY0)};`);
  emit(`  let outX0 = ${pick((p) => p.outX0)};`);
  emit(`  let r0 = ((gp / ${colGroups}u) * ${wgY}u + ${wgY === 1 ? '0u' : 'lid.y'}) * ${R}u;`);
  emit(`  let c0 = (gp % ${colGroups}u) * ${wgX * C}u + lid.x;`);
  // Edge rows and units are clamped for loading (no branch in the reduction) and skipped when storing.
  const geometry = (t: string) => {
    if (epi?.pool) {
      // Row = 4 * (pooled pixel) + 2*dy + dx; its conv output pixel is (2*py + dy, 2*px + dx).
      emit(`  let w${t} = p${t} / 4u;`);
      emit(`  let n${t} = w${t} / plane;`);
      emit(`  let qy${t} = ((w${t} % plane) / destW) * 2u + (p${t} % 4u) / 2u;`);
      emit(`  let qx${t} = (w${t} % destW) * 2u + p${t} % 2u;`);
    } else {
      emit(`  let n${t} = p${t} / plane;`);
      emit(`  let qy${t} = (p${t} % plane) / destW;`);
      emit(`  let qx${t} = p${t} % destW;`);
    }
    emit(`  let sy${t} = qy${t} * ${g.srcStep}u;`);
    emit(`  let sx${t} = qx${t} * ${g.srcStep}u;`);
    emit(`  let nb${t} = n${t} * ${gs.H}u;`);
  };
  for (let i = 0; i < R; i++) {
    emit(`  let row${i} = r0 + ${i}u;`);
    emit(`  let p${i} = min(row${i}, total - 1u);`);
    geometry(`${i}`);
  }
  // The rows this invocation loads: all R of its own, or with a subgroup its share of them.
  const loadTags: string[] = [];
  if (SG) {
    for (let t = 0; t * SG < R; t++) {
      const tag = `L${t}`;
      loadTags.push(tag);
      emit(`  let p${tag} = min(r0 + min(${t * SG}u + sgid, ${R - 1}u), total - 1u);`);
      geometry(tag);
    }
  } else for (let i = 0; i < R; i++) loadTags.push(`${i}`);
  for (let c = 0; c < C; c++) {
    emit(`  let unit${c} = c0 + ${c * wgX}u;`);
    emit(`  let cu${c} = min(unit${c}, ${units - 1}u);`);
  }
  for (let i = 0; i < R; i++) for (let c = 0; c < C; c++) emit(`  var acc${i}_${c} = ${colTy}(0.0);`);

  const zero = kVec ? 'vec4<f32>(0.0)' : '0.0';
  const step = (k: string): string => {
    const body: string[] = [];
    // Without a subgroup, a load tag is the row itself and its value is a<row>.
    const loaded = (tag: string) => (SG ? `ld${tag}` : `a${tag}`);
    for (const tag of loadTags) {
      if (!srcPool && !srcRelu) {
        body.push(`let ${loaded(tag)} = select(${zero}, src[off${tag} + ${k}], ok${tag});`);
        continue;
      }
      // Gates per component: the pool's winner is here, and reluAt > 0.
      const conds: string[] = [];
      if (srcPool) conds.push(`(argm[s${tag}] == ${kVec ? `vec4<u32>(here${tag})` : `here${tag}`})`);
      if (srcRelu) conds.push(`(reluAt[s${tag}] > ${zero})`);
      body.push(`let s${tag} = off${tag} + ${k};`);
      body.push(`let ${loaded(tag)} = select(${zero}, select(${zero}, src[s${tag}], ${conds.join(kVec ? ' & ' : ' && ')}), ok${tag});`);
    }
    if (SG) for (let i = 0; i < R; i++) body.push(`let a${i} = subgroupBroadcast(ldL${Math.floor(i / SG)}, ${i % SG}u);`);
    if (kVec) {
      for (let c = 0; c < C; c++)
        for (let j = 0; j < 4; j++) body.push(`let b${c}_${j} = wmat[(wb + ${k} * 4u + ${j}u) * ${units}u + cu${c}];`);
      for (let i = 0; i < R; i++)
        for (let c = 0; c < C; c++)
          for (let j = 0; j < 4; j++) body.push(`acc${i}_${c} += a${i}.${'xyzw'[j]} * b${c}_${j};`);
    } else {
      for (let c = 0; c < C; c++) body.push(`let b${c} = wmat[(wb + ${k}) * ${units}u + cu${c}];`);
      for (let i = 0; i < R; i++) for (let c = 0; c < C; c++) body.push(`acc${i}_${c} += a${i} * b${c};`);
    }
    return `      { ${body.join(' ')} }`;
  };

  if (phases.some((p) => p.nTy > 0 && p.nTx > 0)) {
    const dir = (d: number) => `${d >= 0 ? '+' : '-'} ${Math.abs(d)}u`;
    emit(`  let ky0 = ${pick((p) => p.ky0)};`);
    emit(`  let kx0 = ${pick((p) => p.kx0)};`);
    // Offsets may be negative: u32 addition wraps, and the `< srcH` test rejects the result.
    emit(`  let yBase = ${pick((p) => p.yBase)};`);
    emit(`  let xBase = ${pick((p) => p.xBase)};`);
    emit(`  for (var ty = 0u; ty < ${pick((p) => p.nTy)} * one; ty++) {`);
    emit(`    let ky = ky0 + ty * ${g.kyStep}u;`);
    emit(`    let yo = yBase ${dir(g.yDir)} * ty;`);
    for (const t of loadTags) emit(`    let iy${t} = sy${t} + yo;`);
    emit(`    for (var tx = 0u; tx < ${pick((p) => p.nTx)} * one; tx++) {`);
    emit(`      let kx = kx0 + tx * ${g.kxStep}u;`);
    emit(`      let xo = xBase ${dir(g.xDir)} * tx;`);
    for (const t of loadTags) {
      emit(`      let ix${t} = sx${t} + xo;`);
      emit(`      let ok${t} = iy${t} < ${gs.limH}u && ix${t} < ${gs.limW}u;`);
      if (srcPool) {
        emit(`      let off${t} = select(0u, ((nb${t} + iy${t} / 2u) * ${gs.W}u + ix${t} / 2u) * ${KV}u, ok${t});`);
        emit(`      let here${t} = (iy${t} % 2u) * 2u + ix${t} % 2u;`);
      } else {
        emit(`      let off${t} = select(0u, ((nb${t} + iy${t}) * ${g.srcW}u + ix${t}) * ${KV}u, ok${t});`);
      }
    }
    emit(`      let wb = (ky * ${g.KW}u + kx) * ${g.K}u;`);
    const kMain = KV - (KV % U);
    if (kMain > 0) {
      emit(`      for (var k = 0u; k < ${kMain}u * one; k += ${U}u) {`);
      for (let u = 0; u < U; u++) emit('  ' + step(u === 0 ? 'k' : `(k + ${u}u)`));
      emit('      }');
    }
    for (let k = kMain; k < KV; k++) emit(step(`${k}u`));
    emit('    }');
    emit('  }');
  }

  if (g.bias) for (let c = 0; c < C; c++) emit(`  let bias${c} = bias[cu${c}];`);
  if (epi) {
    blockEpilogue(epi, R, C, units, colTy, g.bias, g.outH, g.outW, emit);
  } else for (let i = 0; i < R; i++) {
    emit(`  if (row${i} < total) {`);
    emit(
      `    let o${i} = ((n${i} * ${g.outH}u + qy${i} * ${g.outStep}u + outY0) * ${g.outW}u + qx${i} * ${g.outStep}u + outX0) * ${units}u;`,
    );
    for (let c = 0; c < C; c++) {
      emit(`    if (unit${c} < ${units}u) { out[o${i} + unit${c}] = acc${i}_${c}${g.bias ? ` + bias${c}` : ''}; }`);
    }
    emit('  }');
  }

  const { decls, bindings } = gatherGemmBindings(g, kVec, colTy);
  const wgsl = `${SG ? 'enable subgroups;\n' : ''}// ${g.comment} ${tileConfigKey(cfg)}
${decls.join('\n')}
@compute @workgroup_size(${wgX}, ${wgY})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u${SG ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  let g = ${linearGroupIndex};
  if (g >= ${groups}u) { return; }
  // 1, opaque to the shader compiler: keeps it from fully unrolling the loops bounded by it.
  let one = nwg.z;
${lines.join('\n')}
}`;
  return {
    name: g.name,
    wgsl,
    bindings,
    workgroups: grid(groups),
  };
}

/**
 * The conv block's stores after the register kernel's reduction: per output, a = acc + bias
 * then h and r; with pool, each run of 4 rows is a window, reduced as kernels/pool.ts does
 * (the first position wins ties, a later one must be strictly greater), so the result
 * equals conv2d -> maxPool2x2 bit for bit.
 */
function blockEpilogue(
  e: BlockEpilogue,
  R: number,
  C: number,
  units: number,
  colTy: string,
  bias: boolean,
  outH: number,
  outW: number,
  emit: (s: string) => void,
): void {
  const value = (i: number, c: number) => `acc${i}_${c}${bias ? ` + bias${c}` : ''}`;
  const tail = (o: string, v: string) => blockStores(e, o, v, colTy);
  if (!e.pool) {
    for (let i = 0; i < R; i++) {
      emit(`  if (row${i} < total) {`);
      emit(`    let o${i} = ((n${i} * ${outH}u + qy${i} + outY0) * ${outW}u + qx${i} + outX0) * ${units}u;`);
      for (let c = 0; c < C; c++) {
        emit(`    if (unit${c} < ${units}u) {`);
        emit(`      let o = o${i} + unit${c};`);
        emit(`      let v = ${value(i, c)};`);
        for (const l of tail('o', 'v')) emit(`      ${l}`);
        emit('    }');
      }
      emit('  }');
    }
    return;
  }
  // total is a multiple of 4 and row blocks start at multiples of 4: a window is all in or all out.
  for (let j = 0; j < R; j += 4) {
    emit(`  if (row${j} < total) {`);
    for (let c = 0; c < C; c++) {
      emit(`    if (unit${c} < ${units}u) {`);
      emit(`      let o = w${j} * ${units}u + unit${c};`);
      for (const l of poolWindow([0, 1, 2, 3].map((q) => value(j + q, c)), colTy)) emit(`      ${l}`);
      emit('      outArg[o] = arg;');
      for (const l of tail('o', 'best')) emit(`      ${l}`);
      emit('    }');
    }
    emit('  }');
  }
}

/**
 * What a conv2d (or conv block) asks of a forward algorithm. Inputs x, w, [bias], [add (the
 * epilogue's)]; outputs y, or with an epilogue a, [argmax (pool)], [h (relu)], [r (residual)].
 * `op` names the kernels and errors.
 */
export interface ConvForwardRequest {
  op: string;
  bias: boolean;
  epilogue?: BlockEpilogue;
}

/** Inputs dy, w, [argmax], [reluAt] (as `gates` has them); output dx. */
export interface ConvBackwardDataRequest {
  op: string;
  gates: SourceGates;
}

/** Inputs x, dy; output dw. */
export type ConvBackwardFilterRequest = Record<string, never>;

/** The forward family's algorithms; those with `traits.epilogue` also say how they run a conv block. */
export interface ConvForwardAlgorithm<C extends { algo: string }> extends KernelAlgorithm<ConvGeometry, C, ConvForwardRequest> {
  /** Whether a block with epilogue `e` can run the (tuned) config `c` as it is. */
  blockAccepts?(g: ConvGeometry, e: BlockEpilogue, c: C): boolean;
  /** The config an untuned block runs, or null where this algorithm is not the default there. */
  blockDefaultFor?(g: ConvGeometry, e: BlockEpilogue, choices: KernelChoices): C | null;
}

/** The bindings of a forward request's single kernel: its inputs, then its outputs. */
export function forwardArgs(req: ConvForwardRequest): BufferRef[] {
  const e = req.epilogue;
  const ins = 2 + (req.bias ? 1 : 0) + (e?.add ? 1 : 0);
  const outs = e ? 1 + (e.pool ? 1 : 0) + (e.relu ? 1 : 0) + (e.residual ? 1 : 0) : 1;
  return [...Array.from({ length: ins }, (_, i) => ({ in: i })), ...Array.from({ length: outs }, (_, i) => ({ out: i }))];
}
