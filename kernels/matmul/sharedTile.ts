// Workgroup-memory tiled GEMM, the layout discrete GPUs want (the register-blocked kernels
// in matmul.ts and conv/common.ts won on lavapipe, where there is no shared memory to speak
// of). A workgroup owns a BM x BN output tile and walks the reduction in BK slices: each
// slice of A (BM x BK) and B (BK x BN) is loaded cooperatively into workgroup memory, with
// adjacent invocations on adjacent global addresses (coalesced), then every invocation
// accumulates its TM x TN register block from workgroup memory.
//
// Invocation (lx, ly) of the (BN/TN) x (BM/TM) workgroup owns tile rows ly + i*(BM/TM) and
// column units lx + j*(BN/TN): rows and units are strided by the workgroup extent, so in
// the inner loop adjacent invocations read adjacent words of the B tile (no bank
// conflicts), invocations of one row read the same A word (a broadcast), and the final
// stores are coalesced. Accumulators are named variables (no dynamically indexed private
// arrays); with `unroll` the inner BK loop has a constant trip count so the driver can
// unroll it.
//
// Edge tiles: rows and columns past the end are clamped when loading and skipped when
// storing; reduction steps past the end load zeros. Barriers sit in uniform control flow:
// everything that bounds the slice loop depends only on the workgroup id.
//
// The generator core takes the operand loads as hooks, so the same template serves matmul
// (with either operand transposed) and the gathered implicit GEMMs of conv (conv/sharedTile.ts).
import { BindingKind, KernelSpec, ceilDiv, grid, linearGroupIndex } from '../spec.js';
import type { MatmulShape } from './matmul.js';
import type { KernelUses } from '../algorithm.js';

export interface SharedTileConfig {
  algo: 'shared';
  /** Output tile rows per workgroup. */
  BM: number;
  /** Output tile columns per workgroup (scalar columns, also with vec4). */
  BN: number;
  /** Reduction steps per slice held in workgroup memory. */
  BK: number;
  /** Rows per invocation. */
  TM: number;
  /** Columns per invocation (a multiple of 4 with vec4). */
  TN: number;
  /** Columns as vec4 units: B tile, accumulators and stores (needs the column count % 4 == 0). */
  vec4: boolean;
  /**
   * Give the inner BK loop a constant trip count, so the compiler can unroll it (what a GPU
   * wants). Off, the bound is opaque: on lavapipe that compiled 3-5x faster (2-3 s instead
   * of 9-15 s per kernel, busy 2-core machine).
   */
  unroll?: boolean;
  /**
   * Reduced precision (needs the device feature shader-f16 and the backend's precision
   * 'f16'): operands are rounded to f16 as they are staged into workgroup memory (half the
   * bytes, so larger tiles fit) and multiplied in f16; 'mul' accumulates the products in
   * f32, 'acc' accumulates in f16 too (faster where f16 math is, and the least accurate).
   * Absent: f32 throughout. Tensors stay f32 in their buffers either way.
   */
  f16?: 'mul' | 'acc';
  /**
   * Multiply on subgroup matrices (tensor cores on NVIDIA; Dawn's experimental feature
   * chromium-experimental-subgroup-matrix) instead of per-invocation registers: TM x TN is
   * then each subgroup's grid of M x N result fragments (see matrixTileGemm below).
   */
  matrix?: SubgroupMatrixTile;
}

/**
 * A subgroup-matrix shape the adapter offers (adapter.info.subgroupMatrixConfigs): left M x K,
 * right K x N, result M x N, on subgroups of `subgroup` invocations (the device's
 * subgroupMaxSize). Components are f16 with the config's `f16` ('acc': f16 results), else
 * f32. `emulated`: the builtins are replaced by plain WGSL (every invocation holds whole
 * fragments), so the kernel runs on any adapter with subgroups; for tests, never a candidate.
 */
export interface SubgroupMatrixTile {
  M: number;
  N: number;
  K: number;
  subgroup: number;
  emulated?: boolean;
}

/** A subgroup-matrix configuration as the adapter reports it. */
export interface SubgroupMatrixShape {
  component: 'f16' | 'f32';
  result: 'f16' | 'f32';
  M: number;
  N: number;
  K: number;
}

/** What a shared-tile config needs of the device: f16 math, subgroup matrices. */
export function sharedTileUses(c: SharedTileConfig): KernelUses {
  const out: KernelUses = {};
  if (c.f16 !== undefined) out.f16 = c.f16;
  if (c.matrix) out.matrix = c.matrix;
  return out;
}

export function sharedTileConfigKey(c: SharedTileConfig): string {
  const m = c.matrix;
  const mk = m ? `-sm${m.M}x${m.N}x${m.K}s${m.subgroup}${m.emulated ? 'e' : ''}` : '';
  return `sh${c.BM}x${c.BN}x${c.BK}t${c.TM}x${c.TN}${c.vec4 ? 'v4' : 's'}${c.unroll ? 'u' : ''}${c.f16 ? `-h${c.f16 === 'mul' ? 'm' : 'a'}` : ''}${mk}`;
}

