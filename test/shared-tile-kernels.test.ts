// The workgroup-memory tiled kernels (kernels/matmul/sharedTile.ts, kernels/conv/sharedTile.ts)
// and the 1x1-conv-as-matmul algorithm: generators as strings, then the webgpu ops (outputs
// poisoned with NaN) against the float64 reference backend. Each run samples a fresh set of
// configs in which every value of every tile field occurs, each paired with a fresh awkward
// shape (sizes that are multiples of nothing, tiny outputs, several tiles and slices).
import { describe, expect, it } from 'vitest';
import { ShapeError, Tensor, WebGPUBackend } from '../engine/index.js';
import * as convOps from '../engine/webgpu/ops/conv.js';
import * as linalgOps from '../engine/webgpu/ops/linalg.js';
import {
  MAX_WORKGROUP_INVOCATIONS,
  MAX_WORKGROUP_STORAGE_BYTES,
  SharedTileConfig,
  defaultSharedTileConfig,
  sharedMatmulKernel,
  sharedTileConfigKey,
  sharedTileConfigs,
  sharedTileStorageBytes,
} from '../kernels/matmul/sharedTile.js';
import { ConvForwardConfig, convForwardKernel, checkConvForwardConfig } from '../kernels/conv/forward.js';
import { ConvBackwardDataConfig, convBackwardDataKernels } from '../kernels/conv/backwardData.js';
import { MatmulShape, defaultMatmulConfig } from '../kernels/matmul/matmul.js';
import { AnyMatmulConfig, anyMatmulConfigKey } from '../kernels/algorithms/matmul.js';
import {
  configKey,
  convBackwardDataCandidates,
  convBackwardFilterCandidates,
  convForwardCandidates,
  matmulCandidates,
} from '../kernels/candidates.js';
import { AnyConvBackwardFilterConfig } from '../kernels/algorithms/conv2dBackwardFilter.js';
import { sharedBackwardFilterKernels } from '../kernels/conv/sharedTile.js';
import { ConvCase, describeConvCase, makeConvCase, pick, freshSeed, gpu, pair, randomValues, ref, relErr, rng, runConvPair, shuffled } from './helpers.js';

const TOL = 1e-5;
const FIELDS = { BM: [32, 64, 128], BN: [32, 64, 128], BK: [8, 16, 32], TM: [4, 8], TN: [4, 8], vec4: [true, false], unroll: [true, false] };
/** Shader compiles of these kernels take 2-15 s each on lavapipe (busy 2 cores): generous limits. */
const SLOW = 400_000;


/**
 * `count` valid configs (from the unpruned space of a large shape) in which every value
 * of every field occurs at least once: greedy cover in random order, then random fill.
 * Among equal gains the cheaper compile wins.
 */
