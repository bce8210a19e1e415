// 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2015): each 2x2 block of output pixels is
// A^T [ (G g G^T) (.) (B^T d B) ] A for the 4x4 input patch d under it and the 3x3 filter
// slice g, so a tile costs 16 multiplies per (input, output) channel pair instead of 36.
// Summed over input channels, the element-wise products are 16 independent GEMMs:
//   U[xi] = G g G^T          [16, K, N]   (filter transform; K reduction, N output channels)
//   V[xi] = B^T d B          [16, T, K]   (input transform; T = 2x2 output tiles)
//   M[xi] = V[xi] x U[xi]    [16, T, N]   (one batched matmul, either template in kernels/matmul)
//   y     = A^T M A (+bias)                (output transform)
// The GEMMs do 16/36 of the direct convolution's multiply-adds; the transforms read and write
// each tile once. V and M are scratch: the tiles run in chunks so neither passes
// WINOGRAD_SCRATCH_BYTES (the chunk's first tile arrives in a uniform, so every chunk uses the
// same three pipelines; the last chunk's missing tiles transform to zeros and are not stored).
//
// Backward-data of a 3x3 stride-1 conv is the same computation on dy with the filter turned
// 180 degrees and its channel axes swapped (pad 2 - pad); the filter transform does that
// as it reads (`flip`), so the transposed filter is never materialised.
//
// Rounding: the transforms add up to 4 (input) or 9 (output) terms and G has entries 1/2, so
// results differ from the direct sum in the last bits, more than the register kernels do
// (measured: relative error 1e-7-2e-7 against float64 on five small shapes); larger tiles (F(4x4, 3x3)) would
// save more multiplies but amplify rounding by far more, and are not offered.
import { BindingKind, KernelSpec, ceilDiv, grid, linearGroupIndex } from '../spec.js';
import { BlockEpilogue, ConvGeometry, blockEpilogueDecls, blockStores, poolWindow } from './common.js';
import { MatmulShape, defaultMatmulConfig, matmulConfigKey, matmulConfigSpace } from '../matmul/matmul.js';
import { TileSpaceOptions, sharedGemmCandidates } from '../matmul/sharedTile.js';
import { AnyMatmulConfig, anyMatmulConfigKey, anyMatmulKernel } from '../algorithms/matmul.js';

/**
 * conv2d (or backward-data) by F(2x2, 3x3); `matmul` is the batched transformed-domain GEMM's
 * config: a register tile (CPU adapters) or a workgroup-memory tile, in f16 or on subgroup
 * matrices too (GPUs).
 */
export interface ConvWinogradConfig {
  algo: 'winograd';
  matmul: AnyMatmulConfig;
  /**
   * At most this many output tiles per chunk (default: as many as WINOGRAD_SCRATCH_BYTES of
   * scratch allow). Smaller chunks keep V and M in a cache; the tests use it to force chunking.
   */
  chunk?: number;
}

export function winogradConfigKey(c: ConvWinogradConfig): string {
  return `wino-${anyMatmulConfigKey(c.matmul)}${c.chunk ? `-t${c.chunk}` : ''}`;
}

/** Bytes of V or M scratch one chunk of tiles may use. */
export const WINOGRAD_SCRATCH_BYTES = 64 << 20;

/**
 * A Winograd problem: a stride-1 3x3 correlation of src [N, H, W, K] with a filter to
 * dst [N, Ho, Wo, Nc], dst = H + 2*pad - 2. `flip`: the filter is stored as a forward conv's
 * [3, 3, Nc, K] and is applied turned 180 degrees (backward-data); else it is [3, 3, K, Nc].
 */
export interface WinogradProblem {
  N: number;
  H: number;
  W: number;
  K: number;
  Ho: number;
  Wo: number;
  Nc: number;
  pad: number;
  flip: boolean;
}

/** Why F(2x2, 3x3) cannot compute this conv (forward or, with the same geometry, backward-data), or null. */
export function winogradProblem(s: ConvGeometry): string | null {
  if (s.KH !== 3 || s.KW !== 3) return 'needs a 3x3 kernel';
  if (s.stride !== 1) return 'needs stride 1';
  if (s.pad > 2) return 'needs pad <= 2';
  return null;
}