/**
 * The portable WebGPU default of maxComputeWorkgroupStorageSize. Devices may offer more
 * (lavapipe 32 KB, an H200 48 KB): pass theirs as `maxStorageBytes` where a caller knows it.
 */
export const MAX_WORKGROUP_STORAGE_BYTES = 16384;
export const MAX_WORKGROUP_INVOCATIONS = 256;

export function sharedTileStorageBytes(c: SharedTileConfig): number {
  const staging = (c.f16 ? 2 : 4) * c.BK * (c.BM + c.BN);
  // Subgroup matrices go through a BM x BN result tile in workgroup memory for the epilogue.
  return c.matrix ? staging + (c.f16 === 'acc' ? 2 : 4) * c.BM * c.BN : staging;
}

/** The kernel precisions a backend may allow: 'f16' admits the f16 configs (never by default). */
export type KernelPrecision = 'f32' | 'f16';

/** What a config space may use beyond the portable defaults (passed in by the backend). */
export interface TileSpaceOptions {
  /** 'f16': add the f16 variants (f16 'mul' and 'acc') of every tile. Default 'f32'. */
  precision?: KernelPrecision;
  /** The device's maxComputeWorkgroupStorageSize. Default: the portable 16 KB. */
  maxStorageBytes?: number;
  /**
   * The device's subgroup size when it has the 'subgroups' feature and the size is fixed:
   * adds the conv register tiles that share activation loads through the subgroup.
   */
  subgroupSize?: number;
  /**
   * The subgroup-matrix shapes the device offers (with the feature), on subgroups of
   * `matrixSubgroup` invocations: adds the subgroup-matrix tiles (f16 ones only with
   * precision 'f16').
   */
  matrices?: SubgroupMatrixShape[];
  matrixSubgroup?: number;
}

const TILE_MN = [32, 64, 128];
const TILE_K = [8, 16, 32];
const THREAD_MN = [4, 8];

/**
 * The shared-tile configs worth trying for a GEMM with `cols` output columns and `rows`
 * output rows: tiles of 32-128 x 32-128 x 8-32 with 4-8 x 4-8 register blocks, 32-256
 * invocations, workgroup memory within `opts.maxStorageBytes` (default: the portable 16 KB;
 * f16 tiles take half). Tiles much larger than the output (only edge work) are left out,
 * except the smallest of each kind.
 */
export function sharedTileConfigs(rows: number, cols: number, opts: TileSpaceOptions = {}): SharedTileConfig[] {
  const out: SharedTileConfig[] = [];
  const maxBytes = opts.maxStorageBytes ?? MAX_WORKGROUP_STORAGE_BYTES;
  // f32 configs carry no f16 field at all, so their canonical form (the cache's) is unchanged.
  const precisions: (undefined | 'mul' | 'acc')[] = opts.precision === 'f16' ? [undefined, 'mul', 'acc'] : [undefined];
  for (const vec4 of cols % 4 === 0 ? [true, false] : [false])
    for (const BM of TILE_MN) {
      if (BM > 32 && BM >= 2 * rows) continue;
      for (const BN of TILE_MN) {
        if (BN > 32 && BN >= 2 * cols) continue;
        for (const BK of TILE_K)
          for (const TM of THREAD_MN)
            for (const TN of THREAD_MN)
              for (const unroll of [true, false])
                for (const f16 of precisions) {
                  const c: SharedTileConfig = { algo: 'shared', BM, BN, BK, TM, TN, vec4, unroll };
                  if (f16) c.f16 = f16;
                  if (sharedTileProblem(c, maxBytes) === null) {
                    const threads = (BM / TM) * (BN / TN);
                    if (threads >= 32) out.push(c);
                  }
                }
      }
    }
  return out;
}

/**
 * The shared-tile config meant for discrete GPUs without tuning: 128 x 128 x 8 tiles with
 * 8 x 8 per invocation (256 invocations, 8 KB of workgroup memory), the usual fp32 SGEMM
 * shape; smaller along a side that the output does not fill. The inner loop is unrolled.
 * With `f16` the same tile with twice the BK (the same workgroup memory).
 */
export function defaultSharedTileConfig(rows: number, cols: number, f16?: 'mul' | 'acc'): SharedTileConfig {
  const vec4 = cols % 4 === 0;
  const BM = rows >= 128 ? 128 : rows > 32 ? 64 : 32;
  const BN = cols >= 128 ? 128 : cols > 32 ? 64 : 32;
  const TM = BM === 128 ? 8 : 4;
  const TN = BN === 128 ? 8 : 4;
  const BK = (BM === 128 && BN === 128 ? 8 : 16) * (f16 ? 2 : 1);
  const c: SharedTileConfig = { algo: 'shared', BM, BN, BK, TM, TN, vec4, unroll: true };
  if (f16) c.f16 = f16;
  return c;
}

/**
 * Why a config cannot be generated at all (independent of the shape), or null.
 * `maxStorageBytes`: the device's workgroup memory (default: the portable 16 KB).
 */
