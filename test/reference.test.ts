// Tests of the reference backend itself: it is the ground truth for every kernel, so each
// op is checked against an independent statement of its definition (an adjoint identity,
// numbers worked out by hand, finite differences, an unrolled recurrence).
import { describe, expect, it } from 'vitest';
import { ReferenceBackend, Shape, ShapeError, Tensor, sizeOf } from '../engine/index.js';
import { freshSeed, randomValues, rng } from './helpers.js';

const be = new ReferenceBackend();

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function rand(shape: Shape, r: () => number, low = -1, high = 1): { t: Tensor; v: Float32Array } {
  const v = randomValues(sizeOf(shape), r, low, high);
  return { t: be.fromArray(v, shape), v };
}

async function values(t: Tensor): Promise<number[]> {
  return Array.from(await be.read(t));
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i])))) {
      expect.fail(`${what}: [${i}] = ${got[i]}, want ${want[i]}`);
    }
  }
}

describe('reference conv2d: backward passes are the adjoints of the forward pass', () => {
  // [N, H, W, Ci, Co, K, stride, pad]: odd sizes, both filter sizes, both strides and pads.
  const cases: [number, number, number, number, number, 1 | 3, 1 | 2, 0 | 1][] = [
    [1, 5, 5, 1, 1, 3, 1, 0],
    [2, 5, 7, 3, 4, 3, 1, 1],
    [1, 7, 5, 3, 5, 3, 2, 0],
    [2, 9, 7, 5, 3, 3, 2, 1],
    [1, 6, 8, 2, 3, 3, 2, 1],
    [2, 5, 5, 3, 7, 1, 1, 0],
    [1, 7, 9, 4, 3, 1, 1, 1],
    [2, 7, 5, 3, 2, 1, 2, 0],
    [1, 6, 9, 5, 4, 1, 2, 1],
  ];
  it.each(cases)('N=%i H=%i W=%i Ci=%i Co=%i K=%i stride %i pad %i', async (N, H, W, Ci, Co, K, stride, pad) => {
    const seed = freshSeed();
    const r = rng(seed);
    const opts = { stride, pad };
    const x = rand([N, H, W, Ci], r);
    const w = rand([K, K, Ci, Co], r);
    const y = be.conv2d(x.t, w.t, null, opts);
    const dy = rand(y.shape, r);
    const lhs = dot(await be.read(y), dy.v);
    const dx = be.conv2dBackwardData(dy.t, w.t, x.t.shape, opts);
    const dw = be.conv2dBackwardFilter(x.t, dy.t, w.t.shape, opts);
    expect(dx.shape).toEqual(x.t.shape);
    expect(dw.shape).toEqual(w.t.shape);
    const viaData = dot(x.v, await be.read(dx));
    const viaFilter = dot(w.v, await be.read(dw));
    const scale = Math.max(1, Math.abs(lhs));
    expect(Math.abs(lhs - viaData) / scale, `<conv(x,w),dy> vs <x,bwdData(dy,w)> seed ${seed}`).toBeLessThan(1e-10);
    expect(Math.abs(lhs - viaFilter) / scale, `<conv(x,w),dy> vs <w,bwdFilter(x,dy)> seed ${seed}`).toBeLessThan(1e-10);
    // The identity alone would pass for zero outputs everywhere.
    expect(Math.abs(lhs), `seed ${seed}`).toBeGreaterThan(1e-6);
  });

  it('the adjoint holds element by element: dx = sum over one-hot dy of conv rows', async () => {
    // Builds the conv2d matrix column by column (conv of one-hot inputs) and checks that
    // bwdData applies its transpose, for a stride-2 case where some input rows get nothing.
    const seed = freshSeed();
    const r = rng(seed);
    const [N, H, W, Ci, Co] = [1, 6, 4, 2, 3];
    const opts = { stride: 2 as const, pad: 0 as const };
    const w = rand([3, 3, Ci, Co], r);
    const inSize = N * H * W * Ci;
    const cols: Float64Array[] = [];
    for (let j = 0; j < inSize; j++) {
      const e = new Array<number>(inSize).fill(0);
      e[j] = 1;
      cols.push(await be.read(be.conv2d(be.fromArray(e, [N, H, W, Ci]), w.t, null, opts)));
    }
    const outShape = [N, 2, 1, Co];
    const dy = rand(outShape, r);
    const dx = await be.read(be.conv2dBackwardData(dy.t, w.t, [N, H, W, Ci], opts));
    const want = cols.map((c) => dot(c, dy.v));
    expectClose(dx, want, 1e-12, `bwdData vs conv matrix transpose, seed ${seed}`);
    // Row 5 and column 3 are never read by a stride-2 3x3 window on 6x4: their gradient is 0.
    for (let h = 0; h < H; h++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < Ci; c++) {
          if (h === 5 || x === 3) expect(dx[(h * W + x) * Ci + c], `dx at row ${h} col ${x}`).toBe(0);
        }
  });
});