export function winogradForward(s: ConvGeometry): WinogradProblem {
  return { N: s.N, H: s.H, W: s.W, K: s.Ci, Ho: s.Ho, Wo: s.Wo, Nc: s.Co, pad: s.pad, flip: false };
}

/** Backward-data: dx = dy correlated with the turned filter, padded by 2 - pad. */
export function winogradBackwardData(s: ConvGeometry): WinogradProblem {
  return { N: s.N, H: s.Ho, W: s.Wo, K: s.Co, Ho: s.H, Wo: s.W, Nc: s.Ci, pad: 2 - s.pad, flip: true };
}

/** Checks the batched GEMM's config (any matmul algorithm) against its shape, by generating it. */
export function checkWinogradGemm(shape: MatmulShape, c: AnyMatmulConfig, maxStorageBytes?: number): void {
  anyMatmulKernel(shape, c, maxStorageBytes);
}

export interface WinogradTiling {
  tiles: number;
  tilesH: number;
  tilesW: number;
  /** Tiles per chunk (the last chunk's are partly past the end). */
  chunk: number;
  chunks: number;
}

/** Output tiles of the whole problem, and how many one chunk takes (at most `chunkCap`). */
export function winogradTiling(p: WinogradProblem, chunkCap?: number): WinogradTiling {
  const tilesH = ceilDiv(p.Ho, 2);
  const tilesW = ceilDiv(p.Wo, 2);
  const tiles = p.N * tilesH * tilesW;
  const perTile = 16 * 4 * Math.max(p.K, p.Nc);
  const most = Math.max(1, Math.min(chunkCap ?? Infinity, Math.floor(WINOGRAD_SCRATCH_BYTES / perTile)));
  const chunks = Math.max(1, ceilDiv(tiles, most));
  return { tiles, tilesH, tilesW, chunk: ceilDiv(tiles, chunks), chunks };
}

/** The batched GEMM of one chunk: 16 x [chunk, K] x [K, Nc]. */
export function winogradGemmShape(p: WinogradProblem, chunkCap?: number): MatmulShape {
  return { M: winogradTiling(p, chunkCap).chunk, K: p.K, N: p.Nc, transA: false, transB: false, batch: 16 };
}

/**
 * Every Winograd config for this problem: the batched GEMM's register tiles, and its default
 * tiles (with and without the subgroup size) where the space lacks them, so the tuner's seeds
 * are candidates too; its workgroup-memory tiles (f16 ones with precision 'f16') and
 * subgroup-matrix tiles as `opts` allows, as for the other GEMMs (candidates.ts).
 */
export function winogradConfigSpace(p: WinogradProblem, opts: TileSpaceOptions = {}): ConvWinogradConfig[] {
  const subgroup = opts.subgroupSize;
  const shape = winogradGemmShape(p);
  const registers = matmulConfigSpace(shape, subgroup);
  const keys = new Set(registers.map(matmulConfigKey));
  for (const d of subgroup ? [defaultMatmulConfig(shape), defaultMatmulConfig(shape, subgroup)] : [defaultMatmulConfig(shape)]) {
    if (!keys.has(matmulConfigKey(d))) registers.push(d);
    keys.add(matmulConfigKey(d));
  }
  const tiles: AnyMatmulConfig[] = [...registers, ...sharedGemmCandidates(shape.M, shape.N, opts)];
  return tiles.map((matmul) => ({ algo: 'winograd', matmul }));
}

export function defaultWinogradConfig(p: WinogradProblem, subgroup?: number): ConvWinogradConfig {
  return { algo: 'winograd', matmul: defaultMatmulConfig(winogradGemmShape(p), subgroup) };
}

/** Reduction channels from which Winograd is the default where defaults may use it. */
export const WINOGRAD_MIN_CHANNELS = 64;
/**
 * Output tiles (2x2 blocks over the batch) from which Winograd is the default: the filter
 * transform costs the same however few tiles share it (on lavapipe a 4x4 output, 4 tiles,
 * ran 3x slower than the register kernel; 49 tiles, a 14x14 output, 1.3x faster).
 */
