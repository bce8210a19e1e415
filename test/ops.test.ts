// Every op of the Backend interface on webgpu against the reference backend, on the same
// fresh random inputs, in the spirit of tinygrad's test_ops: one helper does the work and
// a case is one line. The webgpu backend poisons new outputs with NaN, so an element a
// kernel forgot to write fails the comparison.
import { describe, expect, it } from 'vitest';
import { Backend, Conv2dOptions, Shape, SgdOptions, Tensor, sizeOf } from '../engine/index.js';
import { freshSeed, gpu, ref, relErr, rng } from './helpers.js';
import { AnalogIOOptions, PulsedUpdateOptions, seedFromString } from '../engine/index.js';

// ---------------------------------------------------------------------------
// Inputs: a shape, a dtype and how to draw its values.

interface Input {
  shape: Shape;
  dtype: 'f32' | 'u32';
  draw: (n: number, r: () => number) => number[];
}

/** Uniform floats in [low, high). */
const f32 = (shape: Shape, low = -1, high = 1): Input => ({
  shape,
  dtype: 'f32',
  draw: (n, r) => Array.from({ length: n }, () => low + (high - low) * r()),
});

/** Integers in [low, high) stored as f32: many exact ties (pooling, top-k). */
const ints = (shape: Shape, low: number, high: number): Input => ({
  shape,
  dtype: 'f32',
  draw: (n, r) => Array.from({ length: n }, () => low + Math.floor((high - low) * r())),
});

/** u32 integers in [0, count): class labels, argmax window indices. */
const u32 = (shape: Shape, count: number): Input => ({
  shape,
  dtype: 'u32',
  draw: (n, r) => Array.from({ length: n }, () => Math.floor(count * r())),
});

// ---------------------------------------------------------------------------
// The harness.

type Outputs = Tensor | Record<string, Tensor>;

interface OpCase {
  name: string;
  inputs: Input[];
  run: (be: Backend, ts: Tensor[], seed: string) => Outputs;
  /** Bitwise-equal outputs required (selections, counts, copies). Otherwise relErr < tol. */
  exact?: boolean;
  tol?: number;
}

function op(name: string, inputs: Input[], run: OpCase['run'], opts: { exact?: boolean; tol?: number } = {}): OpCase {
  return { name, inputs, run, ...opts };
}

function named(out: Outputs): [string, Tensor][] {
  return out instanceof Tensor ? [['out', out]] : Object.entries(out);
}

async function check(c: OpCase): Promise<void> {
  const be = await gpu();
  const seed = freshSeed();
  const r = rng(seed);
  const what = `${c.name} (seed ${seed})`;
  const values = c.inputs.map((i) => i.draw(sizeOf(i.shape), r));
  const refIns = c.inputs.map((i, k) => ref.fromArray(values[k], i.shape, i.dtype));
  const want = named(c.run(ref, refIns, seed));
  const gpuIns = c.inputs.map((i, k) => be.fromArray(values[k], i.shape, i.dtype));
  const owned = new Set<Tensor>(gpuIns);
  try {
    let got: [string, Tensor][];
    try {
      got = named(c.run(be, gpuIns, seed));
    } catch (e) {
      throw new Error(`${what} on webgpu: ${(e as Error).message}`);
    }
    for (const [, t] of got) owned.add(t);
    expect(got.map(([k]) => k), what).toEqual(want.map(([k]) => k));
    for (let o = 0; o < want.length; o++) {
      const [key, w] = want[o];
      const g = got[o][1];
      expect(g.shape, `${what} ${key} shape`).toEqual(w.shape);
      expect(g.dtype, `${what} ${key} dtype`).toBe(w.dtype);
      const gv = await be.read(g);
      const wv = await ref.read(w);
      if (c.exact) {
        for (let i = 0; i < wv.length; i++) {
          if (!(gv[i] === wv[i])) {
            expect.fail(`${what} ${key}[${i}] = ${gv[i]}, want exactly ${wv[i]}`);
          }
        }
      } else {
        const err = relErr(gv, wv);
        const tol = c.tol ?? 1e-5;
        if (!(err < tol)) {
          const bad = firstBad(gv, wv);
          expect.fail(`${what} ${key}: ||out-ref||/||ref|| = ${err} >= ${tol}; first large difference at [${bad}]: ${gv[bad]} vs ${wv[bad]}`);
        }
      }
    }
  } finally {
    for (const t of owned) t.dispose();
  }
}