export function sharedTileProblem(c: SharedTileConfig, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): string | null {
  for (const [k, v] of Object.entries({ BM: c.BM, BN: c.BN, BK: c.BK, TM: c.TM, TN: c.TN })) {
    if (!Number.isInteger(v) || v < 1) return `${k} must be a positive integer`;
  }
  if (c.matrix) return matrixTileProblem(c, c.matrix, maxStorageBytes);
  if (c.BM % c.TM !== 0) return 'BM must be a multiple of TM';
  if (c.BN % c.TN !== 0) return 'BN must be a multiple of TN';
  if (c.vec4 && c.TN % 4 !== 0) return 'vec4 needs TN % 4 == 0';
  const threads = (c.BM / c.TM) * (c.BN / c.TN);
  if (threads > MAX_WORKGROUP_INVOCATIONS) return `workgroup of ${threads} invocations (> ${MAX_WORKGROUP_INVOCATIONS})`;
  if (c.TM * c.TN > 64) return 'more than 64 accumulators per invocation';
  if (c.f16 !== undefined && c.f16 !== 'mul' && c.f16 !== 'acc') return `f16 must be 'mul' or 'acc' (or absent)`;
  const bytes = sharedTileStorageBytes(c);
  if (bytes > maxStorageBytes) return `${bytes} bytes of workgroup memory (> ${maxStorageBytes})`;
  return null;
}

/**
 * One tiled GEMM, its operands described by WGSL snippets. Names the hooks may use:
 * `tileRow` (first GEMM row of the tile), `tileCol` (first column unit), `rowsTotal` and
 * `kTotal` (defined by `head`: the reduction runs over [kBegin, kTotal)), `k0` (first reduction step of the slice), `one` (1, opaque
 * to the compiler), `li` (local_invocation_index), and whatever `head` defines.
 */
export interface TileGemm {
  name: string;
  comment: string;
  /** Storage binding declarations (the core adds only workgroup arrays). */
  decls: string[];
  bindings: BindingKind[];
  /** Workgroups in the dispatch; groups past it return at once (a uniform return). */
  groups: number;
  /** Output column units (columns, or columns / 4 with vec4). */
  units: number;
  /**
   * Lines run first, given `g` (the linear workgroup index): define u32 lets `tileRow`,
   * `tileCol` (in units), `rowsTotal` (>= 1), `kBegin` and `kTotal` (>= kBegin), all
   * uniform across the workgroup.
   */
  head: string[];
  /** A slots are spread with adjacent invocations on adjacent reduction steps (else adjacent rows). */
  aAlongK: boolean;
  /** Lines once per A slot p, given `ar${p}` (its row, clamped to the last). */
  aOnce(p: number): string[];
  /** Lines per slice for A slot p, given `ak${p}` (its reduction step, maybe >= kTotal): define `av${p}` (f32). */
  aLoad(p: number): string[];
  /** B slots are spread with adjacent invocations on adjacent reduction steps (else adjacent units). */
  bAlongK: boolean;
  /** Lines per slice for B slot q, given `bk${q}` and `bu${q}` (its unit, clamped): define `bv${q}` (f32 or vec4). */
  bLoad(q: number): string[];
  /** Lines once per slice, given `k0` (optional). */
  slice?: string[];
  /** Lines once per stored row i before its units, given `orow${i}` (< rowsTotal). */
  storeRow(i: number): string[];
  /** Stores accumulator `v` for row i at unit `ou${j}` (< units). */
  store(i: number, j: number, v: string): string;
}

/**
 * Which A and B tile element each of the T invocations stages (fixed across slices): A slot
 * p is element li + p*T of the BM x BK tile (am, akk; its row ar clamped), B slot q element
 * li + q*T of the BK x BNu tile (bkk, bn; its unit bu clamped), spread along the reduction or
 * along rows/units as the hooks say their operand is contiguous.
 */
export function stagingSlots(t: TileGemm, BM: number, BK: number, BNu: number, T: number, emit: (s: string) => void): void {
  for (let p = 0; p < ceilDiv(BM * BK, T); p++) {
    emit(`  let ae${p} = li + ${p * T}u;`);
    emit(t.aAlongK ? `  let am${p} = ae${p} / ${BK}u;` : `  let am${p} = ae${p} % ${BM}u;`);
    emit(t.aAlongK ? `  let akk${p} = ae${p} % ${BK}u;` : `  let akk${p} = ae${p} / ${BM}u;`);
    emit(`  let ar${p} = min(tileRow + am${p}, rowsTotal - 1u);`);
    for (const l of t.aOnce(p)) emit(`  ${l}`);
  }
  for (let q = 0; q < ceilDiv(BK * BNu, T); q++) {
    emit(`  let be${q} = li + ${q * T}u;`);
    emit(t.bAlongK ? `  let bkk${q} = be${q} % ${BK}u;` : `  let bn${q} = be${q} % ${BNu}u;`);
    emit(t.bAlongK ? `  let bn${q} = be${q} / ${BK}u;` : `  let bkk${q} = be${q} / ${BNu}u;`);
    emit(`  let bu${q} = min(tileCol + bn${q}, ${t.units - 1}u);`);
  }
}

