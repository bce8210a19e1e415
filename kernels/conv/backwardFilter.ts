// conv2d backward-filter: dw[t, ci, co] = sum over (n, oy, ox) of x[n, iy, ix, ci] * dy[n, oy, ox, co]
// with (iy, ix) = (oy*s + ky - pad, ox*s + kx - pad). A GEMM with rows = KH*KW*Ci, columns
// = Co and a long reduction over the N*Ho*Wo output pixels.
//
// An invocation owns `rows` consecutive input channels of one tap, so the tap, and with it
// the range of output pixels whose input pixel is in bounds, is the same for all its rows:
// padding becomes loop bounds instead of per-element masks, and with kVec one vec4 load of
// x feeds four rows. Columns are laid out as in the forward kernel (adjacent lanes read
// adjacent units of dy, x is a broadcast).
//
// splitK > 1 splits the (n, oy) reduction into chunks written as partial sums to a scratch
// buffer and summed by a second kernel: more invocations when the filter is small and the
// image is large (few invocations, each with a long loop, leave cores idle).
import { KernelSpec, ceilDiv, grid, linearGroupIndex } from '../spec.js';
import {
  ConvGeometry,
  ConvTileConfig,
  checkTileConfig,
  defaultTile,
  convKey,
  tileConfigKey,
  tileConfigs,
} from './common.js';
import { ConvBackwardFilterPlan, splitSumKernel } from './splitSum.js';

export { splitSumKernel, type ConvBackwardFilterPlan };

/** The register-blocked kernel's config (this file). */
export interface ConvBackwardFilterConfig extends ConvTileConfig {
  /** Chunks the (n, oy) reduction is split into; > 1 adds a reduction pass. */
  splitK: number;
}

export function backwardFilterConfigKey(c: ConvBackwardFilterConfig): string {
  return `${tileConfigKey(c)}k${c.splitK}`;
}

/** Splits of the register kernel's (n, oy) reduction; the large ones are for GPUs (see the default). */
const SPLITS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/** Scratch floats a split may use (64 MB), as for the shared-tile kernel. */
const MAX_SPLIT_SCRATCH_FLOATS = 1 << 24;

function splitFits(s: ConvGeometry, splitK: number): boolean {
  return splitK <= s.N * s.Ho && (splitK === 1 || splitK * s.KH * s.KW * s.Ci * s.Co <= MAX_SPLIT_SCRATCH_FLOATS);
}

/**
 * Every config the autotuner may try for this shape; each one is correct for it. With
 * `subgroup` (the device's fixed subgroup size) the subgroup-shared tiles too.
 */
export function convBackwardFilterConfigSpace(s: ConvGeometry, subgroup?: number): ConvBackwardFilterConfig[] {
  const out: ConvBackwardFilterConfig[] = [];
  const tiles = tileConfigs(s.Co, s.Ci, (rows) => s.Ci % 4 === 0 && rows % 4 === 0, subgroup);
  for (const tile of tiles) for (const splitK of SPLITS) if (splitFits(s, splitK)) out.push({ ...tile, splitK });
  return out;
}

/**
 * The config used without tuning: the forward kernel's tile (see defaultTile), rows being
 * input channels here, and the reduction split until the tile grid times the split reaches
 * `parallelism` invocations. The default 256 keeps a CPU adapter's SIMD lanes busy (lavapipe,
 * measured); a GPU needs tens of thousands (WebGPUBackend.parallelism): on an H200 the
 * CPU-sized split left 64x224x224x3->64 at 16 GFLOP/s, a few hundred invocations each
 * looping over 3.2M pixels. `subgroup`: share the x loads through the subgroup.
 */
export function defaultConvBackwardFilterConfig(s: ConvGeometry, subgroup?: number, parallelism = 256): ConvBackwardFilterConfig {
  const vec4 = s.Co % 4 === 0;
  const units = vec4 ? s.Co / 4 : s.Co;
  const tile = defaultTile(units, s.Ci, vec4, subgroup);
  const invocations = s.KH * s.KW * Math.ceil(s.Ci / tile.rows) * Math.ceil(units / tile.cols);
  let splitK = 1;
  while (splitK < SPLITS[SPLITS.length - 1] && invocations * splitK < parallelism && splitFits(s, splitK * 2)) splitK *= 2;
  // One vec4 load of x feeds four rows: measured ~15% faster on lavapipe (56x56x64->64).
  const kVec = s.Ci % 4 === 0 && tile.rows % 4 === 0;
  return { ...tile, kVec, splitK };
}

