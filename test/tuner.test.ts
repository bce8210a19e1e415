// The autotuner and its cache: a tuned config is checked, timed, saved and reused; a
// candidate that computes wrong values or leaves elements unwritten never wins; corrupt,
// stale and foreign caches are reported and ignored; concurrent writers lose nothing. With
// a simulated coarse or stuck GPU clock, times stay positive and finite, and a candidate
// the timer cannot measure never wins.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import {
  AdapterIdentity,
  CACHE_FORMAT,
  CacheEntry,
  ConvGeometry,
  TUNABLE_OPS,
  tunableOp,
  Tensor,
  Tuner,
  WebGPUBackend,
  adapterIdentity,
  cachePath,
  canonicalConfig,
  convGeometry,
  kernelSetHash,
  loadCache,
  saveEntries,
  tunerOptionsFromEnv,
} from '../engine/index.js';
import { KernelTimer, MAX_REPEATS, MIN_SPAN_TICKS } from '../engine/tune/timer.js';
import { freshSeed, gpu, pair, randomValues, ref, relErr, rng } from './helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nudge-tune-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A small awkward conv geometry, different each run. */
function geometry(r: () => number): ConvGeometry {
  const N = 1 + Math.floor(r() * 2);
  const H = 5 + Math.floor(r() * 6);
  const W = 4 + Math.floor(r() * 7);
  const Ci = [3, 4, 8, 12][Math.floor(r() * 4)];
  const Co = [5, 8, 12][Math.floor(r() * 3)];
  return convGeometry('conv2d', [N, H, W, Ci], [3, 3, Ci, Co], { stride: r() < 0.5 ? 1 : 2, pad: r() < 0.5 ? 0 : 1 });
}

function logs(): { lines: string[]; log: (m: string) => void } {
  const lines: string[] = [];
  return { lines, log: (m) => lines.push(m) };
}