/**
 * One slice's staging, inside the slice loop (k0 defined): each slot loads through the hooks
 * and stores into As (k-major, As[akk * BM + am]) and Bs (Bs[bkk * BNu + bn]), converted by
 * aCast / bCast; the last slots are guarded where T does not divide the tile.
 */
export function stageSlice(
  t: TileGemm,
  BM: number,
  BK: number,
  BNu: number,
  T: number,
  aCast: (v: string) => string,
  bCast: (v: string) => string,
  emit: (s: string) => void,
): void {
  const slot = (count: number, i: number, prefix: 'a' | 'b', load: string[], store: string) => {
    const guarded = (i + 1) * T > count;
    const ind = guarded ? '      ' : '    ';
    if (guarded) emit(`    if (${prefix}e${i} < ${count}u) {`);
    emit(`${ind}let ${prefix}k${i} = k0 + ${prefix}kk${i};`);
    for (const l of load) emit(`${ind}${l}`);
    emit(`${ind}${store}`);
    if (guarded) emit('    }');
  };
  for (let p = 0; p < ceilDiv(BM * BK, T); p++) slot(BM * BK, p, 'a', t.aLoad(p), `As[akk${p} * ${BM}u + am${p}] = ${aCast(`av${p}`)};`);
  for (let q = 0; q < ceilDiv(BK * BNu, T); q++) slot(BK * BNu, q, 'b', t.bLoad(q), `Bs[bkk${q} * ${BNu}u + bn${q}] = ${bCast(`bv${q}`)};`);
}

/**
 * With `cfg.f16` the WGSL needs the device feature shader-f16 (`enable f16;`). The hooks
 * still load and store f32: the template rounds operands to f16 as it stages them.
 * `maxStorageBytes`: the device's workgroup memory (default: the portable 16 KB).
 */
export function tileGemmKernel(t: TileGemm, cfg: SharedTileConfig, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): KernelSpec {
  const problem = sharedTileProblem(cfg, maxStorageBytes);
  if (problem) throw new Error(`${t.name}: config ${sharedTileConfigKey(cfg)}: ${problem}`);
  if (cfg.matrix) return matrixTileGemmKernel(t, cfg, cfg.matrix);
  const { BM, BN, BK, TM, TN, vec4 } = cfg;
  const colTy = vec4 ? 'vec4<f32>' : 'f32';
  // Element types of the workgroup tiles and of the accumulators.
  const elem = cfg.f16 ? 'f16' : 'f32';
  const tileColTy = vec4 ? `vec4<${elem}>` : elem;
  const accTy = cfg.f16 === 'acc' ? tileColTy : colTy;
  const BNu = vec4 ? BN / 4 : BN;
  const TNu = vec4 ? TN / 4 : TN;
  const wx = BN / TN;
  const wy = BM / TM;
  const T = wx * wy;
  const aCount = BM * BK;
  const bCount = BK * BNu;

  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);
  for (const l of t.head) emit(`  ${l}`);
  stagingSlots(t, BM, BK, BNu, T, emit);
  for (let i = 0; i < TM; i++) for (let j = 0; j < TNu; j++) emit(`  var acc${i}_${j} = ${accTy}(0.0);`);

  emit(`  let slices = (kTotal - kBegin + ${BK - 1}u) / ${BK}u;`);
  // `* one`: an opaque trip count keeps Mesa from unrolling the whole reduction (compile time).
  emit('  for (var s = 0u; s < slices * one; s++) {');
  emit(`    let k0 = kBegin + s * ${BK}u;`);
  for (const l of t.slice ?? []) emit(`    ${l}`);
  stageSlice(t, BM, BK, BNu, T, (v) => (cfg.f16 ? `f16(${v})` : v), (v) => (cfg.f16 ? `${tileColTy}(${v})` : v), emit);
  emit('    workgroupBarrier();');
  emit(`    for (var kk = 0u; kk < ${BK}u${cfg.unroll ? '' : ' * one'}; kk++) {`);
  for (let i = 0; i < TM; i++) emit(`      let a${i} = As[kk * ${BM}u + ${i * wy}u + lid.y];`);
  for (let j = 0; j < TNu; j++) emit(`      let b${j} = Bs[kk * ${BNu}u + ${j * wx}u + lid.x];`);
  // f16 'mul': the product is rounded to f16, then added in f32.
  const product = (i: number, j: number) => (cfg.f16 === 'mul' ? `${colTy}(a${i} * b${j})` : `a${i} * b${j}`);
  for (let i = 0; i < TM; i++) for (let j = 0; j < TNu; j++) emit(`      acc${i}_${j} += ${product(i, j)};`);
  emit('    }');
  emit('    workgroupBarrier();');
  emit('  }');

  for (let j = 0; j < TNu; j++) emit(`  let ou${j} = tileCol + ${j * wx}u + lid.x;`);
  for (let i = 0; i < TM; i++) {
    emit(`  let orow${i} = tileRow + ${i * wy}u + lid.y;`);
    emit(`  if (orow${i} < rowsTotal) {`);
    for (const l of t.storeRow(i)) emit(`    ${l}`);
    for (let j = 0; j < TNu; j++) {
      const v = cfg.f16 === 'acc' ? `${colTy}(acc${i}_${j})` : `acc${i}_${j}`;
      emit(`    if (ou${j} < ${t.units}u) { ${t.store(i, j, v)} }`);
    }
    emit('  }');
  }

  const wgsl = `${cfg.f16 ? 'enable f16;\n' : ''}// ${t.comment} ${sharedTileConfigKey(cfg)}
${t.decls.join('\n')}
var<workgroup> As: array<${elem}, ${aCount}>;
var<workgroup> Bs: array<${tileColTy}, ${bCount}>;
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let g = ${linearGroupIndex};
  if (g >= ${t.groups}u) { return; }
  // 1, opaque to the shader compiler.
  let one = nwg.z;
${lines.join('\n')}
}`;
  return { name: t.name, wgsl, bindings: t.bindings, workgroups: grid(t.groups) };
}