export function checkConvBackwardFilterConfig(s: ConvGeometry, c: ConvBackwardFilterConfig): void {
  const what = `conv2dBackwardFilter ${convKey(s, true)}`;
  checkTileConfig(what, c);
  const key = backwardFilterConfigKey(c);
  if (c.vec4 && s.Co % 4 !== 0) throw new Error(`${what}: config ${key} needs Co % 4 == 0`);
  if (c.kVec && (s.Ci % 4 !== 0 || c.rows % 4 !== 0)) throw new Error(`${what}: config ${key} needs Ci % 4 == 0 and rows % 4 == 0`);
  if (!Number.isInteger(c.splitK) || c.splitK < 1 || c.splitK > s.N * s.Ho) {
    throw new Error(`${what}: config ${key}: splitK must be in 1..${s.N * s.Ho}`);
  }
}

export function convBackwardFilterKernels(
  s: ConvGeometry,
  cfg: ConvBackwardFilterConfig = defaultConvBackwardFilterConfig(s),
): ConvBackwardFilterPlan {
  checkConvBackwardFilterConfig(s, cfg);
  const { rows: R, cols: C, vec4, kVec, wgX, wgY, kUnroll: U, splitK } = cfg;
  const SG = cfg.subgroup ?? 0;
  const { N, H, W, Ci, Co, KW, Ho, Wo, stride: st, pad } = s;
  const units = vec4 ? Co / 4 : Co;
  const colTy = vec4 ? 'vec4<f32>' : 'f32';
  const taps = s.KH * KW;
  const ciBlocks = ceilDiv(Ci, R);
  const rowBlocks = taps * ciBlocks;
  const rowGroups = ceilDiv(rowBlocks, wgY);
  const colGroups = ceilDiv(units, wgX * C);
  const tileGroups = rowGroups * colGroups;
  const groups = tileGroups * splitK;
  const reductionRows = N * Ho;
  const chunk = ceilDiv(reductionRows, splitK);
  const dwFloats = taps * Ci * Co;
  const CiV = kVec ? Ci / 4 : Ci;

  const lines: string[] = [];
  const emit = (x: string) => lines.push(x);
  emit(`  let t = rb / ${ciBlocks}u;`);
  emit(`  let ciBase = (rb % ${ciBlocks}u) * ${R}u;`);
  emit(`  let ky = t / ${KW}u;`);
  emit(`  let kx = t % ${KW}u;`);
  // ox range whose ix = ox*s + kx - pad lies in [0, W): padding as loop bounds.
  emit(pad > 0 ? `  let oxStart = select(0u, 1u, kx < ${pad}u);` : '  let oxStart = 0u;');
  emit(`  let oxNum = ${W - 1 + pad} - i32(kx);`);
  emit(`  let oxEnd = select(0u, min(${Wo}u, u32(oxNum) / ${st}u + 1u), oxNum >= 0);`);
  // The x loads per step: R / 4 vec4s (kVec) or R scalars. With a subgroup, lane j loads
  // load j, j + S, ... and subgroupBroadcast hands them round (all lanes share ciBase).
  const loads = kVec ? R / 4 : R;
  const own = SG ? Math.ceil(loads / SG) : loads;
  const lim = kVec ? CiV - 1 : Ci - 1;
  const first = kVec ? 'ciBase / 4u' : 'ciBase';
  for (let j = 0; j < own; j++) {
    const which = SG ? `min(${j * SG}u + sgid, ${loads - 1}u)` : `${j}u`;
    emit(`  let ch${j} = min(${first} + ${which}, ${lim}u);`);
  }
  for (let c = 0; c < C; c++) {
    emit(`  let unit${c} = c0 + ${c * wgX}u;`);
    emit(`  let cu${c} = min(unit${c}, ${units - 1}u);`);
  }
  for (let i = 0; i < R; i++) for (let c = 0; c < C; c++) emit(`  var acc${i}_${c} = ${colTy}(0.0);`);

  // One reduction step at output column `ox` (an expression).
  const step = (ox: string): string => {
    const body: string[] = [`let xp = (xb + ${ox} * ${st}u) * ${CiV}u;`, `let dp = (db + ${ox}) * ${units}u;`];
    for (let j = 0; j < own; j++) body.push(`let ${SG ? 'ld' : 'a'}${j} = x[xp + ch${j}];`);
    if (SG) for (let j = 0; j < loads; j++) body.push(`let a${j} = subgroupBroadcast(ld${Math.floor(j / SG)}, ${j % SG}u);`);
    for (let c = 0; c < C; c++) body.push(`let b${c} = dy[dp + cu${c}];`);
    for (let i = 0; i < R; i++) {
      const a = kVec ? `a${Math.floor(i / 4)}.${'xyzw'[i % 4]}` : `a${i}`;
      for (let c = 0; c < C; c++) body.push(`acc${i}_${c} += ${a} * b${c};`);
    }
    return `{ ${body.join(' ')} }`;
  };

  emit(`  let rEnd = min(${reductionRows}u, (sk + 1u) * ${chunk}u);`);
  emit(`  for (var r = sk * ${chunk}u; r < rEnd; r++) {`);
  emit(`    let n = r / ${Ho}u;`);
  emit(`    let oy = r % ${Ho}u;`);
  emit(`    let iy = oy * ${st}u + ky - ${pad}u;`);
  emit(`    if (iy >= ${H}u) { continue; }`);
  // xb may wrap below zero (kx < pad); only ox >= oxStart is used, where it is in range.
  emit(`    let xb = (n * ${H}u + iy) * ${W}u + kx - ${pad}u;`);
  emit(`    let db = r * ${Wo}u;`);
  emit('    var ox = oxStart;');
  if (U > 1) {
    emit(`    for (; ox + ${U}u <= oxEnd; ox += ${U}u) {`);
    for (let u = 0; u < U; u++) emit(`      ${step(u === 0 ? 'ox' : `(ox + ${u}u)`)}`);
    emit('    }');
  }
  emit(`    for (; ox < oxEnd; ox++) { ${step('ox')} }`);
  emit('  }');

  emit(`  let ob = sk * ${dwFloats / (vec4 ? 4 : 1)}u;`);
  for (let i = 0; i < R; i++) {
    emit(`  if (rbRaw < ${rowBlocks}u && ciBase + ${i}u < ${Ci}u) {`);
    emit(`    let o${i} = ob + (t * ${Ci}u + ciBase + ${i}u) * ${units}u;`);
    for (let c = 0; c < C; c++) emit(`    if (unit${c} < ${units}u) { out[o${i} + unit${c}] = acc${i}_${c}; }`);
    emit('  }');
  }

  const wgsl = `${SG ? 'enable subgroups;\n' : ''}// conv2dBackwardFilter ${convKey(s, true)} ${backwardFilterConfigKey(cfg)}
@group(0) @binding(0) var<storage, read> x: array<${kVec ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(1) var<storage, read> dy: array<${colTy}>;
@group(0) @binding(2) var<storage, read_write> out: array<${colTy}>;
@compute @workgroup_size(${wgX}, ${wgY})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u${SG ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  let g = ${linearGroupIndex};
  if (g >= ${groups}u) { return; }
  let sk = g / ${tileGroups}u;
  let tg = g % ${tileGroups}u;
  // Row blocks past the end are clamped and their stores skipped: an early return that
  // depends on lid.y would leave the rest of the shader divergent.
  let rbRaw = (tg / ${colGroups}u) * ${wgY}u + ${wgY === 1 ? '0u' : 'lid.y'};
  let rb = min(rbRaw, ${rowBlocks - 1}u);
  let c0 = (tg % ${colGroups}u) * ${wgX * C}u + lid.x;
${lines.join('\n')}
}`;
  const main: KernelSpec = { name: 'conv2dBackwardFilter', wgsl, bindings: ['read', 'read', 'rw'], workgroups: grid(groups) };
  if (splitK === 1) return { main, scratchFloats: 0, reduce: null };
  return { main, scratchFloats: splitK * dwFloats, reduce: splitSumKernel(dwFloats, splitK, vec4) };
}