/** Index of the first NaN or of the largest difference. */
function firstBad(got: Float64Array, want: Float64Array): number {
  let worst = 0;
  let at = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(got[i])) return i;
    const d = Math.abs(got[i] - want[i]);
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  return at;
}

function run(title: string, cases: OpCase[]): void {
  describe(title, () => {
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => check(c));
  });
}

// ---------------------------------------------------------------------------
// Cases.

const elementwiseSizes: Shape[] = [[1], [1237], [4 * 1237], [70001], [2, 5, 7, 3]];
const s = (shape: Shape) => shapeName(shape);
function shapeName(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

type WithAddBias = Backend & { addBias(x: Tensor, bias: Tensor): Tensor };

run(
  'elementwise',
  elementwiseSizes.flatMap((sh) => [
    op(`add ${s(sh)}`, [f32(sh), f32(sh)], (be, [a, b]) => be.add(a, b)),
    op(`sub ${s(sh)}`, [f32(sh), f32(sh)], (be, [a, b]) => be.sub(a, b)),
    op(`mul ${s(sh)}`, [f32(sh), f32(sh)], (be, [a, b]) => be.mul(a, b)),
    op(`scale ${s(sh)}`, [f32(sh)], (be, [a]) => be.scale(a, -1.7)),
    op(`axpy ${s(sh)}`, [f32(sh), f32(sh)], (be, [x, y]) => be.axpy(0.3, x, y)),
    op(`relu ${s(sh)}`, [f32(sh)], (be, [a]) => be.relu(a)),
    op(`reluMask ${s(sh)}`, [f32(sh), f32(sh)], (be, [g, x]) => be.reluMask(g, x)),
    // In place: the result is the first operand itself.
    op(`accumulate ${s(sh)}`, [f32(sh), f32(sh)], (be, [acc, x]) => (be.accumulate(acc, x), acc)),
  ]),
);

run('addBias (broadcast over the last axis)', [
  op('addBias [1,1]', [f32([1, 1]), f32([1])], (be, [x, b]) => (be as WithAddBias).addBias(x, b)),
  op('addBias [7,13]', [f32([7, 13]), f32([13])], (be, [x, b]) => (be as WithAddBias).addBias(x, b)),
  op('addBias [2,5,7,3]', [f32([2, 5, 7, 3]), f32([3])], (be, [x, b]) => (be as WithAddBias).addBias(x, b)),
  op('addBias [2,9,11,16]', [f32([2, 9, 11, 16]), f32([16])], (be, [x, b]) => (be as WithAddBias).addBias(x, b)),
]);

run('concat (along the first axis)', [
  op('concat [3,5,2]+[1,5,2]+[4,5,2]', [f32([3, 5, 2]), f32([1, 5, 2]), f32([4, 5, 2])], (be, ts) => be.concat(ts), { exact: true }),
  op('concat [1237]+[70001]', [f32([1237]), f32([70001])], (be, ts) => be.concat(ts), { exact: true }),
  op('concat u32 [2,7]+[5,7]', [u32([2, 7], 9), u32([5, 7], 9)], (be, ts) => be.concat(ts), { exact: true }),
]);

run('scaleRows (per-example scale)', [
  op('scaleRows [1,1]', [f32([1, 1]), f32([1])], (be, [x, r]) => be.scaleRows(x, r)),
  op('scaleRows [7,13]', [f32([7, 13]), f32([7])], (be, [x, r]) => be.scaleRows(x, r)),
  op('scaleRows [3,5,7,3]', [f32([3, 5, 7, 3]), f32([3])], (be, [x, r]) => be.scaleRows(x, r)),
]);

const sumCases: [Shape, number[]][] = [
  [[1], [0]],
  [[1237], [0]],
  [[70001], [0]],
  [[7, 13], [0]],
  [[7, 13], [1]],
  [[7, 13], [0, 1]],
  [[7, 13], []],
  [[3, 1, 5], [1]],
  [[2, 5, 7, 3], [0, 1, 2]],
  [[2, 5, 7, 3], [1, 2]],
  [[2, 5, 7, 3], [3]],
  [[2, 5, 7, 3], [0, 3]],
  [[2, 5, 7, 3], [-1]],
  [[2, 5, 7, 3], [1]],
  [[2, 5, 7, 3], [0, 1, 2, 3]],
  [[33, 65, 17], [1]],
  [[33, 65, 17], [0, 2]],
];
// Inputs biased away from zero mean: a sum of zero-mean values lands near 0 often enough
// that its rounding error, relative to it, would make the test flaky.
run('reductions', [
  ...sumCases.map(([sh, axes]) => op(`sum ${s(sh)} axes [${axes}]`, [f32(sh, -0.5, 1)], (be, [a]) => be.sum(a, axes))),
  ...([[1, 1], [7, 13], [2, 5, 7, 3], [2, 9, 11, 16], [64, 1000], [1237]] as Shape[]).map((sh) =>
    op(`biasGrad ${s(sh)}`, [f32(sh, -0.5, 1)], (be, [g]) => be.biasGrad(g)),
  ),
]);

const matmulSizes: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [33, 65, 17],
  [128, 64, 96],
];
run(
  'matmul',
  matmulSizes.flatMap(([M, K, N]) =>
    [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ].map(([transA, transB]) =>
      op(
        `matmul M=${M} K=${K} N=${N}${transA ? ' transA' : ''}${transB ? ' transB' : ''}`,
        [f32(transA ? [K, M] : [M, K]), f32(transB ? [N, K] : [K, N])],
        (be, [a, b]) => be.matmul(a, b, { transA, transB }),
      ),
    ),
  ),
);