describe('reference conv2d: numbers worked out by hand', () => {
  // x is the 3x3 image 1..9, one channel.
  const img = [1, 2, 3, 4, 5, 6, 7, 8, 9];

  it('3x3 all-ones filter, pad 1: each output is the sum of its neighbourhood, plus bias', async () => {
    const x = be.fromArray(img, [1, 3, 3, 1]);
    const w = be.fromArray(new Array(9).fill(1), [3, 3, 1, 1]);
    const y = be.conv2d(x, w, be.fromArray([0.5], [1]), { pad: 1 });
    expect(y.shape).toEqual([1, 3, 3, 1]);
    expect(await values(y)).toEqual([12, 21, 16, 27, 45, 33, 24, 39, 28].map((v) => v + 0.5));
  });

  it('3x3 filter with one tap at (ky=0,kx=2), pad 1: the output is the input shifted (up-right neighbour)', async () => {
    const x = be.fromArray(img, [1, 3, 3, 1]);
    const wv = new Array(9).fill(0);
    wv[0 * 3 + 2] = 1;
    const y = be.conv2d(x, be.fromArray(wv, [3, 3, 1, 1]), null, { pad: 1 });
    // y[oy,ox] = x[oy-1, ox+1]
    expect(await values(y)).toEqual([0, 0, 0, 2, 3, 0, 5, 6, 0]);
  });

  it('stride 2, pad 1 on 3x3 gives 2x2; pad 0 gives 1x1', async () => {
    const x = be.fromArray(img, [1, 3, 3, 1]);
    const w = be.fromArray([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3, 1, 1]);
    // Output (0,0) with pad 1 sees x rows -1..1, cols -1..1: x(0,0)*w(1,1)+x(0,1)*w(1,2)+x(1,0)*w(2,1)+x(1,1)*w(2,2).
    const y = be.conv2d(x, w, null, { stride: 2, pad: 1 });
    expect(y.shape).toEqual([1, 2, 2, 1]);
    expect(await values(y)).toEqual([
      1 * 5 + 2 * 6 + 4 * 8 + 5 * 9,
      2 * 4 + 3 * 5 + 5 * 7 + 6 * 8,
      4 * 2 + 5 * 3 + 7 * 5 + 8 * 6,
      5 * 1 + 6 * 2 + 8 * 4 + 9 * 5,
    ]);
    const y0 = be.conv2d(x, w, null, { stride: 2, pad: 0 });
    expect(y0.shape).toEqual([1, 1, 1, 1]);
    expect(await values(y0)).toEqual([1 + 4 + 9 + 16 + 25 + 36 + 49 + 64 + 81]);
  });

  it('1x1 filter mixes channels: y[co] = sum_ci x[ci] w[ci,co] + b[co]', async () => {
    // Two pixels, Ci=2, Co=3; w stored [1,1,Ci,Co].
    const x = be.fromArray([1, 2, 3, 4], [1, 1, 2, 2]);
    const w = be.fromArray([1, 0, -1, 10, 100, 1000], [1, 1, 2, 3]);
    const y = be.conv2d(x, w, be.fromArray([1, 2, 3], [3]), {});
    expect(y.shape).toEqual([1, 1, 2, 3]);
    expect(await values(y)).toEqual([1 + 20 + 1, 200 + 2, -1 + 2000 + 3, 3 + 40 + 1, 400 + 2, -3 + 4000 + 3]);
  });

  it('backward filter of the all-ones image and dy is the count of in-range taps', async () => {
    // 3x3 input, 3x3 filter, pad 1: tap (ky,kx) is in range for (3-|ky-1|)*(3-|kx-1|) outputs.
    const x = be.fromArray(new Array(9).fill(1), [1, 3, 3, 1]);
    const dy = be.fromArray(new Array(9).fill(1), [1, 3, 3, 1]);
    const dw = be.conv2dBackwardFilter(x, dy, [3, 3, 1, 1], { pad: 1 });
    expect(await values(dw)).toEqual([4, 6, 4, 6, 9, 6, 4, 6, 4]);
    // And backward data of an all-ones dy with an all-ones filter counts the windows covering each pixel.
    const dx = be.conv2dBackwardData(dy, be.fromArray(new Array(9).fill(1), [3, 3, 1, 1]), [1, 3, 3, 1], { pad: 1 });
    expect(await values(dx)).toEqual([4, 6, 4, 6, 9, 6, 4, 6, 4]);
  });
});