function coveringConfigs(r: () => number, count: number): SharedTileConfig[] {
  const cost = (c: SharedTileConfig) => (c.unroll ? c.TM * c.TN * c.BK : 0);
  // Unrolling changes only the inner loop's bound expression: checked on small bodies only,
  // since a large unrolled body takes lavapipe 10+ s to compile.
  const all = shuffled(sharedTileConfigs(4096, 4096), r).filter((c) => cost(c) <= 128);
  const missing = new Set(Object.entries(FIELDS).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`)));
  const tags = (c: SharedTileConfig) => Object.keys(FIELDS).map((k) => `${k}=${c[k as keyof SharedTileConfig]}`);
  const out: SharedTileConfig[] = [];
  while (missing.size > 0) {
    let best = all[0];
    let gain = -1;
    for (const c of all) {
      const n = tags(c).filter((t) => missing.has(t)).length;
      if (n > gain || (n === gain && cost(c) < cost(best))) [best, gain] = [c, n];
    }
    out.push(best);
    for (const t of tags(best)) missing.delete(t);
  }
  for (const c of all) if (out.length < count && !out.includes(c) && !c.unroll) out.push(c);
  return out;
}



/**
 * A random awkward geometry whose column channels (Co, or Ci for backward-data) are a
 * multiple of 4 when `vec4`. Reduction channels include multiples of BK (a slice inside
 * one tap) and odd counts (slices crossing taps).
 */
function randomCase(r: () => number, colsOf: 'Co' | 'Ci', vec4: boolean): ConvCase {
  for (;;) {
    const cols = vec4 ? pick(r, [4, 12, 36, 68]) : pick(r, [1, 7, 13, 37]);
    const red = pick(r, [1, 3, 5, 16, 32]);
    const [Ci, Co] = colsOf === 'Co' ? [red, cols] : [cols, red];
    try {
      return makeConvCase(pick(r, [1, 2, 3]), pick(r, [3, 5, 9, 11]), pick(r, [4, 7, 9]), Ci, Co, pick(r, [1, 3]), pick(r, [1, 2] as const), pick(r, [0, 1] as const), r() < 0.5);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
    }
  }
}


async function compare(be: WebGPUBackend, got: Tensor, want: Tensor, what: string): Promise<void> {
  expect(got.shape).toEqual(want.shape);
  const out = await be.read(got);
  const exp = await ref.read(want);
  const e = relErr(out, exp);
  if (!(e < TOL)) {
    const bad = out.findIndex((v, i) => !(Math.abs(v - exp[i]) <= 1e-4 * (1 + Math.abs(exp[i]))));
    expect.fail(`${what}: relative error ${e} (first bad element ${bad} of ${out.length}: got ${out[bad]}, want ${exp[bad]})`);
  }
}

type ConvOp = 'forward' | 'backwardData' | 'backwardFilter';

async function checkConv(be: WebGPUBackend, op: ConvOp, c: ConvCase, cfg: ConvForwardConfig | ConvBackwardDataConfig | AnyConvBackwardFilterConfig, seed: string): Promise<void> {
  const family = ({ forward: 'conv2d', backwardData: 'conv2dBackwardData', backwardFilter: 'conv2dBackwardFilter' } as const)[op];
  const key = configKey(family, cfg as never);
  const what = `${op} ${describeConvCase(c)} config ${key} (seed ${seed})`;
  const r = rng(`${seed}/${what}`);
  const made: Tensor[] = [];
  try {
    const { got, want } = runConvPair(be, op, c, cfg, r, made);
    await compare(be, got, want, what);
  } finally {
    for (const t of made) t.dispose();
  }
}

describe('shared-tile generators as strings', () => {
  it('every config of the space fits the portable limits, generates, and names itself', () => {
    const r = rng(freshSeed());
    const sp = sharedTileConfigs(4096, 4096);
    expect(new Set(sp.map(sharedTileConfigKey)).size).toBe(sp.length);
    for (const [k, vs] of Object.entries(FIELDS)) for (const v of vs) expect(sp.some((c) => c[k as keyof SharedTileConfig] === v), `${k}=${v}`).toBe(true);
    const mm: MatmulShape = { M: 37, K: 19, N: 44, transA: r() < 0.5, transB: r() < 0.5 };
    const c = makeConvCase(2, 9, 7, 8, 12, 3, 2, 1, true);
    for (const cfg of sp) {
      expect((cfg.BM / cfg.TM) * (cfg.BN / cfg.TN)).toBeLessThanOrEqual(MAX_WORKGROUP_INVOCATIONS);
      expect(sharedTileStorageBytes(cfg)).toBeLessThanOrEqual(MAX_WORKGROUP_STORAGE_BYTES);
      const specs = [
        sharedMatmulKernel(mm, cfg),
        convForwardKernel(c.g, true, cfg),
        convBackwardDataKernels(c.g, cfg).gemm,
        sharedBackwardFilterKernels(c.g, { ...cfg, splitK: 2 }).main,
      ];
      for (const spec of specs) {
        expect(spec.wgsl).toContain(sharedTileConfigKey(cfg));
        // Barriers need uniform control flow: the only return is the uniform one on the group index.
        expect(spec.wgsl.match(/return;/g)).toEqual(['return;']);
        expect(spec.wgsl).toMatch(/if \(g >= \d+u\) \{ return; \}/);
      }
    }
  });

  it('small outputs prune tiles that would be mostly edge; the GPU default is in the space', () => {
    for (const [rows, cols] of [
      [1, 1],
      [5, 3],
      [100, 40],
      [4096, 4096],
      [300, 64],
    ]) {
      const sp = sharedTileConfigs(rows, cols);
      expect(sp.length).toBeGreaterThan(0);
      for (const c of sp) {
        expect(c.BM === 32 || c.BM < 2 * rows).toBe(true);
        expect(c.BN === 32 || c.BN < 2 * cols).toBe(true);
        expect(c.vec4 && cols % 4 !== 0).toBe(false);
      }
      const def = defaultSharedTileConfig(rows, cols);
      expect(sp.map(sharedTileConfigKey)).toContain(sharedTileConfigKey(def));
    }
  });

  it('candidate lists hold both algorithms, with unique stable keys, and refuse misfit configs', () => {
    const c3 = makeConvCase(2, 9, 7, 5, 12, 3, 2, 1, true);
    const c1 = makeConvCase(2, 9, 7, 8, 12, 1, 1, 0, true);
    for (const c of [c3, c1]) {
      for (const [family, list] of [['conv2d', convForwardCandidates(c.g)], ['conv2dBackwardData', convBackwardDataCandidates(c.g)], ['conv2dBackwardFilter', convBackwardFilterCandidates(c.g)]] as const) {
        const keyOf = (k: unknown) => configKey(family, k as never);
        const keys = list.map(keyOf);
        expect(new Set(keys).size).toBe(keys.length);
        expect(keys.some((k) => k.startsWith('sh'))).toBe(true);
        expect(keys.some((k) => !k.startsWith('sh') && !k.startsWith('mm'))).toBe(true);
        expect(list.map(keyOf)).toEqual(keys);
      }
    }
    expect(convForwardCandidates(c1.g).some((k) => k.algo === 'matmul')).toBe(true);
    expect(convForwardCandidates(c3.g).some((k) => k.algo === 'matmul')).toBe(false);
    const mmCfg = { algo: 'matmul' as const, matmul: defaultMatmulConfig({ M: 1, K: 1, N: 1, transA: false, transB: false }) };
    expect(() => checkConvForwardConfig(c3.g, mmCfg)).toThrow(/1x1/);
    const odd = makeConvCase(1, 5, 5, 3, 7, 3, 1, 1, false);
    const v4: SharedTileConfig = { algo: 'shared', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, vec4: true };
    expect(() => convForwardKernel(odd.g, false, v4)).toThrow(/Co % 4/);
    expect(() => convBackwardDataKernels(odd.g, v4)).toThrow(/Ci % 4/);
    expect(() => convForwardKernel(odd.g, false, { ...v4, vec4: false, TM: 3 })).toThrow(/multiple of TM/);
    expect(() => convForwardKernel(odd.g, false, { ...v4, vec4: false, BK: 64, BM: 128, BN: 128, TM: 8, TN: 8 })).toThrow(/workgroup memory/);
    const mms = matmulCandidates({ M: 33, K: 17, N: 20, transA: true, transB: false });
    expect(mms.some((m) => m.algo === 'shared') && mms.some((m) => m.algo !== 'shared')).toBe(true);
    expect(new Set(mms.map(anyMatmulConfigKey)).size).toBe(mms.length);
  });
});

describe('shared-tile kernels on webgpu against the reference', () => {
  const seed = freshSeed();

  for (const op of ['forward', 'backwardData'] as const) {
    it(`${op}: a covering sample of shared-tile configs on random awkward geometries`, async () => {
      const be = await gpu();
      const r = rng(`${seed}/${op}`);
      for (const cfg of coveringConfigs(r, 3)) {
        const c = randomCase(r, op === 'forward' ? 'Co' : 'Ci', cfg.vec4);
        await checkConv(be, op, c, cfg, seed);
      }
    }, SLOW);
  }

  it('backwardFilter: a covering sample of shared-tile configs with split-K on random awkward geometries', async () => {
    const be = await gpu();
    const r = rng(`${seed}/backwardFilter`);
    const cfgs = coveringConfigs(r, 3);
    for (let t = 0; t < cfgs.length; t++) {
      const c = randomCase(r, 'Co', cfgs[t].vec4);
      const slices = Math.ceil((c.g.N * c.g.Ho * c.g.Wo) / cfgs[t].BK);
      // Every run has both an unsplit and a split kernel; the largest split leaves some chunks a single slice.
      const splits = [1, 2, 3, 4, 8, 16].filter((k) => k <= slices);
      const splitK = t === 0 ? 1 : t === 1 ? splits[splits.length - 1] : pick(r, splits);
      await checkConv(be, 'backwardFilter', c, { ...cfgs[t], splitK }, seed);
    }
  }, SLOW);

  it("uses the device's workgroup memory: a tile past the portable 16 KB is a candidate with the device's limit, refused without it, and right on the device", async () => {
    const be = await gpu();
    const limit = be.rt.device.limits.maxComputeWorkgroupStorageSize;
    expect(limit, 'this test needs an adapter with more than the portable 16 KB of workgroup memory (lavapipe: 32 KB)').toBeGreaterThan(MAX_WORKGROUP_STORAGE_BYTES);
    const r = rng(`${seed}/storage`);
    const c = makeConvCase(2, 9, 7, 16, 13, 3, 1, 1, true);
    const big = (cs: unknown[]) =>
      (cs as SharedTileConfig[]).filter((k) => k.algo === 'shared' && !k.unroll && !('splitK' in k && (k as { splitK: number }).splitK > 1) && sharedTileStorageBytes(k) > MAX_WORKGROUP_STORAGE_BYTES);
    for (const [op, cands] of [
      ['forward', (o?: { maxStorageBytes: number }) => convForwardCandidates(c.g, o)],
      ['backwardData', (o?: { maxStorageBytes: number }) => convBackwardDataCandidates(c.g, o)],
      ['backwardFilter', (o?: { maxStorageBytes: number }) => convBackwardFilterCandidates(c.g, o)],
    ] as const) {
      expect(big(cands()), `${op}: the default space stays within 16 KB`).toEqual([]);
      const found = big(cands({ maxStorageBytes: limit }));
      expect(found.length, `${op}: tiles past 16 KB with the device's limit`).toBeGreaterThan(0);
      const cfg = pick(r, found);
      expect(sharedTileStorageBytes(cfg)).toBeLessThanOrEqual(limit);
      if (op === 'forward') expect(() => convForwardKernel(c.g, true, cfg)).toThrow(/workgroup memory/);
      await checkConv(be, op, c, cfg, seed);
    }
  }, SLOW);

  it('forward: stride-2 backward-data phases without taps and multi-tile outputs', async () => {
    const be = await gpu();
    const r = rng(`${seed}/edge`);
    const cfgs = coveringConfigs(r, 2);
    // 1x1 stride 2: three of four backward-data phases have no taps (their dx is zero).
    await checkConv(be, 'backwardData', makeConvCase(pick(r, [1, 2]), 9, 7, 4, 3, 1, 2, 0, false), { ...cfgs[0], vec4: true }, seed);
    // More rows than one 128-row tile and a reduction of several slices.
    await checkConv(be, 'forward', makeConvCase(3, 11, 9, 16, 5, 3, 1, 1, true), { ...cfgs[1], vec4: false }, seed);
  }, SLOW);

  it('1x1 conv as matmul (both matmul algorithms, with and without bias)', async () => {
    const be = await gpu();
    const r = rng(`${seed}/conv-mm`);
    for (let t = 0; t < 3; t++) {
      const vec4 = t % 2 === 0;
      const c = makeConvCase(pick(r, [1, 2, 3]), pick(r, [3, 5, 8]), pick(r, [4, 7]), pick(r, [1, 3, 16, 19]), vec4 ? pick(r, [4, 12]) : pick(r, [5, 9]), 1, 1, 0, t < 2);
      // Bias through the addBias pass (t = 0) and the shared-tile epilogue (t = 1).
      const shared = t === 1 || (t === 2 && r() < 0.5);
      const inner: AnyMatmulConfig = shared
        ? { ...pick(r, coveringConfigs(r, 4)), vec4 }
        : pick(
            r,
            convForwardCandidates(c.g).flatMap((k) => (k.algo === 'matmul' && k.matmul.algo !== 'shared' ? [k.matmul] : [])),
          );
      const cfg = { algo: 'matmul' as const, matmul: inner };
      await checkConv(be, 'forward', c, cfg, seed);
    }
  }, SLOW);

  it('matmul: a covering sample of shared-tile configs, all four transposes, awkward sizes', async () => {
    const be = await gpu();
    const r = rng(`${seed}/matmul`);
    const cfgs = coveringConfigs(r, 4);
    for (let t = 0; t < cfgs.length; t++) {
      const cfg = cfgs[t];
      const transA = (t & 1) === 1;
      const transB = (t & 2) === 2;
      const M = pick(r, [1, 3, 33, 70, 131]);
      const K = t === 0 ? 0 : pick(r, [1, 5, 17, 40, 67]);
      const N = cfg.vec4 ? pick(r, [4, 20, 68, 136]) : pick(r, [1, 7, 33, 129]);
      const what = `matmul ${M}x${K}x${N}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''} config ${sharedTileConfigKey(cfg)} (seed ${seed})`;
      const rr = rng(`${seed}/${what}`);
      const [ga, ra] = pair(be, randomValues(M * K, rr), transA ? [K, M] : [M, K]);
      const [gb, rb] = pair(be, randomValues(K * N, rr), transB ? [N, K] : [K, N]);
      const got = linalgOps.matmul(be, ga, gb, { transA, transB }, cfg);
      const want = ref.matmul(ra, rb, { transA, transB });
      try {
        await compare(be, got, want, what);
      } finally {
        for (const x of [ga, ra, gb, rb, got, want]) x.dispose();
      }
    }
  }, SLOW);

  it('refuses bad configs before recording any GPU work', async () => {
    const be = await gpu();
    const x = be.zeros([1, 5, 5, 3]);
    const w = be.zeros([3, 3, 3, 7]);
    const w1 = be.zeros([1, 1, 3, 7]);
    const b = be.zeros([7]);
    const a2 = be.zeros([5, 3]);
    const b2 = be.zeros([3, 7]);
    const mark = be.rt.counters.dispatches;
    const v4: SharedTileConfig = { algo: 'shared', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, vec4: true };
    expect(() => convOps.conv2d(be, x, w, null, { pad: 1 }, v4)).toThrow(/Co % 4/);
    expect(() => convOps.conv2d(be, x, w, b, { pad: 1 }, { algo: 'matmul', matmul: { ...v4, vec4: false } })).toThrow(/1x1/);
    expect(() => convOps.conv2d(be, x, w1, b, {}, { algo: 'matmul', matmul: v4 })).toThrow(/N % 4/);
    expect(() => linalgOps.matmul(be, a2, b2, {}, v4)).toThrow(/N % 4/);
    expect(be.rt.counters.dispatches).toBe(mark);
    for (const t of [x, w, w1, b, a2, b2]) t.dispose();
  });
});