// [N, H, W, Ci, Co, K, stride, pad]
const convShapes: [number, number, number, number, number, 1 | 3, 1 | 2, 0 | 1][] = [
  [1, 5, 5, 1, 1, 3, 1, 0],
  [2, 7, 5, 3, 4, 3, 1, 1],
  [1, 9, 7, 5, 7, 3, 2, 1],
  [2, 11, 9, 3, 16, 3, 2, 0],
  [1, 7, 7, 16, 7, 3, 1, 1],
  [2, 5, 9, 16, 1, 3, 2, 1],
  [1, 6, 8, 3, 5, 3, 2, 1],
  [1, 5, 7, 3, 4, 1, 1, 0],
  [2, 9, 5, 5, 7, 1, 2, 0],
  [1, 11, 11, 16, 16, 1, 1, 1],
  [2, 7, 9, 1, 4, 1, 2, 1],
  // VGG-ish
  [2, 8, 8, 32, 32, 3, 1, 1],
];
function convOut(H: number, K: number, stride: number, pad: number): number {
  return Math.floor((H + 2 * pad - K) / stride) + 1;
}
run(
  'conv2d',
  convShapes.flatMap(([N, H, W, Ci, Co, K, stride, pad], i) => {
    const opts: Conv2dOptions = { stride, pad };
    const x: Shape = [N, H, W, Ci];
    const w: Shape = [K, K, Ci, Co];
    const y: Shape = [N, convOut(H, K, stride, pad), convOut(W, K, stride, pad), Co];
    const tag = `x${s(x)} w${s(w)} stride ${stride} pad ${pad}`;
    // Bias on every other shape: both forward variants get odd and even channel counts.
    const forward =
      i % 2 === 1
        ? op(`conv2d ${tag} +bias`, [f32(x), f32(w), f32([Co])], (be, [xt, wt, bt]) => be.conv2d(xt, wt, bt, opts))
        : op(`conv2d ${tag}`, [f32(x), f32(w)], (be, [xt, wt]) => be.conv2d(xt, wt, null, opts));
    return [
      forward,
      op(`conv2dBackwardData ${tag}`, [f32(y), f32(w)], (be, [dy, wt]) => be.conv2dBackwardData(dy, wt, x, opts)),
      op(`conv2dBackwardFilter ${tag}`, [f32(x), f32(y)], (be, [xt, dy]) => be.conv2dBackwardFilter(xt, dy, w, opts)),
    ];
  }),
);