describe('reference matmul', () => {
  it('a 2x3 by 3x2 product by hand', async () => {
    const a = be.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = be.fromArray([7, 8, 9, 10, 11, 12], [3, 2]);
    const c = be.matmul(a, b);
    expect(c.shape).toEqual([2, 2]);
    expect(await values(c)).toEqual([58, 64, 139, 154]);
  });

  it.each([
    [1, 1, 1],
    [3, 5, 2],
    [7, 13, 5],
  ])('M=%i K=%i N=%i: the four transpose combinations agree', async (M, K, N) => {
    const seed = freshSeed();
    const r = rng(seed);
    const a = randomValues(M * K, r);
    const b = randomValues(K * N, r);
    const aT = new Float32Array(K * M);
    for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) aT[k * M + m] = a[m * K + k];
    const bT = new Float32Array(N * K);
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bT[n * K + k] = b[k * N + n];
    const want = new Float64Array(M * N);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) want[m * N + n] += a[m * K + k] * b[k * N + n];
    const A = be.fromArray(a, [M, K]);
    const AT = be.fromArray(aT, [K, M]);
    const B = be.fromArray(b, [K, N]);
    const BT = be.fromArray(bT, [N, K]);
    const combos: [string, Tensor][] = [
      ['A B', be.matmul(A, B)],
      ['A^T B', be.matmul(AT, B, { transA: true })],
      ['A B^T', be.matmul(A, BT, { transB: true })],
      ['A^T B^T', be.matmul(AT, BT, { transA: true, transB: true })],
    ];
    for (const [name, c] of combos) {
      expect(c.shape, name).toEqual([M, N]);
      expectClose(await be.read(c), want, 1e-12, `${name} M=${M} K=${K} N=${N} seed ${seed}`);
    }
  });

  it('a non-square transA operand is read as [K, M], not [M, K]', async () => {
    // A^T stored [K=2, M=3]; A = [[1,4],[2,5],[3,6]]; B = I2.
    const c = be.matmul(be.fromArray([1, 2, 3, 4, 5, 6], [2, 3]), be.fromArray([1, 0, 0, 1], [2, 2]), { transA: true });
    expect(c.shape).toEqual([3, 2]);
    expect(await values(c)).toEqual([1, 4, 2, 5, 3, 6]);
  });
});

