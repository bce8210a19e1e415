// The fused conv-block kernels (kernels/conv forward epilogue and gated backward-data loads)
// against the float64 reference backend's composition (engine/fused.ts, their definition)
// and against the webgpu backend's own composition of separate ops, on fresh random inputs
// with awkward sizes: odd conv outputs (the pool drops a row/column), channel counts that
// are and are not multiples of 4, 1x1 and 3x3, stride 2, batch > 1; every option
// combination, register configs with 4 and 8 rows, vec4 and kVec on and off, and the
// shared-tile algorithm for backward-data.
import { describe, expect, it } from 'vitest';
import {
  ConvBlockGates,
  ConvBlockOptions,
  Conv2dOptions,
  ConvGeometry,
  ShapeError,
  Tensor,
  WebGPUBackend,
  composeConvBlock,
  composeConvBlockBackwardData,
  convGeometry,
} from '../engine/index.js';
import * as convOps from '../engine/webgpu/ops/conv.js';
import { ConvTileConfig, tileConfigKey } from '../kernels/conv/common.js';
import { convBlockConfig, convBlockKernel } from '../kernels/conv/forward.js';
import { convBlockBackwardDataKernels, convBackwardDataKernels } from '../kernels/conv/backwardData.js';
import { SharedTileConfig } from '../kernels/matmul/sharedTile.js';
import { ConvWinogradConfig, defaultWinogradConfig, winogradConfigKey, winogradForward } from '../kernels/conv/winograd.js';
import type { Tuner } from '../engine/tune/tuner.js';
import { freshSeed, gpu, pair, randomValues, ref, relErr, rng } from './helpers.js';

/** Against the float64 reference. */
const TOL = 1e-5;
/** Against the webgpu composition: the same arithmetic in another order of kernels. */
const TIGHT = 1e-6;

interface Geo {
  xShape: number[];
  wShape: number[];
  opts: Conv2dOptions;
  g: ConvGeometry;
}

function geo(N: number, H: number, W: number, Ci: number, Co: number, K: number, stride: 1 | 2, pad: 0 | 1): Geo {
  const xShape = [N, H, W, Ci];
  const wShape = [K, K, Ci, Co];
  const opts = { stride, pad };
  return { xShape, wShape, opts, g: convGeometry('test', xShape, wShape, opts) };
}

function describeGeo(c: Geo): string {
  return `x [${c.xShape}] w [${c.wShape}] stride ${c.opts.stride} pad ${c.opts.pad} (conv out ${c.g.Ho}x${c.g.Wo})`;
}

function tile(rows: number, cols: number, vec4: boolean, kVec: boolean, wgX: number): ConvTileConfig {
  return { algo: 'register', rows, cols, vec4, kVec, wgX, wgY: 64 / wgX, kUnroll: 1 };
}

/** Register configs; those a geometry cannot run (vec4/kVec channel counts, rows for pool) are filtered per case. */
const REGISTER: ConvTileConfig[] = [
  tile(4, 1, false, false, 8),
  tile(8, 2, false, false, 4),
  tile(4, 2, true, false, 2),
  tile(8, 1, true, true, 4),
  tile(4, 1, false, true, 16),
  tile(2, 2, false, false, 8),
];

const SHARED: SharedTileConfig[] = [
  { algo: 'shared', BM: 32, BN: 32, BK: 8, TM: 4, TN: 4, vec4: false, unroll: false },
  { algo: 'shared', BM: 32, BN: 32, BK: 16, TM: 4, TN: 8, vec4: true, unroll: false },
];

type Combo = Pick<ConvBlockOptions, 'pool' | 'relu' | 'residual'> & { add: boolean };

/** Every valid option combination: add and residual need relu. */
const COMBOS: Combo[] = [false, true].flatMap((pool) => [
  { pool, relu: false, add: false, residual: false },
  { pool, relu: true, add: false, residual: false },
  { pool, relu: true, add: true, residual: false },
  { pool, relu: true, add: false, residual: true },
  { pool, relu: true, add: true, residual: true },
]);