const poolShapes: Shape[] = [
  [1, 2, 2, 1],
  [1, 3, 3, 5],
  [2, 5, 7, 3],
  [1, 9, 11, 16],
  [2, 8, 8, 32],
];
function pooled([N, H, W, C]: Shape): Shape {
  return [N, Math.floor(H / 2), Math.floor(W / 2), C];
}
run('maxPool2x2', [
  ...poolShapes.map((sh) =>
    op(`maxPool2x2 ${s(sh)}`, [f32(sh)], (be, [x]) => {
      const { y, argmax } = be.maxPool2x2(x);
      return { y, argmax };
    }, { exact: true }),
  ),
  // Values from {-1, 0, 1}: most windows have ties, and the first of equal values must win.
  ...poolShapes.map((sh) =>
    op(`maxPool2x2 ${s(sh)} with ties`, [ints(sh, -1, 2)], (be, [x]) => {
      const { y, argmax } = be.maxPool2x2(x);
      return { y, argmax };
    }, { exact: true }),
  ),
  ...poolShapes.map((sh) =>
    op(`maxPool2x2Backward ${s(sh)}`, [f32(pooled(sh)), u32(pooled(sh), 4)], (be, [dy, am]) => be.maxPool2x2Backward(dy, am, sh), {
      exact: true,
    }),
  ),
  // Forward then backward on the same backend, the way training uses it.
  op('maxPool2x2 then backward [2,7,9,5]', [f32([2, 7, 9, 5]), f32([2, 3, 4, 5])], (be, [x, dy]) =>
    be.maxPool2x2Backward(dy, be.maxPool2x2(x).argmax, x.shape),
  ),
]);

const lossShapesList: [number, number][] = [
  [1, 1],
  [7, 10],
  [33, 10],
  [128, 10],
  [3, 1000],
  [1, 1000],
];
run('softmaxCrossEntropy and topkCorrect', [
  ...lossShapesList.flatMap(([N, C]) =>
    (['mean', 'sum'] as const).map((red) =>
      op(`softmaxCrossEntropy N=${N} C=${C} ${red}`, [f32([N, C], -5, 5), u32([N], C)], (be, [z, l]) => {
        const { loss, grad } = be.softmaxCrossEntropy(z, l, red);
        return { loss, grad };
      }),
    ),
  ),
  op('softmaxCrossEntropy N=5 C=10 large logits', [f32([5, 10], -80, 80), u32([5], 10)], (be, [z, l]) => {
    const { loss, grad } = be.softmaxCrossEntropy(z, l, 'sum');
    return { loss, grad };
  }),
  ...([
    [7, 10, -0.37],
    [33, 10, 1],
    [3, 1000, 0.02],
    [5, 10, 2.5],
  ] as const).map(([N, C, s]) =>
    op(`softmaxCrossEntropyGrad N=${N} C=${C} scale=${s}`, [f32([N, C], -5, 5), u32([N], C)], (be, [z, l]) => be.softmaxCrossEntropyGrad(z, l, s)),
  ),
  ...([
    [7, 10, 1],
    [7, 10, 5],
    [64, 10, 1],
    [64, 10, 5],
    [5, 1000, 5],
    [33, 3, 5],
  ] as const).flatMap(([N, C, k]) => [
    op(`topkCorrect N=${N} C=${C} k=${k}`, [f32([N, C]), u32([N], C)], (be, [z, l]) => be.topkCorrect(z, l, k), { exact: true }),
    op(`topkCorrect N=${N} C=${C} k=${k} with ties`, [ints([N, C], 0, 3), u32([N], C)], (be, [z, l]) => be.topkCorrect(z, l, k), {
      exact: true,
    }),
  ]),
  ...lossShapesList.map(([N, C]) => op(`oneHot N=${N} C=${C}`, [u32([N], C)], (be, [l]) => be.oneHot(l, C), { exact: true })),
]);

const sgdOptions: [string, SgdOptions][] = [
  ['nesterov', { lr: 0.1, momentum: 0.9, weightDecay: 0 }],
  ['nesterov wd', { lr: 0.05, momentum: 0.9, weightDecay: 5e-4, nesterov: true }],
  ['plain momentum wd', { lr: 0.1, momentum: 0.8, weightDecay: 1e-2, nesterov: false }],
  ['no momentum', { lr: 0.3, momentum: 0, weightDecay: 0, nesterov: false }],
];
run(
  'sgdNesterov (two steps, in place)',
  ([[1], [1237], [7, 13, 5]] as Shape[]).flatMap((sh) =>
    sgdOptions.map(([label, o]) =>
      // Parameters, gradients and velocities of one sign keep every result away from 0,
      // where a one-element relative error is just f32 rounding (the [1] case failed about
      // once in 300 runs with zero-mean inputs). A wrong sign or term is still O(1e-3) off.
      op(`sgdNesterov ${s(sh)} ${label}`, [f32(sh, 2, 3), f32(sh, 0.5, 1.5), f32(sh, 0.5, 1.5), f32(sh, 0.5, 1.5)], (be, [param, g1, g2, velocity]) => {
        be.sgdNesterov(param, g1, velocity, o);
        be.sgdNesterov(param, g2, velocity, o);
        return { param, velocity };
      }),
    ),
  ),
);

