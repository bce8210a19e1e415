// Register-blocked matmul: each invocation computes `rows` rows x `cols` column units of
// the output, a unit being a vec4 of columns (when N % 4 == 0) or one column. The units
// of one invocation are strided by the workgroup width, so adjacent invocations (SIMD lanes
// on lavapipe, threads of a warp on a GPU) load adjacent units of B, while every lane of a
// workgroup row reads the same A element (a broadcast). Accumulators are separate named
// variables, never a private array: dynamic indexing of private arrays is slow on lavapipe.
// Workgroup-memory tiling measured slower than none on lavapipe (DESIGN.md), so there is
// none; the config space is what the autotuner searches.
import { KernelSpec, ceilDiv, defaultSubgroupTile, grid, linearGroupIndex, subgroupTileProblem } from '../spec.js';

export interface MatmulShape {
  M: number;
  K: number;
  N: number;
  /** A is stored [K, M]. */
  transA: boolean;
  /** B is stored [N, K]. */
  transB: boolean;
  /**
   * Independent products in one dispatch (default 1): A, B and out hold `batch` matrices
   * back to back (the Winograd conv's 16 transformed-domain GEMMs, kernels/conv/winograd.ts).
   */
  batch?: number;
}

/** What a matmul op asks for: `bias` adds bias[N] to every row (the 1x1 conv-as-matmul's). Inputs a, b, [bias]; output out. */
export interface MatmulRequest {
  bias: boolean;
}

/** The register-blocked kernel's config (this file). */
export interface MatmulConfig {
  algo: 'register';
  /** Output rows per invocation (R). */
  rows: number;
  /** Column units per invocation (C). */
  cols: number;
  /** A column unit is a vec4 of columns; needs N % 4 == 0. */
  vec4: boolean;
  /**
   * Load the K-contiguous operands (A when not transposed, B when transposed) as vec4s
   * along K, four K steps per load; needs K % 4 == 0.
   */
  kVec: boolean;
  /** Workgroup size along the columns (lanes that read adjacent units of B). */
  wgX: number;
  /** Workgroup size along the row blocks. */
  wgY: number;
  /** K blocks (1 step, or 4 with kVec) written out per loop iteration. */
  kUnroll: number;
  /**
   * Subgroup size S when the A loads are shared through the subgroup (as the conv tiles'
   * `subgroup`, kernels/conv/common.ts): the workgroup owns one row block (wgY 1), lane j
   * loads rows j, j + S, ... and subgroupBroadcast hands them to the other lanes.
   */
  subgroup?: number;
}

export function matmulConfigKey(c: MatmulConfig): string {
  return `r${c.rows}c${c.cols}${c.vec4 ? 'v4' : 's'}${c.kVec ? 'k4' : 'k1'}w${c.wgX}x${c.wgY}u${c.kUnroll}${c.subgroup ? `sg${c.subgroup}` : ''}`;
}

const ROWS = [1, 2, 4, 8];
const COLS = [1, 2, 4, 8];
const WORKGROUPS: [number, number][] = [
  [64, 1],
  [32, 2],
  [16, 4],
  [128, 1],
  [8, 8],
];
const UNROLLS = [1, 2, 4];

/**
 * Accumulator floats per invocation, at most the measured winner's (R=8 x 2 vec4): larger
 * blocks spill lavapipe's 16 AVX2 registers many times over and compile for seconds.
 */
const MAX_ACCUMULATORS = 64;
/**
 * Scalar multiply-adds written out per K-loop iteration: past this, lavapipe spends many
 * seconds compiling one shader (r8c8 k4 u2: 21 s, r8c2 vec4 u2: 2.7 s) and longer bodies
 * were never faster.
 */
const MAX_BODY_FMAS = 64;

/** Rows and workgroup widths of the subgroup-shared tiles (a multiple of the subgroup size). */
const SUBGROUP_ROWS = [1, 2, 4, 8, 16];
const SUBGROUP_WIDTHS = [8, 16, 32, 64];

/**
 * Every config the autotuner may try for this shape; each one is correct for it. Configs
 * that spill far beyond the register file or unroll very long bodies are left out: they
 * lost every measurement here and cost seconds of shader compilation each on lavapipe.
 * With `subgroup` (the device's fixed subgroup size) also the subgroup-shared tiles.
 */