export const WINOGRAD_MIN_TILES = 32;

/**
 * Whether an untuned conv of this shape should run Winograd, where the backend lets defaults
 * use it (CPU adapters): a 3x3 stride-1 conv with at least WINOGRAD_MIN_CHANNELS reduction
 * channels and at least WINOGRAD_MIN_TILES output tiles whose batched GEMM gets the
 * subgroup-shared tile. Measured on lavapipe
 * (kernels/README.md): 1.4-2.2x the register default forward and 1.2-1.7x backward-data
 * on VGG shapes (64-512 channels), but 0.8x at 16 channels and 0.35x at 3, where the
 * transforms cost more than the GEMM saves.
 */
export function winogradPreferred(s: ConvGeometry, p: WinogradProblem, subgroup?: number): boolean {
  if (winogradProblem(s) !== null || p.K < WINOGRAD_MIN_CHANNELS || !subgroup) return false;
  if (winogradTiling(p).tiles < WINOGRAD_MIN_TILES) return false;
  return defaultMatmulConfig(winogradGemmShape(p), subgroup).subgroup === subgroup;
}

/** The four kernels of one Winograd conv, and its scratch sizes in floats. */
export interface WinogradPlan {
  /** filter -> U. Bindings: w, u. */
  filter: KernelSpec;
  /** src -> V for tiles [t0, t0 + chunk). Bindings: src, v, uniform {t0}. */
  input: KernelSpec;
  /** V x U -> M. Bindings: v, u, m. */
  gemm: KernelSpec;
  /** M -> dst (+ bias), or a block epilogue's outputs. Bindings: m, [bias], dst, uniform {t0} (see outputTransformKernel). */
  output: KernelSpec;
  chunk: number;
  chunks: number;
  uFloats: number;
  vFloats: number;
  mFloats: number;
}

/**
 * `epilogue`: a conv block's (forward only); see outputTransformKernel. `maxStorageBytes`: the
 * device's workgroup memory, for a workgroup-memory GEMM tile (default: the portable 16 KB).
 */
export function winogradPlan(p: WinogradProblem, bias: boolean, cfg: ConvWinogradConfig, name: string, epilogue?: BlockEpilogue, maxStorageBytes?: number): WinogradPlan {
  const what = `${name} ${p.N}x${p.H}x${p.W}x${p.K}->${p.Nc} 3x3 pad ${p.pad}`;
  if (p.pad < 0 || p.pad > 2 || p.Ho !== p.H + 2 * p.pad - 2 || p.Wo !== p.W + 2 * p.pad - 2) {
    throw new Error(`${what}: not a stride-1 3x3 conv with pad 0-2`);
  }
  if (p.Ho < 1 || p.Wo < 1 || p.K < 1 || p.Nc < 1) throw new Error(`${what}: empty`);
  if (cfg.chunk !== undefined && (!Number.isInteger(cfg.chunk) || cfg.chunk < 1)) throw new Error(`${what}: config ${winogradConfigKey(cfg)}: chunk must be a positive integer`);
  const t = winogradTiling(p, cfg.chunk);
  const gemmShape = winogradGemmShape(p, cfg.chunk);
  const gemm = anyMatmulKernel(gemmShape, cfg.matmul, maxStorageBytes);
  return {
    filter: filterTransformKernel(p, name),
    input: inputTransformKernel(p, t, name),
    gemm: { ...gemm, name: `${name}.gemm` },
    output: outputTransformKernel(p, t, bias, name, epilogue),
    chunk: t.chunk,
    chunks: t.chunks,
    uFloats: 16 * p.K * p.Nc,
    vFloats: 16 * t.chunk * p.K,
    mFloats: 16 * t.chunk * p.Nc,
  };
}

const WG = 64;