/** sharedTileProblem for a subgroup-matrix tile. */
function matrixTileProblem(c: SharedTileConfig, m: SubgroupMatrixTile, maxStorageBytes: number): string | null {
  for (const [k, v] of Object.entries({ M: m.M, N: m.N, K: m.K, subgroup: m.subgroup })) {
    if (!Number.isInteger(v) || v < 1) return `matrix ${k} must be a positive integer`;
  }
  if (c.vec4) return 'subgroup matrices need vec4 off (the B tile is read as a row-major matrix)';
  if (c.f16 !== undefined && c.f16 !== 'mul' && c.f16 !== 'acc') return `f16 must be 'mul' or 'acc' (or absent)`;
  if (c.BM % (c.TM * m.M) !== 0) return `BM must be a multiple of TM * M = ${c.TM * m.M}`;
  if (c.BN % (c.TN * m.N) !== 0) return `BN must be a multiple of TN * N = ${c.TN * m.N}`;
  if (c.BK % m.K !== 0) return `BK must be a multiple of K = ${m.K}`;
  const threads = matrixSubgroups(c, m) * m.subgroup;
  if (threads > MAX_WORKGROUP_INVOCATIONS) return `workgroup of ${threads} invocations (> ${MAX_WORKGROUP_INVOCATIONS})`;
  if (c.TM * c.TN > 16) return 'more than 16 result fragments per subgroup';
  const bytes = sharedTileStorageBytes(c);
  if (bytes > maxStorageBytes) return `${bytes} bytes of workgroup memory (> ${maxStorageBytes})`;
  return null;
}

/** Subgroups per workgroup of a subgroup-matrix tile: each owns TM*M x TN*N of the BM x BN tile. */
function matrixSubgroups(c: SharedTileConfig, m: SubgroupMatrixTile): number {
  return (c.BM / (c.TM * m.M)) * (c.BN / (c.TN * m.N));
}

/**
 * Every shared-template config `opts` allows for a rows x cols GEMM, in this order: the f32
 * tiles, the f16 ones (with precision 'f16'), the subgroup-matrix tiles (with `matrices`).
 */
export function sharedGemmCandidates(rows: number, cols: number, opts: TileSpaceOptions = {}): SharedTileConfig[] {
  const out = sharedTileConfigs(rows, cols, { maxStorageBytes: opts.maxStorageBytes });
  if (opts.precision === 'f16') out.push(...sharedTileConfigs(rows, cols, { precision: 'f16', maxStorageBytes: opts.maxStorageBytes }).filter((c) => c.f16 !== undefined));
  return [...out, ...subgroupMatrixTileConfigs(rows, cols, opts)];
}

/**
 * The subgroup-matrix tiles for a rows x cols GEMM on the device's matrix shapes
 * (`opts.matrices`, subgroups of `opts.matrixSubgroup`): BM, BN of 32-128, BK of one or two
 * K steps (at least 16), 1-4 x 1-4 fragments per subgroup, at most 256 invocations, within the
 * workgroup memory. f16 shapes only with precision 'f16' (f16 results as f16 'acc').
 */