function comboKey(c: Combo): string {
  return (['pool', 'relu', 'add', 'residual'] as const).filter((k) => c[k]).join('+') || 'plain';
}

function forwardOk(g: ConvGeometry, c: ConvTileConfig, pool: boolean): boolean {
  return (!c.vec4 || g.Co % 4 === 0) && (!c.kVec || g.Ci % 4 === 0) && (!pool || c.rows % 4 === 0);
}

function backwardOk(g: ConvGeometry, c: ConvTileConfig | SharedTileConfig): boolean {
  if (c.algo === 'shared') return !c.vec4 || g.Ci % 4 === 0;
  return (!c.vec4 || g.Ci % 4 === 0) && (!c.kVec || g.Co % 4 === 0);
}

function cfgKey(c: ConvTileConfig | SharedTileConfig | ConvWinogradConfig | undefined): string {
  if (!c) return 'chosen';
  if (c.algo === 'winograd') return winogradConfigKey(c);
  return c.algo === 'shared' ? `shared ${c.BM}x${c.BN}x${c.BK}` : tileConfigKey(c);
}

async function readAll(be: WebGPUBackend, ts: (Tensor | null)[]): Promise<(Float64Array | null)[]> {
  return Promise.all(ts.map((t) => (t ? (t.backendName === ref.name ? ref.read(t) : be.read(t)) : null)));
}

function expectClose(what: string, got: ArrayLike<number> | null, want: ArrayLike<number> | null, tol: number): void {
  expect(got === null, `${what}: present`).toBe(want === null);
  if (!got || !want) return;
  const e = relErr(got, want);
  if (!(e < tol)) {
    let bad = 0;
    for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-4 * (1 + Math.abs(want[i])))) { bad = i; break; }
    expect.fail(`${what}: relative error ${e} (element ${bad}: got ${got[bad]}, want ${want[bad]})`);
  }
}

/**
 * One convBlock call: fused (given config) vs the reference composition vs the webgpu
 * composition. `ties`: inputs in {-1, 0, 1}, so every sum is an exact integer on both
 * backends and pooling windows tie often (the first position must win).
 */
