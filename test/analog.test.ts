// The analog backend: an ideal device changes nothing, each non-ideality alone has the
// statistics the device model claims, seeds reproduce, and webgpu and reference draw the
// same noise. Statistics run on the GPU (where the noise is drawn) on large samples.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import {
  AnalogBackend,
  AnalogIOOptions,
  DEFAULT_UPDATE,
  Backend,
  DeviceModel,
  PulsedUpdateOptions,
  Tensor,
  loadDeviceModel,
  parseDeviceModel,
  seedFromString,
} from '../engine/index.js';
import { evalCommand, trainCommand } from '../tools/train.js';
import { freshSeed, gpu, randomValues, ref, relErr, rng } from './helpers.js';

function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}

function std(xs: ArrayLike<number>): number {
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += (xs[i] - m) ** 2;
  return Math.sqrt(s / (xs.length - 1));
}

function expectBitwise(got: Float64Array, want: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) expect.fail(`${what}[${i}] = ${got[i]}, want exactly ${want[i]}`);
}

const io = (o: Partial<AnalogIOOptions>): AnalogIOOptions => ({ mode: 'dac', noiseStd: 0, bound: Infinity, bits: 0, key: 12345, ...o });

// The default device (no spread, no asymmetry, hard bounds +-1, no write noise), coarser steps.
const NO_SPREAD: PulsedUpdateOptions = { ...DEFAULT_UPDATE, dwMin: 0.01, deviceKey: 99, updateKey: 7 };

/** Runs one pulsed update on fresh tensors and returns the change of every weight. */
async function pulses(be: Backend, w0: number[] | Float32Array, dw: number, o: PulsedUpdateOptions, omega = 1): Promise<{ w: Float64Array; delta: Float64Array }> {
  const w = be.fromArray(w0, [w0.length]);
  const d = be.fromArray(new Float32Array(w0.length).fill(dw), [w0.length]);
  const ts = be.fromArray([omega], [1]);
  be.pulsedUpdate(w, d, ts, o);
  const after = await be.read(w);
  const before = Float64Array.from(w0);
  for (const t of [w, d, ts]) t.dispose();
  return { w: after, delta: after.map((v, i) => v - before[i]) };
}