export function matmulConfigSpace(s: MatmulShape, subgroup?: number): MatmulConfig[] {
  const out: MatmulConfig[] = [];
  const vecs = s.N % 4 === 0 ? [true, false] : [false];
  const kVecs = s.K % 4 === 0 && !(s.transA && !s.transB) ? [false, true] : [false];
  for (const vec4 of vecs)
    for (const kVec of kVecs)
      for (const rows of ROWS)
        for (const cols of COLS) {
          const accumulators = rows * cols * (vec4 ? 4 : 1);
          if (accumulators > MAX_ACCUMULATORS) continue;
          for (const [wgX, wgY] of WORKGROUPS)
            for (const kUnroll of UNROLLS) {
              if (accumulators * kUnroll * (kVec ? 4 : 1) > MAX_BODY_FMAS) continue;
              out.push({ algo: 'register', rows, cols, vec4, kVec, wgX, wgY, kUnroll });
            }
        }
  if (subgroup)
    for (const vec4 of vecs)
      for (const kVec of kVecs)
        for (const rows of SUBGROUP_ROWS)
          for (const cols of [1, 2])
            for (const wgX of SUBGROUP_WIDTHS) {
              if (wgX % subgroup !== 0 || rows * cols * (vec4 ? 4 : 1) * (kVec ? 4 : 1) > 2 * MAX_BODY_FMAS) continue;
              out.push({ algo: 'register', rows, cols, vec4, kVec, wgX, wgY: 1, kUnroll: 1, subgroup });
            }
  return out;
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function pow2AtMost(n: number, cap: number): number {
  let p = 1;
  while (p * 2 <= Math.min(n, cap)) p *= 2;
  return p;
}

/**
 * The config used without tuning: the sweep winner on lavapipe (R=8, C=2 vec4, 64x1;
 * DESIGN.md), shrunk where the output is too small to fill it, since rows and columns past
 * the edge are computed and thrown away. With `subgroup`, where the columns fill a subgroup,
 * the subgroup-shared tile: 16 rows x 2 units, at most 32 lanes wide.
 */
export function defaultMatmulConfig(s: MatmulShape, subgroup?: number): MatmulConfig {
  const shared = subgroup ? defaultSubgroupTile(s.N % 4 === 0 ? s.N / 4 : s.N, s.M, subgroup) : null;
  if (shared) return { algo: 'register', ...shared, vec4: s.N % 4 === 0, kVec: false, wgY: 1, kUnroll: 1, subgroup };
  const vec4 = s.N % 4 === 0;
  const units = vec4 ? s.N / 4 : s.N;
  const rows = pow2AtMost(s.M, 8);
  let cols = 2;
  let wgX = 64;
  if (units < wgX * cols) {
    cols = 1;
    wgX = Math.min(64, pow2AtLeast(units));
  }
  const wgY = Math.max(1, Math.min(64 / wgX, pow2AtMost(ceilDiv(s.M, rows), 64)));
  return { algo: 'register', rows, cols, vec4, kVec: false, wgX, wgY, kUnroll: 1 };
}

/**
 * B elements from which the default path transposes a transposed B (kernels/matmul/transpose.ts)
 * and runs the plain kernel: measured on lavapipe, 1024^3 A*B^T took 1.0 s against 0.45 s for
 * A*B, and the transpose 18 ms; at 512^3, 89 vs 61 ms against 4.5 ms.
 */
export const TRANSPOSE_B_FROM = 1 << 16;

/** Whether the default path transposes B first (the config then applies to transB = false). */
export function transposeBFirst(s: MatmulShape): boolean {
  return s.transB && s.K * s.N >= TRANSPOSE_B_FROM;
}

export function checkMatmulConfig(s: MatmulShape, c: MatmulConfig): void {
  const bad = (why: string) => new Error(`matmul config ${matmulConfigKey(c)} invalid for ${s.M}x${s.K}x${s.N}: ${why}`);
  if (c.vec4 && s.N % 4 !== 0) throw bad('vec4 columns need N % 4 == 0');
  if (c.kVec && s.K % 4 !== 0) throw bad('vec4 loads along K need K % 4 == 0');
  if (c.kVec && s.transA && !s.transB) throw bad('vec4 loads along K need A or B stored K-contiguous');
  for (const [k, v] of Object.entries({ rows: c.rows, cols: c.cols, wgX: c.wgX, wgY: c.wgY, kUnroll: c.kUnroll })) {
    if (!Number.isInteger(v) || v < 1) throw bad(`${k} must be a positive integer`);
  }
  if (c.wgX * c.wgY > 256) throw bad('workgroup larger than 256 invocations');
  const sgProblem = subgroupTileProblem(c);
  if (sgProblem) throw bad(sgProblem);
  if (s.M < 1 || s.N < 1 || s.K < 0) throw bad('empty output');
  if (s.batch !== undefined && (!Number.isInteger(s.batch) || s.batch < 1)) throw bad('batch must be a positive integer');
}

/**
 * out[M, N] = op(A) op(B). Bindings: a, b, out. The kernel views a buffer as vec4s where
 * the config loads it so (out with vec4; B with vec4 untransposed or kVec transposed; A with
 * kVec untransposed); the bytes are the same row-major f32 data.
 */
export function matmulKernel(s: MatmulShape, cfg: MatmulConfig = defaultMatmulConfig(s)): KernelSpec {
  checkMatmulConfig(s, cfg);
  const { M, K, N, transA, transB } = s;
  const { rows: R, cols: C, vec4, kVec, wgX, wgY, kUnroll: U } = cfg;
  const SG = cfg.subgroup ?? 0;
  const units = vec4 ? N / 4 : N;
  const ty = vec4 ? 'vec4<f32>' : 'f32';
  // Which operands are read as vec4 arrays.
  const aVecK = kVec && !transA;
  const bVecK = kVec && transB;
  const bVecN = vec4 && !transB;
  const kb = kVec ? 4 : 1; // K steps per block
  const K4 = K / 4;
  const colGroups = ceilDiv(units, wgX * C);
  const rowGroups = ceilDiv(M, wgY * R);
  const batch = s.batch ?? 1;
  const groups = colGroups * rowGroups * batch;
  // With a batch, each product owns colGroups * rowGroups consecutive workgroups; the
  // operands' element offsets (in each binding's own units) of product `bi`.
  const at = (base: string, idx: string) => (batch > 1 ? `${base} + ${idx}` : idx);

  const lines: string[] = [];
  const emit = (s: string) => lines.push(s);
  // Edge rows and units are clamped for loading (no branch in the K loop) and skipped when storing.
  for (let i = 0; i < R; i++) emit(`  let row${i} = min(r0 + ${i}u, ${M - 1}u);`);
  // The rows whose A values this invocation loads: its own R, or with a subgroup its share of them.
  const loadRows: string[] = [];
  if (SG) {
    for (let t = 0; t * SG < R; t++) {
      loadRows.push(`L${t}`);
      emit(`  let rowL${t} = min(r0 + min(${t * SG}u + sgid, ${R - 1}u), ${M - 1}u);`);
    }
  } else for (let i = 0; i < R; i++) loadRows.push(`${i}`);
  if (batch > 1) {
    emit(`  let aB = bi * ${(M * K) / (aVecK ? 4 : 1)}u;`);
    emit(`  let bB = bi * ${(K * N) / (bVecK || bVecN ? 4 : 1)}u;`);
    emit(`  let oB = bi * ${M * units}u;`);
  }
  if (!transA) for (const t of loadRows) emit(`  let aOff${t} = ${at('aB', `row${t} * ${aVecK ? K4 : K}u`)};`);
  for (let c = 0; c < C; c++) {
    emit(`  let unit${c} = c0 + ${c * wgX}u;`);
    emit(`  let cu${c} = min(unit${c}, ${units - 1}u);`);
    if (transB) {
      const stride = bVecK ? K4 : K;
      if (vec4) for (let m = 0; m < 4; m++) emit(`  let bOff${c}_${m} = ${at('bB', `(cu${c} * 4u + ${m}u) * ${stride}u`)};`);
      else emit(`  let bOff${c} = ${at('bB', `cu${c} * ${stride}u`)};`);
    }
  }
  for (let i = 0; i < R; i++) for (let c = 0; c < C; c++) emit(`  var acc${i}_${c} = ${ty}(0.0);`);

  const comp = ['x', 'y', 'z', 'w'];
  // One K block starting at step k (kVec: at vec4 index kq = k / 4).
  const block = (k: string): string => {
    const body: string[] = [];
    const kAt = (j: number) => (j === 0 ? k : `(${k} + ${j}u)`);
    // A: aij is A[row i, step j]. With a subgroup, each lane loads its load rows' values
    // (l<t>...) and row i's come from lane i % S of load row i / S.
    const aAt: string[][] = [];
    const pre = SG ? 'l' : '';
    for (const t of loadRows) {
      if (aVecK) body.push(`let ${pre}av${t} = a[aOff${t} + ${k}];`);
      else
        for (let j = 0; j < kb; j++) {
          const kk = kVec ? `(${k} * 4u + ${j}u)` : kAt(j);
          body.push(`let ${pre}a${t}_${j} = a[${transA ? at('aB', `${kk} * ${M}u + row${t}`) : `aOff${t} + ${kk}`}];`);
        }
    }
    for (let i = 0; i < R; i++) {
      aAt.push([]);
      if (SG) {
        const from = `L${Math.floor(i / SG)}`;
        if (aVecK) body.push(`let av${i} = subgroupBroadcast(lav${from}, ${i % SG}u);`);
        else for (let j = 0; j < kb; j++) body.push(`let a${i}_${j} = subgroupBroadcast(la${from}_${j}, ${i % SG}u);`);
      }
      for (let j = 0; j < kb; j++) aAt[i].push(aVecK ? `av${i}.${comp[j]}` : `a${i}_${j}`);
    }
    // B: bcj is the column unit c at step j.
    const bAt: string[][] = [];
    for (let c = 0; c < C; c++) {
      bAt.push([]);
      if (bVecK) {
        if (vec4) {
          for (let m = 0; m < 4; m++) body.push(`let bt${c}_${m} = b[bOff${c}_${m} + ${k}];`);
          for (let j = 0; j < 4; j++) bAt[c].push(`vec4<f32>(${[0, 1, 2, 3].map((m) => `bt${c}_${m}.${comp[j]}`).join(', ')})`);
        } else {
          body.push(`let bt${c} = b[bOff${c} + ${k}];`);
          for (let j = 0; j < 4; j++) bAt[c].push(`bt${c}.${comp[j]}`);
        }
      } else {
        for (let j = 0; j < kb; j++) {
          const kk = kVec ? `(${k} * 4u + ${j}u)` : kAt(j);
          let load: string;
          if (bVecN) load = `b[${at('bB', `${kk} * ${units}u + cu${c}`)}]`;
          else if (!transB) load = `b[${at('bB', `${kk} * ${N}u + cu${c}`)}]`;
          else if (vec4) load = `vec4<f32>(${[0, 1, 2, 3].map((m) => `b[bOff${c}_${m} + ${kk}]`).join(', ')})`;
          else load = `b[bOff${c} + ${kk}]`;
          body.push(`let b${c}_${j} = ${load};`);
          bAt[c].push(`b${c}_${j}`);
        }
      }
    }
    for (let j = 0; j < kb; j++)
      for (let i = 0; i < R; i++) for (let c = 0; c < C; c++) body.push(`acc${i}_${c} += ${aAt[i][j]} * ${bAt[c][j]};`);
    return `    { ${body.join(' ')} }`;
  };

  const blocks = K / kb;
  const mainBlocks = blocks - (blocks % U);
  if (mainBlocks > 0) {
    emit(`  for (var k = 0u; k < ${mainBlocks}u; k += ${U}u) {`);
    for (let u = 0; u < U; u++) emit(block(u === 0 ? 'k' : `(k + ${u}u)`));
    emit('  }');
  }
  for (let k = mainBlocks; k < blocks; k++) emit(block(`${k}u`));

  for (let i = 0; i < R; i++) {
    emit(`  if (r0 + ${i}u < ${M}u) {`);
    for (let c = 0; c < C; c++) emit(`    if (unit${c} < ${units}u) { out[${at('oB', `(r0 + ${i}u) * ${units}u + unit${c}`)}] = acc${i}_${c}; }`);
    emit('  }');
  }

  const arr = (v: boolean) => (v ? 'array<vec4<f32>>' : 'array<f32>');
  const wgsl = `${SG ? 'enable subgroups;\n' : ''}// matmul ${batch > 1 ? `${batch}x ` : ''}${M}x${K}x${N}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''} ${matmulConfigKey(cfg)}
@group(0) @binding(0) var<storage, read> a: ${arr(aVecK)};
@group(0) @binding(1) var<storage, read> b: ${arr(bVecK || bVecN)};
@group(0) @binding(2) var<storage, read_write> out: ${arr(vec4)};
@compute @workgroup_size(${wgX}, ${wgY})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u${SG ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  let ${batch > 1 ? 'gb' : 'g'} = ${linearGroupIndex};
  if (${batch > 1 ? 'gb' : 'g'} >= ${groups}u) { return; }${batch > 1 ? `
  let bi = gb / ${colGroups * rowGroups}u;
  let g = gb % ${colGroups * rowGroups}u;` : ''}
  let r0 = ((g / ${colGroups}u) * ${wgY}u + ${wgY === 1 ? '0u' : 'lid.y'}) * ${R}u;
  let c0 = (g % ${colGroups}u) * ${wgX * C}u + lid.x;
${lines.join('\n')}
}`;
  return { name: 'matmul', wgsl, bindings: ['read', 'read', 'rw'], workgroups: grid(groups) };
}