async function checkForward(
  be: WebGPUBackend,
  c: Geo,
  bias: boolean,
  combo: Combo,
  cfg: ConvTileConfig | ConvWinogradConfig | undefined,
  seed: string,
  ties = false,
): Promise<void> {
  const what = `convBlock ${describeGeo(c)}${bias ? ' +bias' : ''} ${comboKey(combo)} config ${cfgKey(cfg)}${ties ? ' ties' : ''} (seed ${seed})`;
  const r = rng(`${seed}/${what}`);
  const { g } = c;
  const made: Tensor[] = [];
  const both = (shape: number[]) => {
    const v = randomValues(shape.reduce((a, b) => a * b, 1), r, ties ? -1.5 : -1, ties ? 1.5 : 1);
    const p = pair(be, ties ? v.map(Math.round) : v, shape);
    made.push(...p);
    return p;
  };
  const [gx, rx] = both(c.xShape);
  const [gw, rw] = both(c.wShape);
  const [gb, rb] = bias ? both([g.Co]) : [null, null];
  const aShape = combo.pool ? [g.N, Math.floor(g.Ho / 2), Math.floor(g.Wo / 2), g.Co] : [g.N, g.Ho, g.Wo, g.Co];
  const [gadd, radd] = combo.add ? both(aShape) : [null, null];
  const opts = (add: Tensor | null): ConvBlockOptions => ({ ...c.opts, pool: combo.pool, relu: combo.relu, residual: combo.residual, add });
  try {
    const got = convOps.convBlock(be, gx, gw, gb, opts(gadd), cfg);
    // A Winograd block is compared with a composition whose conv2d runs the same Winograd
    // config (through a tuner that knows only it): the same arithmetic, as for the register kernels.
    const saved = be.tuner;
    if (cfg?.algo === 'winograd') be.tuner = { configFor: () => cfg } as unknown as Tuner;
    let comp: ReturnType<typeof composeConvBlock>;
    try {
      comp = composeConvBlock(be, gx, gw, gb, opts(gadd));
    } finally {
      be.tuner = saved;
    }
    const want = composeConvBlock(ref, rx, rw, rb, opts(radd));
    const outs = (o: typeof got) => [o.a, o.argmax, o.h, o.r];
    made.push(...([...outs(got), ...outs(comp), ...outs(want)].filter((t) => t) as Tensor[]));
    expect(got.a.shape, what).toEqual(aShape);
    expect(got.argmax?.dtype, what).toBe(combo.pool ? 'u32' : undefined);
    const [ga, garg, gh, gr] = await readAll(be, outs(got));
    const [ca, carg, ch, cr] = await readAll(be, outs(comp));
    const [wa, warg, wh, wr] = await readAll(be, outs(want));
    expectClose(`${what}: a vs reference`, ga, wa, TOL);
    expectClose(`${what}: h vs reference`, gh, wh, TOL);
    expectClose(`${what}: a vs webgpu composition`, ga, ca, TIGHT);
    expectClose(`${what}: h vs webgpu composition`, gh, ch, TIGHT);
    expectClose(`${what}: r vs webgpu composition`, gr, cr, TIGHT);
    // The same float32 values reach the same comparisons: the winners agree exactly.
    expect(garg === null ? null : Array.from(garg), `${what}: argmax vs webgpu composition`).toEqual(carg === null ? null : Array.from(carg));
    if (wr && gr && wa) {
      // r jumps where a crosses 0; against float64, compare where float32 rounding cannot flip a's sign.
      const keep = Array.from(wa, (_, i) => i).filter((i) => ties || Math.abs(wa[i]) > 1e-4);
      expect(keep.length, what).toBeGreaterThan(wa.length / 2);
      expectClose(`${what}: r vs reference`, keep.map((i) => gr[i]), keep.map((i) => wr[i]), TOL);
    }
    if (warg && garg) {
      // Likewise the pool's winner where the window's best two differ by more than rounding.
      const conv = ref.conv2d(rx, rw, rb, c.opts);
      made.push(conv);
      const y = await ref.read(conv);
      const Hp = aShape[1];
      const Wp = aShape[2];
      let checked = 0;
      for (let i = 0; i < warg.length; i++) {
        const ch = i % g.Co;
        const px = Math.floor(i / g.Co) % Wp;
        const py = Math.floor(i / (g.Co * Wp)) % Hp;
        const n = Math.floor(i / (g.Co * Wp * Hp));
        const vals = [0, 1, 2, 3].map((q) => y[((n * g.Ho + 2 * py + (q >> 1)) * g.Wo + 2 * px + (q & 1)) * g.Co + ch]).sort((p, q) => q - p);
        if (!ties && vals[0] - vals[1] < 1e-4) continue;
        checked++;
        if (garg[i] !== warg[i]) expect.fail(`${what}: argmax ${i}: got ${garg[i]}, want ${warg[i]}`);
      }
      expect(checked, what).toBeGreaterThan(warg.length / 2);
    }
  } finally {
    for (const t of made) t.dispose();
  }
}

type GateSet = { argmax: boolean; reluAt: boolean };
const GATES: GateSet[] = [
  { argmax: false, reluAt: false },
  { argmax: true, reluAt: false },
  { argmax: false, reluAt: true },
  { argmax: true, reluAt: true },
];

function gateKey(s: GateSet): string {
  return [s.argmax ? 'argmax' : '', s.reluAt ? 'reluAt' : ''].filter(Boolean).join('+') || 'none';
}