describe('IO stage statistics (webgpu)', () => {
  const N = 200_000;

  it('additive noise has the claimed std and is Gaussian', async () => {
    const be = await gpu();
    const x = be.zeros([400, N / 400]);
    const y = be.analogIO(x, io({ noiseStd: 0.1, key: seedFromString(freshSeed()) }));
    const v = await be.read(y);
    expect(Math.abs(mean(v))).toBeLessThan(0.002);
    expect(std(v) / 0.1).toBeGreaterThan(0.98);
    expect(std(v) / 0.1).toBeLessThan(1.02);
    const within1 = v.filter((e) => Math.abs(e) < 0.1).length / v.length;
    expect(Math.abs(within1 - 0.6827)).toBeLessThan(0.01);
    const within2 = v.filter((e) => Math.abs(e) < 0.2).length / v.length;
    expect(Math.abs(within2 - 0.9545)).toBeLessThan(0.005);
    x.dispose();
    y.dispose();
  });

  it('output noise is in units of the tile scale (adc)', async () => {
    const be = await gpu();
    const x = be.zeros([100, 1000]);
    const omega = be.fromArray([2.5], [1]);
    const y = be.analogIO(x, io({ mode: 'adc', noiseStd: 0.04, key: seedFromString(freshSeed()) }), null, omega);
    const s = std(await be.read(y));
    expect(s / (0.04 * 2.5)).toBeGreaterThan(0.98);
    expect(s / (0.04 * 2.5)).toBeLessThan(1.02);
    for (const t of [x, omega, y]) t.dispose();
  });

  it.each([2, 4, 7])('quantization to %i bits gives exactly 2^bits - 1 levels spanning the bound', async (bits) => {
    const be = await gpu();
    const r = rng(freshSeed());
    const bound = 1.3;
    const x = be.fromArray(randomValues(50_000, r, -2, 2), [50, 1000]);
    const y = be.analogIO(x, io({ bound, bits }));
    const xv = await be.read(x);
    const v = await be.read(y);
    const step = (2 * bound) / (2 ** bits - 2);
    const levels = new Set<number>();
    for (let i = 0; i < v.length; i++) {
      const k = v[i] / step;
      levels.add(Math.round(k));
      if (!(Math.abs(k - Math.round(k)) < 1e-4)) expect.fail(`value ${v[i]} is not a multiple of ${step}`);
      const clipped = Math.min(bound, Math.max(-bound, xv[i]));
      if (!(Math.abs(v[i] - clipped) <= step / 2 + 1e-6)) expect.fail(`${xv[i]} quantized to ${v[i]}, more than half a step ${step} away`);
    }
    expect(levels.size).toBe(2 ** bits - 1);
    expect(Math.max(...levels) * step).toBeCloseTo(bound, 5);
    expect(Math.min(...levels) * step).toBeCloseTo(-bound, 5);
    x.dispose();
    y.dispose();
  });

  it('clipping holds the bound and leaves values inside unchanged', async () => {
    const be = await gpu();
    const r = rng(freshSeed());
    const x = be.fromArray(randomValues(20_000, r, -3, 3), [20, 1000]);
    const y = be.analogIO(x, io({ bound: 0.75 }));
    const xv = await be.read(x);
    const v = await be.read(y);
    for (let i = 0; i < v.length; i++) {
      const want = Math.min(0.75, Math.max(-0.75, xv[i]));
      if (v[i] !== want) expect.fail(`clip(${xv[i]}) = ${v[i]}, want ${want}`);
    }
    x.dispose();
    y.dispose();
  });

  it('noise management scales every row to max |x| = 1; bound management halves clipping rows and amplifies their noise', async () => {
    const be = await gpu();
    const r = rng(freshSeed());
    const rows = 40;
    const per = 5000;
    const vals = randomValues(rows * per, r, -1, 1);
    for (let i = 0; i < vals.length; i++) vals[i] *= 0.5 + Math.floor(i / per) * 0.1; // row maxima 0.5 .. 4.4
    const x = be.fromArray(vals, [rows, per]);
    const s = be.rowAbsMax(x);
    const sv = await be.read(s);
    const nm = await be.read(be.analogIO(x, io({}), s));
    for (let row = 0; row < rows; row++) {
      let m = 0;
      for (let k = 0; k < per; k++) m = Math.max(m, Math.abs(nm[row * per + k]));
      expect(m).toBeCloseTo(1, 6);
      expect(sv[row]).toBe(Math.max(...Array.from(vals.subarray(row * per, (row + 1) * per), Math.abs)));
    }
    // Bound management: bound 1, noise 0.01. A row with max m is divided by the fewest
    // powers of two (<= 3) that bring it within the bound, so nothing clips below 8 and
    // the noise grows with the factor.
    const std0 = 0.01;
    const bm = await be.read(be.analogIO(x, io({ mode: 'adc', noiseStd: std0, bound: 1, maxHalvings: 3, key: seedFromString(freshSeed()) }), s));
    for (let row = 0; row < rows; row++) {
      const m = sv[row];
      const f = m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
      const noise = Array.from({ length: per }, (_, k) => bm[row * per + k] - vals[row * per + k]);
      const ratio = std(noise) / (std0 * f);
      expect(ratio, `row ${row} (max ${m.toFixed(3)}, factor ${f})`).toBeGreaterThan(0.94);
      expect(ratio, `row ${row} (max ${m.toFixed(3)}, factor ${f})`).toBeLessThan(1.06);
    }
    x.dispose();
    s.dispose();
  });
});