describe('tuner', () => {
  it('tunes a conv shape, saves the winner and reuses it; the tuned op matches the reference', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const g = geometry(r);
    const be = (await gpu()) as WebGPUBackend;
    const file = join(dir, `tune-${seed}.json`);
    const { lines, log } = logs();
    const tuner = new Tuner(be, { cacheFile: file, budgetMs: 4000, reps: 3, log });
    const res = await tuner.tune('conv2d', g);
    expect(res.fromCache).toBe(false);
    expect(res.tried).toBeGreaterThanOrEqual(2);
    expect(res.rejected).toBe(0);
    expect(res.ms!).toBeLessThanOrEqual(res.defaultMs!);
    // Nothing went wrong (a winner falling back to the default after re-timing is news, not a problem).
    expect(lines.filter((l) => !l.includes('did not beat the default when re-timed'))).toEqual([]);
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    expect(saved.format).toBe(CACHE_FORMAT);
    const key = Tuner.key('conv2d', g);
    expect(saved.entries[key].kernels).toBe(kernelSetHash(TUNABLE_OPS.conv2d));
    expect(canonicalConfig(saved.entries[key].config)).toBe(canonicalConfig(res.config));

    // A second tuner (a later process) reads the winner from the file without measuring.
    const again = new Tuner(be, { cacheFile: file, log });
    const cached = await again.tune('conv2d', g);
    expect(cached.fromCache).toBe(true);
    expect(canonicalConfig(cached.config)).toBe(canonicalConfig(res.config));
    expect(canonicalConfig(again.configFor('conv2d', g) ?? null)).toBe(canonicalConfig(res.config));

    // The backend uses it, and it computes the right thing on fresh inputs.
    const xs = randomValues(g.N * g.H * g.W * g.Ci, r);
    const ws = randomValues(9 * g.Ci * g.Co, r);
    const bs = randomValues(g.Co, r);
    const [gx, rx] = pair(be, xs, [g.N, g.H, g.W, g.Ci]);
    const [gw, rw] = pair(be, ws, [3, 3, g.Ci, g.Co]);
    const [gb, rb] = pair(be, bs, [g.Co]);
    be.tuner = again;
    try {
      const opts = { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 };
      const got = await be.read(be.conv2d(gx, gw, gb, opts));
      const want = await ref.read(ref.conv2d(rx, rw, rb, opts));
      expect(relErr(got, want), `seed ${seed}`).toBeLessThan(1e-5);
    } finally {
      be.tuner = null;
    }
  });

  it('never picks a candidate that computes wrong values or leaves outputs unwritten, however fast', async () => {
    const seed = freshSeed();
    const g = geometry(rng(seed));
    const be = (await gpu()) as WebGPUBackend;
    const op = tunableOp('conv2d');
    const { candidates, run, uses } = op;
    // Two fake "configs" that are cheaper than any real kernel: zeros, and an untouched (poisoned) buffer.
    const zeros = { fake: 'zeros' };
    const unwritten = { fake: 'unwritten' };
    op.candidates = (p) => [zeros, unwritten, ...candidates(p).slice(0, 2)];
    op.uses = (c) => (c === zeros || c === unwritten ? {} : uses(c));
    op.run = (b, p, inputs, config) => {
      const gg = p as ConvGeometry;
      if (config === zeros) return b.zeros([gg.N, gg.Ho, gg.Wo, gg.Co]);
      if (config === unwritten) return b.newTensor([gg.N, gg.Ho, gg.Wo, gg.Co]);
      return run(b, p, inputs, config);
    };
    try {
      const { lines, log } = logs();
      const tuner = new Tuner(be, { cacheFile: null, budgetMs: 60_000, reps: 1, log });
      const res = await tuner.tune('conv2d', g);
      expect(res.rejected, `seed ${seed}`).toBe(2);
      expect(res.config === zeros || res.config === unwritten).toBe(false);
      expect(lines.filter((l) => l.includes('failed the probe')).length).toBe(2);
    } finally {
      op.candidates = candidates;
      op.run = run;
      op.uses = uses;
    }
  });

  it('measures each other algorithm\'s starting point even with no budget left', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const be = (await gpu()) as WebGPUBackend;
    const problem = { M: 40 + Math.floor(r() * 60), K: 9 + Math.floor(r() * 40), N: 4 * (9 + Math.floor(r() * 12)), transA: false, transB: r() < 0.5 };
    const op = tunableOp('matmul');
    const space = new Set(op.candidates(problem).map(canonicalConfig));
    const seeds = op.seeds(problem, be).filter((c) => space.has(canonicalConfig(c)));
    expect(seeds.length, 'the tiled default should be a candidate').toBeGreaterThan(0);
    const tuner = new Tuner(be, { cacheFile: null, budgetMs: 0, reps: 1, log: () => {} });
    const res = await tuner.tune('matmul', problem);
    expect(res.tried + res.rejected, `seed ${seed}`).toBe(1 + seeds.length);
    expect(res.rejected).toBe(0);
  });

  it('with autotune, an unknown shape runs the default, is tuned at the next read, then uses the winner', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const be = (await gpu()) as WebGPUBackend;
    const M = 3 + Math.floor(r() * 20);
    const K = 5 + Math.floor(r() * 30);
    const N = 4 * (1 + Math.floor(r() * 8));
    const { log } = logs();
    const tuner = new Tuner(be, { cacheFile: null, autotune: true, budgetMs: 1500, reps: 1, log });
    be.tuner = tuner;
    try {
      const [ga, ra] = pair(be, randomValues(M * K, r), [M, K]);
      const [gb, rb] = pair(be, randomValues(K * N, r), [K, N]);
      const problem = { M, K, N, transA: false, transB: false };
      expect(tuner.configFor('matmul', problem)).toBeUndefined();
      expect(tuner.hasPending).toBe(true);
      const first = await be.read(be.matmul(ga, gb));
      expect(tuner.hasPending).toBe(false);
      const want = await ref.read(ref.matmul(ra, rb));
      expect(relErr(first, want)).toBeLessThan(1e-5);
      // Tuned now: the entry exists (a winner config, or null when the default won).
      const res = await tuner.tune('matmul', problem);
      expect(res.fromCache).toBe(true);
      const second = await be.read(be.matmul(ga, gb));
      expect(relErr(second, want), `seed ${seed} config ${res.label}`).toBeLessThan(1e-5);
    } finally {
      be.tuner = null;
    }
  });
});

