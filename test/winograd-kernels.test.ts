// Winograd F(2x2, 3x3) convs (kernels/conv/winograd.ts) and the batched matmul they run:
// generators as strings, then the webgpu ops (outputs poisoned with NaN) against the float64
// reference backend on fresh random awkward geometries: every chunking path, a covering
// sample of the GEMM's config space, the defaults, and the backward-data's turned filter.
import { describe, expect, it } from 'vitest';
import { ConvGeometry, WebGPUBackend, convGeometry } from '../engine/index.js';
import * as convOps from '../engine/webgpu/ops/conv.js';
import { TUNABLE_OPS, configLabel } from '../engine/tune/ops.js';
import { neighbours } from '../engine/tune/tuner.js';
import { convForwardCandidates, convBackwardDataCandidates, configKey } from '../kernels/candidates.js';
import { convBlockConfig, convForwardKernel } from '../kernels/conv/forward.js';
import { convBackwardDataKernels } from '../kernels/conv/backwardData.js';
import { defaultConvForward } from '../kernels/algorithms/conv2d.js';
import { defaultConvBackwardData } from '../kernels/algorithms/conv2dBackwardData.js';
import type { KernelChoices } from '../kernels/algorithm.js';
import type { ConvTileConfig } from '../kernels/conv/common.js';
import {
  ConvWinogradConfig,
  WINOGRAD_MIN_CHANNELS,
  defaultWinogradConfig,
  winogradBackwardData,
  winogradConfigKey,
  winogradForward,
  winogradPlan,
  winogradProblem,
  winogradTiling,
} from '../kernels/conv/winograd.js';
import { MatmulConfig, MatmulShape, matmulConfigSpace } from '../kernels/matmul/matmul.js';
import { AnyMatmulConfig, anyMatmulConfigKey, anyMatmulKernel } from '../kernels/algorithms/matmul.js';
import { SharedTileConfig, sharedMatmulConfigSpace } from '../kernels/matmul/sharedTile.js';
import { ConvCase, freshSeed, gpu, makeConvCase, pair, pick, randomValues, ref, relErr, rng, checkConvOp, shuffled } from './helpers.js';

/** The default paths' configs on a backend whose untuned tiles share loads over `subgroup` and that may default to Winograd. */
const choicesOf = (subgroup: number | undefined, winograd: boolean): KernelChoices => ({ precision: 'f32', subgroupTiles: subgroup ?? null, defaultTileSubgroup: subgroup, parallelism: 256, winogradDefaults: winograd });
const defaultConvForwardAlgorithm = (g: ConvGeometry, subgroup: number | undefined, winograd: boolean) => defaultConvForward(g, choicesOf(subgroup, winograd));
const defaultConvBackwardDataAlgorithm = (g: ConvGeometry, subgroup: number | undefined, winograd: boolean) => defaultConvBackwardData(g, choicesOf(subgroup, winograd));

// The transforms add rounding (kernels/conv/winograd.ts); measured ~1e-7 - 1e-6 relative here.
const TOL = 1e-5;

/** A random 3x3 stride-1 case with awkward sizes (odd and even, down to one output pixel). */
function randomCase(r: () => number, channels: { Ci?: number; Co?: number } = {}): ConvCase {
  const pad = pick(r, [0, 1] as const);
  const low = pad === 0 ? 3 : 1;
  return makeConvCase(
    pick(r, [1, 2, 3]),
    low + Math.floor(r() * 7),
    low + Math.floor(r() * 7),
    channels.Ci ?? pick(r, [1, 3, 5, 8, 16]),
    channels.Co ?? pick(r, [1, 4, 7, 12, 16]),
    3,
    1,
    pad,
    r() < 0.5,
  );
}

type Op = 'forward' | 'backwardData';

function check(be: WebGPUBackend, op: Op, c: ConvCase, cfg: ConvWinogradConfig, seed: string, tol = TOL): Promise<void> {
  return checkConvOp(be, op, c, cfg, winogradConfigKey(cfg), seed, tol);
}

const problemOf = (op: Op, g: ConvGeometry) => (op === 'forward' ? winogradForward(g) : winogradBackwardData(g));

