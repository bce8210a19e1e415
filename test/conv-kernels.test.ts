// The conv kernels: generators as strings (no GPU), then the webgpu ops (outputs poisoned
// with NaN) against the float64 reference backend on fresh random awkward geometries:
// every config of small config spaces, a covering sample of the big ones (every value of
// every config field at least once per run), the default configs, and dispatches large
// enough to need the 2-D workgroup grid.
import { describe, expect, it } from 'vitest';
import { ConvGeometry, ShapeError, WebGPUBackend, convGeometry } from '../engine/index.js';
import * as convOps from '../engine/webgpu/ops/conv.js';
import { ConvTileConfig, tileConfigKey } from '../kernels/conv/common.js';
import {
  checkConvForwardConfig,
  convForwardConfigSpace,
  convForwardKernel,
  defaultConvForwardConfig,
} from '../kernels/conv/forward.js';
import {
  checkConvBackwardDataConfig,
  convBackwardDataConfigSpace,
  backwardDataPhases,
  convBackwardDataKernels,
  defaultConvBackwardDataConfig,
} from '../kernels/conv/backwardData.js';
import {
  ConvBackwardFilterConfig,
  backwardFilterConfigKey,
  checkConvBackwardFilterConfig,
  convBackwardFilterConfigSpace,
  convBackwardFilterKernels,
  defaultConvBackwardFilterConfig,
} from '../kernels/conv/backwardFilter.js';
import { MAX_GROUPS_PER_DIM, linearGroupIndex } from '../kernels/spec.js';
import { ConvCase, describeConvCase, makeConvCase, pick, freshSeed, gpu, rng, checkConvOp, shuffled } from './helpers.js';

const TOL = 1e-5;
type Op = 'forward' | 'backwardData' | 'backwardFilter';
type AnyConfig = ConvTileConfig | ConvBackwardFilterConfig;
const OPS: Op[] = ['forward', 'backwardData', 'backwardFilter'];




/** A random awkward geometry; channel counts may be forced. */
function randomCase(r: () => number, channels: { Ci?: number; Co?: number } = {}): ConvCase {
  for (;;) {
    const K = pick(r, [1, 3]);
    const H = pick(r, [5, 7, 9]);
    const W = pick(r, [5, 7, 9]);
    try {
      return makeConvCase(
        pick(r, [1, 2]),
        H,
        W,
        channels.Ci ?? pick(r, [1, 3, 5, 16]),
        channels.Co ?? pick(r, [1, 4, 7, 16]),
        K,
        pick(r, [1, 2] as const),
        pick(r, [0, 1] as const),
        r() < 0.5,
      );
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
    }
  }
}

/** `subgroup`: the device's subgroup size, which adds the subgroup-shared tiles. */
function space(op: Op, g: ConvGeometry, subgroup?: number): AnyConfig[] {
  if (op === 'forward') return convForwardConfigSpace(g, subgroup);
  if (op === 'backwardData') return convBackwardDataConfigSpace(g, subgroup);
  return convBackwardFilterConfigSpace(g, subgroup);
}

function defaultConfig(op: Op, g: ConvGeometry, subgroup?: number): AnyConfig {
  if (op === 'forward') return defaultConvForwardConfig(g, subgroup);
  if (op === 'backwardData') return defaultConvBackwardDataConfig(g, subgroup);
  return defaultConvBackwardFilterConfig(g, subgroup);
}

function configKey(c: AnyConfig): string {
  return 'splitK' in c ? backwardFilterConfigKey(c) : tileConfigKey(c);
}

function sameConfig(a: AnyConfig, b: AnyConfig): boolean {
  return configKey(a) === configKey(b);
}

/** Every WGSL string an op would dispatch for this geometry and config. */
function kernelStrings(op: Op, c: ConvCase, cfg: AnyConfig): string[] {
  if (op === 'forward') return [convForwardKernel(c.g, c.bias, cfg).wgsl];
  if (op === 'backwardData') {
    const plan = convBackwardDataKernels(c.g, cfg);
    return [plan.transpose.wgsl, plan.gemm.wgsl];
  }
  const plan = convBackwardFilterKernels(c.g, cfg as ConvBackwardFilterConfig);
  return [plan.main.wgsl, ...(plan.reduce ? [plan.reduce.wgsl] : [])];
}


