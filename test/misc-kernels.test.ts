// The matmul, reduction, pooling, loss, metric and optimizer kernels: generator strings
// without a GPU, then webgpu (outputs poisoned with NaN) against the float64 reference on
// fresh random inputs with awkward sizes, including a sample of the matmul config space.
import { describe, expect, it } from 'vitest';
import { Backend, ShapeError, Tensor, WebGPUBackend } from '../engine/index.js';
import { matmul as matmulWithConfig } from '../engine/webgpu/ops/linalg.js';
import {
  MatmulConfig,
  MatmulShape,
  checkMatmulConfig,
  defaultMatmulConfig,
  matmulConfigKey,
  matmulConfigSpace,
  matmulKernel,
  transposeBFirst,
} from '../kernels/matmul/matmul.js';
import { transposeKernel } from '../kernels/matmul/transpose.js';
import { REDUCE_CHUNK, mergeDims, reducePassKernel, sumPlan } from '../kernels/reduce/sum.js';
import { maxPoolBackwardKernel, maxPoolKernel } from '../kernels/pool.js';
import { rowWorkgroupSize, softmaxCrossEntropyKernel, topkCorrectKernel } from '../kernels/loss.js';
import { sgdKernel } from '../kernels/optim.js';
import { MAX_GROUPS_PER_DIM } from '../kernels/spec.js';
import { freshSeed, gpu, pair, randomValues, ref, relErr, rng, shuffled } from './helpers.js';

const TOL = 1e-5;

/**
 * A random sample of configs over several shapes' spaces that aims to hold every value of
 * every field: field values are dealt round-robin in shuffled orders, pick i goes to shape
 * i % spaces.length, and each dealt combination is replaced by the closest config in that
 * shape's space (ties broken at random). Fresh each run, so runs cover the whole space.
 */
function coveringSample(spaces: MatmulConfig[][], count: number, r: () => number): MatmulConfig[][] {
  const all = spaces.flat();
  const fields = Object.keys(all[0]) as (keyof MatmulConfig)[];
  const values = new Map(fields.map((f) => [f, shuffled([...new Set(all.map((c) => c[f]))], r)]));
  const picked = spaces.map(() => new Map<string, MatmulConfig>());
  for (let i = 0; i < count; i++) {
    const want = Object.fromEntries(fields.map((f) => [f, values.get(f)![i % values.get(f)!.length]]));
    const score = (c: MatmulConfig) => fields.filter((f) => c[f] === want[f]).length + r() * 0.5;
    const space = spaces[i % spaces.length];
    const best = space.reduce((a, b) => (score(b) > score(a) ? b : a));
    picked[i % spaces.length].set(matmulConfigKey(best), best);
  }
  return picked.map((m) => [...m.values()]);
}

async function expectClose(be: Backend, got: Tensor, want: Tensor, what: string, tol = TOL): Promise<void> {
  expect(got.shape, `${what}: shape`).toEqual(want.shape);
  const g = await be.read(got);
  const w = await ref.read(want);
  const e = relErr(g, w);
  if (!(e < tol)) expect.fail(`${what}: relative error ${e} (tolerance ${tol}); first values got ${Array.from(g.slice(0, 4))}, want ${Array.from(w.slice(0, 4))}`);
}

async function expectEqual(be: Backend, got: Tensor, want: Tensor, what: string): Promise<void> {
  expect(got.shape, `${what}: shape`).toEqual(want.shape);
  const g = await be.read(got);
  const w = await ref.read(want);
  for (let i = 0; i < w.length; i++) if (g[i] !== w[i]) expect.fail(`${what}: element ${i} is ${g[i]}, want ${w[i]}`);
}

// ---------------------------------------------------------------------------
// Generators as strings.