describe('pulsed update statistics (webgpu)', () => {
  const N = 100_000;
  const zeros = new Float32Array(N);

  it('steps are whole dw_min pulses, stochastically rounded to the requested change', async () => {
    const be = await gpu();
    const omega = 0.5;
    const { delta } = await pulses(be, zeros, 2.3 * 0.01 * omega, { ...NO_SPREAD, updateKey: seedFromString(freshSeed()) }, omega);
    const counts = Array.from(delta, (d) => d / (0.01 * omega));
    for (const c of counts) if (!(Math.abs(c - Math.round(c)) < 1e-3)) expect.fail(`a change of ${c} pulses`);
    expect(new Set(counts.map(Math.round))).toEqual(new Set([2, 3]));
    expect(Math.abs(mean(counts) - 2.3)).toBeLessThan(0.01);
  });

  it('device-to-device spread of dw_min is fixed per device; cycle-to-cycle spread is fresh per update', async () => {
    const be = await gpu();
    const o = { ...NO_SPREAD, dwMinDtod: 0.2, maxPulses: 1, deviceKey: seedFromString(freshSeed()) };
    const a = await pulses(be, zeros, 1, { ...o, updateKey: 1 });
    const b = await pulses(be, zeros, 1, { ...o, updateKey: 2 });
    const steps = Array.from(a.delta, (d) => d / 0.01);
    expect(Math.abs(mean(steps) - 1)).toBeLessThan(0.005);
    expect(std(steps) / 0.2).toBeGreaterThan(0.97);
    expect(std(steps) / 0.2).toBeLessThan(1.03);
    expectBitwise(b.delta, a.delta, 'same devices, another update');
    const c2c = { ...NO_SPREAD, dwMinCtoc: 0.3, maxPulses: 1 };
    const c = await pulses(be, zeros, 1, { ...c2c, updateKey: 1 });
    const d = await pulses(be, zeros, 1, { ...c2c, updateKey: 2 });
    const cs = Array.from(c.delta, (v) => v / 0.01);
    expect(Math.abs(mean(cs) - 1)).toBeLessThan(0.005);
    expect(std(cs) / 0.3).toBeGreaterThan(0.97);
    expect(std(cs) / 0.3).toBeLessThan(1.03);
    expect(d.delta.some((v, i) => v !== c.delta[i])).toBe(true);
  });

  it('asymmetric up/down steps have the ratio (1 + upDown) / (1 - upDown)', async () => {
    const be = await gpu();
    const o = { ...NO_SPREAD, upDown: 0.2, maxPulses: 1 };
    const up = await pulses(be, zeros.subarray(0, 1000), 1, o);
    const down = await pulses(be, zeros.subarray(0, 1000), -1, o);
    for (let i = 0; i < 1000; i++) {
      expect(up.delta[i]).toBeCloseTo(0.012, 7);
      expect(down.delta[i]).toBeCloseTo(-0.008, 7);
    }
  });

  it('soft bounds shrink each step by (1 - w / bound)', async () => {
    const be = await gpu();
    const o = { ...NO_SPREAD, softBounds: true, maxPulses: 1 };
    const w0 = Float32Array.from({ length: 1000 }, (_, i) => -0.9 + (1.8 * i) / 999);
    const up = await pulses(be, w0, 1, o);
    const down = await pulses(be, w0, -1, o);
    for (let i = 0; i < w0.length; i++) {
      expect(up.delta[i]).toBeCloseTo(0.01 * (1 - w0[i] / 1), 6);
      expect(down.delta[i]).toBeCloseTo(-0.01 * (1 - w0[i] / -1), 6);
    }
    // Many pulses approach the bound and never cross it.
    const many = await pulses(be, w0, 100, { ...o, maxPulses: 31 });
    for (let i = 0; i < w0.length; i++) {
      expect(many.w[i]).toBeLessThanOrEqual(1);
      expect(many.w[i]).toBeCloseTo(1 - (1 - w0[i]) * 0.99 ** 31, 5);
    }
  });

  it('hard bounds are never exceeded, also with device-to-device bound spread and write noise', async () => {
    const be = await gpu();
    const r = rng(freshSeed());
    const w0 = randomValues(N, r, -1, 1);
    const o = { ...NO_SPREAD, dwMin: 0.2, writeNoise: 0.5, maxPulses: 31, updateKey: seedFromString(freshSeed()) };
    for (const dir of [1, -1]) {
      const { w } = await pulses(be, w0, dir * 10, o);
      for (let i = 0; i < N; i++) if (!(Math.abs(w[i]) <= 1)) expect.fail(`w[${i}] = ${w[i]} beyond the bound 1`);
      expect(w.filter((v) => v === dir).length).toBeGreaterThan(N * 0.9);
    }
    const spread = { ...o, boundsDtod: 0.3, writeNoise: 0 };
    const up = await pulses(be, w0, 10, spread);
    const down = await pulses(be, w0, -10, spread);
    // Saturated devices sit at their own bounds, which spread around +-1.
    expect(std(up.w) / 0.3).toBeGreaterThan(0.95);
    expect(std(up.w) / 0.3).toBeLessThan(1.05);
    const again = await pulses(be, Float32Array.from(up.w), 10, { ...spread, updateKey: 3 });
    expectBitwise(again.w, up.w, 'a saturated device stays at its bound');
    for (let i = 0; i < N; i++) if (!(down.w[i] <= 0)) expect.fail(`w[${i}] = ${down.w[i]} after a large decrease`);
  });

  it('write noise has the claimed std on written devices only', async () => {
    const be = await gpu();
    const o = { ...NO_SPREAD, writeNoise: 0.003, maxPulses: 1, updateKey: seedFromString(freshSeed()) };
    const { delta } = await pulses(be, zeros, 0.5 * 0.01 * 2, o, 2);
    const written = Array.from(delta).filter((d) => d !== 0);
    // Half the devices get one pulse (stochastic rounding of 0.5); the other half is untouched.
    expect(Math.abs(written.length / N - 0.5)).toBeLessThan(0.01);
    const noise = written.map((d) => d - 0.02);
    expect(Math.abs(mean(noise))).toBeLessThan(3e-4);
    expect(std(noise) / 0.006).toBeGreaterThan(0.97);
    expect(std(noise) / 0.006).toBeLessThan(1.03);
  });
});