/** Runs one op with one config on the GPU and on the reference; fails with the relative error. */
function check(be: WebGPUBackend, op: Op, c: ConvCase, cfg: AnyConfig | undefined, seed: string): Promise<void> {
  return checkConvOp(be, op, c, cfg, cfg ? configKey(cfg) : 'default', seed, TOL);
}

/**
 * `count` configs in which every value of every config field occurs at least once: field
 * values are dealt round-robin in shuffled orders. Each dealt config is paired with a
 * random awkward geometry whose space contains it (channel counts chosen so the vec4
 * options and the workgroup width are allowed), which also checks the space.
 */
function coveringSample(op: Op, r: () => number): { c: ConvCase; cfg: AnyConfig }[] {
  const values: Record<string, unknown[]> = {
    rows: [1, 2, 4, 8],
    cols: [1, 2, 4],
    vec4: [true, false],
    kVec: [true, false],
    wgX: [1, 2, 4, 8, 16, 32, 64],
    kUnroll: [1, 2],
    ...(op === 'backwardFilter' ? { splitK: [1, 2, 4, 8, 16, 64] } : {}),
  };
  const count = Math.max(...Object.values(values).map((v) => v.length));
  const deal = (): ConvBackwardFilterConfig[] => {
    const dealt = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, shuffled(v, r)]));
    const wants = Array.from({ length: count }, (_, i) => {
      const want = Object.fromEntries(Object.entries(dealt).map(([k, v]) => [k, v[i % v.length]])) as unknown as ConvBackwardFilterConfig;
      want.wgY = 64 / want.wgX;
      want.algo = 'register';
      if (op !== 'backwardFilter') delete (want as Partial<ConvBackwardFilterConfig>).splitK;
      return want;
    });
    if (op === 'backwardFilter') {
      // There vec4 loads of x need rows % 4 == 0: repair, keeping one kVec pick.
      for (const w of wants) if (w.rows % 4 !== 0) w.kVec = false;
      if (!wants.some((w) => w.kVec)) wants.find((w) => w.rows % 4 === 0)!.kVec = true;
    }
    return wants;
  };
  // Shader compile time grows with the unrolled body (rows x cols x unroll x 4 with kVec)
  // and dominates this test: of many random deals, keep the one with the smallest bodies.
  const body = (w: ConvTileConfig) => w.rows * w.cols * w.kUnroll * (w.kVec ? 4 : 1);
  let wants = deal();
  for (let t = 0; t < 300; t++) {
    const other = deal();
    const sum = (ws: ConvTileConfig[]) => ws.reduce((a, w) => a + body(w), 0);
    if (sum(other) < sum(wants)) wants = other;
  }
  const out: { c: ConvCase; cfg: AnyConfig }[] = [];
  for (const want of wants) {
    // The fewest output channels whose space holds this tile width, plus a random 0 or 1.
    const units = Math.max(want.cols, Math.floor((want.wgX * want.cols) / 2) + 1) + Math.floor(r() * 2);
    const colsN = want.vec4 ? 4 * units : units;
    for (let tries = 0; ; tries++) {
      if (tries > 500) throw new Error(`no geometry found for ${op} config ${configKey(want)}`);
      const kCh = want.kVec ? pick(r, [4, 8, 12, 16]) : pick(r, [1, 3, 5, 8, 16]);
      const c =
        op === 'backwardData' ? randomCase(r, { Ci: colsN, Co: kCh }) : randomCase(r, { Ci: kCh, Co: colsN });
      if (op === 'backwardFilter' && want.splitK > 1) {
        // Taller images so N*Ho reaches the split.
        const big = makeConvCase(c.g.N, Math.max(9, want.splitK + 2) + 2 * Math.floor(r() * 3), c.g.W, c.g.Ci, c.g.Co, c.g.KH, 1, c.opts.pad, false);
        if (space(op, big.g).some((s) => sameConfig(s, want))) {
          out.push({ c: big, cfg: want });
          break;
        }
      }
      if (space(op, c.g).some((s) => sameConfig(s, want))) {
        out.push({ c, cfg: want });
        break;
      }
    }
  }
  return out;
}