/** One convBlockBackwardData call: fused vs the reference composition vs the webgpu composition. */
async function checkBackward(
  be: WebGPUBackend,
  c: Geo,
  gates: GateSet,
  cfg: ConvTileConfig | SharedTileConfig | undefined,
  seed: string,
): Promise<void> {
  const what = `convBlockBackwardData ${describeGeo(c)} gates ${gateKey(gates)} config ${cfgKey(cfg)} (seed ${seed})`;
  const r = rng(`${seed}/${what}`);
  const { g } = c;
  const made: Tensor[] = [];
  const dyShape = gates.argmax ? [g.N, Math.floor(g.Ho / 2), Math.floor(g.Wo / 2), g.Co] : [g.N, g.Ho, g.Wo, g.Co];
  const n = dyShape.reduce((a, b) => a * b, 1);
  const both = (values: ArrayLike<number>, shape: number[], dtype: 'f32' | 'u32' = 'f32') => {
    const p = pair(be, values, shape, dtype);
    made.push(...p);
    return p;
  };
  const [gdy, rdy] = both(randomValues(n, r), dyShape);
  const [gw, rw] = both(randomValues(c.wShape.reduce((a, b) => a * b, 1), r), c.wShape);
  const [garg, rarg] = gates.argmax ? both(Array.from({ length: n }, () => Math.floor(r() * 4)), dyShape, 'u32') : [null, null];
  const [grelu, rrelu] = gates.reluAt ? both(randomValues(n, r), dyShape) : [null, null];
  const gg: ConvBlockGates = { ...c.opts, argmax: garg, reluAt: grelu };
  try {
    const got = convOps.convBlockBackwardData(be, gdy, gw, c.xShape, gg, cfg);
    const comp = composeConvBlockBackwardData(be, gdy, gw, c.xShape, gg);
    const want = composeConvBlockBackwardData(ref, rdy, rw, c.xShape, { ...c.opts, argmax: rarg, reluAt: rrelu });
    made.push(got, comp, want);
    expect(got.shape, what).toEqual(c.xShape);
    const [gv, cv, wv] = await readAll(be, [got, comp, want]);
    expectClose(`${what}: vs reference`, gv, wv, TOL);
    // The shared-tile kernel sums in another order than the register default the composition runs.
    expectClose(`${what}: vs webgpu composition`, gv, cv, cfg?.algo === 'shared' ? TOL : TIGHT);
  } finally {
    for (const t of made) t.dispose();
  }
}

describe('fused conv-block kernel generators', () => {
  it('choose the plain op’s config when the fused kernel can run it, else a register default with rows for the pool', () => {
    const g = geo(2, 9, 7, 8, 12, 3, 1, 1).g;
    const pool = { pool: true, add: false, relu: true, residual: false };
    const flat = { pool: false, add: false, relu: true, residual: false };
    const r8 = tile(8, 2, true, true, 4);
    const r2 = tile(2, 1, false, false, 8);
    expect(convBlockConfig(g, pool, r8)).toEqual(r8);
    expect(convBlockConfig(g, flat, r2)).toEqual(r2);
    expect(convBlockConfig(g, pool, r2).rows % 4).toBe(0);
    expect(convBlockConfig(g, pool, SHARED[0]).algo).toBe('register');
    expect(convBlockConfig(g, flat, { algo: 'matmul', matmul: { rows: 4, cols: 1, vec4: false, wgX: 8, wgY: 8, kUnroll: 1 } as never }).algo).toBe('register');
    // A one-pixel batch still gets a whole window per invocation.
    const tiny = geo(1, 2, 2, 3, 5, 1, 1, 0).g;
    expect(convBlockConfig(tiny, pool).rows).toBe(4);
    expect(() => convBlockKernel(g, true, pool, r2)).toThrow(/rows per invocation % 4/);
  });

  it('declare only the bindings the options use, and leave the plain backward-data kernel as it was', () => {
    const g = geo(2, 9, 7, 8, 12, 3, 1, 1).g;
    const cfg = tile(4, 1, true, false, 4);
    const count = (e: { pool: boolean; add: boolean; relu: boolean; residual: boolean }, bias: boolean) => convBlockKernel(g, bias, e, cfg).bindings.length;
    expect(count({ pool: false, add: false, relu: false, residual: false }, false)).toBe(3);
    expect(count({ pool: true, add: false, relu: false, residual: false }, true)).toBe(5);
    expect(count({ pool: true, add: true, relu: true, residual: true }, true)).toBe(8);
    const spec = convBlockKernel(g, false, { pool: false, add: true, relu: true, residual: false }, cfg);
    expect(spec.wgsl).toMatch(/addend/);
    expect(spec.wgsl).not.toMatch(/outArg|outR/);
    const plain = convBackwardDataKernels(g, cfg).gemm;
    expect(convBlockBackwardDataKernels(g, { argmax: false, reluAt: false }, cfg).gemm.wgsl).toBe(plain.wgsl);
    const gated = convBlockBackwardDataKernels(g, { argmax: true, reluAt: true }, cfg).gemm;
    expect(gated.bindings).toEqual(['read', 'read', 'read', 'read', 'rw']);
    expect(convBlockBackwardDataKernels(g, { argmax: false, reluAt: true }, SHARED[0]).gemm.bindings).toEqual(['read', 'read', 'read', 'rw']);
  });
});