export function subgroupMatrixTileConfigs(rows: number, cols: number, opts: TileSpaceOptions = {}): SharedTileConfig[] {
  const S = opts.matrixSubgroup;
  if (!S || !opts.matrices?.length) return [];
  const maxBytes = opts.maxStorageBytes ?? MAX_WORKGROUP_STORAGE_BYTES;
  const out: SharedTileConfig[] = [];
  const seen = new Set<string>();
  for (const shape of opts.matrices) {
    let f16: 'mul' | 'acc' | undefined;
    if (shape.component === 'f16') {
      if (opts.precision !== 'f16') continue;
      f16 = shape.result === 'f16' ? 'acc' : 'mul';
    } else if (shape.component !== 'f32' || shape.result !== 'f32') continue;
    const matrix: SubgroupMatrixTile = { M: shape.M, N: shape.N, K: shape.K, subgroup: S };
    for (const BM of TILE_MN) {
      if (BM > 32 && BM >= 2 * rows) continue;
      for (const BN of TILE_MN) {
        if (BN > 32 && BN >= 2 * cols) continue;
        for (const BK of [shape.K, 2 * shape.K].filter((k) => k >= 16 || k === shape.K))
          for (const TM of [1, 2, 4])
            for (const TN of [1, 2, 4]) {
              const c: SharedTileConfig = { algo: 'shared', BM, BN, BK, TM, TN, vec4: false, unroll: true, matrix };
              if (f16) c.f16 = f16;
              const key = sharedTileConfigKey(c);
              if (seen.has(key) || matrixTileProblem(c, matrix, maxBytes) !== null) continue;
              seen.add(key);
              out.push(c);
            }
      }
    }
  }
  return out;
}

/**
 * The subgroup-matrix form of tileGemmKernel. The staging of A and B into workgroup memory is
 * the register template's (As k-major: a column-major BM x BK matrix; Bs row-major BK x BN);
 * subgroup s of the workgroup (@builtin(subgroup_id)) owns rows (s / (BN / WN)) * WM and
 * columns (s % (BN / WN)) * WN of the tile, WM = TM*M, WN = TN*N: per K step it loads TM left
 * fragments straight from As and TN right ones from Bs and accumulates TM x TN result
 * fragments. At the end they go to a BM x BN workgroup tile Cs, and every invocation then
 * runs the template's epilogue hooks over its share of Cs (rows and columns past the output
 * skipped), so matmul and the conv GEMMs take the same hooks unchanged.
 * Emulated (`matrix.emulated`): the same kernel with each builtin replaced by a function over
 * private arrays holding whole fragments, which any adapter with subgroups runs; the result
 * store is spread over the subgroup's lanes (subgroup_invocation_id) so each element is
 * written once.
 */