describe('kernel generators (no GPU)', () => {
  const shapes: MatmulShape[] = [
    { M: 13, K: 36, N: 20, transA: false, transB: false },
    { M: 7, K: 13, N: 33, transA: true, transB: false },
    { M: 1, K: 8, N: 12, transA: false, transB: true },
    { M: 65, K: 7, N: 1, transA: true, transB: true },
  ];

  it('every config in the matmul space is valid for its shape and generates WGSL without private arrays', () => {
    for (const s of shapes) {
      const space = matmulConfigSpace(s);
      expect(space.length).toBeGreaterThan(100);
      expect(new Set(space.map(matmulConfigKey)).size).toBe(space.length);
      for (const c of space) {
        expect(() => checkMatmulConfig(s, c)).not.toThrow();
        if (c.vec4) expect(s.N % 4).toBe(0);
        if (c.kVec) expect(s.K % 4).toBe(0);
      }
      for (const c of space.filter((_, i) => i % 37 === 0)) {
        const spec = matmulKernel(s, c);
        // Dynamic indexing of private arrays is slow on lavapipe: accumulators are scalars.
        expect(spec.wgsl).not.toMatch(/var\s+\w+\s*:\s*array/);
        expect(spec.wgsl).toContain(`@workgroup_size(${c.wgX}, ${c.wgY})`);
        expect(spec.bindings).toEqual(['read', 'read', 'rw']);
      }
    }
  });

  it('the default matmul config is valid, vec4 exactly when N % 4 == 0, and shrinks for tiny outputs', () => {
    for (const s of shapes) expect(() => checkMatmulConfig(s, defaultMatmulConfig(s))).not.toThrow();
    const big = defaultMatmulConfig({ M: 512, K: 512, N: 512, transA: false, transB: false });
    expect(big).toEqual({ algo: 'register', rows: 8, cols: 2, vec4: true, kVec: false, wgX: 64, wgY: 1, kUnroll: 1 });
    const tiny = defaultMatmulConfig({ M: 1, K: 5, N: 3, transA: false, transB: false });
    expect(tiny.rows).toBe(1);
    expect(tiny.vec4).toBe(false);
    expect(tiny.wgX * tiny.wgY).toBeLessThanOrEqual(64);
  });

  it('subgroup-shared matmul tiles: only with a subgroup size, valid, one row block per workgroup, A shared by broadcast', () => {
    for (const s of shapes) {
      expect(matmulConfigSpace(s).some((c) => c.subgroup !== undefined)).toBe(false);
      const sg = matmulConfigSpace(s, 8).filter((c) => c.subgroup !== undefined);
      expect(sg.length).toBeGreaterThan(10);
      for (const c of sg) {
        expect(() => checkMatmulConfig(s, c)).not.toThrow();
        expect([c.wgY, c.wgX % 8, c.kUnroll]).toEqual([1, 0, 1]);
      }
    }
    const wide: MatmulShape = { M: 40, K: 12, N: 128, transA: false, transB: false };
    const def = defaultMatmulConfig(wide, 8);
    expect(def).toEqual({ algo: 'register', rows: 16, cols: 2, vec4: true, kVec: false, wgX: 16, wgY: 1, kUnroll: 1, subgroup: 8 });
    expect(matmulConfigSpace(wide, 8).some((c) => matmulConfigKey(c) === matmulConfigKey(def))).toBe(true);
    // Too few column units to fill a subgroup: the plain default.
    expect(defaultMatmulConfig({ ...wide, N: 20 }, 8).subgroup).toBeUndefined();
    const wgsl = matmulKernel(wide, def).wgsl;
    expect(wgsl.startsWith('enable subgroups;')).toBe(true);
    // 16 rows over 8 lanes: two A loads per step, sixteen broadcasts.
    expect(wgsl.match(/let la[L0-9_]+ = a\[/g)?.length).toBe(2);
    expect(wgsl.match(/subgroupBroadcast\(/g)?.length).toBe(16);
    expect(() => matmulKernel(wide, { ...def, wgY: 2 })).toThrow(/wgY 1/);
    expect(() => matmulKernel(wide, { ...def, wgX: 4 })).toThrow(/multiple of the subgroup size/);
  });

  it('rejects configs that do not fit the shape', () => {
    const s: MatmulShape = { M: 4, K: 6, N: 6, transA: false, transB: false };
    const c = defaultMatmulConfig(s);
    expect(() => matmulKernel(s, { ...c, vec4: true })).toThrow(/N % 4/);
    expect(() => matmulKernel(s, { ...c, kVec: true })).toThrow(/K % 4/);
    expect(() => matmulKernel({ ...s, K: 8, transA: true }, { ...c, kVec: true })).toThrow(/K-contiguous/);
    expect(() => matmulKernel(s, { ...c, wgX: 512 })).toThrow(/256/);
  });

  it('transposes with writes contiguous across invocations', () => {
    const spec = transposeKernel(7, 13);
    expect(spec.wgsl).toContain('out[t] = src[r * 13u + c]');
    expect(spec.workgroups).toEqual([2, 1, 1]);
    expect(transposeBFirst({ M: 512, K: 512, N: 512, transA: false, transB: true })).toBe(true);
    expect(transposeBFirst({ M: 512, K: 512, N: 512, transA: true, transB: false })).toBe(false);
    expect(transposeBFirst({ M: 64, K: 13, N: 65, transA: false, transB: true })).toBe(false);
  });

  it('spreads more than 65535 workgroups over two grid dimensions', () => {
    const s: MatmulShape = { M: 70001, K: 3, N: 3, transA: false, transB: false };
    const spec = matmulKernel(s, { algo: 'register', rows: 1, cols: 1, vec4: false, kVec: false, wgX: 64, wgY: 1, kUnroll: 1 });
    expect(spec.workgroups[0]).toBeLessThanOrEqual(MAX_GROUPS_PER_DIM);
    expect(spec.workgroups[0] * spec.workgroups[1]).toBeGreaterThanOrEqual(70001);
    expect(spec.wgsl).toContain('if (g >= 70001u) { return; }');
    const sum = reducePassKernel([{ size: 70001 * 64, stride: 1 }], [{ size: 2, stride: 70001 * 64 }]).spec;
    expect(sum.workgroups[1]).toBeGreaterThan(1);
  });

  it('plans long sums as a tree of short serial chunks', () => {
    expect(mergeDims([{ size: 2, stride: 12 }, { size: 3, stride: 4 }, { size: 1, stride: 4 }, { size: 4, stride: 1 }])).toEqual([{ size: 24, stride: 1 }]);
    expect(mergeDims([{ size: 2, stride: 12 }, { size: 4, stride: 1 }])).toEqual([{ size: 2, stride: 12 }, { size: 4, stride: 1 }]);
    const rows = 2 * 56 * 56;
    const plan = sumPlan([rows, 64], [0]);
    expect(plan.length).toBe(Math.ceil(Math.log(rows) / Math.log(REDUCE_CHUNK)));
    expect(plan[plan.length - 1].parts).toBe(1);
    for (const p of plan) expect(p.spec.wgsl).toMatch(new RegExp(`j < ([0-9]+)u`));
    for (const p of plan) expect(Number(/j < ([0-9]+)u/.exec(p.spec.wgsl)![1])).toBeLessThanOrEqual(REDUCE_CHUNK);
    expect(sumPlan([5, 7], [1]).length).toBe(1);
  });

  it('pool, loss and optimizer kernels bake shapes in and vectorize only when C % 4 == 0', () => {
    const geo = { N: 2, H: 5, W: 7, C: 8, Ho: 2, Wo: 3 };
    expect(maxPoolKernel(geo).wgsl).toContain('array<vec4<u32>>');
    expect(maxPoolKernel({ ...geo, C: 3 }).wgsl).not.toContain('vec4');
    expect(maxPoolBackwardKernel(geo).wgsl).toContain(`${2 * 5 * 7 * 2}u`);
    for (const C of [1, 3, 10, 1000, 5000]) {
      const wg = rowWorkgroupSize(C);
      expect(wg & (wg - 1)).toBe(0);
      expect(softmaxCrossEntropyKernel(3, C).wgsl).toContain(`array<f32, ${wg}>`);
    }
    // Scale and k are uniforms: 'mean' and 'sum', top-1 and top-5 share pipelines.
    expect(softmaxCrossEntropyKernel(4, 10).bindings).toEqual(['read', 'read', 'rw', 'rw', 'uniform']);
    expect(topkCorrectKernel(4, 10).wgsl).toContain('< u.k');
    // The learning rate is not in the source: a schedule reuses one pipeline.
    const sgd = sgdKernel(12, true);
    expect(sgd.bindings).toEqual(['rw', 'read', 'rw', 'uniform']);
    expect(sgd.wgsl).toContain('u.lr');
    expect(sgd.wgsl).toContain('vec4<f32>');
    expect(sgdKernel(13, false).wgsl).not.toContain('vec4');
    expect(sgdKernel(13, false).wgsl).not.toContain('u.momentum * v)');
  });
});

// ---------------------------------------------------------------------------
// Against the reference backend.

describe('webgpu matmul against the reference', () => {
  const variants: [boolean, boolean][] = [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ];
  const stored = (s: MatmulShape): [number[], number[]] => [s.transA ? [s.K, s.M] : [s.M, s.K], s.transB ? [s.N, s.K] : [s.K, s.N]];

  async function check(be: WebGPUBackend, s: MatmulShape, seed: string, configs: (MatmulConfig | undefined)[]): Promise<void> {
    const r = rng(seed);
    const [sa, sb] = stored(s);
    const [ga, ra] = pair(be, randomValues(s.M * s.K, r), sa);
    const [gb, rb] = pair(be, randomValues(s.K * s.N, r), sb);
    const opts = { transA: s.transA, transB: s.transB };
    const want = ref.matmul(ra, rb, opts);
    for (const c of configs) {
      const got = c ? matmulWithConfig(be, ga, gb, opts, c) : be.matmul(ga, gb, opts);
      await expectClose(be, got, want, `matmul ${s.M}x${s.K}x${s.N} transA=${s.transA} transB=${s.transB} ${c ? matmulConfigKey(c) : 'default'} (seed ${seed})`);
      got.dispose();
    }
    for (const t of [ga, gb, ra, rb, want]) t.dispose();
  }

  it('default config, all four variants, awkward sizes', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    const awkward = [1, 7, 13, 33, 65];
    const pick = () => awkward[Math.floor(r() * awkward.length)];
    for (const [transA, transB] of variants) {
      // Shaders are compiled per shape (up to seconds each on lavapipe under load): one
      // random awkward shape per variant; the config-sample test covers the rest of the space.
      const sizes: [number, number, number][] = [[1, 1, 1], [pick(), pick(), pick()]];
      for (const [M, K, N] of sizes) await check(be, { M, K, N, transA, transB }, `${seed}-${M}-${K}-${N}`, [undefined]);
    }
    // The full-size default (R=8, C=2 vec4, 64x1) on one random variant, with a ragged last column group.
    const [transA, transB] = variants[Math.floor(r() * 4)];
    const s: MatmulShape = { M: 9, K: 5, N: 516, transA, transB };
    expect(matmulConfigKey(defaultMatmulConfig(s))).toBe('r8c2v4k1w64x1u1');
    await check(be, s, `${seed}-default`, [undefined]);
    // A large transposed B goes through a transpose and the plain kernel.
    const t: MatmulShape = { M: 3, K: 257, N: 257, transA: r() < 0.5, transB: true };
    expect(transposeBFirst(t)).toBe(true);
    await check(be, t, `${seed}-transposed`, [undefined]);
  });

  it('a covering sample of the config space, all four variants', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    // vec4 and kVec paths (N, K multiples of 4) with tails for every unroll, and a scalar-only shape.
    const shapes: MatmulShape[] = [];
    for (const [transA, transB] of variants) {
      shapes.push({ M: 13, K: 36, N: 20, transA, transB });
      shapes.push({ M: 33, K: 13, N: 7, transA, transB });
    }
    const samples = coveringSample(shapes.map((s) => matmulConfigSpace(s)), 8, r);
    for (let i = 0; i < shapes.length; i++) await check(be, shapes[i], `${seed}-${i}`, samples[i]);
  });

  it('subgroup-shared tiles: a covering sample, all four variants, and refused without that subgroup size', async () => {
    const be = await gpu();
    const S = be.subgroupTiles;
    if (S === null) expect.fail(`this test needs a device with the subgroups feature and one fixed subgroup size; ${be.gpu.info.name} has none`);
    const seed = freshSeed();
    const r = rng(seed);
    const shapes: MatmulShape[] = [];
    for (const [transA, transB] of variants) {
      shapes.push({ M: 37, K: 36, N: 4 * (2 * S + 1), transA, transB });
      shapes.push({ M: 19, K: 13, N: S + 3, transA, transB });
    }
    const samples = coveringSample(shapes.map((s) => matmulConfigSpace(s, S).filter((c) => c.subgroup === S)), 8, r);
    for (let i = 0; i < shapes.length; i++) await check(be, shapes[i], `${seed}-sg-${i}`, samples[i]);
    const a = be.zeros([4, 8]);
    const b = be.zeros([8, 64]);
    const cfg = { ...defaultMatmulConfig({ M: 4, K: 8, N: 64, transA: false, transB: false }, 2 * S), subgroup: 2 * S, wgX: 2 * S };
    try {
      expect(() => matmulWithConfig(be, a, b, {}, cfg)).toThrow(new RegExp(`subgroups of ${2 * S}`));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('more than 65535 workgroups', async () => {
    const be = await gpu();
    const s: MatmulShape = { M: 66001, K: 3, N: 2, transA: false, transB: false };
    await check(be, s, freshSeed(), [{ algo: 'register', rows: 1, cols: 1, vec4: false, kVec: false, wgX: 64, wgY: 1, kUnroll: 1 }]);
  });

  it('K = 0 gives zeros; a shape error is thrown before any GPU work', async () => {
    const be = await gpu();
    const z = be.matmul(be.zeros([3, 0]), be.zeros([0, 5]));
    expect(Array.from(await be.read(z))).toEqual(new Array(15).fill(0));
    const before = be.rt.counters.dispatches;
    const a = be.zeros([3, 4]);
    const b = be.zeros([5, 6]);
    const after = be.rt.counters.dispatches;
    expect(() => be.matmul(a, b)).toThrow(ShapeError);
    expect(() => be.matmul(a, b, { transA: true })).toThrow(/inner dimensions/);
    expect(be.rt.counters.dispatches).toBe(after);
    expect(after).toBeGreaterThanOrEqual(before);
  });
});

describe('webgpu reductions against the reference', () => {
  it('sum over subsets of axes, including none and all', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const [shape, subsets] of [[[3, 5, 7], 8], [[1, 9, 2, 3], 4], [[20011], 1]] as [number[], number][]) {
      // Not zero-mean: a sum that lands near 0 makes ordinary f32 rounding look like a large
      // relative error (a 20011-term zero-mean sum failed 1e-5 about once in 20 runs).
      const [g, rt] = pair(be, randomValues(shape.reduce((a, b) => a * b, 1), r, -0.5, 1), shape);
      const rank = shape.length;
      // Every subset of axes for rank 3; a random few (and always all) for the others.
      const masks = shuffled([...Array(1 << rank).keys()].slice(0, -1), r).slice(0, subsets - 1).concat([(1 << rank) - 1]);
      for (const mask of masks) {
        const axes = [...Array(rank).keys()].filter((i) => mask & (1 << i));
        // Negative axes count from the end.
        const given = axes.map((a) => (r() < 0.5 ? a - rank : a));
        await expectClose(be, be.sum(g, given), ref.sum(rt, axes), `sum [${shape}] over [${given}] (seed ${seed})`);
      }
      g.dispose();
    }
  });

  it('long reductions stay accurate: biasGrad over 2*56*56 rows, a sum of 300k elements', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const shape of [[2, 56, 56, 3], [2, 56, 56, 64], [7, 10], [5]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      // An offset makes the running sum large, where a serial f32 sum loses digits.
      const [g, rt] = pair(be, randomValues(n, r, 0.5, 1.5), shape);
      await expectClose(be, be.biasGrad(g), ref.biasGrad(rt), `biasGrad [${shape}] (seed ${seed})`);
      g.dispose();
    }
    const [g, rt] = pair(be, randomValues(300007, r, 0.5, 1.5), [300007]);
    await expectClose(be, be.sum(g, [0]), ref.sum(rt, [0]), `sum of 300007 (seed ${seed})`, 1e-6);
  });

  it('shape checks come first', async () => {
    const be = await gpu();
    const t = be.zeros([2, 3]);
    expect(() => be.sum(t, [2])).toThrow(ShapeError);
    expect(() => be.sum(t, [0, 0])).toThrow(ShapeError);
    expect(() => be.biasGrad(be.fromArray([1, 2], [2], 'u32'))).toThrow(ShapeError);
  });
});

