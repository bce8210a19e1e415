// The autotuner and its cache: a tuned config is checked, timed, saved and reused; a
// candidate that computes wrong values or leaves elements unwritten never wins; corrupt,
// stale and foreign caches are reported and ignored; concurrent writers lose nothing.
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
    expect(res.ms).toBeLessThanOrEqual(res.defaultMs);
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
    const op = TUNABLE_OPS.conv2d;
    const { candidates, run } = op;
    // Two fake "configs" that are cheaper than any real kernel: zeros, and an untouched (poisoned) buffer.
    const zeros = { fake: 'zeros' };
    const unwritten = { fake: 'unwritten' };
    op.candidates = (p) => [zeros, unwritten, ...candidates(p).slice(0, 2)];
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
    }
  });

  it('measures each other algorithm\'s starting point even with no budget left', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const be = (await gpu()) as WebGPUBackend;
    const problem = { M: 40 + Math.floor(r() * 60), K: 9 + Math.floor(r() * 40), N: 4 * (9 + Math.floor(r() * 12)), transA: false, transB: r() < 0.5 };
    const op = TUNABLE_OPS.matmul;
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
