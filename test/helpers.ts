// Shared test helpers: backends, random inputs, error measures.
import seedrandom from 'seedrandom';
import * as convOps from '../engine/webgpu/ops/conv.js';
import { ModelSpec, Network } from '../pcn/network.js';
import { Backend, ConvGeometry, NoAdapterError, ReferenceBackend, WebGPUBackend, convGeometry, openDevice, Shape, Tensor, sizeOf } from '../engine/index.js';

let gpuBackend: WebGPUBackend | null | undefined;
let gpuMissing = '';

/**
 * The webgpu backend with output poisoning on (every new output buffer starts as NaN, so
 * an element a kernel forgot to write fails the comparison). When no adapter exists the
 * caller must fail loudly: requireGpu() throws with the diagnosis.
 */
export async function gpu(): Promise<WebGPUBackend> {
  if (gpuBackend === undefined) {
    try {
      gpuBackend = new WebGPUBackend(await openDevice(), { poison: true });
    } catch (e) {
      if (!(e instanceof NoAdapterError)) throw e;
      gpuBackend = null;
      gpuMissing = e.message;
    }
  }
  if (!gpuBackend) {
    throw new Error(`this test needs a WebGPU adapter and found none (it does not pass silently):\n${gpuMissing}`);
  }
  return gpuBackend;
}

export const ref: Backend = new ReferenceBackend();

/** A fresh seed per test run, replayable with NUDGE_TEST_SEED (test/seed.ts). */
export { freshSeed } from './seed.js';

export function randomValues(n: number, rng: () => number, low = -1, high = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = low + (high - low) * rng();
  return out;
}

export function rng(seed: string): () => number {
  return seedrandom(seed);
}