describe('webgpu pooling, loss, metric and optimizer against the reference', () => {
  it('maxPool2x2 forward and backward, odd sizes, ties, scalar and vec4 channels', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const shape of [[1, 5, 7, 3], [3, 3, 3, 1], [2, 9, 5, 12]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      // Few distinct values: many ties, where the first window position must win.
      const vals = Array.from({ length: n }, () => Math.floor(r() * 3) - 1);
      const [gx, rx] = pair(be, vals, shape);
      const got = be.maxPool2x2(gx);
      const want = ref.maxPool2x2(rx);
      const what = `maxPool2x2 [${shape}] (seed ${seed})`;
      await expectEqual(be, got.y, want.y, `${what} y`);
      await expectEqual(be, got.argmax, want.argmax, `${what} argmax`);
      const [gdy, rdy] = pair(be, randomValues(want.y.size, r), want.y.shape);
      await expectEqual(be, be.maxPool2x2Backward(gdy, got.argmax, shape), ref.maxPool2x2Backward(rdy, want.argmax, shape), `${what} backward`);
    }
  });

  it('softmaxCrossEntropy, mean and sum, C = 1 .. 1001, large logits', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const [N, C] of [[1, 1], [7, 10], [5, 1001], [300, 3]]) {
      // Logits of +-40: exp overflows in f32 unless the row max is subtracted.
      const [gl, rl] = pair(be, randomValues(N * C, r, -40, 40), [N, C]);
      const [gy, ry] = pair(be, Array.from({ length: N }, () => Math.floor(r() * C)), [N], 'u32');
      for (const reduction of ['mean', 'sum'] as const) {
        const got = be.softmaxCrossEntropy(gl, gy, reduction);
        const want = ref.softmaxCrossEntropy(rl, ry, reduction);
        const what = `softmaxCrossEntropy [${N},${C}] ${reduction} (seed ${seed})`;
        await expectClose(be, got.loss, want.loss, `${what} loss`);
        await expectClose(be, got.grad, want.grad, `${what} grad`);
      }
    }
  });

  it('softmaxCrossEntropy gives NaN for a label out of range (the reference throws)', async () => {
    const be = await gpu();
    const logits = be.fromArray([0, 1, 2, 3, 4, 5], [2, 3]);
    const labels = be.fromArray([1, 3], [2], 'u32');
    const { loss, grad } = be.softmaxCrossEntropy(logits, labels);
    expect(Number.isNaN((await be.read(loss))[0])).toBe(true);
    const g = await be.read(grad);
    expect(Array.from(g.slice(0, 3)).every(Number.isFinite)).toBe(true);
    expect(Array.from(g.slice(3)).every(Number.isNaN)).toBe(true);
  });

  it('topkCorrect with ties counting against, k from 1 to past C', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const [N, C] of [[1, 1], [9, 3], [33, 10], [4, 1000]]) {
      const vals = Array.from({ length: N * C }, () => Math.floor(r() * 4));
      const [gl, rl] = pair(be, vals, [N, C]);
      // One label past the end on the last row: never correct.
      const labels = Array.from({ length: N }, (_, i) => (i === N - 1 && N > 1 ? C : Math.floor(r() * C)));
      const [gy, ry] = pair(be, labels, [N], 'u32');
      for (const k of [1, 3, C + 2]) {
        await expectEqual(be, be.topkCorrect(gl, gy, k), ref.topkCorrect(rl, ry, k), `topkCorrect [${N},${C}] k=${k} (seed ${seed})`);
      }
    }
    const t = be.zeros([2, 3]);
    expect(() => be.topkCorrect(t, be.fromArray([0, 1], [2], 'u32'), 0)).toThrow(ShapeError);
  });

  it('sgdNesterov in place over several steps with a changing lr, one pipeline', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const r = rng(seed);
    for (const n of [1, 7, 52]) {
      for (const nesterov of [true, false]) {
        const [gp, rp] = pair(be, randomValues(n, r), [n]);
        const [gv, rv] = pair(be, new Float32Array(n), [n]);
        let pipelines = -1;
        for (let step = 0; step < 3; step++) {
          const [gg, rg] = pair(be, randomValues(n, r), [n]);
          const opts = { lr: 0.1 / (step + 1), momentum: 0.9, weightDecay: 5e-4, nesterov };
          be.sgdNesterov(gp, gg, gv, opts);
          ref.sgdNesterov(rp, rg, rv, opts);
          if (step === 1) pipelines = be.rt.counters.pipelinesCreated;
          if (step === 2) expect(be.rt.counters.pipelinesCreated).toBe(pipelines);
        }
        const what = `sgd n=${n} nesterov=${nesterov} (seed ${seed})`;
        await expectClose(be, gp, rp, `${what} param`);
        await expectClose(be, gv, rv, `${what} velocity`);
      }
    }
    const t = be.zeros([3]);
    expect(() => be.sgdNesterov(t, t, be.zeros([3]), { lr: 0.1, momentum: 0.9, weightDecay: 0 })).toThrow(ShapeError);
    expect(() => be.sgdNesterov(t, be.zeros([4]), be.zeros([3]), { lr: 0.1, momentum: 0.9, weightDecay: 0 })).toThrow(ShapeError);
  });
});
