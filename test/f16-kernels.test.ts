// The opt-in f16 kernels (SharedTileConfig.f16, kernels/matmul/sharedTile.ts): tensors stay
// f32 in their buffers; the kernels round the operands to f16 as they stage them into
// workgroup memory and multiply in f16, accumulating in f32 ('mul') or in f16 ('acc').
//
// Error bounds, per output element, with u = 2^-11 (f16 unit roundoff), inputs in [-1, 1],
// a reduction of K terms a_k b_k, S = sum_k |a_k b_k| and s_k the exact partial sums in the
// kernel's order (k ascending, one accumulator per element):
// - rounding a and b to f16 and the product to f16 costs at most (3u + 3u^2) |a_k b_k| per
//   term, plus 3 * 2^-25 where an f16 value is subnormal (spacing 2^-24);
// - 'mul' adds the products in f32: at most K * 2^-24 * S more;
// - 'acc' adds them in f16: at most u * |computed s_k| + 2^-25 per step; the computed
//   partial sums differ from the exact ones by at most the bound so far, covered by the
//   factor (1 + K u).
// So |err| <= 3.01 u S + K 2^-24 S + 3 K 2^-25            ('mul')
//    |err| <= 3.01 u S + (1 + K u) u sum_k |s_k| + 4 K 2^-25   ('acc').
// The f32 kernels pass at 1e-5; these bounds are ~100x looser, yet a wrong kernel (a term
// lost or doubled, a wrong operand) is off by O(|a b|), far past them on these sizes.
import { describe, expect, it } from 'vitest';
import { CACHE_FORMAT, Tensor, TUNABLE_OPS, Tuner, WebGPUBackend, adapterIdentity, canonicalConfig, convGeometry, kernelSetHash } from '../engine/index.js';
import type { KernelChoices } from '../engine/index.js';
import type { TunableOp } from '../engine/tune/ops.js';
import * as linalgOps from '../engine/webgpu/ops/linalg.js';
import * as convOps from '../engine/webgpu/ops/conv.js';
import {
  MAX_WORKGROUP_STORAGE_BYTES,
  SharedTileConfig,
  sharedMatmulKernel,
  sharedTileConfigKey,
  sharedTileConfigs,
  sharedTileStorageBytes,
} from '../kernels/matmul/sharedTile.js';
import { MatmulShape } from '../kernels/matmul/matmul.js';
import { configKey, convBackwardDataCandidates, convBackwardFilterCandidates, convForwardCandidates, matmulCandidates } from '../kernels/candidates.js';
import { freshSeed, gpu, randomValues, ref, rng } from './helpers.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const U = 2 ** -11;
/** f16 shader compiles take seconds each on lavapipe (busy 2 cores). */
const SLOW = 120_000;

/** The f16 field of a config, or of the matmul inside a conv-as-matmul config. */
function f16Of(c: unknown): unknown {
  const o = c as { f16?: unknown; matmul?: { f16?: unknown } };
  return o.f16 ?? o.matmul?.f16;
}

/** Runs `fn` with the backend's precision set to f16, restoring it after. */
async function withF16<T>(be: WebGPUBackend, fn: () => Promise<T>): Promise<T> {
  const was = be.precision;
  be.precision = 'f16';
  try {
    return await fn();
  } finally {
    be.precision = was;
  }
}

async function read(be: WebGPUBackend, t: Tensor): Promise<Float64Array> {
  const out = await be.read(t);
  t.dispose();
  return out;
}