// Analog-tile primitives: the noise is drawn from the same counter-based hash on both
// backends, so they agree up to f32 rounding; a value within rounding of a quantization or
// pulse-count boundary may land one step apart, hence the looser tolerance.
const analogIOCases: [string, Partial<AnalogIOOptions>, boolean, boolean][] = [
  ['dac noise', { mode: 'dac', noiseStd: 0.3 }, false, false],
  ['dac noise+clip+6 bits, row scale', { mode: 'dac', noiseStd: 0.05, bound: 0.8, bits: 6 }, true, false],
  ['adc noise+clip+9 bits, tile scale', { mode: 'adc', noiseStd: 0.1, bound: 2, bits: 9 }, false, true],
  ['adc bound management', { mode: 'adc', noiseStd: 0.02, bound: 0.6, bits: 8, maxHalvings: 3 }, true, true],
];
run('analog primitives', [
  ...([[1, 1], [7, 13], [3, 5, 7, 3], [2, 1237]] as Shape[]).flatMap((sh) =>
    analogIOCases.map(([label, o, row, tile]) =>
      op(
        `analogIO ${label} ${s(sh)}`,
        [f32(sh, -2, 2), f32([sh[0]], 0.3, 3), f32([1], 0.5, 1.5)],
        (be, [x, rs, ts], seed) =>
          be.analogIO(x, { mode: 'dac', noiseStd: 0, bound: Infinity, bits: 0, key: seedFromString(seed), ...o }, row ? rs : null, tile ? ts : null),
        { tol: 2e-3 },
      ),
    ),
  ),
  ...([[1, 1], [7, 13], [3, 5, 7, 3], [2, 1237], [3, 0]] as Shape[]).map((sh) =>
    op(`rowAbsMax ${s(sh)}`, [f32(sh, -3, 3)], (be, [x]) => be.rowAbsMax(x), { exact: true }),
  ),
  ...([[1], [1237], [7, 13, 5]] as Shape[]).flatMap((sh) =>
    [false, true].map((softBounds) =>
      op(
        `pulsedUpdate ${s(sh)} ${softBounds ? 'soft' : 'hard'} bounds, all spreads`,
        [f32(sh, -0.5, 0.5), f32(sh, -0.2, 0.2), f32([1], 0.5, 1)],
        (be, [w, dw, ts], seed) => {
          const o: PulsedUpdateOptions = {
            dwMin: 0.01, dwMinDtod: 0.3, dwMinCtoc: 0.3, upDown: 0.1, upDownDtod: 0.05, wMax: 0.6, wMin: -0.7, boundsDtod: 0.2,
            softBounds, writeNoise: 0.002, maxPulses: 15, deviceKey: seedFromString(`${seed}/d`), updateKey: seedFromString(`${seed}/u`),
          };
          be.pulsedUpdate(w, dw, ts, o);
          be.pulsedUpdate(w, dw, ts, { ...o, updateKey: (o.updateKey ^ 1) >>> 0 });
          return w;
        },
        { tol: 2e-3 },
      ),
    ),
  ),
]);

run('creation and copies', [
  ...([[1], [1237], [3, 5, 7]] as Shape[]).map((sh) =>
    op(`uniform ${s(sh)}`, [], (be, _ins, seed) => be.uniform(sh, -0.5, 2, seed), { exact: true }),
  ),
  op('zeros [5,7]', [], (be) => be.zeros([5, 7]), { exact: true }),
  op('fromArray u32 round trip', [u32([37], 2 ** 32)], (_be, [t]) => t, { exact: true }),
  op('clone f32 [1237]', [f32([1237])], (be, [t]) => be.clone(t), { exact: true }),
  op('clone u32 [37]', [u32([37], 1000)], (be, [t]) => be.clone(t), { exact: true }),
  op('reshape [2,5,7,3] -> [10,21]', [f32([2, 5, 7, 3])], (be, [t]) => be.reshape(t, [10, 21]), { exact: true }),
  op('reshape [1237] -> [1237,1]', [f32([1237])], (be, [t]) => be.reshape(t, [1237, 1]), { exact: true }),
]);