describe('conv generators as strings', () => {
  const r = rng(freshSeed());
  const cases = [makeConvCase(2, 7, 5, 3, 7, 3, 2, 1, true), makeConvCase(1, 9, 9, 16, 16, 3, 1, 1, false), makeConvCase(1, 5, 7, 8, 4, 1, 2, 0, true)];

  it('are pure and deterministic, bake the shapes in, and take no uniforms', () => {
    for (const op of OPS)
      for (const c of cases) {
        const cfg = Object.freeze({ ...pick(r, space(op, c.g)) });
        const a = kernelStrings(op, c, cfg);
        const b = kernelStrings(op, c, cfg);
        expect(a).toEqual(b);
        expect(a.join('\n')).not.toContain('var<uniform>');
        // A different shape gives different WGSL (the pipeline cache is keyed by it).
        const other = makeConvCase(c.g.N, c.g.H + 2, c.g.W, c.g.Ci, c.g.Co, c.g.KH, c.g.stride as 1 | 2, c.g.pad as 0 | 1, c.bias);
        expect(kernelStrings(op, other, cfg).join('\n')).not.toEqual(a.join('\n'));
      }
  });

  it('every config in each space generates and passes its check; the default is in the space', () => {
    for (const op of OPS)
      for (const c of cases) {
        const sp = space(op, c.g);
        expect(sp.length).toBeGreaterThan(0);
        expect(new Set(sp.map(configKey)).size).toBe(sp.length);
        const def = defaultConfig(op, c.g);
        expect(sp.some((s) => sameConfig(s, def)), `${op} ${describeConvCase(c)} default ${configKey(def)}`).toBe(true);
        for (const cfg of sp) {
          expect(kernelStrings(op, c, cfg).join('\n')).toContain(configKey(cfg));
          expect(cfg.wgX * cfg.wgY).toBeLessThanOrEqual(256);
        }
      }
  });

  it('vector widths appear only where the channel counts allow them, and bad configs are refused', () => {
    const odd = makeConvCase(1, 5, 5, 3, 7, 3, 1, 1, false);
    for (const op of OPS) for (const cfg of space(op, odd.g)) expect(cfg.vec4 || cfg.kVec).toBe(false);
    const base = defaultConvForwardConfig(odd.g);
    expect(() => checkConvForwardConfig(odd.g, { ...base, vec4: true })).toThrow(/Co % 4/);
    expect(() => checkConvForwardConfig(odd.g, { ...base, kVec: true })).toThrow(/Ci % 4/);
    expect(() => checkConvForwardConfig(odd.g, { ...base, rows: 0 })).toThrow(/rows/);
    expect(() => checkConvForwardConfig(odd.g, { ...base, wgX: 32, wgY: 16 })).toThrow(/256/);
    expect(() => checkConvBackwardDataConfig(odd.g, { ...base, vec4: true })).toThrow(/Ci % 4/);
    const bf = defaultConvBackwardFilterConfig(odd.g);
    expect(() => checkConvBackwardFilterConfig(odd.g, { ...bf, kVec: true })).toThrow(/Ci % 4/);
    expect(() => checkConvBackwardFilterConfig(odd.g, { ...bf, splitK: odd.g.N * odd.g.Ho + 1 })).toThrow(/splitK/);
    const four = makeConvCase(1, 9, 9, 8, 8, 3, 1, 1, false);
    expect(convForwardConfigSpace(four.g).some((c) => c.vec4 && c.kVec)).toBe(true);
    expect(convBackwardFilterConfigSpace(four.g).some((c) => c.kVec && c.rows % 4 !== 0)).toBe(false);
  });

  it('backward-filter splits its reduction until the adapter’s parallelism is reached, within 64 MB of scratch', () => {
    // VGG10's first layer at batch 64: a 27 x 64 filter over 3.2M pixels.
    const l1 = convGeometry('t', [64, 224, 224, 3], [3, 3, 3, 64], { pad: 1 });
    const cpu = defaultConvBackwardFilterConfig(l1);
    const gpuDefault = defaultConvBackwardFilterConfig(l1, undefined, 65536);
    expect(cpu.splitK).toBeLessThanOrEqual(8);
    expect(gpuDefault.splitK).toBe(256);
    expect(convBackwardFilterConfigSpace(l1).some((c) => sameConfig(c, gpuDefault))).toBe(true);
    // A 512 -> 512 filter (2.4M floats) may split only as far as the scratch allows.
    const big = convGeometry('t', [64, 28, 28, 512], [3, 3, 512, 512], { pad: 1 });
    const split = defaultConvBackwardFilterConfig(big, undefined, 1 << 30).splitK;
    expect(split * 9 * 512 * 512).toBeLessThanOrEqual(1 << 24);
    expect(split * 2 * 9 * 512 * 512).toBeGreaterThan(1 << 24);
    expect(convBackwardFilterConfigSpace(big).every((c) => c.splitK === 1 || c.splitK * 9 * 512 * 512 <= 1 << 24)).toBe(true);
  });

  it('subgroup-shared tiles: in the spaces only with a subgroup size, well formed, and refused where they cannot run', () => {
    const c = makeConvCase(2, 9, 7, 64, 64, 3, 1, 1, true);
    // Too few column units to fill a subgroup: the default stays the plain tile.
    const narrow = makeConvCase(2, 9, 7, 8, 12, 3, 1, 1, true);
    for (const op of OPS) {
      expect(defaultConfig(op, narrow.g, 8).subgroup).toBeUndefined();
      expect(space(op, c.g).some((t) => t.subgroup !== undefined)).toBe(false);
      const sg = space(op, c.g, 8).filter((t) => t.subgroup !== undefined);
      expect(sg.length).toBeGreaterThan(0);
      for (const t of sg) {
        expect(t.subgroup).toBe(8);
        expect(t.wgY).toBe(1);
        expect(t.wgX % 8).toBe(0);
      }
      expect(new Set(space(op, c.g, 8).map(configKey)).size).toBe(space(op, c.g, 8).length);
      const def = defaultConfig(op, c.g, 8);
      expect(def.subgroup).toBe(8);
      expect(space(op, c.g, 8).some((t) => sameConfig(t, def))).toBe(true);
    }
    // 16 rows over subgroups of 8: two activation loads per step, each broadcast 8 times.
    const r16: ConvTileConfig = { algo: 'register', rows: 16, cols: 1, vec4: true, kVec: false, wgX: 8, wgY: 1, kUnroll: 1, subgroup: 8 };
    const wgsl = convForwardKernel(c.g, true, r16).wgsl;
    expect(wgsl.startsWith('enable subgroups;')).toBe(true);
    expect(wgsl.match(/= select\(0\.0, src\[/g)?.length).toBe(2);
    expect(wgsl.match(/subgroupBroadcast\(/g)?.length).toBe(16);
    expect(convForwardKernel(c.g, true, { ...r16, subgroup: undefined }).wgsl).not.toContain('subgroup');
    expect(() => checkConvForwardConfig(c.g, { ...r16, wgX: 4, wgY: 2 })).toThrow(/wgY 1/);
    expect(() => checkConvForwardConfig(c.g, { ...r16, wgX: 4 })).toThrow(/multiple of the subgroup size/);
    expect(() => checkConvBackwardDataConfig(c.g, { ...r16, subgroup: 6 })).toThrow(/power of two/);
    const bf = defaultConvBackwardFilterConfig(c.g);
    expect(() => checkConvBackwardFilterConfig(c.g, { ...bf, wgX: 8, wgY: 2, subgroup: 8 })).toThrow(/wgY 1/);
    // Backward-filter's rows are input channels: 8 of them in vec4s are two loads, one lane each.
    const bfWgsl = convBackwardFilterKernels(c.g, { ...bf, rows: 8, kVec: true, wgX: 8, wgY: 1, subgroup: 8 }).main.wgsl;
    expect(bfWgsl.match(/= x\[xp \+ ch/g)?.length).toBe(1);
    expect(bfWgsl.match(/subgroupBroadcast\(/g)?.length).toBe(2);
  });

  it('spread dispatches over 65535 workgroups on a 2-D grid the kernel folds back', () => {
    const big = makeConvCase(8, 224, 224, 64, 64, 3, 1, 1, true);
    const tiny: ConvTileConfig = { algo: 'register', rows: 1, cols: 1, vec4: false, kVec: false, wgX: 1, wgY: 1, kUnroll: 1 };
    const specs = [convForwardKernel(big.g, true, tiny), convBackwardDataKernels(big.g, tiny).gemm];
    for (const spec of specs) {
      const groups = Number(/if \(g >= (\d+)u\) \{ return; \}/.exec(spec.wgsl)?.[1]);
      expect(groups).toBe(8 * 224 * 224 * 64);
      const [x, y, z] = spec.workgroups;
      expect(x).toBeLessThanOrEqual(MAX_GROUPS_PER_DIM);
      expect(y).toBeGreaterThan(1);
      expect(z).toBe(1);
      expect(x * y).toBeGreaterThanOrEqual(groups);
      expect(spec.wgsl).toContain(`let g = ${linearGroupIndex};`);
    }
    // Backward-data with stride 2: the four phases of a 7x6 input get whole workgroups of
    // their own, 4*3, 4*3, 3*3 and 3*3 pixels (one pixel and 4 channels per workgroup here).
    const s2 = makeConvCase(1, 7, 6, 4, 4, 3, 2, 1, false);
    const wgsl = convBackwardDataKernels(s2.g, { ...tiny }).gemm.wgsl;
    expect(wgsl).toContain('if (g >= 168u) { return; }');
    expect(wgsl).toContain('let ph = select(0u, 1u, g >= 48u) + select(0u, 1u, g >= 96u) + select(0u, 1u, g >= 132u);');
    expect(backwardDataPhases(s2.g).map((p) => [p.destH, p.destW, p.nTy, p.nTx])).toEqual([
      [4, 3, 1, 1],
      [4, 3, 1, 2],
      [3, 3, 2, 1],
      [3, 3, 2, 2],
    ]);
  });
});

describe('conv kernels on webgpu against the reference', () => {
  const seed = freshSeed();

  it('every config of small spaces (Co or Ci of 1: few tiles), all three ops', async () => {
    const be = await gpu();
    const r = rng(`${seed}/small`);
    const runs: [Op, ConvCase][] = [
      ['forward', makeConvCase(pick(r, [1, 2]), pick(r, [5, 7]), pick(r, [5, 7]), 3, 1, 3, pick(r, [1, 2] as const), 1, r() < 0.5)],
      ['backwardData', makeConvCase(pick(r, [1, 2]), pick(r, [5, 7]), pick(r, [5, 7]), 1, 3, 3, 1, pick(r, [0, 1] as const), false)],
      // Ho = 1: splitK can only be 1.
      ['backwardFilter', makeConvCase(1, 3, pick(r, [5, 7]), 3, 1, 3, 1, 0, false)],
    ];
    for (const [op, c] of runs) {
      const sp = space(op, c.g);
      expect(sp.length, `${op} space for ${describeConvCase(c)}`).toBeLessThanOrEqual(8);
      for (const cfg of sp) await check(be, op, c, cfg, seed);
    }
  });

  for (const op of OPS) {
    it(`${op}: a covering sample of the config space on random awkward geometries`, async () => {
      const be = await gpu();
      const r = rng(`${seed}/${op}/cover`);
      for (const { c, cfg } of coveringSample(op, r)) await check(be, op, c, cfg, seed);
    });

    it(`${op}: default configs on random awkward geometries (1x1 and 3x3, stride 1 and 2, pad 0 and 1)`, async () => {
      const be = await gpu();
      const r = rng(`${seed}/${op}/default`);
      const fixed = [makeConvCase(2, 9, 7, 3, 7, 3, 2, 1, true), makeConvCase(1, 5, 9, 5, 4, 1, 2, 1, false)];
      for (const c of [...fixed, randomCase(r), randomCase(r)]) await check(be, op, c, undefined, seed);
    });
  }

  for (const op of OPS) {
    it(`${op}: subgroup-shared tiles, every rows / cols / width / vector value, on random awkward geometries`, async () => {
      const be = await gpu();
      const S = be.subgroupTiles;
      if (S === null) {
        expect.fail(`this test needs a device with the subgroups feature and one fixed subgroup size; ${be.gpu.info.name} reports ${be.gpu.info.subgroupMinSize}..${be.gpu.info.subgroupMaxSize} (features: ${[...be.gpu.features].join(', ')})`);
      }
      const r = rng(`${seed}/${op}/subgroup`);
      const rows = shuffled([1, 2, 4, 8, 16, 32], r);
      const cols = shuffled([1, 2, 4], r);
      const widths = shuffled([S, 2 * S, 4 * S, 8 * S].filter((w) => w <= 64), r);
      for (let i = 0; i < rows.length; i++) {
        const vec4 = i % 2 === 0;
        const tile: ConvTileConfig = { algo: 'register', rows: rows[i], cols: cols[i % cols.length], vec4, kVec: i % 3 === 1, wgX: widths[i % widths.length], wgY: 1, kUnroll: 1, subgroup: S };
        // Backward-filter: vec4 loads of x need rows % 4 == 0; a split reduction on odd rows.
        const want: AnyConfig = op === 'backwardFilter' ? { ...tile, kVec: tile.kVec && tile.rows % 4 === 0, splitK: pick(r, [1, 2]) } : tile;
        // Enough column units that the space holds this width (lanes past the edge are clamped), odd pixel counts.
        const units = Math.floor((want.wgX / 2) * want.cols) + 1 + Math.floor(r() * 2);
        const colsN = vec4 ? 4 * units : units;
        // Reduction channels; for backward-filter the rows (input channels): 20-29, past a 16-row tile.
        const kCh = op === 'backwardFilter' ? 4 * pick(r, [5, 7]) + (want.kVec ? 0 : 1) : want.kVec ? pick(r, [4, 8, 12]) : pick(r, [1, 3, 5]);
        const stride = pick(r, [1, 2] as const);
        // Two images for the tallest tiles, so that even a stride-2 phase has over 16 rows.
        const N = want.rows >= 16 ? 2 : pick(r, [1, 2]);
        const c =
          op === 'backwardData'
            ? makeConvCase(N, pick(r, [7, 9]), pick(r, [5, 6]), colsN, kCh, pick(r, [1, 3]), stride, 1, false)
            : makeConvCase(N, pick(r, [7, 9]), pick(r, [5, 6]), kCh, colsN, pick(r, [1, 3]), stride, 1, op === 'forward' && r() < 0.5);
        expect(space(op, c.g, S).some((t) => sameConfig(t, want)), `${configKey(want)} in the space of ${describeConvCase(c)}`).toBe(true);
        await check(be, op, c, want, seed);
      }
    }, 60_000);
  }

  it('refuses a subgroup-shared tile on a device without that subgroup size', async () => {
    const be = await gpu();
    const c = makeConvCase(1, 5, 5, 4, 8, 3, 1, 1, false);
    const x = be.zeros(c.xShape);
    const w = be.zeros(c.wShape);
    const dy = be.zeros([1, 5, 5, 8]);
    const cfg: ConvTileConfig = { algo: 'register', rows: 8, cols: 1, vec4: true, kVec: false, wgX: 16, wgY: 1, kUnroll: 1, subgroup: 16 };
    const saved = be.subgroupTiles;
    try {
      if (saved !== 16) expect(() => convOps.conv2d(be, x, w, null, c.opts, cfg)).toThrow(/subgroups of 16/);
      be.subgroupTiles = null;
      expect(() => convOps.conv2dBackwardData(be, dy, w, c.xShape, c.opts, { ...cfg, subgroup: 8, wgX: 8 })).toThrow(/no fixed-size subgroups/);
    } finally {
      be.subgroupTiles = saved;
      for (const t of [x, w, dy]) t.dispose();
    }
  });

  it('dispatches of more than 65535 workgroups (forward and backward-data)', async () => {
    const be = await gpu();
    const c = makeConvCase(1, 257, 257, 1, 1, 1, 1, 0, true);
    const tiny: ConvTileConfig = { algo: 'register', rows: 1, cols: 1, vec4: false, kVec: false, wgX: 1, wgY: 1, kUnroll: 1 };
    expect(convForwardKernel(c.g, true, tiny).workgroups[1]).toBeGreaterThan(1);
    await check(be, 'forward', c, tiny, seed);
    await check(be, 'backwardData', c, tiny, seed);
  });

  it('refuses bad shapes and configs before recording any GPU work', async () => {
    const be = await gpu();
    const x = be.zeros([1, 5, 5, 3]);
    const w = be.zeros([3, 3, 3, 7]);
    const bias6 = be.zeros([6]);
    const w4 = be.zeros([3, 3, 4, 7]);
    const dy3 = be.zeros([1, 3, 3, 7]);
    const dy4 = be.zeros([1, 4, 4, 7]);
    const vec4: ConvTileConfig = { ...defaultConvForwardConfig(convGeometry('t', x.shape, w.shape)), vec4: true };
    const mark = be.rt.counters.dispatches;
    expect(() => convOps.conv2d(be, x, w, bias6, { pad: 1 })).toThrow(ShapeError);
    expect(() => convOps.conv2d(be, x, w4, null)).toThrow(ShapeError);
    expect(() => convOps.conv2d(be, x, w, null, { stride: 3 as 1 })).toThrow(ShapeError);
    expect(() => convOps.conv2d(be, x, w, null, {}, vec4)).toThrow(/Co % 4/);
    expect(() => convOps.conv2dBackwardData(be, dy3, w, [1, 5, 5, 3], { pad: 1 })).toThrow(ShapeError);
    expect(() => convOps.conv2dBackwardFilter(be, x, dy4, [3, 3, 3, 7])).toThrow(ShapeError);
    expect(be.rt.counters.dispatches).toBe(mark);
    for (const t of [x, w, bias6, w4, dy3, dy4]) t.dispose();
  });
});