function header(count: number): string {
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = ${linearGroupIndex} * ${WG}u + lid.x;
  if (i >= ${count}u) { return; }`;
}

/** Applies a 1-D transform to the rows (index r*4+c over r) then the columns of a 4x? grid of names. */
export function transform2d(
  inName: (r: number, c: number) => string,
  outName: (r: number, c: number) => string,
  rowsIn: number,
  colsIn: number,
  f: (v: string[]) => string[],
  tmp: string,
): string[] {
  const lines: string[] = [];
  // Along the first axis, for each column.
  const mid: string[][] = [];
  for (let c = 0; c < colsIn; c++) {
    const out = f(Array.from({ length: rowsIn }, (_, r) => inName(r, c)));
    out.forEach((e, r) => {
      (mid[r] ??= [])[c] = `${tmp}${r}_${c}`;
      lines.push(`let ${tmp}${r}_${c} = ${e};`);
    });
  }
  // Along the second axis, for each row of the intermediate.
  mid.forEach((row, r) => f(row).forEach((e, c) => lines.push(`let ${outName(r, c)} = ${e};`)));
  return lines;
}

/** B^T d for a column of 4 (and d B for a row). */
export const inputT = ([d0, d1, d2, d3]: string[]) => [`${d0} - ${d2}`, `${d1} + ${d2}`, `${d2} - ${d1}`, `${d1} - ${d3}`];
/** G g for a column of 3. */
export const filterT = ([g0, g1, g2]: string[]) => [g0, `0.5 * (${g0} + ${g1} + ${g2})`, `0.5 * (${g0} - ${g1} + ${g2})`, g2];
/** A^T m for a column of 4. */
export const outputT = ([m0, m1, m2, m3]: string[]) => [`${m0} + ${m1} + ${m2}`, `${m1} - ${m2} - ${m3}`];

/**
 * One invocation per (k, unit of n): 9 loads, 16 stores of U[xi][k][n], a vec4 of n where
 * Nc % 4 == 0 (a 512x512 filter took 21-29 ms on lavapipe with one n per invocation; the GEMM
 * of a 14x14 conv takes 45-72 ms). Turned (`flip`), the four n of a unit are 4 scalar
 * loads K apart.
 */
export function filterTransformKernel(p: WinogradProblem, name: string): KernelSpec {
  const { K, Nc } = p;
  const { ty, units } = unitOf(Nc);
  const vec = ty !== 'f32';
  const count = K * units;
  const tap = (ky: number, kx: number) => {
    const t = ky * 3 + kx;
    if (!p.flip) return `w[(${t * K}u + k) * ${units}u + nu]`;
    if (!vec) return `w[(${(8 - t) * Nc}u + nu) * ${K}u + k]`;
    return `vec4<f32>(${[0, 1, 2, 3].map((j) => `w[(${(8 - t) * Nc}u + nu * 4u + ${j}u) * ${K}u + k]`).join(', ')})`;
  };
  const lines = [
    `  let nu = i % ${units}u;`,
    `  let k = i / ${units}u;`,
    ...[0, 1, 2].flatMap((ky) => [0, 1, 2].map((kx) => `  let g${ky}_${kx} = ${tap(ky, kx)};`)),
    ...transform2d((r, c) => `g${r}_${c}`, (r, c) => `u${r}_${c}`, 3, 3, filterT, 't').map((l) => `  ${l}`),
    ...Array.from({ length: 16 }, (_, xi) => `  u[${xi * count}u + i] = u${xi >> 2}_${xi & 3};`),
  ];
  return {
    name: `${name}.winogradFilter`,
    wgsl: `// ${name} Winograd F(2x2,3x3) filter transform ${K}->${Nc}${p.flip ? ' turned' : ''}
@group(0) @binding(0) var<storage, read> w: array<${p.flip ? 'f32' : ty}>;
@group(0) @binding(1) var<storage, read_write> u: array<${ty}>;
${header(count)}
${lines.join('\n')}
}`,
    bindings: ['read', 'rw'],
    workgroups: grid(ceilDiv(count, WG)),
  };
}

/** The channel unit of an activation-side kernel: vec4 where the count allows. */
function unitOf(channels: number): { ty: string; units: number } {
  return channels % 4 === 0 ? { ty: 'vec4<f32>', units: channels / 4 } : { ty: 'f32', units: channels };
}

/** One invocation per (tile of the chunk, K unit): 16 loads (zero outside the image), 16 stores. */
export function inputTransformKernel(p: WinogradProblem, t: WinogradTiling, name: string): KernelSpec {
  const { ty, units } = unitOf(p.K);
  const count = t.chunk * units;
  const lines = [
    `  let ku = i % ${units}u;`,
    `  let tl = i / ${units}u;`,
    '  let tg = chunk.t0 + tl;',
    // Tiles past the end (the last chunk) read nothing: every load is out of range.
    `  let live = tg < ${t.tiles}u;`,
    `  let n = tg / ${t.tilesH * t.tilesW}u;`,
    `  let y0 = ((tg / ${t.tilesW}u) % ${t.tilesH}u) * 2u - ${p.pad}u;`,
    `  let x0 = (tg % ${t.tilesW}u) * 2u - ${p.pad}u;`,
  ];
  // Unsigned wrap-around: a row above the image becomes huge and fails `< H`.
  for (let r = 0; r < 4; r++) lines.push(`  let iy${r} = y0 + ${r}u;`, `  let oky${r} = live && iy${r} < ${p.H}u;`);
  for (let c = 0; c < 4; c++) lines.push(`  let ix${c} = x0 + ${c}u;`, `  let okx${c} = ix${c} < ${p.W}u;`);
  for (let r = 0; r < 4; r++)
    for (let c = 0; c < 4; c++) {
      lines.push(`  let ok${r}_${c} = oky${r} && okx${c};`);
      lines.push(`  let d${r}_${c} = select(${ty}(0.0), src[select(0u, ((n * ${p.H}u + iy${r}) * ${p.W}u + ix${c}) * ${units}u + ku, ok${r}_${c})], ok${r}_${c});`);
    }
  lines.push(...transform2d((r, c) => `d${r}_${c}`, (r, c) => `v${r}_${c}`, 4, 4, inputT, 't').map((l) => `  ${l}`));
  for (let xi = 0; xi < 16; xi++) lines.push(`  v[${xi * count}u + i] = v${xi >> 2}_${xi & 3};`);
  return {
    name: `${name}.winogradInput`,
    wgsl: `// ${name} Winograd F(2x2,3x3) input transform ${p.N}x${p.H}x${p.W}x${p.K} pad ${p.pad}, ${t.chunk} tiles per chunk