// ---------------------------------------------------------------------------
// The decorator.

const IDEAL = loadDeviceModel('ideal');
const NOISY = loadDeviceModel('noisy-inference');
const RERAM = loadDeviceModel('reram-softbounds');

interface Sequence {
  x: Float32Array;
  w: Float32Array;
  dw: Float32Array;
  h: Float32Array;
  m: Float32Array;
  g: Float32Array;
}

function sequenceInputs(seed: string): Sequence {
  const r = rng(seed);
  return {
    x: randomValues(3 * 7 * 6 * 5, r), // [3,7,6,5]
    w: randomValues(9 * 5 * 4, r, -0.3, 0.3), // [3,3,5,4]
    dw: randomValues(9 * 5 * 4, r, -1, 1),
    h: randomValues(3 * 13, r), // [3,13]
    m: randomValues(13 * 6, r, -0.4, 0.4), // [13,6]
    g: randomValues(3 * 6, r), // [3,6]
  };
}

/** The ops a layer uses, forward, transposed and weight-gradient, then two SGD steps; every result read back. */
async function runSequence(be: Backend, s: Sequence): Promise<Float64Array[]> {
  const x = be.fromArray(s.x, [3, 7, 6, 5]);
  const w = be.fromArray(s.w, [3, 3, 5, 4]);
  const bias = be.fromArray([0.1, -0.2, 0.3, 0], [4]);
  const h = be.fromArray(s.h, [3, 13]);
  const m = be.fromArray(s.m, [13, 6]);
  const g = be.fromArray(s.g, [3, 6]);
  const out: Tensor[] = [];
  const opts = { stride: 1 as const, pad: 1 as const };
  const y = be.conv2d(x, w, bias, opts);
  out.push(y);
  out.push(be.conv2dBackwardData(y, w, x.shape, opts));
  const gw = be.conv2dBackwardFilter(x, y, w.shape, opts);
  out.push(gw);
  out.push(be.matmul(h, m));
  out.push(be.matmul(g, m, { transB: true }));
  const gm = be.matmul(h, g, { transA: true });
  out.push(gm);
  const vw = be.zeros(w.shape);
  const vm = be.zeros(m.shape);
  const dw = be.fromArray(s.dw, w.shape);
  const sgd = { lr: 0.05, momentum: 0.9, weightDecay: 1e-3, nesterov: true };
  be.sgdNesterov(w, dw, vw, sgd);
  be.sgdNesterov(m, gm, vm, sgd);
  be.sgdNesterov(w, gw, vw, sgd);
  out.push(be.conv2d(x, w, null, opts)); // reads the updated, reprogrammed tile
  const values = await Promise.all([...out, w, m, vw, vm].map((t) => be.read(t)));
  for (const t of [x, w, bias, h, m, g, vw, vm, dw, ...out]) t.dispose();
  return values;
}