/** ||out - ref|| / ||ref|| (and the absolute norm when ref is zero). */
export function relErr(out: ArrayLike<number>, want: ArrayLike<number>): number {
  if (out.length !== want.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = out[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Uploads the same values to both backends. */
export function pair(gb: Backend, values: ArrayLike<number>, shape: Shape, dtype: 'f32' | 'u32' = 'f32'): [Tensor, Tensor] {
  if (values.length !== sizeOf(shape)) throw new Error('pair: size mismatch');
  return [gb.fromArray(values, shape, dtype), ref.fromArray(values, shape, dtype)];
}

/** A seeded Fisher-Yates shuffle (a copy). */
export function shuffled<T>(xs: T[], r: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * A tiny conv net with two strided 1x1 skips at odd distances, as VGG10Skip has: 1 -> 4 maps
 * 8x8 into a 4x4 conv output (stride 2), 2 -> 5 enters before a pool (stride 1).
 */
export function skipTinySpec(): ModelSpec {
  return {
    name: 'skip-tiny',
    input: [8, 8, 2],
    classes: 3,
    layers: [
      { kind: 'conv', out: 4, pool: false }, // 8x8x4
      { kind: 'conv', out: 5, pool: true }, // 4x4x5
      { kind: 'conv', out: 6, pool: false }, // 4x4x6
      { kind: 'conv', out: 6, pool: false }, // 4x4x6, skip from layer 1 (stride 2)
      { kind: 'conv', out: 6, pool: true }, // 2x2x6, skip from layer 2 (stride 1, before the pool)
      { kind: 'dense', out: 3 },
    ],
    convFan: 'in',
    outputGain: 1,
    skips: [
      { from: 1, to: 4 },
      { from: 2, to: 5 },
    ],
  };
}

/**
 * The 5-layer PCN the gradient tests share: conv+pool, conv, conv+pool, dense, linear output,
 * on 6x6x2 inputs, 4 classes. Wide enough that one unit crossing a ReLU kink under the nudge
 * is a small part of a tensor's gradient (with 3 channels it could swing a cosine to 0.8).
 */
export function tinyPcnSpec(name = 'tiny'): ModelSpec {
  return {
    name,
    input: [6, 6, 2],
    classes: 4,
    layers: [
      { kind: 'conv', out: 8, pool: true },
      { kind: 'conv', out: 8, pool: false },
      { kind: 'conv', out: 8, pool: true },
      { kind: 'dense', out: 16 },
      { kind: 'dense', out: 4 },
    ],
    convFan: 'in',
    outputGain: 1,
  };
}

/** tinyPcnSpec() on the float64 reference backend, initialized from `seed`, with a batch of N. */
export function tinyPcnSetup(seed: string, N = 8, name = 'tiny') {
  const be = new ReferenceBackend() as unknown as Backend;
  const net = new Network(be, tinyPcnSpec(name));
  net.init(seed);
  const r = rng(seed);
  const x = be.fromArray(randomValues(N * 72, r), [N, 6, 6, 2]);
  const y = be.fromArray(Array.from({ length: N }, () => Math.floor(r() * 4)), [N], 'u32');
  return { be, net, x, y };
}

/** Host copies of every w and b, in layer order. */
export async function readGrads(be: Backend, ps: { w: Tensor; b: Tensor }[]): Promise<Float64Array[]> {
  return Promise.all(ps.flatMap((p) => [p.w, p.b]).map((t) => be.read(t)));
}

/**
 * Cosine of two gradients. A zero one (the nudge never reached the layer) points nowhere:
 * cosine 0 against a non-zero one; both zero (a layer dead for the whole batch) agree: 1.
 */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa === 0 && bb === 0) return 1;
  return aa === 0 || bb === 0 ? 0 : ab / Math.sqrt(aa * bb);
}

/** One element of xs, drawn with r. */
export function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

/** A conv test case: shapes, options, whether a bias is added, and the geometry they give. */
export interface ConvCase {
  xShape: number[];
  wShape: number[];
  opts: { stride: 1 | 2; pad: 0 | 1 };
  bias: boolean;
  g: ConvGeometry;
}

/** A KxK conv of an N x H x W x Ci input to Co channels (throws ShapeError for an empty output). */
export function makeConvCase(N: number, H: number, W: number, Ci: number, Co: number, K: number, stride: 1 | 2, pad: 0 | 1, bias: boolean): ConvCase {
  const xShape = [N, H, W, Ci];
  const wShape = [K, K, Ci, Co];
  const opts = { stride, pad };
  return { xShape, wShape, opts, bias, g: convGeometry('test', xShape, wShape, opts) };
}

export function describeConvCase(c: ConvCase): string {
  return `x [${c.xShape}] w [${c.wShape}] stride ${c.opts.stride} pad ${c.opts.pad}${c.bias ? ' +bias' : ''}`;
}

export type ConvOpName = 'forward' | 'backwardData' | 'backwardFilter';

/**
 * One conv op of case `c` on fresh random inputs drawn with `r`: on the webgpu backend with
 * `cfg` (undefined: the op's own choice) and on the float64 reference. Every tensor made,
 * inputs and outputs, is pushed to `made` for the caller to dispose.
 */
export function runConvPair(be: WebGPUBackend, op: ConvOpName, c: ConvCase, cfg: unknown, r: () => number, made: Tensor[]): { got: Tensor; want: Tensor } {
  const both = (shape: number[]) => {
    const p = pair(be, randomValues(shape.reduce((a, b) => a * b, 1), r), shape);
    made.push(...p);
    return p;
  };
  const { g, opts } = c;
  let got: Tensor;
  let want: Tensor;
  if (op === 'forward') {
    const [gx, rx] = both(c.xShape);
    const [gw, rw] = both(c.wShape);
    const [gb, rb] = c.bias ? both([g.Co]) : [null, null];
    got = convOps.conv2d(be, gx, gw, gb, opts, cfg as Parameters<typeof convOps.conv2d>[5]);
    want = ref.conv2d(rx, rw, rb, opts);
  } else if (op === 'backwardData') {
    const [gdy, rdy] = both([g.N, g.Ho, g.Wo, g.Co]);
    const [gw, rw] = both(c.wShape);
    got = convOps.conv2dBackwardData(be, gdy, gw, c.xShape, opts, cfg as Parameters<typeof convOps.conv2dBackwardData>[5]);
    want = ref.conv2dBackwardData(rdy, rw, c.xShape, opts);
  } else {
    const [gx, rx] = both(c.xShape);
    const [gdy, rdy] = both([g.N, g.Ho, g.Wo, g.Co]);
    got = convOps.conv2dBackwardFilter(be, gx, gdy, c.wShape, opts, cfg as Parameters<typeof convOps.conv2dBackwardFilter>[5]);
    want = ref.conv2dBackwardFilter(rx, rdy, c.wShape, opts);
  }
  made.push(got, want);
  return { got, want };
}

/**
 * Runs one conv op of case `c` with `cfg` (named `label` in messages) on the GPU and on the
 * reference, inputs drawn from a stream seeded by (seed, op, case, label); fails with the
 * relative error and the first bad element when it reaches `tol`.
 */
export async function checkConvOp(be: WebGPUBackend, op: ConvOpName, c: ConvCase, cfg: unknown, label: string, seed: string, tol: number): Promise<void> {
  const r = rng(`${seed}/${op}/${describeConvCase(c)}/${label}`);
  const made: Tensor[] = [];
  const { got, want } = runConvPair(be, op, c, cfg, r, made);
  try {
    if (got.shape.join() !== want.shape.join()) throw new Error(`${op} ${describeConvCase(c)} config ${label}: shape [${got.shape}], want [${want.shape}]`);
    const out = await be.read(got);
    const exp = await ref.read(want);
    const e = relErr(out, exp);
    if (!(e < tol)) {
      const bad = out.findIndex((v, i) => !(Math.abs(v - exp[i]) <= 1e-4 * (1 + Math.abs(exp[i]))));
      throw new Error(`${op} ${describeConvCase(c)} config ${label}: relative error ${e} (first bad element ${bad}: got ${out[bad]}, want ${exp[bad]}; seed ${seed})`);
    }
  } finally {
    for (const t of made) t.dispose();
  }
}