describe('reference softmaxCrossEntropy', () => {
  it('equal logits give log C; the gradient is (1/C - onehot)/N', async () => {
    const { loss, grad } = be.softmaxCrossEntropy(be.fromArray([0, 0, 0, 5, 5, 5], [2, 3]), be.fromArray([2, 0], [2], 'u32'));
    expectClose(await be.read(loss), [Math.log(3)], 1e-14, 'loss');
    expectClose(await be.read(grad), [1 / 6, 1 / 6, -1 / 3, -1 / 3, 1 / 6, 1 / 6], 1e-14, 'grad');
  });

  it('huge logits stay finite (the row max is subtracted)', async () => {
    const { loss, grad } = be.softmaxCrossEntropy(be.fromArray([1000, 0, -1000], [1, 3]), be.fromArray([1], [1], 'u32'), 'sum');
    expectClose(await be.read(loss), [1000], 1e-12, 'loss');
    expectClose(await be.read(grad), [1, -1, 0], 1e-12, 'grad');
  });

  it.each(['mean', 'sum'] as const)('%s: the gradient matches central finite differences of the loss', async (reduction) => {
    const seed = freshSeed();
    const r = rng(seed);
    const [N, C] = [3, 5];
    // Logits on a 2^-10 grid and a 2^-10 step: every perturbed logit is exact in f32, so
    // fromArray's rounding does not disturb the difference quotient.
    const h = 2 ** -10;
    const z = Array.from({ length: N * C }, () => Math.round((r() * 6 - 3) / h) * h);
    const labels = Array.from({ length: N }, () => Math.floor(r() * C));
    const lab = be.fromArray(labels, [N], 'u32');
    const { loss, grad } = be.softmaxCrossEntropy(be.fromArray(z, [N, C]), lab, reduction);
    const g = await be.read(grad);
    const lossAt = async (v: number[]) => (await be.read(be.softmaxCrossEntropy(be.fromArray(v, [N, C]), lab, reduction).loss))[0];
    const base = (await be.read(loss))[0];
    let want = 0;
    for (let n = 0; n < N; n++) {
      let m = -Infinity;
      for (let c = 0; c < C; c++) m = Math.max(m, z[n * C + c]);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(z[n * C + c] - m);
      want += Math.log(s) + m - z[n * C + labels[n]];
    }
    expectClose([base], [reduction === 'mean' ? want / N : want], 1e-12, `loss seed ${seed}`);
    for (let i = 0; i < N * C; i++) {
      const up = [...z];
      up[i] += h;
      const down = [...z];
      down[i] -= h;
      const fd = ((await lossAt(up)) - (await lossAt(down))) / (2 * h);
      if (Math.abs(fd - g[i]) > 1e-6) expect.fail(`${reduction} grad[${i}] = ${g[i]}, finite difference ${fd}, seed ${seed}`);
    }
  });

  it('a label >= C is a RangeError naming the row', () => {
    expect(() => be.softmaxCrossEntropy(be.fromArray([0, 0, 0, 0], [2, 2]), be.fromArray([1, 2], [2], 'u32'))).toThrow(/row 1/);
    expect(() => be.softmaxCrossEntropy(be.fromArray([0, 0, 0, 0], [2, 2]), be.fromArray([1, 2], [2], 'u32'))).toThrow(RangeError);
  });
});