function analog(inner: Backend, model: DeviceModel, seed = 17): AnalogBackend {
  return new AnalogBackend(inner, model, { seed });
}

describe('analog backend', () => {
  it('with the ideal device matches the wrapped backend bitwise (reference and webgpu)', async () => {
    const s = sequenceInputs(freshSeed());
    for (const inner of [ref, await gpu()]) {
      const want = await runSequence(inner, s);
      const be = analog(inner, IDEAL);
      const got = await runSequence(be, s);
      got.forEach((v, i) => expectBitwise(v, want[i], `${inner.name} result ${i}`));
      be.dispose();
    }
  });

  it.each([
    ['noisy-inference', NOISY],
    ['reram-softbounds', RERAM],
  ])('%s: the same seed reproduces bitwise, another seed differs, and every result differs from ideal', async (_name, model) => {
    const s = sequenceInputs(freshSeed());
    const inner = await gpu();
    const ideal = await runSequence(inner, s);
    const a = await runSequence(analog(inner, model, 5), s);
    const b = await runSequence(analog(inner, model, 5), s);
    const c = await runSequence(analog(inner, model, 6), s);
    a.forEach((v, i) => expectBitwise(b[i], v, `result ${i}`));
    // Results 0..6 are reads; 7..8 the updated weights; 9..10 the (digital) velocities.
    for (let i = 0; i < 9; i++) {
      // Weight-gradient uses (2, 5) see only the (deterministic) DAC quantization in both
      // presets, and noisy-inference updates m digitally from such a gradient (8).
      const deterministic = i === 2 || i === 5 || (model === NOISY && i === 8);
      if (!deterministic) expect(c[i].some((v, k) => v !== a[i][k]), `result ${i} under another seed`).toBe(true);
      expect(relErr(a[i], ideal[i]), `result ${i} vs ideal`).toBeGreaterThan(1e-4);
    }
  });

  it.each([
    ['noisy-inference', NOISY],
    ['reram-softbounds', RERAM],
  ])('%s: webgpu and reference draw the same noise', async (_name, model) => {
    const seed = freshSeed();
    const s = sequenceInputs(seed);
    const got = await runSequence(analog(await gpu(), model, 9), s);
    const want = await runSequence(analog(ref, model, 9), s);
    // A value within f32 rounding of a quantization boundary may land one level apart, and
    // the next op spreads that one flip over its neighbours (a few % of the elements): the
    // median element must agree to f32 rounding, the whole tensor roughly.
    got.forEach((v, i) => {
      const scale = Math.max(...Array.from(want[i], Math.abs));
      const diffs = Array.from(v, (g, k) => Math.abs(g - want[i][k]) / scale).sort((p, q) => p - q);
      expect(diffs[Math.floor(diffs.length / 2)], `result ${i} median difference (seed ${seed})`).toBeLessThan(1e-5);
      expect(relErr(v, want[i]), `result ${i} (seed ${seed})`).toBeLessThan(3e-2);
    });
  });

  it('without quantization, webgpu and reference agree to f32 rounding through the whole decorator', async () => {
    const seed = freshSeed();
    const s = sequenceInputs(seed);
    const io = { inNoise: 0.02, outNoise: 0.05, outBound: 12, noiseManagement: true, boundManagement: true };
    const model = parseDeviceModel({ forward: io, backward: io, programNoise: 0.02, update: { ...RERAM.update, dwMin: 0.02 } }, 'noise-only');
    const got = await runSequence(analog(await gpu(), model, 4), s);
    const want = await runSequence(analog(ref, model, 4), s);
    const ideal = await runSequence(ref, s);
    got.forEach((v, i) => {
      expect(relErr(v, want[i]), `result ${i} (seed ${seed})`).toBeLessThan(1e-4);
      expect(relErr(v, ideal[i]), `result ${i} differs from ideal`).toBeGreaterThan(1e-3);
    });
  });

  it('pulsed updates alone: reads stay exact, updated weights move in whole dw_min pulses', async () => {
    const s = sequenceInputs(freshSeed());
    const inner = await gpu();
    const ideal = await runSequence(inner, s);
    const model = parseDeviceModel({ update: { dwMin: 0.05, wMax: 4, wMin: -4 } }, 'test');
    const got = await runSequence(analog(inner, model, 3), s);
    for (let i = 0; i < 6; i++) expectBitwise(got[i], ideal[i], `read ${i} before any update`);
    for (const i of [7, 8]) {
      expect(relErr(got[i], ideal[i]), `weights ${i}`).toBeGreaterThan(1e-3);
      // omega of each tile is max |W| at first use; every change is a whole number of pulses.
      const w0 = i === 7 ? s.w : s.m;
      const omega = Math.max(...Array.from(w0, Math.abs));
      for (let k = 0; k < w0.length; k++) {
        const n = (got[i][k] - w0[k]) / (0.05 * omega);
        if (!(Math.abs(n - Math.round(n)) < 1e-3)) expect.fail(`weights ${i}[${k}] moved by ${n} pulses`);
      }
    }
    expect(relErr(got[6], ideal[6])).toBeGreaterThan(1e-3);
  });

  it('noise management and output noise: a forward MVM has the claimed read-noise std', async () => {
    const be = await gpu();
    const model = parseDeviceModel({ forward: { outNoise: 0.05, noiseManagement: true } }, 'test');
    const abe = analog(be, model, seedFromString(freshSeed()));
    const r = rng(freshSeed());
    const rows = 500;
    const K = 20;
    const xv = randomValues(rows * K, r);
    const wv = randomValues(K * 200, r, -0.2, 0.2);
    const x = be.fromArray(xv, [rows, K]);
    const w = be.fromArray(wv, [K, 200]);
    const exact = await be.read(be.matmul(x, w));
    const noisy = await abe.read(abe.matmul(x, w));
    const omega = Math.max(...Array.from(wv, Math.abs));
    // Output noise is added in normalized units: divided by each row's max |x| and by omega.
    const z: number[] = [];
    for (let row = 0; row < rows; row++) {
      let s = 0;
      for (let k = 0; k < K; k++) s = Math.max(s, Math.abs(xv[row * K + k]));
      for (let n = 0; n < 200; n++) z.push((noisy[row * 200 + n] - exact[row * 200 + n]) / (s * omega));
    }
    expect(std(z) / 0.05).toBeGreaterThan(0.98);
    expect(std(z) / 0.05).toBeLessThan(1.02);
    abe.dispose();
  });
});