describe('fused conv-block kernels on webgpu', () => {
  const fwdCases = () => [
    // Odd conv output (the pool drops a row and a column), Co % 4 != 0, Ci = 3.
    { c: geo(2, 9, 7, 3, 7, 3, 1, 1), bias: true },
    // 1x1, vec4 columns and kVec possible, odd 7x9 output.
    { c: geo(2, 7, 9, 8, 12, 1, 1, 0), bias: false },
    // Stride 2, 6x5 output.
    { c: geo(3, 11, 9, 4, 8, 3, 2, 1), bias: true },
  ];

  it('convBlock: every option combination, register configs, vs reference and webgpu composition', async () => {
    const be = await gpu();
    const seed = freshSeed();
    // Shader compilation dominates: each combination runs once, the cases and configs dealt round-robin.
    const cases = fwdCases();
    for (const [k, combo] of COMBOS.entries()) {
      const { c, bias } = cases[k % cases.length];
      const ok = REGISTER.filter((cfg) => forwardOk(c.g, cfg, !!combo.pool));
      await checkForward(be, c, bias, combo, ok[k % ok.length], seed);
    }
    // Exact ties in the pool windows (the same kernel as the last combination: no new compile).
    const last = COMBOS.length - 1;
    const { c, bias } = cases[last % cases.length];
    const ok = REGISTER.filter((cfg) => forwardOk(c.g, cfg, true));
    await checkForward(be, c, bias, COMBOS[last], ok[last % ok.length], seed, true);
  }, 60_000);

  it('convBlockBackwardData: every gate combination, register and shared configs', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const cases = [
      // Stride 2, 3x3, odd 5x5 conv output, Ci % 4 != 0 (no vec4 columns), kVec possible.
      geo(2, 9, 10, 5, 8, 3, 2, 1),
      // 1x1 with odd 7x7 output, vec4 and kVec possible.
      geo(2, 7, 7, 8, 4, 1, 1, 0),
      // 3x3 unpadded, 8x7 output, Co % 4 != 0.
      geo(1, 10, 9, 4, 6, 3, 1, 0),
    ];
    // Both gates on every case, each other gate set on one; configs dealt round-robin.
    let k = 0;
    for (const [i, c] of cases.entries()) {
      const ok = REGISTER.filter((cfg) => backwardOk(c.g, cfg));
      for (const gates of [GATES[i], GATES[3]]) await checkBackward(be, c, gates, ok[k++ % ok.length], seed);
    }
    await checkBackward(be, cases[0], GATES[3], SHARED[0], seed);
    await checkBackward(be, cases[1], GATES[1], SHARED[1], seed);
    await checkBackward(be, cases[2], GATES[2], SHARED[0], seed);
  }, 60_000);

  it('subgroup-shared tiles: convBlock (every pool/ReLU/residual path) and gated convBlockBackwardData', async () => {
    const be = await gpu();
    const S = be.subgroupTiles;
    if (S === null) expect.fail(`this test needs a device with the subgroups feature and one fixed subgroup size; ${be.gpu.info.name} has none`);
    const seed = freshSeed();
    const sg = (rows: number, cols: number, vec4: boolean, kVec: boolean, wgX: number): ConvTileConfig => ({ algo: 'register', rows, cols, vec4, kVec, wgX, wgY: 1, kUnroll: 1, subgroup: S });
    // Rows below, at and above the subgroup size (16: two loads per step), pool-capable rows % 4.
    const tiles = [sg(4, 1, false, false, S), sg(8, 2, true, false, 2 * S), sg(16, 1, true, true, S), sg(2, 2, false, true, S)];
    const cases = [
      { c: geo(2, 9, 7, 3, 7, 3, 1, 1), bias: true },
      { c: geo(3, 11, 9, 4, 8, 3, 2, 1), bias: true },
      { c: geo(2, 7, 9, 8, 12, 1, 1, 0), bias: false },
    ];
    for (const [k, combo] of COMBOS.entries()) {
      const { c, bias } = cases[k % cases.length];
      const ok = tiles.filter((cfg) => forwardOk(c.g, cfg, !!combo.pool));
      await checkForward(be, c, bias, combo, ok[k % ok.length], seed, k === COMBOS.length - 1);
    }
    const back = [geo(2, 9, 10, 5, 8, 3, 2, 1), geo(2, 7, 7, 8, 4, 1, 1, 0), geo(1, 10, 9, 4, 6, 3, 1, 0)];
    let k = 0;
    for (const [i, c] of back.entries()) {
      const ok = tiles.filter((cfg) => backwardOk(c.g, cfg));
      for (const gates of [GATES[i], GATES[3]]) await checkBackward(be, c, gates, ok[k++ % ok.length], seed);
    }
  }, 90_000);

  it('Winograd blocks: every option combination, the epilogue in the output transform, vs reference and the same Winograd conv composed', async () => {
    const be = await gpu();
    const seed = freshSeed();
    const cases = [
      // Odd 9x7 output (the pool drops a row and a column), Co % 4 != 0, Ci = 3.
      { c: geo(2, 9, 7, 3, 7, 3, 1, 1), bias: true },
      // Unpadded, 8x7 output, vec4 columns (Co = 12).
      { c: geo(1, 10, 9, 4, 12, 3, 1, 0), bias: false },
      // Chunked: 2 tiles per chunk on a 6x6 output, vec4.
      { c: geo(2, 6, 6, 8, 8, 3, 1, 1), bias: true, chunk: 2 },
    ];
    const S = be.subgroupTiles ?? undefined;
    for (const [k, combo] of COMBOS.entries()) {
      const { c, bias, chunk } = cases[k % cases.length] as { c: Geo; bias: boolean; chunk?: number };
      const cfg: ConvWinogradConfig = { ...defaultWinogradConfig(winogradForward(c.g), k % 2 ? S : undefined), ...(chunk ? { chunk } : {}) };
      await checkForward(be, c, bias, combo, cfg, seed, k === COMBOS.length - 1);
    }
    // Without a config, the block runs Winograd where the plain conv2d would (its default here).
    const big = geo(1, 12, 12, 64, 32, 3, 1, 1);
    const saved = be.winogradDefaults;
    be.winogradDefaults = true;
    const ran: string[] = [];
    const dispatch = be.rt.dispatch.bind(be.rt);
    be.rt.dispatch = (spec, ...rest) => {
      ran.push(spec.name);
      dispatch(spec, ...rest);
    };
    try {
      await checkForward(be, big, true, COMBOS[COMBOS.length - 1], undefined, seed);
      expect(ran.filter((n) => n.startsWith('convBlock')).sort()).toEqual(S ? ['convBlock.gemm', 'convBlock.winogradFilter', 'convBlock.winogradInput', 'convBlock.winogradOutput'] : ['convBlock']);
    } finally {
      be.winogradDefaults = saved;
      delete (be.rt as { dispatch?: unknown }).dispatch;
    }
  }, 90_000);

  it('runs through the backend methods with the configs it chooses', async () => {
    const be = await gpu();
    const seed = freshSeed();
    expect(be.fuse).toBe(true);
    const c = geo(2, 9, 7, 4, 8, 3, 1, 1);
    const r = rng(seed);
    const x = be.fromArray(randomValues(2 * 9 * 7 * 4, r), c.xShape);
    const w = be.fromArray(randomValues(3 * 3 * 4 * 8, r), c.wShape);
    const b = be.fromArray(randomValues(8, r), [8]);
    const made: Tensor[] = [x, w, b];
    try {
      const opts: ConvBlockOptions = { ...c.opts, pool: true, relu: true, residual: true };
      const got = be.convBlock(x, w, b, opts);
      const comp = composeConvBlock(be, x, w, b, opts);
      made.push(...([got.a, got.argmax, got.h, got.r, comp.a, comp.argmax, comp.h, comp.r] as Tensor[]));
      const [ga, gr, ca, cr] = await readAll(be, [got.a, got.r, comp.a, comp.r]);
      expectClose(`backend convBlock a (seed ${seed})`, ga, ca, TIGHT);
      expectClose(`backend convBlock r (seed ${seed})`, gr, cr, TIGHT);
      const gates: ConvBlockGates = { ...c.opts, argmax: got.argmax, reluAt: got.a };
      const dxc = composeConvBlockBackwardData(be, got.r!, w, c.xShape, gates);
      made.push(dxc);
      // The gates in the loads (the GPU default; a CPU adapter runs the composition itself).
      be.gatedLoads = true;
      const dx = be.convBlockBackwardData(got.r!, w, c.xShape, gates);
      made.push(dx);
      const [gd, cd] = await readAll(be, [dx, dxc]);
      expectClose(`backend convBlockBackwardData, gated loads (seed ${seed})`, gd, cd, TIGHT);
    } finally {
      be.gatedLoads = !be.gpu.info.isSoftware;
      for (const t of made) t.dispose();
    }
  }, 30_000);

  it('rejects bad add, argmax and reluAt shapes with a ShapeError', async () => {
    const be = await gpu();
    const c = geo(2, 9, 7, 4, 8, 3, 1, 1);
    const x = be.zeros(c.xShape);
    const w = be.zeros(c.wShape);
    const conv = [2, 9, 7, 8];
    const pooled = [2, 4, 3, 8];
    const made: Tensor[] = [x, w];
    const t = (shape: number[], dtype: 'f32' | 'u32' = 'f32') => {
      const v = be.fromArray(new Array(shape.reduce((a, b) => a * b, 1)).fill(0), shape, dtype);
      made.push(v);
      return v;
    };
    try {
      expect(() => be.convBlock(x, w, null, { ...c.opts, pool: true, relu: true, add: t(conv) })).toThrow(ShapeError);
      expect(() => be.convBlock(x, w, null, { ...c.opts, relu: true, add: t(pooled) })).toThrow(/add must be \[2, ?9, ?7, ?8\]/);
      expect(() => be.convBlock(x, w, null, { ...c.opts, add: t(conv) })).toThrow(ShapeError);
      const dy = t(pooled);
      expect(() => be.convBlockBackwardData(dy, w, c.xShape, { ...c.opts, argmax: t([2, 4, 4, 8], 'u32') })).toThrow(ShapeError);
      expect(() => be.convBlockBackwardData(dy, w, c.xShape, { ...c.opts, argmax: t(pooled) })).toThrow(ShapeError);
      expect(() => be.convBlockBackwardData(dy, w, c.xShape, { ...c.opts, argmax: t(pooled, 'u32'), reluAt: t(conv) })).toThrow(/reluAt must be/);
      expect(() => be.convBlockBackwardData(t(conv), w, c.xShape, { ...c.opts, argmax: t(pooled, 'u32') })).toThrow(ShapeError);
    } finally {
      for (const v of made) v.dispose();
    }
  });
});