describe('reference maxPool2x2', () => {
  it('picks the maximum and its window index; the first of equal values wins', async () => {
    // One 4x4 image (plus an odd trailing row that is ignored), two channels.
    // Channel 0 windows: distinct values; channel 1: all equal (ties -> index 0) or tie between 1 and 3.
    const H = 5;
    const W = 4;
    const c0 = [1, 9, 2, 3, 4, 5, 8, 7, 6, 0, 1, 1, 2, 3, 4, 5, 99, 99, 99, 99];
    const c1 = [7, 7, 1, 8, 7, 7, 2, 8, 0, -1, -5, -5, 3, 3, -5, -6, 99, 99, 99, 99];
    const xv: number[] = [];
    for (let i = 0; i < H * W; i++) xv.push(c0[i], c1[i]);
    const { y, argmax } = be.maxPool2x2(be.fromArray(xv, [1, H, W, 2]));
    expect(y.shape).toEqual([1, 2, 2, 2]);
    expect(argmax.dtype).toBe('u32');
    // Windows (row-major): (0,0):[1,9,4,5] (0,1):[2,3,8,7] (1,0):[6,0,2,3] (1,1):[1,1,4,5]
    //                c1:   [7,7,7,7]       [1,8,2,8]       [0,-1,3,3]      [-5,-5,-5,-6]
    expect(await values(y)).toEqual([9, 7, 8, 8, 6, 3, 5, -5]);
    expect(await values(argmax)).toEqual([1, 0, 2, 1, 0, 2, 3, 0]);
  });

  it.each([
    [1, 5, 7, 3],
    [2, 6, 4, 1],
    [1, 9, 3, 5],
  ])('backward is the adjoint of selecting the winners (N=%i H=%i W=%i C=%i)', async (N, H, W, C) => {
    const seed = freshSeed();
    const r = rng(seed);
    const x = rand([N, H, W, C], r);
    const { y, argmax } = be.maxPool2x2(x.t);
    const dy = rand(y.shape, r);
    const dx = await be.read(be.maxPool2x2Backward(dy.t, argmax, x.t.shape));
    // y = P x with P selecting winners, so <y, dy> = <x, P^T dy> exactly, and P^T dy is
    // dy at the winners and zero elsewhere.
    const lhs = dot(await be.read(y), dy.v);
    expect(Math.abs(lhs - dot(x.v, dx)), `seed ${seed}`).toBeLessThan(1e-12);
    const yv = await be.read(y);
    const av = await be.read(argmax);
    const Ho = Math.floor(H / 2);
    const Wo = Math.floor(W / 2);
    const want = new Float64Array(N * H * W * C);
    for (let n = 0; n < N; n++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++)
          for (let c = 0; c < C; c++) {
            const o = ((n * Ho + oy) * Wo + ox) * C + c;
            const iy = 2 * oy + Math.floor(av[o] / 2);
            const ix = 2 * ox + (av[o] % 2);
            const i = ((n * H + iy) * W + ix) * C + c;
            expect(x.v[i], `winner value seed ${seed}`).toBe(yv[o]);
            want[i] = dy.v[o];
          }
    expect(Array.from(dx)).toEqual(Array.from(want));
  });
});

describe('reference sgdNesterov', () => {
  it.each([
    [true, 0],
    [true, 5e-4],
    [false, 0.01],
  ])('nesterov=%s weightDecay=%s: two steps equal the unrolled PyTorch recurrence', async (nesterov, wd) => {
    const seed = freshSeed();
    const r = rng(seed);
    const n = 7;
    const lr = 0.1;
    const mom = 0.9;
    const p0 = rand([n], r);
    const g1 = rand([n], r);
    const g2 = rand([n], r);
    const param = p0.t;
    const vel = be.zeros([n]);
    be.sgdNesterov(param, g1.t, vel, { lr, momentum: mom, weightDecay: wd, nesterov });
    be.sgdNesterov(param, g2.t, vel, { lr, momentum: mom, weightDecay: wd, nesterov });
    const got = await be.read(param);
    const gotV = await be.read(vel);
    for (let i = 0; i < n; i++) {
      const p = p0.v[i];
      // Step 1 (v starts at 0).
      const gg1 = g1.v[i] + wd * p;
      const v1 = gg1;
      const p1 = p - lr * (nesterov ? gg1 + mom * v1 : v1);
      // Step 2.
      const gg2 = g2.v[i] + wd * p1;
      const v2 = mom * v1 + gg2;
      const p2 = p1 - lr * (nesterov ? gg2 + mom * v2 : v2);
      expect(Math.abs(got[i] - p2), `param[${i}] seed ${seed}`).toBeLessThan(1e-14);
      expect(Math.abs(gotV[i] - v2), `velocity[${i}] seed ${seed}`).toBeLessThan(1e-14);
    }
  });

  it('nesterov defaults to true', async () => {
    const p = be.fromArray([1], [1]);
    be.sgdNesterov(p, be.fromArray([1], [1]), be.fromArray([1], [1]), { lr: 1, momentum: 0.5, weightDecay: 0 });
    // v = 0.5*1 + 1 = 1.5; step = 1 + 0.5*1.5 = 1.75
    expect(await values(p)).toEqual([1 - 1.75]);
  });
});