describe('device models', () => {
  it('presets load and have the documented effects', () => {
    expect(IDEAL.update).toBeNull();
    expect(IDEAL.forward.outNoise).toBe(0);
    expect(NOISY.forward.outNoise).toBeGreaterThan(0);
    expect(RERAM.update?.softBounds).toBe(true);
  });

  it('a JSON file loads; unknown keys and bad values are clear errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nudge-analog-'));
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ name: 'mine', forward: { outNoise: 0.1, outBound: 10, outBits: 8 }, update: { dwMin: 0.01, softBounds: true } }));
    const m = loadDeviceModel(good);
    expect(m.name).toBe('mine');
    expect(m.forward.outBits).toBe(8);
    expect(m.backward.outNoise).toBe(0);
    expect(m.update?.dwMin).toBe(0.01);
    expect(m.update?.maxPulses).toBe(31);
    const bad = (obj: unknown) => {
      const p = join(dir, 'bad.json');
      writeFileSync(p, JSON.stringify(obj));
      return () => loadDeviceModel(p);
    };
    expect(bad({ forward: { outNoize: 0.1 } })).toThrow(/unknown key 'outNoize'.*known: inBits/);
    expect(bad({ forwards: {} })).toThrow(/unknown key 'forwards'/);
    expect(bad({ forward: { outNoise: -1 } })).toThrow(/outNoise must be a number in \[0/);
    expect(bad({ forward: { outBits: 8 } })).toThrow(/outBits 8 needs a finite outBound/);
    expect(bad({ forward: { inBits: 1, inBound: 1 } })).toThrow(/inBits must be 0/);
    expect(bad({ update: { wMin: 0.5 } })).toThrow(/wMin must be a number in/);
    expect(bad({ update: { dwMin: 0 } })).toThrow(/dwMin must be positive/);
    expect(bad({ forward: { boundManagement: true } })).toThrow(/boundManagement needs a finite outBound/);
    expect(bad({ programNoise: 'high' })).toThrow(/programNoise must be a number/);
    writeFileSync(join(dir, 'broken.json'), '{ "forward": ');
    expect(() => loadDeviceModel(join(dir, 'broken.json'))).toThrow(/not valid JSON/);
    expect(() => loadDeviceModel('no-such-preset')).toThrow(/unknown device model 'no-such-preset': not a preset \(ideal, noisy-inference, reram-softbounds\)/);
  });

  it('bad primitive arguments are ShapeErrors before any work', async () => {
    const be = await gpu();
    const x = be.zeros([3, 4]);
    const ts = be.fromArray([1], [1]);
    expect(() => be.analogIO(x, io({ bits: 1, bound: 1 }))).toThrow(/bits must be 0/);
    expect(() => be.analogIO(x, io({ bits: 4 }))).toThrow(/needs a finite bound/);
    expect(() => be.analogIO(x, io({ noiseStd: -1 }))).toThrow(/noiseStd must be a finite number >= 0/);
    expect(() => be.analogIO(x, io({}), be.zeros([4]))).toThrow(/row scale must be \[3\]/);
    expect(() => be.analogIO(x, io({ key: -1 }))).toThrow(/key must be a u32/);
    expect(() => ref.pulsedUpdate(ref.zeros([3]), ref.zeros([4]), ref.fromArray([1], [1]), NO_SPREAD)).toThrow(/shapes must match/);
    expect(() => be.pulsedUpdate(x, be.zeros([3, 4]), ts, { ...NO_SPREAD, wMin: 0.1 })).toThrow(/wMin must be <= 0/);
    x.dispose();
    ts.dispose();
  });
});