describe('Winograd generators as strings', () => {
  it('apply only to 3x3 stride-1 convs, and are refused elsewhere before any GPU work', () => {
    expect(winogradProblem(convGeometry('t', [1, 8, 8, 4], [3, 3, 4, 4], { pad: 1 }))).toBeNull();
    expect(winogradProblem(convGeometry('t', [1, 8, 8, 4], [1, 1, 4, 4]))).toMatch(/3x3/);
    expect(winogradProblem(convGeometry('t', [1, 8, 8, 4], [3, 3, 4, 4], { stride: 2, pad: 1 }))).toMatch(/stride 1/);
    const g = convGeometry('t', [1, 8, 8, 4], [3, 3, 4, 4], { stride: 2, pad: 1 });
    expect(convForwardCandidates(g).some((c) => c.algo === 'winograd')).toBe(false);
    expect(convBackwardDataCandidates(g).some((c) => c.algo === 'winograd')).toBe(false);
    const cfg = defaultWinogradConfig(winogradForward(convGeometry('t', [1, 8, 8, 4], [3, 3, 4, 4], { pad: 1 })));
    expect(() => convForwardKernel(g, false, cfg)).toThrow(/Winograd F\(2x2,3x3\) needs stride 1/);
    // A register kernel's generator refuses to be handed a Winograd config.
    const ok = convGeometry('t', [1, 8, 8, 4], [3, 3, 4, 4], { pad: 1 });
    expect(() => convForwardKernel(ok, false, cfg)).toThrow(/not one kernel/);
    expect(() => convBackwardDataKernels(ok, cfg)).toThrow(/not one gather GEMM/);
    expect(() => winogradPlan(winogradForward(ok), false, { ...cfg, chunk: 0 }, 'conv2d')).toThrow(/chunk must be a positive integer/);
    const reg = cfg.matmul as MatmulConfig;
    expect(() => winogradPlan(winogradForward(ok), false, { ...cfg, matmul: { ...reg, kVec: true } }, 'conv2d')).not.toThrow();
    const odd = convGeometry('t', [1, 8, 8, 5], [3, 3, 5, 4], { pad: 1 });
    expect(() => winogradPlan(winogradForward(odd), false, { ...cfg, matmul: { ...reg, kVec: true } }, 'conv2d')).toThrow(/K % 4/);
  });

  it("the tuner's hill climb steps one nested field at a time", () => {
    const g = convGeometry('t', [1, 14, 14, 64], [3, 3, 64, 128], { pad: 1 });
    const space = convForwardCandidates(g, { subgroupSize: 8 });
    const from = defaultWinogradConfig(winogradForward(g), 8);
    const near = neighbours(from, space) as ConvWinogradConfig[];
    expect(near.length).toBeGreaterThan(0);
    const reg = from.matmul as MatmulConfig;
    for (const c of near) {
      expect(c.algo).toBe('winograd');
      const m = c.matmul as MatmulConfig;
      const changed = (['rows', 'cols', 'vec4', 'kVec', 'wgX', 'wgY', 'kUnroll', 'subgroup'] as const).filter((f) => m[f] !== reg[f]);
      expect(changed.length, JSON.stringify(m)).toBe(1);
    }
    // Far fewer than all the Winograd register tiles, which compared whole were all "one field" away.
    expect(near.length).toBeLessThan(space.filter((c) => c.algo === 'winograd' && (c.matmul as { algo?: string }).algo !== 'shared').length / 4);
  });

  it('chunks cover every tile once, within the scratch cap, and all chunks share one GEMM', () => {
    const r = rng(freshSeed());
    for (let i = 0; i < 200; i++) {
      const g = convGeometry('t', [1 + Math.floor(r() * 64), 3 + Math.floor(r() * 100), 3 + Math.floor(r() * 100), 64], [3, 3, 64, 128], { pad: 1 });
      const p = winogradForward(g);
      const cap = r() < 0.5 ? undefined : 1 + Math.floor(r() * 5000);
      const t = winogradTiling(p, cap);
      expect(t.tiles).toBe(g.N * Math.ceil(g.Ho / 2) * Math.ceil(g.Wo / 2));
      expect(t.chunk * t.chunks).toBeGreaterThanOrEqual(t.tiles);
      expect(t.chunk * (t.chunks - 1)).toBeLessThan(t.tiles);
      if (cap) expect(t.chunk).toBeLessThanOrEqual(cap);
      expect(16 * 4 * t.chunk * Math.max(p.K, p.Nc)).toBeLessThanOrEqual(64 << 20);
    }
  });

  it('the transforms read the chunk start from a uniform; the GEMM is one batched matmul; the backward filter is turned as it is read', () => {
    const g = convGeometry('t', [2, 9, 7, 8], [3, 3, 8, 12], { pad: 1 });
    const fwd = winogradPlan(winogradForward(g), true, defaultWinogradConfig(winogradForward(g)), 'conv2d');
    expect(fwd.input.bindings).toEqual(['read', 'rw', 'uniform']);
    expect(fwd.output.bindings).toEqual(['read', 'read', 'rw', 'uniform']);
    expect(fwd.gemm.wgsl).toMatch(/matmul 16x /);
    expect(fwd.gemm.wgsl).toMatch(/let bi = gb \/ /);
    // Nc = 12: three vec4 units of n per k.
    expect(fwd.filter.wgsl).toContain('w[(0u + k) * 3u + nu]');
    const bwd = winogradPlan(winogradBackwardData(g), false, defaultWinogradConfig(winogradBackwardData(g)), 'conv2dBackwardData');
    // Tap (0, 0) of the turned filter is tap (2, 2) = 8 of the stored one, channels swapped.
    expect(bwd.filter.wgsl).toContain(`w[(${8 * 8}u + nu * 4u + 3u) * 12u + k]`);
    expect(bwd.input.wgsl).toMatch(/pad 1/);
    expect(configKey('conv2d', defaultWinogradConfig(winogradForward(g)))).toMatch(/^wino-/);
    expect(configLabel(defaultWinogradConfig(winogradForward(g)))).toMatch(/^algo=winograd matmul\(rows=\d+ cols=\d+ /);
  });

  it('defaults: Winograd only where allowed, 3x3 stride 1, >= 64 reduction channels, >= 32 tiles and a subgroup-shared GEMM tile', () => {
    const big = convGeometry('t', [1, 14, 14, 64], [3, 3, 64, 128], { pad: 1 });
    expect(defaultConvForwardAlgorithm(big, 8, true).algo).toBe('winograd');
    expect(defaultConvForwardAlgorithm(big, 8, false).algo).toBe('register');
    expect(defaultConvForwardAlgorithm(big, undefined, true).algo).toBe('register');
    expect(defaultConvBackwardDataAlgorithm(big, 8, true).algo).toBe('winograd');
    const thin = convGeometry('t', [1, 14, 14, WINOGRAD_MIN_CHANNELS / 2], [3, 3, WINOGRAD_MIN_CHANNELS / 2, 128], { pad: 1 });
    expect(defaultConvForwardAlgorithm(thin, 8, true).algo).toBe('register');
    // backward-data reduces over Co = 128 there, and writes 32 channels: 8 vec4 units fill a subgroup of 8.
    expect(defaultConvBackwardDataAlgorithm(thin, 8, true).algo).toBe('winograd');
    const strided = convGeometry('t', [1, 14, 14, 64], [3, 3, 64, 128], { stride: 2, pad: 1 });
    expect(defaultConvForwardAlgorithm(strided, 8, true).algo).toBe('register');
    // Too few output tiles to share the filter transform: 4x4 -> 4 tiles; 8x8 at batch 2 -> 32.
    expect(defaultConvForwardAlgorithm(convGeometry('t', [1, 4, 4, 256], [3, 3, 256, 256], { pad: 1 }), 8, true).algo).toBe('register');
    expect(defaultConvForwardAlgorithm(convGeometry('t', [2, 8, 8, 256], [3, 3, 256, 256], { pad: 1 }), 8, true).algo).toBe('winograd');
    // The default (and the tuner's seeds) come from the backend's choices.
    const choices = { precision: 'f32' as const, subgroupTiles: 8, defaultTileSubgroup: 8, parallelism: 256, winogradDefaults: true };
    expect((TUNABLE_OPS.conv2d.defaultConfig(big, choices) as ConvWinogradConfig).algo).toBe('winograd');
    expect((TUNABLE_OPS.conv2d.defaultConfig(big, { ...choices, winogradDefaults: false }) as { algo?: string }).algo).toBe('register');
    const seeds = TUNABLE_OPS.conv2dBackwardData.seeds(big, { ...choices, winogradDefaults: false }) as { algo?: string }[];
    expect(seeds.filter((c) => c.algo === 'winograd').length).toBe(2);
    // A conv block (one fused register kernel) never runs a tuned Winograd config.
    const e = { pool: true, add: false, relu: true, residual: false };
    expect(convBlockConfig(big, e, defaultWinogradConfig(winogradForward(big), 8), 8).algo).toBe('register');
    // ... but a tuned register config, also one that names its algorithm, it does.
    const reg = { ...(defaultConvForwardAlgorithm(big, 8, false) as ConvTileConfig), algo: 'register' as const, rows: 8 };
    expect(convBlockConfig(big, e, reg, 8)).toBe(reg);
  });
});

/** out[b] = A[b] B[b] in float64 for every transpose variant. */
function batchedReference(s: MatmulShape, a: Float32Array, b: Float32Array): Float64Array {
  const batch = s.batch ?? 1;
  const out = new Float64Array(batch * s.M * s.N);
  for (let q = 0; q < batch; q++)
    for (let i = 0; i < s.M; i++)
      for (let j = 0; j < s.N; j++) {
        let acc = 0;
        for (let k = 0; k < s.K; k++) {
          const av = s.transA ? a[q * s.M * s.K + k * s.M + i] : a[q * s.M * s.K + i * s.K + k];
          const bv = s.transB ? b[q * s.K * s.N + j * s.K + k] : b[q * s.K * s.N + k * s.N + j];
          acc += av * bv;
        }
        out[(q * s.M + i) * s.N + j] = acc;
      }
  return out;
}

describe('Winograd on webgpu against the reference', () => {
  it('batched matmul: a random sample of every transpose variant’s space (subgroup tiles included) keeps the products apart', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        const s: MatmulShape = { M: pick(r, [5, 13, 33]), K: pick(r, [4, 8, 12]), N: pick(r, [3, 8, 20]), transA, transB, batch: pick(r, [2, 3, 16]) };
        const space = matmulConfigSpace(s, be.subgroupTiles ?? undefined);
        const sgOnes = space.filter((c) => c.subgroup !== undefined);
        // A register tile, and in turn a subgroup-shared one or a workgroup-memory one (the
        // GPU's kind of Winograd GEMM): shader compilation dominates this test on lavapipe.
        const other = transB ? shuffled(sharedMatmulConfigSpace(s), r) : shuffled(sgOnes, r);
        const cfgs: AnyMatmulConfig[] = [shuffled(space, r)[0], ...other.slice(0, 1)];
        const batch = s.batch!;
        const av = randomValues(batch * s.M * s.K, r);
        const bv = randomValues(batch * s.K * s.N, r);
        const want = batchedReference(s, av, bv);
        const a = be.fromArray(av, [av.length]);
        const b = be.fromArray(bv, [bv.length]);
        try {
          for (const cfg of cfgs) {
            const out = be.newTensor([batch * s.M * s.N]);
            be.rt.dispatch(anyMatmulKernel(s, cfg, 32768), be.buffers('test', a, b, out));
            const got = await be.read(out);
            out.dispose();
            const e = relErr(got, want);
            if (!(e < 1e-5)) expect.fail(`batched matmul ${JSON.stringify(s)} config ${anyMatmulConfigKey(cfg)}: relative error ${e} (seed ${seed})`);
          }
        } finally {
          a.dispose();
          b.dispose();
        }
      }
  });

  for (const op of ['forward', 'backwardData'] as Op[]) {
    it(`${op}: default and subgroup-default GEMM tiles on random awkward geometries, pad 0 and 1, with and without bias`, async () => {
      const be = await gpu();
      const seed = freshSeed();
      const r = rng(seed);
      // Each case compiles four kernels: plain and subgroup defaults take turns.
      for (let i = 0; i < 4; i++) {
        const c = randomCase(r);
        const p = problemOf(op, c.g);
        await check(be, op, c, defaultWinogradConfig(p, i % 2 ? (be.subgroupTiles ?? undefined) : undefined), seed);
      }
    });

    it(`${op}: forced chunks (1 tile, a few, one past a boundary) give the same result`, async () => {
      const be = await gpu();
      const seed = freshSeed();
      const r = rng(seed);
      for (const chunk of [1, 7]) {
        const c = randomCase(r, { Ci: pick(r, [4, 5]), Co: pick(r, [4, 6]) });
        await check(be, op, c, { ...defaultWinogradConfig(problemOf(op, c.g), be.subgroupTiles ?? undefined), chunk }, seed);
      }
    });
  }

  it("a covering sample of the GEMM's config space (every rows / cols / vector / width / unroll value), dealt over both ops", async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    // Channel counts whose spaces hold every field value: K % 4 == 0 (kVec), N % 4 == 0 (vec4)
    // both ways. The GEMM generator is the same for both ops (only the transforms differ), so
    // the configs alternate between them.
    const c = randomCase(r, { Ci: 8, Co: 16 });
    const opts = { subgroupSize: be.subgroupTiles ?? undefined };
    const register = (cs: { algo?: string; matmul?: { algo?: string } }[]) =>
      cs.filter((x): x is ConvWinogradConfig & { matmul: MatmulConfig } => x.algo === 'winograd' && x.matmul?.algo !== 'shared');
    const spaces = { forward: register(convForwardCandidates(c.g, opts)), backwardData: register(convBackwardDataCandidates(c.g, opts)) };
    expect(spaces.forward.length).toBeGreaterThan(10);
    const fields: (keyof MatmulConfig)[] = ['rows', 'cols', 'vec4', 'kVec', 'wgX', 'kUnroll', 'subgroup'];
    const keyOf = (x: ConvWinogradConfig & { matmul: MatmulConfig }) => fields.map((f) => `${f}=${String(x.matmul[f])}`);
    // Greedy: the config that runs the most values not yet run, the ops taking turns.
    const unseen = new Set([...spaces.forward, ...spaces.backwardData].flatMap(keyOf));
    let op: Op = 'forward';
    for (let guard = 0; unseen.size > 0 && guard < 64; guard++) {
      const gain = (x: ConvWinogradConfig & { matmul: MatmulConfig }) => keyOf(x).filter((f) => unseen.has(f)).length;
      const best = shuffled(spaces[op], r).reduce((a, b) => (gain(b) > gain(a) ? b : a));
      if (gain(best) > 0) {
        for (const f of keyOf(best)) unseen.delete(f);
        await check(be, op, c, best, seed);
      }
      op = op === 'forward' ? 'backwardData' : 'forward';
    }
    expect(unseen.size).toBe(0);
  });

  it('GEMMs on workgroup-memory tiles (f32, f16) and on emulated subgroup matrices, both ops', async () => {
    const be = await gpu();
    const S = be.subgroupTiles;
    if (S === null || !be.gpu.features.has('shader-f16')) expect.fail(`this test needs fixed-size subgroups and shader-f16; ${be.gpu.info.name} lacks them`);
    const seed = freshSeed();
    const r = rng(seed);
    const saved = be.precision;
    try {
      for (const op of ['forward', 'backwardData'] as Op[]) {
        const c = randomCase(r, { Ci: pick(r, [5, 8]), Co: pick(r, [6, 12]) });
        const candidates = op === 'forward' ? convForwardCandidates : convBackwardDataCandidates;
        // Small register blocks and slices: large ones compile for many seconds on lavapipe.
        const shared = candidates(c.g, { maxStorageBytes: 32768 }).filter(
          (x): x is ConvWinogradConfig => x.algo === 'winograd' && x.matmul.algo === 'shared' && x.matmul.TM * x.matmul.TN <= 16 && x.matmul.BK <= 16,
        );
        expect(shared.length).toBeGreaterThan(0);
        await check(be, op, c, shuffled(shared, r)[0], seed);
        be.precision = 'f16';
        const p = problemOf(op, c.g);
        const f16: SharedTileConfig = { algo: 'shared', BM: 32, BN: 32, BK: 16, TM: 4, TN: 4, vec4: false, unroll: true, f16: 'mul' };
        const matrix: SharedTileConfig = { ...f16, TM: 1, TN: 2, matrix: { M: 8, N: 8, K: 8, subgroup: S, emulated: true } };
        // f16 workgroup-memory tiles on one op, emulated subgroup matrices on the other.
        const matmul = op === 'forward' ? f16 : matrix;
        await check(be, op, c, { algo: 'winograd', matmul, chunk: p.N > 1 ? 5 : undefined }, seed, 4e-3);
        be.precision = saved;
      }
    } finally {
      be.precision = saved;
    }
  });

  it('the default path runs Winograd on a CPU adapter for a VGG-like conv, and a gated block backward-data falls back', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    // 6 x 6 = 36 output tiles (Winograd is the default from 32).
    const c = makeConvCase(1, 12, 11, 64, 64, 3, 1, 1, true);
    const saved = be.winogradDefaults;
    be.winogradDefaults = true;
    try {
      // Which kernels each op dispatches (poisoning fills and uploads aside).
      const ran: string[] = [];
      const dispatch = be.rt.dispatch.bind(be.rt);
      be.rt.dispatch = (spec, ...rest) => {
        ran.push(spec.name);
        dispatch(spec, ...rest);
      };
      const [gx, rx] = pair(be, randomValues(12 * 11 * 64, r), c.xShape);
      const [gw, rw] = pair(be, randomValues(9 * 64 * 64, r), c.wShape);
      const [gb, rb] = pair(be, randomValues(64, r), [64]);
      const y = convOps.conv2d(be, gx, gw, gb, c.opts);
      const isWino = defaultConvForwardAlgorithm(c.g, be.defaultTileSubgroup, true).algo === 'winograd';
      const kernels = (from: number) => ran.slice(from).filter((n) => n !== 'fill');
      expect(kernels(0)).toEqual(isWino ? ['conv2d.winogradFilter', 'conv2d.winogradInput', 'conv2d.gemm', 'conv2d.winogradOutput'] : ['conv2d']);
      expect(relErr(await be.read(y), await ref.read(ref.conv2d(rx, rw, rb, c.opts)))).toBeLessThan(TOL);
      // Ungated, a block's backward-data is the plain one (Winograd here); the block's gates
      // cannot go through the input transform, so the register kernel (transpose + GEMM) runs them.
      const bwdWino = defaultConvBackwardDataAlgorithm(c.g, be.defaultTileSubgroup, true).algo === 'winograd';
      const dy = pair(be, randomValues(12 * 11 * 64, r), [1, 12, 11, 64]);
      const reluAt = pair(be, randomValues(12 * 11 * 64, r), [1, 12, 11, 64]);
      const at0 = ran.length;
      const plain = convOps.convBlockBackwardData(be, dy[0], gw, c.xShape, { ...c.opts });
      expect(kernels(at0).length).toBe(bwdWino ? 4 : 2);
      expect(kernels(at0).some((n) => n.includes('winograd'))).toBe(bwdWino);
      expect(relErr(await be.read(plain), await ref.read(ref.conv2dBackwardData(dy[1], rw, c.xShape, c.opts)))).toBeLessThan(TOL);
      const at1 = ran.length;
      const gated = convOps.convBlockBackwardData(be, dy[0], gw, c.xShape, { ...c.opts, reluAt: reluAt[0] });
      expect(kernels(at1)).toEqual(['conv2dFilterTranspose', 'convBlockBackwardData']);
      const wantGated = ref.conv2dBackwardData(ref.reluMask(dy[1], reluAt[1]), rw, c.xShape, c.opts);
      expect(relErr(await be.read(gated), await ref.read(wantGated))).toBeLessThan(TOL);
      for (const t of [gx, rx, gw, rw, gb, rb, y, ...dy, ...reluAt, plain, gated, wantGated]) t.dispose();
    } finally {
      be.winogradDefaults = saved;
      delete (be.rt as { dispatch?: unknown }).dispatch;
    }
  });
});