describe('reference topkCorrect', () => {
  it('ties count against the label', async () => {
    const logits = be.fromArray(
      [
        1, 1, 0, // label 0 ties with class 1: rank 1
        0, 2, 1, // label 1 is strictly the largest: rank 0
        3, 2, 1, // label 2 is the smallest: rank 2
        5, 5, 5, // label 1, all tied: rank 2
      ],
      [4, 3],
    );
    const labels = be.fromArray([0, 1, 2, 1], [4], 'u32');
    expect(await values(be.topkCorrect(logits, labels, 1))).toEqual([1]);
    expect(await values(be.topkCorrect(logits, labels, 2))).toEqual([2]);
    expect(await values(be.topkCorrect(logits, labels, 3))).toEqual([4]);
  });

  it('random logits: k=1 agrees with argmax (no ties) and k=C counts every row', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const [N, C] = [13, 7];
    const z = rand([N, C], r);
    const labels = Array.from({ length: N }, () => Math.floor(r() * C));
    let want = 0;
    for (let n = 0; n < N; n++) {
      let best = 0;
      for (let c = 1; c < C; c++) if (z.v[n * C + c] > z.v[n * C + best]) best = c;
      if (best === labels[n]) want++;
    }
    const lab = be.fromArray(labels, [N], 'u32');
    expect(await values(be.topkCorrect(z.t, lab, 1)), `seed ${seed}`).toEqual([want]);
    expect(await values(be.topkCorrect(z.t, lab, C))).toEqual([N]);
  });
});

describe('reference sum and biasGrad', () => {
  // A [2,3,4] tensor whose element (i,j,k) is 100i + 10j + k: every partial sum is checkable.
  const shape = [2, 3, 4];
  const v: number[] = [];
  for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) v.push(100 * i + 10 * j + k);
  const t = be.fromArray(v, shape);

  it.each<[number[], number[], number[]]>([
    [[0], [3, 4], [100, 102, 104, 106, 120, 122, 124, 126, 140, 142, 144, 146]],
    [[1], [2, 4], [30, 33, 36, 39, 330, 333, 336, 339]],
    [[2], [2, 3], [6, 46, 86, 406, 446, 486]],
    [[0, 2], [3], [412, 492, 572]],
    [[2, 0], [3], [412, 492, 572]],
    [[-1], [2, 3], [6, 46, 86, 406, 446, 486]],
    [[0, 1], [4], [360, 366, 372, 378]],
    [[0, 1, 2], [], [1476]],
    [[], [2, 3, 4], v],
  ])('axes %j', async (axes, outShape, want) => {
    const s = be.sum(t, axes);
    expect(s.shape).toEqual(outShape);
    expect(await values(s)).toEqual(want);
  });

  it('random 4-D tensor: sums over axes {1,2} and {0,3} match nested loops', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const [A, B, C, D] = [3, 5, 2, 7];
    const x = rand([A, B, C, D], r);
    const at = (a: number, b: number, c: number, d: number) => x.v[((a * B + b) * C + c) * D + d];
    const w12: number[] = [];
    for (let a = 0; a < A; a++) for (let d = 0; d < D; d++) {
      let s = 0;
      for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) s += at(a, b, c, d);
      w12.push(s);
    }
    const w03: number[] = [];
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) {
      let s = 0;
      for (let a = 0; a < A; a++) for (let d = 0; d < D; d++) s += at(a, b, c, d);
      w03.push(s);
    }
    expectClose(await be.read(be.sum(x.t, [1, 2])), w12, 1e-12, `axes 1,2 seed ${seed}`);
    expectClose(await be.read(be.sum(x.t, [0, 3])), w03, 1e-12, `axes 0,3 seed ${seed}`);
    expectClose(await be.read(be.biasGrad(x.t)), await be.read(be.sum(x.t, [0, 1, 2])), 1e-12, `biasGrad seed ${seed}`);
  });

  it('bad axes are ShapeErrors', () => {
    expect(() => be.sum(t, [3])).toThrow(ShapeError);
    expect(() => be.sum(t, [1, 1])).toThrow(/repeated/);
  });
});