export function matrixTileGemmKernel(t: TileGemm, cfg: SharedTileConfig, m: SubgroupMatrixTile): KernelSpec {
  const { BM, BN, BK, TM, TN } = cfg;
  const elem = cfg.f16 ? 'f16' : 'f32';
  const res = cfg.f16 === 'acc' ? 'f16' : 'f32';
  const S = m.subgroup;
  const T = matrixSubgroups(cfg, m) * S;
  const WM = TM * m.M;
  const WN = TN * m.N;
  const aCount = BM * BK;
  const bCount = BK * BN;
  const cSlots = ceilDiv(BM * BN, T);
  const E = !!m.emulated;
  const leftTy = E ? `array<f32, ${m.M * m.K}>` : `subgroup_matrix_left<${elem}, ${m.K}, ${m.M}>`;
  const rightTy = E ? `array<f32, ${m.K * m.N}>` : `subgroup_matrix_right<${elem}, ${m.N}, ${m.K}>`;
  const resultTy = E ? `array<f32, ${m.M * m.N}>` : `subgroup_matrix_result<${res}, ${m.N}, ${m.M}>`;
  const loadLeft = (off: string) => (E ? `smLoadLeft(${off})` : `subgroupMatrixLoad<${leftTy}, col_major>(&As, ${off}, ${BM}u)`);
  const loadRight = (off: string) => (E ? `smLoadRight(${off})` : `subgroupMatrixLoad<${rightTy}, row_major>(&Bs, ${off}, ${BN}u)`);
  const mma = (l: string, r: string, acc: string) => (E ? `smMultiplyAccumulate(${l}, ${r}, ${acc})` : `subgroupMatrixMultiplyAccumulate(${l}, ${r}, ${acc})`);
  const store = (off: string, v: string) => (E ? `smStore(${off}, ${v}, sgLane);` : `subgroupMatrixStore<row_major>(&Cs, ${off}, ${v}, ${BN}u);`);

  const lines: string[] = [];
  const emit = (...ls: string[]) => lines.push(...ls);
  for (const l of t.head) emit(`  ${l}`);
  stagingSlots(t, BM, BK, BN, T, emit);
  emit(`  let wm0 = (sgIndex / ${BN / WN}u) * ${WM}u;`);
  emit(`  let wn0 = (sgIndex % ${BN / WN}u) * ${WN}u;`);
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN; j++) emit(`  var acc${i}_${j} = ${resultTy}();`);
  emit(`  let slices = (kTotal - kBegin + ${BK - 1}u) / ${BK}u;`);
  emit('  for (var s = 0u; s < slices * one; s++) {');
  emit(`    let k0 = kBegin + s * ${BK}u;`);
  for (const l of t.slice ?? []) emit(`    ${l}`);
  stageSlice(t, BM, BK, BN, T, (v) => `${elem}(${v})`, (v) => `${elem}(${v})`, emit);
  emit('    workgroupBarrier();');
  // A constant trip count: the driver unrolls the K steps of a slice.
  emit(`    for (var kk = 0u; kk < ${BK}u; kk += ${m.K}u) {`);
  for (let i = 0; i < TM; i++) emit(`      let l${i} = ${loadLeft(`kk * ${BM}u + wm0 + ${i * m.M}u`)};`);
  for (let j = 0; j < TN; j++) emit(`      let r${j} = ${loadRight(`kk * ${BN}u + wn0 + ${j * m.N}u`)};`);
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN; j++) emit(`      acc${i}_${j} = ${mma(`l${i}`, `r${j}`, `acc${i}_${j}`)};`);
  emit('    }');
  emit('    workgroupBarrier();');
  emit('  }');
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN; j++) emit(`  ${store(`(wm0 + ${i * m.M}u) * ${BN}u + wn0 + ${j * m.N}u`, `acc${i}_${j}`)}`);
  emit('  workgroupBarrier();');
  // The epilogue: slot p of each invocation is element li + p*T of the result tile.
  for (let p = 0; p < cSlots; p++) {
    emit(`  let ce${p} = li + ${p * T}u;`);
    emit(`  let orow${p} = tileRow + ce${p} / ${BN}u;`);
    emit(`  let ou${p} = tileCol + ce${p} % ${BN}u;`);
    emit(`  if (ce${p} < ${BM * BN}u && orow${p} < rowsTotal && ou${p} < ${t.units}u) {`);
    for (const l of t.storeRow(p)) emit(`    ${l}`);
    emit(`    ${t.store(p, p, `f32(Cs[ce${p}])`)}`);
    emit('  }');
  }

  // Emulated loops run to n * smOne (1, opaque to the compiler): fully unrolled, the fragment
  // products made lavapipe compile for minutes.
  const emulation = !E
    ? ''
    : `
// Emulated subgroup matrices: every invocation holds whole fragments (row-major arrays).
var<private> smOne: u32;
fn smLoadLeft(off: u32) -> ${leftTy} {
  var v: ${leftTy};
  for (var r = 0u; r < ${m.M}u * smOne; r++) { for (var c = 0u; c < ${m.K}u * smOne; c++) { v[r * ${m.K}u + c] = f32(As[off + c * ${BM}u + r]); } }
  return v;
}
fn smLoadRight(off: u32) -> ${rightTy} {
  var v: ${rightTy};
  for (var r = 0u; r < ${m.K}u * smOne; r++) { for (var c = 0u; c < ${m.N}u * smOne; c++) { v[r * ${m.N}u + c] = f32(Bs[off + r * ${BN}u + c]); } }
  return v;
}
fn smMultiplyAccumulate(l: ${leftTy}, rt: ${rightTy}, acc: ${resultTy}) -> ${resultTy} {
  var out = acc;
  for (var r = 0u; r < ${m.M}u * smOne; r++) {
    for (var c = 0u; c < ${m.N}u * smOne; c++) {
      var s = 0.0;
      for (var k = 0u; k < ${m.K}u * smOne; k++) { s += l[r * ${m.K}u + k] * rt[k * ${m.N}u + c]; }
      out[r * ${m.N}u + c] = ${res === 'f16' ? 'f32(f16(out[r * ' + m.N + 'u + c] + s))' : `out[r * ${m.N}u + c] + s`};
    }
  }
  return out;
}
fn smStore(off: u32, v: ${resultTy}, lane: u32) {
  for (var e = lane; e < ${m.M * m.N}u * smOne; e += ${S}u) { Cs[off + (e / ${m.N}u) * ${BN}u + e % ${m.N}u] = ${res}(v[e]); }
}`;
  const wgsl = `${cfg.f16 ? 'enable f16;\n' : ''}enable subgroups;
${E ? '' : 'enable chromium_experimental_subgroup_matrix;\ndiagnostic(off, subgroup_matrix_uniformity);\n'}// ${t.comment} ${sharedTileConfigKey(cfg)}
${t.decls.join('\n')}
var<workgroup> As: array<${elem}, ${aCount}>;
var<workgroup> Bs: array<${elem}, ${bCount}>;
var<workgroup> Cs: array<${res}, ${BM * BN}>;${emulation}
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sgIndex: u32${E ? ', @builtin(subgroup_invocation_id) sgLane: u32' : ''}) {
  let g = ${linearGroupIndex};
  if (g >= ${t.groups}u) { return; }
  // 1, opaque to the shader compiler.
  let one = nwg.z;${E ? '\n  smOne = one;' : ''}
${lines.join('\n')}
}`;
  return { name: t.name, wgsl, bindings: t.bindings, workgroups: grid(t.groups) };
}

export function checkSharedMatmulConfig(s: MatmulShape, c: SharedTileConfig, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): void {
  const problem = sharedTileProblem(c, maxStorageBytes);
  const bad = (why: string) => new Error(`matmul config ${sharedTileConfigKey(c)} invalid for ${s.M}x${s.K}x${s.N}: ${why}`);
  if (problem) throw bad(problem);
  if (c.vec4 && s.N % 4 !== 0) throw bad('vec4 columns need N % 4 == 0');
  if (s.M < 1 || s.N < 1 || s.K < 0) throw bad('empty output');
  if (s.batch !== undefined && (!Number.isInteger(s.batch) || s.batch < 1)) throw bad('batch must be a positive integer');
}