describe('nudge train / eval with a device model', () => {
  // In process (the commands as tools/cli.ts calls them): spawning the CLI twice costs more
  // than the training itself on a loaded 2-core machine.
  async function command(fn: (args: string[]) => Promise<number>, args: string[]): Promise<string> {
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...xs: unknown[]) => void lines.push(xs.join(' ')));
    try {
      expect(await fn(args)).toBe(0);
    } finally {
      spy.mockRestore();
    }
    return lines.join('\n');
  }

  it('trains on the analog backend and evaluates the checkpoint under another device model', async () => {
    await gpu(); // fails loudly without an adapter
    const dir = mkdtempSync(join(tmpdir(), 'nudge-analog-cli-'));
    const ck = join(dir, 'run.safetensors');
    const small = ['--arch', 'c4p', '--train-limit', '128', '--test-limit', '128', '--batch', '64', '--K', '2'];
    const t = await command(trainCommand, ['--backend', 'analog', '--device-model', 'reram-softbounds', '--checkpoint', ck, ...small]);
    expect(t).toMatch(/backend analog\(webgpu\) with device model reram-softbounds/);
    expect(t).toMatch(/test accuracy \d+\.\d+%/);
    const e = await command(evalCommand, ['--checkpoint', ck, '--device-model', 'noisy-inference', '--test-limit', '128']);
    expect(e).toMatch(/under device model noisy-inference, test top-1 \d+\.\d+%/);
    // The device model is part of the run's identity: resuming under another one is refused.
    const other = await trainCommand(['--backend', 'analog', '--device-model', 'noisy-inference', '--checkpoint', ck, '--resume', ...small]).then(
      () => null,
      (err: Error) => err,
    );
    expect(other?.message).toMatch(/was written by a different run/);
  });

  it('bad device-model flags are user errors before any work', async () => {
    const cases: [string[], RegExp][] = [
      [['--backend', 'analog', '--device-model', 'memristor9000'], /unknown device model 'memristor9000': not a preset/],
      [['--backend', 'analog'], /--backend analog needs --device-model/],
      [['--backend', 'reference', '--device-model', 'ideal'], /--device-model needs --backend analog, not reference/],
      [['--backend', 'analog', '--device-model', 'ideal', '--analog-base', 'tpu'], /--analog-base must be webgpu or reference/],
    ];
    for (const [args, want] of cases) {
      const err = await trainCommand([...args, '--train-limit', '64']).then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.name).toBe('UserError');
      expect(err?.message).toMatch(want);
    }
  });
});