describe('tune cache', () => {
  const adapter: AdapterIdentity = { vendor: 'v', architecture: 'a', name: 'test adapter', description: 'drv 1.0', backend: 'vulkan' };
  const entry = (over: Partial<CacheEntry> = {}): CacheEntry => ({
    config: { rows: 4 },
    configKey: 'rows=4',
    ms: 1,
    defaultMs: 2,
    kernels: 'k',
    tried: 3,
    rejected: 0,
    tunedAt: new Date().toISOString(),
    ...over,
  });

  it('never stores a zero or non-finite time, and drops such entries from a file', () => {
    const file = join(dir, `times-${freshSeed()}.json`);
    for (const bad of [{ ms: 0 }, { defaultMs: 0 }, { ms: NaN }, { defaultMs: Infinity }, { ms: -1 }]) {
      expect(() => saveEntries(file, adapter, { a: entry(bad) }), JSON.stringify(bad)).toThrow(/not positive and finite/);
    }
    expect(existsSync(file)).toBe(false);
    saveEntries(file, adapter, { good: entry() });
    // A file written by a nudge that stored what a coarse timer read (0 ms), or by hand.
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    doc.entries.zero = entry({ ms: 0 });
    doc.entries.zeroDefault = entry({ defaultMs: 0 });
    doc.entries.negative = entry({ ms: -0.5 });
    writeFileSync(file, JSON.stringify(doc));
    const { entries, problems } = loadCache(file, adapter);
    expect(Object.keys(entries)).toEqual(['good']);
    expect(problems.length).toBe(3);
    for (const k of ['zero', 'zeroDefault', 'negative']) expect(problems.join('\n')).toContain(`'${k}' is malformed`);
  });

  it('puts one file per adapter in $XDG_CACHE_HOME/nudge/tune', () => {
    const p = cachePath(adapter, join(dir, 'x'));
    expect(p.startsWith(join(dir, 'x'))).toBe(true);
    expect(cachePath({ ...adapter, description: 'drv 2.0' }, join(dir, 'x'))).not.toBe(p);
    expect(tunerOptionsFromEnv({}, { NUDGE_TUNE_CACHE: 'off' }).cacheFile).toBeNull();
    expect(tunerOptionsFromEnv({}, { NUDGE_AUTOTUNE: '1' }).autotune).toBe(true);
  });

  it('reports a corrupt file, ignores it, and rewrites it valid on save', () => {
    const file = join(dir, `corrupt-${freshSeed()}.json`);
    writeFileSync(file, '{"format": "nudge-tune-cache", "entries": {');
    const first = loadCache(file, adapter);
    expect(first.entries).toEqual({});
    expect(first.problems.join()).toMatch(/corrupt/);
    const problems = saveEntries(file, adapter, { a: entry() });
    expect(problems.join()).toMatch(/corrupt/);
    const again = loadCache(file, adapter);
    expect(again.problems).toEqual([]);
    expect(Object.keys(again.entries)).toEqual(['a']);
    // Malformed entries are dropped one by one; a file for another adapter is ignored whole.
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    doc.entries.b = { config: 1 };
    writeFileSync(file, JSON.stringify(doc));
    const partly = loadCache(file, adapter);
    expect(Object.keys(partly.entries)).toEqual(['a']);
    expect(partly.problems.join()).toMatch(/'b' is malformed/);
    const foreign = loadCache(file, { ...adapter, name: 'another' });
    expect(foreign.entries).toEqual({});
    expect(foreign.problems.join()).toMatch(/another adapter/);
  });

  it('ignores and reports stale entries: other kernel hash, or a config no longer in the space', async () => {
    const be = (await gpu()) as WebGPUBackend;
    const g = geometry(rng(freshSeed()));
    const file = join(dir, `stale-${freshSeed()}.json`);
    const key = Tuner.key('conv2d', g);
    const good = TUNABLE_OPS.conv2d.candidates(g)[0];
    saveEntries(file, adapterIdentity(be), {
      [key]: entry({ config: good, kernels: 'an-older-kernel-set' }),
      [Tuner.key('conv2dBackwardData', g)]: entry({ config: { rows: 3, cols: 99 }, kernels: kernelSetHash(TUNABLE_OPS.conv2dBackwardData) }),
      [Tuner.key('conv2dBackwardFilter', g)]: entry({ config: null, kernels: kernelSetHash(TUNABLE_OPS.conv2dBackwardFilter) }),
    });
    const { lines, log } = logs();
    const tuner = new Tuner(be, { cacheFile: file, log });
    expect(tuner.configFor('conv2d', g)).toBeUndefined();
    expect(tuner.configFor('conv2dBackwardData', g)).toBeUndefined();
    // A valid entry whose winner was the default path: used (nothing to override).
    expect(tuner.configFor('conv2dBackwardFilter', g)).toBeUndefined();
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatch(/stale \(the kernels changed/);
    expect(lines[1]).toMatch(/no longer a candidate/);
    // Reported once, not at every call.
    tuner.configFor('conv2d', g);
    expect(lines.length).toBe(2);
  });

  it('uses a register config cached before configs carried their algo tag', async () => {
    const be = (await gpu()) as WebGPUBackend;
    const g = geometry(rng(freshSeed()));
    const file = join(dir, `untagged-${freshSeed()}.json`);
    const space = TUNABLE_OPS.conv2d.candidates(g) as { algo: string }[];
    const tagged = space.find((c) => c.algo === 'register')!;
    const { algo: _, ...untagged } = tagged;
    saveEntries(file, adapterIdentity(be), {
      [Tuner.key('conv2d', g)]: entry({ config: untagged, kernels: kernelSetHash(TUNABLE_OPS.conv2d) }),
    });
    const { lines, log } = logs();
    const tuner = new Tuner(be, { cacheFile: file, log });
    expect(canonicalConfig(tuner.configFor('conv2d', g))).toBe(canonicalConfig(tagged));
    expect(lines).toEqual([]);
    // The file itself is left as it was.
    expect(loadCache(file, adapterIdentity(be)).entries[Tuner.key('conv2d', g)].config).toEqual(untagged);
  });

  it('keeps every entry when several processes save at the same time', async () => {
    const file = join(dir, `concurrent-${freshSeed()}.json`);
    const script = join(dir, 'writer.mjs');
    buildSync({
      stdin: {
        contents: `import { saveEntries } from './engine/tune/cache.ts';
const [file, who, count] = process.argv.slice(2);
const adapter = ${JSON.stringify(adapter)};
for (let i = 0; i < Number(count); i++) {
  saveEntries(file, adapter, { [who + '-' + i]: { config: { i }, configKey: 'i', ms: 1, defaultMs: 1, kernels: 'k', tried: 1, rejected: 0, tunedAt: new Date().toISOString() } });
}`,
        resolveDir: process.cwd(),
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: script,
      logLevel: 'silent',
    });
    const writers = 4;
    const each = 25;
    await Promise.all(
      Array.from({ length: writers }, (_, w) =>
        new Promise<void>((resolve, reject) => {
          const child = spawn(process.execPath, [script, file, `w${w}`, String(each)], { stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          child.stderr.on('data', (d) => (err += d));
          child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${w} exited ${code}: ${err}`))));
        }),
      ),
    );
    const { entries, problems } = loadCache(file, adapter);
    expect(problems).toEqual([]);
    expect(Object.keys(entries).length).toBe(writers * each);
    const leftovers = readdirSync(dir).filter((f) => f.startsWith(file.split('/').pop()!) && f !== file.split('/').pop());
    expect(leftovers).toEqual([]);
    expect(existsSync(`${file}.lock`)).toBe(false);
  });
});

/** A GPU clock whose timestamps advance in steps of 65.536 us, as some adapters' do. */
const TICK_NS = 65_536n;
const coarse = (t: bigint) => t - (t % TICK_NS);
const stuck = () => 0n;

/** Runs `fn` with the shared backend's timestamps mapped through `clock` (and poisoning as asked). */
async function withClock<T>(be: WebGPUBackend, clock: ((t: bigint) => bigint) | null, fn: () => Promise<T>, poison = be.rt.poison): Promise<T> {
  const [wasClock, wasPoison] = [be.rt.timestampClock, be.rt.poison];
  be.rt.timestampClock = clock;
  be.rt.poison = poison;
  try {
    return await fn();
  } finally {
    be.rt.timestampClock = wasClock;
    be.rt.poison = wasPoison;
  }
}

const measured = (v: number | null) => v !== null && Number.isFinite(v) && v > 0;

/** A small matmul problem, different each run. */
function matmulProblem(r: () => number) {
  return { M: 2 + Math.floor(r() * 12), K: 3 + Math.floor(r() * 20), N: 4 * (1 + Math.floor(r() * 4)), transA: false, transB: r() < 0.5 };
}

describe('tuner timing', () => {
  it('timeGpu times every pass the work fills: a copy between dispatches splits the pass', async () => {
    const be = (await gpu()) as WebGPUBackend;
    expect(be.rt.hasTimestamps, 'this test needs timestamp queries').toBe(true);
    // Each timestamp read (in order, begin then end of each pass) advances a fake clock by
    // 1 s, so every timed pass spans exactly 1 s.
    let calls = 0n;
    const counting = () => 1_000_000_000n * calls++;
    const a = be.uniform([256], -1, 1, 'a');
    const b = be.uniform([256], -1, 1, 'b');
    const [ba, bb] = be.buffers('test', a, b);
    const ms = await withClock(be, counting, () =>
      be.rt.timeGpu(() => {
        be.relu(a).dispose();
        be.rt.copy(ba, bb, 256 * 4);
        be.relu(b).dispose();
      }),
    );
    expect(ms).toBe(2000);
    a.dispose();
    b.dispose();
  });

  it('with a clock too coarse for the kernels, repeats each run until it spans 100 ticks; times stay finite and positive', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const be = (await gpu()) as WebGPUBackend;
    const g = geometry(r);
    const file = join(dir, `coarse-${seed}.json`);
    const { lines, log } = logs();
    await withClock(be, coarse, async () => {
      const timer = new KernelTimer(be.rt);
      const tick = await timer.resolution();
      expect(timer.method).toBe(be.rt.hasTimestamps ? 'timestamp' : 'queue');
      if (timer.method === 'timestamp') {
        // Every nonzero span of this clock is a whole number of ticks.
        const ticks = tick / (Number(TICK_NS) / 1e6);
        expect(ticks).toBeGreaterThanOrEqual(1 - 1e-9);
        expect(Math.abs(ticks - Math.round(ticks))).toBeLessThan(1e-6);
      }
      const [x] = pair(be, randomValues(g.N * g.H * g.W * g.Ci, r), [g.N, g.H, g.W, g.Ci]);
      const [w] = pair(be, randomValues(9 * g.Ci * g.Co, r), [3, 3, g.Ci, g.Co]);
      const s = await timer.measure(() => be.conv2d(x, w, null, { stride: g.stride as 1 | 2, pad: g.pad as 0 | 1 }).dispose());
      expect(s, `seed ${seed}`).not.toBeNull();
      expect(measured(s!.ms)).toBe(true);
      expect(s!.repeats).toBeLessThanOrEqual(MAX_REPEATS);
      expect(s!.ms * s!.repeats).toBeGreaterThanOrEqual(MIN_SPAN_TICKS * tick * (1 - 1e-9));
      x.dispose();
      w.dispose();

      const res = await new Tuner(be, { cacheFile: file, budgetMs: 1500, reps: 2, log }).tune('conv2d', g);
      for (const v of [res.ms, res.defaultMs, res.gflops, res.defaultGflops]) expect(measured(v), `seed ${seed}: ${JSON.stringify(res)}`).toBe(true);
      expect(res.ms!).toBeLessThanOrEqual(res.defaultMs!);
    });
    const saved = JSON.parse(readFileSync(file, 'utf8')).entries[Tuner.key('conv2d', g)];
    expect(measured(saved.ms) && measured(saved.defaultMs)).toBe(true);
    expect(lines.filter((l) => !l.includes('did not beat the default when re-timed'))).toEqual([]);
  });

  it('with GPU timestamps that never advance, times by queue completion: times stay finite and positive', async () => {
    const seed = freshSeed();
    const be = (await gpu()) as WebGPUBackend;
    const problem = matmulProblem(rng(seed));
    const file = join(dir, `stuck-${seed}.json`);
    const { lines, log } = logs();
    const res = await withClock(be, stuck, () => new Tuner(be, { cacheFile: file, budgetMs: 500, reps: 2, log }).tune('matmul', problem));
    for (const v of [res.ms, res.defaultMs, res.gflops, res.defaultGflops]) expect(measured(v), `seed ${seed}: ${JSON.stringify(res)}`).toBe(true);
    expect(res.ms!).toBeLessThanOrEqual(res.defaultMs!);
    if (be.rt.hasTimestamps) expect(lines.join('\n')).toMatch(/GPU timestamps gave no usable span .* queue completion/);
    const saved = JSON.parse(readFileSync(file, 'utf8')).entries[Tuner.key('matmul', problem)];
    expect(measured(saved.ms) && measured(saved.defaultMs)).toBe(true);
  });

  it('a candidate too fast for the timer never wins; a default too fast for it leaves the shape untuned and unsaved', async () => {
    const seed = freshSeed();
    const be = (await gpu()) as WebGPUBackend;
    // Zero GPU time is only unmeasurable with timestamps (a copy takes wall time).
    expect(be.rt.hasTimestamps, 'this test needs timestamp queries').toBe(true);
    const problem = matmulProblem(rng(seed));
    const op = tunableOp('matmul');
    const { candidates, run, uses } = op;
    // Right values with no dispatch at all: a copy of the real result (poisoning off, so no fill either).
    const results = new Map<Tensor, Tensor>();
    const copyOfResult = (b: WebGPUBackend, inputs: Tensor[]) => {
      let out = results.get(inputs[0]);
      if (!out) results.set(inputs[0], (out = run(b, problem, inputs, null)));
      return b.clone(out);
    };
    const instant = { fake: 'instant' };
    try {
      op.candidates = (p) => [instant, ...candidates(p).slice(0, 2)];
      op.uses = (c) => (c === instant ? {} : uses(c));
      op.run = (b, p, inputs, config) => (config === instant ? copyOfResult(b, inputs) : run(b, p, inputs, config));
      const first = logs();
      const res = await withClock(be, null, () => new Tuner(be, { cacheFile: null, budgetMs: 60_000, reps: 1, log: first.log }).tune('matmul', problem), false);
      expect(res.config === instant, `seed ${seed}`).toBe(false);
      expect(res.unmeasured).toBe(1);
      expect(res.rejected).toBe(0);
      expect(first.lines.filter((l) => l.includes('too fast for the timer')).length).toBe(1);
      expect(measured(res.ms) && measured(res.defaultMs)).toBe(true);

      op.candidates = candidates;
      op.run = (b, p, inputs, config) => (config === null ? copyOfResult(b, inputs) : run(b, p, inputs, config));
      const file = join(dir, `untimed-${seed}.json`);
      const second = logs();
      const tuner = new Tuner(be, { cacheFile: file, autotune: true, budgetMs: 500, reps: 1, log: second.log });
      const untimed = await withClock(be, null, () => tuner.tune('matmul', problem), false);
      expect(untimed.config).toBeNull();
      expect([untimed.ms, untimed.defaultMs, untimed.gflops, untimed.defaultGflops]).toEqual([null, null, null, null]);
      expect(second.lines.join('\n')).toMatch(/default kernel could not be timed/);
      expect(existsSync(file) && JSON.parse(readFileSync(file, 'utf8')).entries[Tuner.key('matmul', problem)]).toBeFalsy();
      // Autotune does not queue it again at every op.
      expect(tuner.configFor('matmul', problem)).toBeUndefined();
      expect(tuner.hasPending).toBe(false);
    } finally {
      op.candidates = candidates;
      op.run = run;
      op.uses = uses;
      for (const t of results.values()) t.dispose();
    }
  });
});