describe('f16 configs as strings, spaces and candidates', () => {
  it('f16 configs enable f16, stage f16 tiles in half the workgroup memory, and are named apart', () => {
    const base: SharedTileConfig = { algo: 'shared', BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, vec4: true, unroll: true };
    const mul = { ...base, f16: 'mul' as const };
    const acc = { ...base, f16: 'acc' as const };
    expect(sharedTileStorageBytes(mul)).toBe(sharedTileStorageBytes(base) / 2);
    const keys = [base, mul, acc].map(sharedTileConfigKey);
    expect(new Set(keys).size).toBe(3);
    const s: MatmulShape = { M: 37, K: 29, N: 20, transA: false, transB: true };
    const w32 = sharedMatmulKernel(s, base).wgsl;
    expect(w32).not.toMatch(/f16/);
    for (const c of [mul, acc]) {
      const w = sharedMatmulKernel(s, c).wgsl;
      expect(w.startsWith('enable f16;')).toBe(true);
      expect(w).toMatch(/var<workgroup> As: array<f16, /);
      expect(w).toMatch(/var<workgroup> Bs: array<vec4<f16>, /);
      // 'acc' keeps f16 accumulators; 'mul' f32 ones.
      expect(w).toMatch(c.f16 === 'acc' ? /var acc0_0 = vec4<f16>/ : /var acc0_0 = vec4<f32>/);
    }
    expect(() => sharedMatmulKernel(s, { ...base, f16: 'half' as never })).toThrow(/f16 must be/);
  });

  it('f16 configs are candidates only with precision f16; f16 fits bigger tiles; the device limit is honoured', () => {
    const s: MatmulShape = { M: 512, K: 256, N: 512, transA: false, transB: false };
    const f32 = matmulCandidates(s);
    const f16 = matmulCandidates(s, { precision: 'f16' });
    expect(f32.some((c) => f16Of(c) !== undefined)).toBe(false);
    expect(f16.some((c) => f16Of(c) === 'mul')).toBe(true);
    expect(f16.some((c) => f16Of(c) === 'acc')).toBe(true);
    expect(new Set(f16.map((c) => configKey('matmul', c))).size).toBe(f16.length);
    // Every f32 candidate stays one with f16 (same canonical form: no f16 field at all).
    expect(f16.filter((c) => !('f16' in c)).length).toBe(f32.length);
    const big = (c: SharedTileConfig) => c.BM === 128 && c.BN === 128 && c.BK === 32;
    const shared = (cs: unknown[]) => cs.filter((c): c is SharedTileConfig => (c as SharedTileConfig).algo === 'shared');
    // 128x128x32 needs 32 KB in f32: out of the portable 16 KB, in with f16 tiles or a larger device limit.
    expect(shared(f32).some(big)).toBe(false);
    expect(shared(f16).some((c) => big(c) && c.f16 !== undefined)).toBe(true);
    expect(shared(f16).some((c) => big(c) && c.f16 === undefined)).toBe(false);
    expect(shared(matmulCandidates(s, { maxStorageBytes: 49152 })).some(big)).toBe(true);
    for (const c of sharedTileConfigs(512, 512, { precision: 'f16' })) expect(sharedTileStorageBytes(c)).toBeLessThanOrEqual(MAX_WORKGROUP_STORAGE_BYTES);
    const big32: SharedTileConfig = { algo: 'shared', BM: 128, BN: 128, BK: 32, TM: 8, TN: 8, vec4: true };
    expect(() => sharedMatmulKernel(s, big32)).toThrow(/workgroup memory/);
    expect(sharedMatmulKernel(s, big32, false, 49152).wgsl).toMatch(/array<vec4<f32>, 1024>/);

    const g = convGeometry('conv2d', [2, 9, 9, 16], [3, 3, 16, 12], { stride: 1, pad: 1 });
    const g1 = convGeometry('conv2d', [2, 5, 5, 8], [1, 1, 8, 12], { stride: 1, pad: 0 });
    for (const [name, fn, family] of [['forward', convForwardCandidates, 'conv2d'], ['backwardData', convBackwardDataCandidates, 'conv2dBackwardData'], ['backwardFilter', convBackwardFilterCandidates, 'conv2dBackwardFilter']] as const) {
      const plain: unknown[] = fn(g);
      const half: unknown[] = fn(g, { precision: 'f16' });
      expect(plain.some((c) => f16Of(c) !== undefined), name).toBe(false);
      expect(half.some((c) => f16Of(c) === 'mul'), name).toBe(true);
      // Backward-filter sums over every pixel of the batch: no f16 accumulator there.
      expect(half.some((c) => f16Of(c) === 'acc'), name).toBe(name !== 'backwardFilter');
      expect(new Set(half.map((c) => configKey(family, c as never))).size, name).toBe(half.length);
    }
    expect(convForwardCandidates(g1, { precision: 'f16' }).some((c) => c.algo === 'matmul' && f16Of(c) !== undefined)).toBe(true);
  });

  it('the tuner keys f16 apart, and offers and seeds f16 configs only to an f16 backend', async () => {
    const p = { M: 40, K: 24, N: 36, transA: false, transB: false };
    expect(Tuner.key('matmul', p)).toMatch(/\|f32$/);
    expect(Tuner.key('matmul', p, 'f16')).toMatch(/\|f16$/);
    const choices = (precision: 'f32' | 'f16'): KernelChoices => ({ precision, subgroupTiles: null, defaultTileSubgroup: undefined, parallelism: 256, winogradDefaults: false });
    for (const op of Object.values(TUNABLE_OPS) as TunableOp[]) {
      const q = op.name === 'matmul' ? p : convGeometry('conv2d', [2, 9, 9, 16], [3, 3, 16, 12], { stride: 1, pad: 1 });
      expect(op.candidates(q).some((c) => f16Of(c) !== undefined), op.name).toBe(false);
      expect(op.seeds(q, choices('f32')).some((c) => f16Of(c) !== undefined), op.name).toBe(false);
      expect(op.seeds(q, choices('f16')).some((c) => f16Of(c) !== undefined), op.name).toBe(true);
      // Every seed is in its space, so the search reaches it whatever the budget.
      const space = new Set(op.candidates(q, { precision: 'f16' }).map(canonicalConfig));
      for (const c of op.seeds(q, choices('f16'))) expect(space.has(canonicalConfig(c)), `${op.name} ${canonicalConfig(c)}`).toBe(true);
    }

    // A cached f32 winner is not an f16 backend's, and the reverse.
    const be = await gpu();
    const dir = mkdtempSync(join(tmpdir(), 'nudge-f16-'));
    try {
      const file = join(dir, 'cache.json');
      const f32Cfg = matmulCandidates(p).find((c) => c.algo === 'shared')!;
      const f16Cfg = matmulCandidates(p, { precision: 'f16' }).find((c) => c.algo === 'shared' && c.f16 === 'acc')!;
      const entry = (config: unknown) => ({ config, configKey: 'x', ms: 1, defaultMs: 2, kernels: kernelSetHash(TUNABLE_OPS.matmul), tried: 1, rejected: 0, tunedAt: new Date().toISOString() });
      const entries = { [Tuner.key('matmul', p, 'f32')]: entry(f32Cfg), [Tuner.key('matmul', p, 'f16')]: entry(f16Cfg) };
      writeFileSync(file, JSON.stringify({ format: CACHE_FORMAT, version: 1, adapter: adapterIdentity(be), entries }));
      const logs: string[] = [];
      const tuner = new Tuner(be, { cacheFile: file, log: (m) => logs.push(m) });
      expect(be.precision).toBe('f32');
      expect(configKey('matmul', tuner.configFor('matmul', p)!)).toBe(configKey('matmul', f32Cfg));
      await withF16(be, async () => {
        expect(configKey('matmul', tuner.configFor('matmul', p)!)).toBe(configKey('matmul', f16Cfg));
      });
      expect(logs.filter((l) => /stale/.test(l))).toEqual([]);
      // An f16 config stored under the f32 key is not an f32 candidate: stale, never run.
      writeFileSync(file, JSON.stringify({ format: CACHE_FORMAT, version: 1, adapter: adapterIdentity(be), entries: { [Tuner.key('matmul', p, 'f32')]: entry(f16Cfg) } }));
      const strict = new Tuner(be, { cacheFile: file, log: (m) => logs.push(m) });
      expect(strict.configFor('matmul', p)).toBeUndefined();
      expect(logs.some((l) => /stale/.test(l) && /no longer a candidate/.test(l))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('precision policy on the webgpu backend', () => {
  it("precision 'f16' needs shader-f16, and f16 configs need precision 'f16'", async () => {
    const be = await gpu();
    expect(be.precision).toBe('f32');
    expect(be.gpu.features.has('shader-f16'), `${be.gpu.info.name} lacks shader-f16: these tests need an adapter with it (lavapipe has it)`).toBe(true);
    const without = { ...be.gpu, features: new Set([...be.gpu.features].filter((f) => f !== 'shader-f16')) };
    expect(() => new WebGPUBackend(without, { precision: 'f16' })).toThrow(/shader-f16/);
    const plain = new WebGPUBackend(without);
    expect(plain.precision).toBe('f32');
    expect(() => {
      plain.precision = 'f16';
    }).toThrow(/precision 'f16' needs the WebGPU feature shader-f16/);
    expect(plain.precision).toBe('f32');
    expect(() => {
      be.precision = 'f64' as never;
    }).toThrow(/precision must be/);

    const a = be.fromArray(new Float32Array(12), [3, 4]);
    const b = be.fromArray(new Float32Array(20), [4, 5]);
    const cfg: SharedTileConfig = { algo: 'shared', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, vec4: false, f16: 'mul' };
    expect(() => linalgOps.matmul(be, a, b, {}, cfg)).toThrow(/computes in f16, but the backend's precision is 'f32'/);
    // The same for the conv ops given an f16 config by hand.
    const x = be.fromArray(new Float32Array(2 * 5 * 5 * 4), [2, 5, 5, 4]);
    const w = be.fromArray(new Float32Array(9 * 4 * 8), [3, 3, 4, 8]);
    const dy = be.fromArray(new Float32Array(2 * 5 * 5 * 8), [2, 5, 5, 8]);
    const conv = { stride: 1 as const, pad: 1 as const };
    expect(() => convOps.conv2d(be, x, w, null, conv, cfg)).toThrow(/conv2d config .* computes in f16, but the backend's precision is 'f32'/);
    expect(() => convOps.conv2dBackwardData(be, dy, w, x.shape, conv, cfg)).toThrow(/computes in f16/);
    expect(() => convOps.conv2dBackwardFilter(be, x, dy, w.shape, conv, { ...cfg, splitK: 1 })).toThrow(/computes in f16/);
    expect(() => convOps.conv2d(be, x, w, null, conv, { algo: 'matmul', matmul: cfg })).toThrow(/computes in f16/);
    for (const t of [a, b, x, w, dy]) t.dispose();
  });
});

/** |got - want| <= bound per element, with the worst ratio in the message. */
function expectWithin(got: Float64Array, want: Float64Array, bound: Float64Array, what: string): void {
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const r = Math.abs(got[i] - want[i]) / bound[i];
    if (!(r <= worst)) {
      worst = r;
      at = i;
    }
  }
  if (process.env.NUDGE_F16_DEBUG) console.log(`${what}: worst |err| / bound ${worst.toFixed(3)}`);
  expect(worst, `${what}: element ${at} got ${got[at]}, want ${want[at]} (bound ${bound[at]})`).toBeLessThanOrEqual(1);
}

describe('f16 kernels on webgpu against the float64 reference', () => {
  const seed = freshSeed();

  it('matmul, both f16 families, transposes and awkward sizes, within the f16 error bounds', async () => {
    const be = await gpu();
    const r = rng(`${seed}/matmul`);
    const cases: { cfg: SharedTileConfig; transA: boolean; transB: boolean; vecN: boolean }[] = [
      { cfg: { algo: 'shared', BM: 32, BN: 64, BK: 16, TM: 4, TN: 8, vec4: true, f16: 'mul' }, transA: true, transB: false, vecN: true },
      { cfg: { algo: 'shared', BM: 64, BN: 32, BK: 8, TM: 4, TN: 4, vec4: false, f16: 'mul' }, transA: false, transB: true, vecN: false },
      { cfg: { algo: 'shared', BM: 32, BN: 32, BK: 32, TM: 4, TN: 4, vec4: true, f16: 'acc' }, transA: false, transB: true, vecN: true },
      { cfg: { algo: 'shared', BM: 32, BN: 64, BK: 8, TM: 4, TN: 4, vec4: false, f16: 'acc' }, transA: true, transB: false, vecN: false },
    ];
    await withF16(be, async () => {
      for (const { cfg, transA, transB, vecN } of cases) {
        // Several row and column tiles, K not a multiple of BK.
        const M = 33 + Math.floor(r() * 60);
        const N = vecN ? 4 * (9 + Math.floor(r() * 15)) : 33 + Math.floor(r() * 60);
        const K = 17 + Math.floor(r() * 80);
        const A = randomValues(M * K, r);
        const B = randomValues(K * N, r);
        const aAt = (i: number, k: number) => (transA ? A[k * M + i] : A[i * K + k]);
        const bAt = (k: number, j: number) => (transB ? B[j * K + k] : B[k * N + j]);
        const want = new Float64Array(M * N);
        const bound = new Float64Array(M * N);
        for (let i = 0; i < M; i++)
          for (let j = 0; j < N; j++) {
            let s = 0;
            let S = 0;
            let partial = 0;
            for (let k = 0; k < K; k++) {
              const p = aAt(i, k) * bAt(k, j);
              s += p;
              S += Math.abs(p);
              partial += Math.abs(s);
            }
            want[i * N + j] = s;
            bound[i * N + j] =
              cfg.f16 === 'mul' ? 3.01 * U * S + K * 2 ** -24 * S + 3 * K * 2 ** -25 : 3.01 * U * S + (1 + K * U) * U * partial + 4 * K * 2 ** -25;
          }
        const ga = be.fromArray(A, transA ? [K, M] : [M, K]);
        const gb = be.fromArray(B, transB ? [N, K] : [K, N]);
        const got = await read(be, linalgOps.matmul(be, ga, gb, { transA, transB }, cfg));
        ga.dispose();
        gb.dispose();
        expectWithin(got, want, bound, `matmul ${M}x${K}x${N}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''} ${sharedTileConfigKey(cfg)} (seed ${seed})`);
      }
    });
  }, SLOW);

  it('the kernels really compute in f16: 4096 x (1 + 2^-12) gives 4097 in f32, 4096 with f16 operands, 2048 with an f16 accumulator', async () => {
    // 1 + 2^-12 is exact in f32 and rounds to 1 in f16 (spacing 2^-10 there); and an f16
    // sum of ones stops at 2048 (2049 is not an f16 value; the tie rounds to even).
    const be = await gpu();
    const [M, K, N] = [3, 4096, 8];
    const a = be.fromArray(new Float32Array(M * K).fill(1 + 2 ** -12), [M, K]);
    const b = be.fromArray(new Float32Array(K * N).fill(1), [K, N]);
    const base: SharedTileConfig = { algo: 'shared', BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, vec4: true };
    const want: [SharedTileConfig, number][] = [
      [base, 4097],
      [{ ...base, f16: 'mul' }, 4096],
      [{ ...base, f16: 'acc' }, 2048],
    ];
    try {
      await withF16(be, async () => {
        for (const [cfg, value] of want) {
          const got = await read(be, linalgOps.matmul(be, a, b, {}, cfg));
          expect([...new Set(got)], sharedTileConfigKey(cfg)).toEqual([value]);
        }
      });
    } finally {
      a.dispose();
      b.dispose();
    }
  }, SLOW);

  it("conv2d forward through the shared-tile template with f16 'mul', within the f16 bound", async () => {
    const be = await gpu();
    const r = rng(`${seed}/conv`);
    const N = 1 + Math.floor(r() * 2);
    const H = 5 + Math.floor(r() * 6);
    const W = 5 + Math.floor(r() * 6);
    const Ci = [3, 5, 16][Math.floor(r() * 3)];
    const Co = 4 * (2 + Math.floor(r() * 8));
    const stride = r() < 0.5 ? 1 : 2;
    const opts = { stride: stride as 1 | 2, pad: 1 as const };
    const x = randomValues(N * H * W * Ci, r);
    const w = randomValues(9 * Ci * Co, r);
    const abs = (v: Float32Array) => v.map(Math.abs);
    const rt = (v: Float32Array, s: number[]) => ref.fromArray(v, s);
    const want = await ref.read(ref.conv2d(rt(x, [N, H, W, Ci]), rt(w, [3, 3, Ci, Co]), null, opts));
    const S = await ref.read(ref.conv2d(rt(abs(x), [N, H, W, Ci]), rt(abs(w), [3, 3, Ci, Co]), null, opts));
    const K = 9 * Ci;
    const bound = S.map((s) => 3.01 * U * s + K * 2 ** -24 * s + 3 * K * 2 ** -25);
    const cfg: SharedTileConfig = { algo: 'shared', BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, vec4: true, f16: 'mul' };
    const gx = be.fromArray(x, [N, H, W, Ci]);
    const gw = be.fromArray(w, [3, 3, Ci, Co]);
    await withF16(be, async () => {
      const got = await read(be, convOps.conv2d(be, gx, gw, null, opts, cfg));
      expectWithin(got, want, bound, `conv2d ${N}x${H}x${W}x${Ci}->${Co} s${stride} ${sharedTileConfigKey(cfg)} (seed ${seed})`);
    });
    gx.dispose();
    gw.dispose();
  }, SLOW);
});