struct Chunk { t0: u32 }
@group(0) @binding(0) var<storage, read> src: array<${ty}>;
@group(0) @binding(1) var<storage, read_write> v: array<${ty}>;
@group(0) @binding(2) var<uniform> chunk: Chunk;
${header(count)}
${lines.join('\n')}
}`,
    bindings: ['read', 'rw', 'uniform'],
    workgroups: grid(ceilDiv(count, WG)),
    uniformBytes: 16,
  };
}

/**
 * One invocation per (tile of the chunk, Nc unit): 16 loads, then up to 4 stores (odd edges
 * store fewer), or a conv block's epilogue (common.ts BlockEpilogue): a = y + bias, with
 * `pool` the tile is the 2x2 window (tiles start at even rows and columns; a window past the
 * pooled grid floor(Ho/2) x floor(Wo/2) is dropped, as maxPool2x2 does), then h = max(a + add,
 * 0) and r = (a > 0 ? h - a : 0). Bindings: m, [bias], dst, uniform; with an epilogue m,
 * [bias], [add], a, [argmax (u32, with pool)], [h], [r], uniform.
 */
export function outputTransformKernel(p: WinogradProblem, t: WinogradTiling, bias: boolean, name: string, epi?: BlockEpilogue): KernelSpec {
  const { ty, units } = unitOf(p.Nc);
  const count = t.chunk * units;
  if (epi && (epi.add || epi.residual) && !epi.relu) throw new Error(`${name}: add and residual need relu`);
  const Hp = Math.floor(p.Ho / 2);
  const Wp = Math.floor(p.Wo / 2);
  if (epi?.pool && (Hp === 0 || Wp === 0)) throw new Error(`${name}: a 2x2 pool needs a conv output of at least 2x2`);
  const lines = [
    `  let u = i % ${units}u;`,
    `  let tl = i / ${units}u;`,
    '  let tg = chunk.t0 + tl;',
    `  if (tg >= ${t.tiles}u) { return; }`,
    `  let n = tg / ${t.tilesH * t.tilesW}u;`,
    `  let ty = (tg / ${t.tilesW}u) % ${t.tilesH}u;`,
    `  let tx = tg % ${t.tilesW}u;`,
    '  let y0 = ty * 2u;',
    '  let x0 = tx * 2u;',
  ];
  if (epi?.pool) lines.push(`  if (ty >= ${Hp}u || tx >= ${Wp}u) { return; }`);
  for (let xi = 0; xi < 16; xi++) lines.push(`  let m${xi >> 2}_${xi & 3} = m[${xi * count}u + i];`);
  lines.push(...transform2d((r, c) => `m${r}_${c}`, (r, c) => `o${r}_${c}`, 4, 4, outputT, 't').map((l) => `  ${l}`));
  if (bias) lines.push('  let b = bias[u];');
  const value = (r: number, c: number) => `o${r}_${c}${bias ? ' + b' : ''}`;
  const at = (r: number, c: number) => `((n * ${p.Ho}u + y0 + ${r}u) * ${p.Wo}u + x0 + ${c}u) * ${units}u + u`;
  const guarded = (r: number, c: number, body: string) => {
    const cond = [r ? `y0 + 1u < ${p.Ho}u` : '', c ? `x0 + 1u < ${p.Wo}u` : ''].filter(Boolean).join(' && ');
    lines.push(cond ? `  if (${cond}) { ${body} }` : `  { ${body} }`);
  };
  const tail = (o: string, v: string) => blockStores(epi!, o, v, ty).join(' ');
  if (!epi) {
    for (let r = 0; r < 2; r++) for (let c = 0; c < 2; c++) guarded(r, c, `dst[${at(r, c)}] = ${value(r, c)};`);
  } else if (!epi.pool) {
    for (let r = 0; r < 2; r++) for (let c = 0; c < 2; c++) guarded(r, c, `let o = ${at(r, c)}; let v = ${value(r, c)}; ${tail('o', 'v')}`);
  } else {
    lines.push(...poolWindow([0, 1, 2, 3].map((q) => value(q >> 1, q & 1)), ty).map((l) => `  ${l}`));
    lines.push(`  let o = ((n * ${Hp}u + ty) * ${Wp}u + tx) * ${units}u + u;`, '  outArg[o] = arg;', `  ${tail('o', 'best')}`);
  }
  const decls = [`@group(0) @binding(0) var<storage, read> m: array<${ty}>;`];
  const bindings: BindingKind[] = ['read'];
  const add = (access: 'read' | 'read_write', decl: string) => {
    decls.push(`@group(0) @binding(${bindings.length}) var<storage, ${access}> ${decl};`);
    bindings.push(access === 'read' ? 'read' : 'rw');
  };
  if (bias) add('read', `bias: array<${ty}>`);
  if (!epi) add('read_write', `dst: array<${ty}>`);
  else blockEpilogueDecls(epi, ty, (d) => add('read', d), (d) => add('read_write', d));
  decls.push(`@group(0) @binding(${bindings.length}) var<uniform> chunk: Chunk;`);
  bindings.push('uniform');
  const epiKey = epi ? ` ${['pool', 'add', 'relu', 'residual'].filter((k) => epi[k as keyof BlockEpilogue]).join('+') || 'plain'}` : '';
  return {
    name: `${name}.winogradOutput`,
    wgsl: `// ${name} Winograd F(2x2,3x3) output transform ${p.N}x${p.Ho}x${p.Wo}x${p.Nc}${bias ? ' +bias' : ''}${epiKey}, ${t.chunk} tiles per chunk
struct Chunk { t0: u32 }
${decls.join('\n')}
${header(count)}
${lines.join('\n')}
}`,
    bindings,
    workgroups: grid(ceilDiv(count, WG)),
    uniformBytes: 16,
  };
}