export function sharedMatmulConfigSpace(s: MatmulShape, opts: TileSpaceOptions = {}): SharedTileConfig[] {
  return sharedTileConfigs(s.M, s.N, opts);
}

export function defaultSharedMatmulConfig(s: MatmulShape, f16?: 'mul' | 'acc'): SharedTileConfig {
  return defaultSharedTileConfig(s.M, s.N, f16);
}

/**
 * out[M, N] = op(A) op(B) (+ bias[N] with `bias`). Bindings: a, b, [bias], out. The
 * transposes are absorbed by the loads into workgroup memory, each spread so adjacent
 * invocations read adjacent global addresses.
 */
export function sharedMatmulKernel(s: MatmulShape, cfg: SharedTileConfig, bias = false, maxStorageBytes = MAX_WORKGROUP_STORAGE_BYTES): KernelSpec {
  checkSharedMatmulConfig(s, cfg, maxStorageBytes);
  const { M, K, N, transA, transB } = s;
  const { vec4 } = cfg;
  const units = vec4 ? N / 4 : N;
  const colTy = vec4 ? 'vec4<f32>' : 'f32';
  const BNu = vec4 ? cfg.BN / 4 : cfg.BN;
  const colGroups = ceilDiv(units, BNu);
  // With a batch (matmul.ts MatmulShape.batch), product bi owns perProduct consecutive workgroups.
  const batch = s.batch ?? 1;
  const perProduct = colGroups * ceilDiv(M, cfg.BM);
  const groups = perProduct * batch;
  const base = (v: string) => (batch > 1 ? `${v} + ` : '');
  // B read as vec4 units only when a unit is contiguous in memory (B stored [K, N]).
  const bVec = vec4 && !transB;
  const decls = [
    '@group(0) @binding(0) var<storage, read> a: array<f32>;',
    `@group(0) @binding(1) var<storage, read> b: array<${bVec ? 'vec4<f32>' : 'f32'}>;`,
  ];
  if (bias) decls.push(`@group(0) @binding(2) var<storage, read> bias: array<${colTy}>;`);
  decls.push(`@group(0) @binding(${bias ? 3 : 2}) var<storage, read_write> out: array<${colTy}>;`);
  const zero = vec4 ? 'vec4<f32>(0.0)' : '0.0';
  const spec = tileGemmKernel(
    {
      name: 'matmul',
      comment: `matmul ${batch > 1 ? `${batch}x ` : ''}${M}x${K}x${N}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''}${bias ? ' +bias' : ''}`,
      decls,
      bindings: bias ? ['read', 'read', 'read', 'rw'] : ['read', 'read', 'rw'],
      groups,
      units,
      head: [
        ...(batch > 1
          ? [
              `let bi = g / ${perProduct}u;`,
              `let gp = g % ${perProduct}u;`,
              `let aB = bi * ${M * K}u;`,
              `let bB = bi * ${(K * N) / (bVec ? 4 : 1)}u;`,
              `let oB = bi * ${M * units}u;`,
            ]
          : ['let gp = g;']),
        `let tileRow = (gp / ${colGroups}u) * ${cfg.BM}u;`,
        `let tileCol = (gp % ${colGroups}u) * ${BNu}u;`,
        `let rowsTotal = ${M}u;`,
        'let kBegin = 0u;',
        `let kTotal = ${K}u;`,
      ],
      aAlongK: !transA,
      aOnce: () => [],
      aLoad: (p) => [
        `let aok${p} = ak${p} < ${K}u;`,
        `let av${p} = select(0.0, a[${base('aB')}select(0u, ${transA ? `ak${p} * ${M}u + ar${p}` : `ar${p} * ${K}u + ak${p}`}, aok${p})], aok${p});`,
      ],
      bAlongK: transB,
      bLoad: (q) => {
        const ok = `bk${q} < ${K}u`;
        const kc = `min(bk${q}, ${Math.max(K, 1) - 1}u)`;
        if (!transB) return [`let bv${q} = select(${zero}, b[${base('bB')}${kc} * ${units}u + bu${q}], ${ok});`];
        if (!vec4) return [`let bv${q} = select(0.0, b[${base('bB')}bu${q} * ${K}u + ${kc}], ${ok});`];
        const parts = [0, 1, 2, 3].map((m) => `b[${base('bB')}(bu${q} * 4u + ${m}u) * ${K}u + ${kc}]`);
        return [`let bv${q} = select(${zero}, vec4<f32>(${parts.join(', ')}), ${ok});`];
      },
      storeRow: () => [],
      store: (i, j, v) => `out[${base('oB')}orow${i} * ${units}u + ou${j}] = ${v}${bias ? ` + bias[ou${j}]` : ''};`,
    },
    cfg,
    maxStorageBytes,
  );
  return spec;
}