describe('reference creation and elementwise', () => {
  it('fromArray f32 rounds to float32, u32 keeps integers and rejects the rest', async () => {
    expect(await values(be.fromArray([0.1, 1 / 3], [2]))).toEqual([Math.fround(0.1), Math.fround(1 / 3)]);
    expect(await values(be.fromArray([0, 7, 2 ** 32 - 1], [3], 'u32'))).toEqual([0, 7, 2 ** 32 - 1]);
    expect(() => be.fromArray([1, -1], [2], 'u32')).toThrow(RangeError);
    expect(() => be.fromArray([1.5], [1], 'u32')).toThrow(/index 0/);
    expect(() => be.fromArray([1, 2, 3], [2, 2])).toThrow(ShapeError);
  });

  it('elementwise ops, clone, reshape and uniform', async () => {
    const a = be.fromArray([-2, -0.5, 0, 1.5], [2, 2]);
    const b = be.fromArray([1, 2, 3, -4], [2, 2]);
    expect(await values(be.add(a, b))).toEqual([-1, 1.5, 3, -2.5]);
    expect(await values(be.sub(a, b))).toEqual([-3, -2.5, -3, 5.5]);
    expect(await values(be.mul(a, b))).toEqual([-2, -1, 0, -6]);
    expect(await values(be.scale(a, -2))).toEqual([4, 1, -0, -3]);
    expect(await values(be.axpy(2, a, b))).toEqual([-3, 1, 3, -1]);
    expect(await values(be.relu(a))).toEqual([0, 0, 0, 1.5]);
    expect(await values(be.reluMask(b, a))).toEqual([0, 0, 0, -4]);
    const c = be.clone(a);
    a.dispose();
    expect(await values(c)).toEqual([-2, -0.5, 0, 1.5]);
    const r = be.reshape(c, [4, 1]);
    expect(r.shape).toEqual([4, 1]);
    expect(await values(r)).toEqual([-2, -0.5, 0, 1.5]);
    const u1 = await values(be.uniform([5, 3], -1, 2, 'seed-1'));
    const u2 = await values(be.uniform([5, 3], -1, 2, 'seed-1'));
    expect(u1).toEqual(u2);
    expect(u1.every((x) => x >= -1 && x < 2)).toBe(true);
    expect(await values(be.uniform([5, 3], -1, 2, 'seed-2'))).not.toEqual(u1);
  });

  it('sgdNesterov updates in place: the param tensor is the same object afterwards', async () => {
    const p = be.fromArray([1, 2], [2]);
    const copy = be.clone(p);
    be.sgdNesterov(p, be.fromArray([1, 1], [2]), be.zeros([2]), { lr: 0.5, momentum: 0, weightDecay: 0 });
    expect(await values(p)).toEqual([0.5, 1.5]);
    expect(await values(copy)).toEqual([1, 2]);
  });
});
