// Analog-tile kernels: the IO stage of a crossbar (DAC/ADC: noise, clip, quantize), the
// per-row max used by noise and bound management, and the pulsed weight update.
//
// Randomness is counter-based: every random number is a pure function of a 32-bit stream
// key (derived on the host from the run seed, the tile and a call counter) and the element
// index, so nothing is carried between dispatches and the reference backend can draw the
// very same numbers. The integer hash below exists twice, in WGSL and in TypeScript
// (u32 arithmetic via Math.imul and >>> 0); the two must stay identical bit for bit.
import { KernelSpec, grid, linearGroupIndex } from './spec.js';

// ---------------------------------------------------------------------------
// The shared generator, TypeScript twin.

/** PCG-RXS-M-XS 32-bit output permutation of one LCG step (O'Neill), used as an integer hash. */
export function pcgHash(x: number): number {
  const state = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul((state >>> ((state >>> 28) + 4)) ^ state, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** Each element owns 8 draws; draw j of element i is hashed from (key, i*8 + j). */
export const DRAWS_PER_ELEMENT = 8;

export function drawBits(key: number, i: number, j: number): number {
  return pcgHash((key ^ pcgHash((Math.imul(i, DRAWS_PER_ELEMENT) + j) >>> 0)) >>> 0);
}

/** Uniform in (0, 1): the top 23 bits plus a half, exact in f32 and f64 alike. */
export function drawUniform(key: number, i: number, j: number): number {
  return ((drawBits(key, i, j) >>> 9) + 0.5) * 2 ** -23;
}

/** Standard normal from draws j and j+1 (Box-Muller, cosine branch). */
export function drawGaussian(key: number, i: number, j: number): number {
  const u1 = drawUniform(key, i, j);
  const u2 = drawUniform(key, i, j + 1);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/**
 * A stream key from a run seed and any number of integer coordinates (tile, purpose,
 * call counter): a chain of hashes, computed on the host once per dispatch.
 */
export function streamKey(seed: number, ...coords: number[]): number {
  let h = pcgHash(seed >>> 0);
  for (const c of coords) h = pcgHash((h ^ pcgHash(c >>> 0)) >>> 0);
  return h;
}

/** Hashes a string seed (a CLI --seed) to the u32 streamKey expects (FNV-1a). */
export function seedFromString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h >>> 0;
}

/** The WGSL twin of pcgHash / drawUniform / drawGaussian. */
export const WGSL_RANDOM = `
fn pcg_hash(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn draw_uniform(key: u32, i: u32, j: u32) -> f32 {
  let bits = pcg_hash(key ^ pcg_hash(i * ${DRAWS_PER_ELEMENT}u + j));
  return (f32(bits >> 9u) + 0.5) * ${2 ** -23};
}
fn draw_gaussian(key: u32, i: u32, j: u32) -> f32 {
  let u1 = draw_uniform(key, i, j);
  let u2 = draw_uniform(key, i, j + 1u);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}`;

// ---------------------------------------------------------------------------
// IO stage.

export interface AnalogIOFlags {
  mode: 'dac' | 'adc';
  noise: boolean;
  clip: boolean;
  quantize: boolean;
  /** A per-row tensor is bound (dac: noise-management scale; adc: row max |x| for bound management). */
  rowScale: boolean;
  /** A [1] tile scale is bound (adc only). */
  tileScale: boolean;
}

/** Uniform block: key u32, noiseStd, bound, step, maxHalvings u32, padding. */
export const ANALOG_IO_UNIFORM_BYTES = 32;

export function analogIOUniforms(key: number, noiseStd: number, bound: number, step: number, maxHalvings: number): ArrayBuffer {
  const buf = new ArrayBuffer(ANALOG_IO_UNIFORM_BYTES);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = key >>> 0;
  f[1] = noiseStd;
  f[2] = Number.isFinite(bound) ? bound : 0;
  f[3] = step;
  u[4] = maxHalvings >>> 0;
  return buf;
}

/**
 * out[i] = post * Q(clip(x[i] / pre + std * N(key, i))), row = i / perRow, where
 * dac: pre = rowScale[row] if bound and > 0 (else 1), post = 1;
 * adc: pre = omega * 2^t with omega = tileScale[0] (if bound and > 0, else 1) and t the
 *      fewest halvings (<= maxHalvings) that bring rowScale[row] / omega within the bound
 *      (t = 0 without a row scale); post = pre.
 * Q rounds to the nearest multiple of step (halves away from -inf: floor(v/step + 0.5)).
 * Bindings: x, [rowScale], [tileScale], out, uniform.
 */
export function analogIOKernel(n: number, perRow: number, flags: AnalogIOFlags): KernelSpec {
  const wg = 64;
  const decls: string[] = ['@group(0) @binding(0) var<storage, read> x: array<f32>;'];
  const bindings: KernelSpec['bindings'] = ['read'];
  if (flags.rowScale) {
    decls.push(`@group(0) @binding(${bindings.length}) var<storage, read> rowScale: array<f32>;`);
    bindings.push('read');
  }
  if (flags.tileScale) {
    decls.push(`@group(0) @binding(${bindings.length}) var<storage, read> tileScale: array<f32>;`);
    bindings.push('read');
  }
  decls.push(`@group(0) @binding(${bindings.length}) var<storage, read_write> out: array<f32>;`);
  bindings.push('rw');
  decls.push(`struct U { key: u32, noiseStd: f32, bound: f32, step: f32, maxHalvings: u32 }
@group(0) @binding(${bindings.length}) var<uniform> u: U;`);
  bindings.push('uniform');
  let pre: string;
  if (flags.mode === 'dac') {
    pre = flags.rowScale ? `  let r = rowScale[i / ${perRow}u];\n  let pre = select(1.0, r, r > 0.0);\n` : '  let pre = 1.0;\n';
  } else {
    pre = flags.tileScale ? '  let ts = tileScale[0];\n  let omega = select(1.0, ts, ts > 0.0);\n' : '  let omega = 1.0;\n';
    if (flags.rowScale) {
      // Bound management: halve the input (here: the normalized output, the MVM being
      // linear) until the row's largest output fits, at most maxHalvings times.
      pre += `  let m = rowScale[i / ${perRow}u] / omega;
  var f = 1.0;
  for (var t = 0u; t < u.maxHalvings; t++) {
    if (m <= u.bound * f) { break; }
    f = f * 2.0;
  }
  let pre = omega * f;
`;
    } else pre += '  let pre = omega;\n';
  }
  let body = '  var v = x[i] / pre;\n';
  if (flags.noise) body += '  v = v + u.noiseStd * draw_gaussian(u.key, i, 0u);\n';
  if (flags.clip) body += '  v = clamp(v, -u.bound, u.bound);\n';
  if (flags.quantize) body += '  v = floor(v / u.step + 0.5) * u.step;\n';
  body += flags.mode === 'adc' ? '  out[i] = v * pre;\n' : '  out[i] = v;\n';
  const wgsl = `// analogIO ${flags.mode} n=${n} perRow=${perRow}
${decls.join('\n')}
${flags.noise ? WGSL_RANDOM : ''}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${n}u) { return; }
${pre}${body}}`;
  return {
    name: `analogIO-${flags.mode}`,
    wgsl,
    bindings,
    workgroups: grid(Math.ceil(n / wg)),
    uniformBytes: ANALOG_IO_UNIFORM_BYTES,
  };
}

/**
 * out[r] = max |x[r * perRow + k]| over k: one workgroup per row, strided loads then a
 * tree reduction in workgroup memory. Bindings: x, out.
 */
export function rowAbsMaxKernel(rows: number, perRow: number): KernelSpec {
  const wg = 64;
  const wgsl = `// rowAbsMax rows=${rows} perRow=${perRow}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> part: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = ${linearGroupIndex};
  var m = 0.0;
  if (row < ${rows}u) {
    let base = row * ${perRow}u;
    for (var k = li; k < ${perRow}u; k += ${wg}u) { m = max(m, abs(x[base + k])); }
  }
  part[li] = m;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] = max(part[li], part[li + s]); }
    workgroupBarrier();
  }
  if (li == 0u && row < ${rows}u) { out[row] = part[0]; }
}`;
  return { name: 'rowAbsMax', wgsl, bindings: ['read', 'rw'], workgroups: grid(rows) };
}

// ---------------------------------------------------------------------------
// Pulsed update.

/** Soft bounds: the largest fraction of the distance to the bound one pulse may cover (pow(0, n) is undefined in WGSL). */
export const SOFT_BOUND_MAX_RATE = 0.999999;

/** Uniform block of pulsedUpdateKernel: 16 words. */
export const PULSED_UPDATE_UNIFORM_BYTES = 64;

/** The pulsed update's parameters, in units of the tile scale omega (engine/backend.ts PulsedUpdateOptions adds softBounds). */
export interface PulsedUpdateUniforms {
  /** u32: fixes the device-to-device variation (constant per tile). */
  deviceKey: number;
  /** u32: this update's cycle-to-cycle draws. */
  updateKey: number;
  dwMin: number;
  dwMinDtod: number;
  dwMinCtoc: number;
  upDown: number;
  upDownDtod: number;
  wMax: number;
  wMin: number;
  boundsDtod: number;
  writeNoise: number;
  maxPulses: number;
}

export function pulsedUpdateUniforms(o: PulsedUpdateUniforms): ArrayBuffer {
  const buf = new ArrayBuffer(PULSED_UPDATE_UNIFORM_BYTES);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = o.deviceKey >>> 0;
  u[1] = o.updateKey >>> 0;
  f[2] = o.dwMin;
  f[3] = o.dwMinDtod;
  f[4] = o.dwMinCtoc;
  f[5] = o.upDown;
  f[6] = o.upDownDtod;
  f[7] = o.wMax;
  f[8] = o.wMin;
  f[9] = o.boundsDtod;
  f[10] = o.writeNoise;
  f[11] = o.maxPulses;
  return buf;
}

/**
 * In place: w[i] moves toward w[i] + dw[i] by whole device pulses. Per device i (fixed by
 * deviceKey, draws 0..7): scale = max(0, 1 + dwMinDtod*g0), asym = clamp(upDown +
 * upDownDtod*g2, -1, 1), up = omega*dwMin*scale*(1 + asym), down = omega*dwMin*scale*(1 - asym),
 * wmax = omega*wMax*max(0, 1 + boundsDtod*g4), wmin = omega*wMin*max(0, 1 + boundsDtod*g6).
 * Per update (updateKey): n = min(floor(|dw|/step + u0), maxPulses) pulses (stochastic
 * rounding), effective count n' = max(0, n + dwMinCtoc*sqrt(n)*g1); hard bounds add
 * sign*step*n'; soft bounds move geometrically toward the bound, w' = b - (b - w)(1 - step/|b|)^n';
 * then write noise omega*writeNoise*g3 on written devices, then clamp to [wmin, wmax].
 * Bindings: w (rw), dw, tileScale [1], uniform.
 */
export function pulsedUpdateKernel(n: number, softBounds: boolean): KernelSpec {
  const wg = 64;
  const move = softBounds
    ? `    let b = select(wmin, wmax, d > 0.0);
    let rate = clamp(step / max(abs(b), 1e-30), 0.0, ${SOFT_BOUND_MAX_RATE});
    w1 = b - (b - w0) * pow(1.0 - rate, nEff);`
    : `    w1 = w0 + sign(d) * step * nEff;`;
  const wgsl = `// pulsedUpdate n=${n}${softBounds ? ' soft bounds' : ' hard bounds'}
struct U { deviceKey: u32, updateKey: u32, dwMin: f32, dwMinDtod: f32, dwMinCtoc: f32, upDown: f32, upDownDtod: f32, wMax: f32, wMin: f32, boundsDtod: f32, writeNoise: f32, maxPulses: f32 }
@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> dw: array<f32>;
@group(0) @binding(2) var<storage, read> tileScale: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
${WGSL_RANDOM}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = ${linearGroupIndex} * ${wg}u + li;
  if (i >= ${n}u) { return; }
  let ts = tileScale[0];
  let omega = select(1.0, ts, ts > 0.0);
  let scale = max(0.0, 1.0 + u.dwMinDtod * draw_gaussian(u.deviceKey, i, 0u));
  let asym = clamp(u.upDown + u.upDownDtod * draw_gaussian(u.deviceKey, i, 2u), -1.0, 1.0);
  let wmax = omega * u.wMax * max(0.0, 1.0 + u.boundsDtod * draw_gaussian(u.deviceKey, i, 4u));
  let wmin = omega * u.wMin * max(0.0, 1.0 + u.boundsDtod * draw_gaussian(u.deviceKey, i, 6u));
  let d = dw[i];
  let w0 = w[i];
  let step = omega * u.dwMin * scale * select(1.0 - asym, 1.0 + asym, d > 0.0);
  if (step <= 0.0 || d == 0.0) { return; }
  let pulses = min(floor(abs(d) / step + draw_uniform(u.updateKey, i, 0u)), u.maxPulses);
  if (pulses <= 0.0) { return; }
  let nEff = max(0.0, pulses + u.dwMinCtoc * sqrt(pulses) * draw_gaussian(u.updateKey, i, 1u));
  var w1 = w0;
  {
${move}
  }
  w1 = w1 + omega * u.writeNoise * draw_gaussian(u.updateKey, i, 3u);
  w[i] = clamp(w1, wmin, wmax);
}`;
  return {
    name: 'pulsedUpdate',
    wgsl,
    bindings: ['rw', 'read', 'read', 'uniform'],
    workgroups: grid(Math.ceil(n / wg)),
    uniformBytes: PULSED_UPDATE_UNIFORM_BYTES,
  };
}
