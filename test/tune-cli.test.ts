// `nudge tune`: the shapes it tunes are exactly those a training step runs (checked by
// recording what a real EP step and a BP step ask the tuner for), and the command tunes
// them, prints the table and writes the cache that a later run reads. With a simulated
// coarse or stuck GPU clock it prints only finite speeds and ratios; when it cannot save
// its results it fails.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Problem, TunableOpName, TuneResult, Tuner, WebGPUBackend } from '../engine/index.js';
import { ModelSpec, Network } from '../pcn/network.js';
import { Sgd } from '../pcn/optim.js';
import { Algorithm, trainStep } from '../pcn/train.js';
import { modelSpec, parseDuration, resultsTable, simulatedClock, speedUp, trainingShapes } from '../tools/tune.js';
import { freshSeed, gpu, randomValues, rng, skipTinySpec } from './helpers.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'nudge-tune-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tuner that only records what it is asked for. */
class RecordingTuner extends Tuner {
  readonly asked = new Set<string>();
  override configFor(op: TunableOpName, p: Problem): undefined {
    this.asked.add(Tuner.key(op, p));
    return undefined;
  }
}

/** The conv/matmul problems one real training step asks the tuner for (keys, sorted). */
async function askedByStep(be: WebGPUBackend, spec: ModelSpec, batch: number, seed: string, step: { algorithm: Algorithm; doubleBatch?: boolean; K: number }): Promise<string[]> {
  const r = rng(`${seed}/inputs`);
  const rec = new RecordingTuner(be, { cacheFile: null });
  be.tuner = rec;
  try {
    const net = new Network(be, spec);
    net.init(seed);
    const sgdCfg = { lr: 0.01, momentum: 0.9, weightDecay: 0, lrMin: 0 };
    const sgd = new Sgd(be, sgdCfg, net.params());
    const [H, W, C] = spec.input;
    const x = be.fromArray(randomValues(batch * H * W * C, r), [batch, H, W, C]);
    const y = be.fromArray(Array.from({ length: batch }, () => Math.floor(r() * spec.classes)), [batch], 'u32');
    await be.read(await trainStep(net, sgd, x, y, { ...step, epochs: 1, batch, beta: 0.05, sgd: sgdCfg, seed }, 0.01, 0));
    return [...rec.asked].sort();
  } finally {
    be.tuner = null;
  }
}

/** A time or speed that was measured: positive and finite. */
const measured = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;

/** Every number the command printed or wrote is finite, and every result was measured. */
function expectFinite(out: { stdout: string; stderr: string }, json: string): void {
  expect(out.stdout + out.stderr).not.toMatch(/Infinity|NaN/);
  for (const r of JSON.parse(readFileSync(json, 'utf8')).results) {
    for (const k of ['ms', 'defaultMs', 'gflops', 'defaultGflops']) expect(measured(r[k]), `${r.op} ${r.shape} ${k} = ${r[k]}`).toBe(true);
    expect(r.ms).toBeLessThanOrEqual(r.defaultMs);
  }
}

const keysOf = (spec: ModelSpec, batch: number, opts: { doubleBatch?: boolean } = {}) =>
  trainingShapes(spec, batch, opts)
    .map((j) => Tuner.key(j.op, j.problem))
    .sort();

describe('nudge tune', () => {
  it('lists exactly the conv and matmul shapes a training step runs', async () => {
    const seed = freshSeed();
    const r = rng(seed);
    const be = (await gpu()) as WebGPUBackend;
    const batch = 2 + Math.floor(r() * 3);
    const spec = modelSpec('small', 8 + 2 * Math.floor(r() * 3), 'c4p,c6,d5');
    for (const algorithm of ['ep-centered', 'bp'] as Algorithm[]) {
      expect(await askedByStep(be, spec, batch, seed, { algorithm, K: 3 }), `${algorithm} seed ${seed}`).toEqual(keysOf(spec, batch));
    }
    // Centered EP with the double batch: the free phase at N, the rest at 2N.
    expect(await askedByStep(be, spec, batch, seed, { algorithm: 'ep-centered', doubleBatch: true, K: 3 }), `double batch, seed ${seed}`).toEqual(
      keysOf(spec, batch, { doubleBatch: true }),
    );
  });

  it('lists the strided 1x1 skip convs of a skip net too (as VGG10Skip has)', async () => {
    const seed = freshSeed();
    const be = (await gpu()) as WebGPUBackend;
    const spec = skipTinySpec();
    expect(keysOf(spec, 2).filter((k) => k.includes('k1x1')).length).toBe(6);
    for (const algorithm of ['ep-centered', 'bp'] as Algorithm[]) {
      expect(await askedByStep(be, spec, 2, seed, { algorithm, K: 4 }), `${algorithm} seed ${seed}`).toEqual(keysOf(spec, 2));
    }
  });

  it('reads budgets', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(() => parseDuration('soon')).toThrow(/--budget/);
  });

  it('tunes a small model, prints the table, and a second run reads the cache', async () => {
    const cache = join(dir, 'cache.json');
    const json = join(dir, 'out.json');
    const args = ['dist/nudge.mjs', 'tune', '--model', 'small', '--arch', 'c4p', '--input', '9', '--batch', '3', '--budget', '300ms', '--reps', '1', '--cache', cache, '--json', json];
    const first = await run('node', args, { timeout: 300_000 });
    expect(first.stdout).toMatch(/chosen config/);
    expectFinite(first, json);
    const out = JSON.parse(readFileSync(json, 'utf8'));
    // conv2d + backward-filter of L1; three matmuls of the dense output layer.
    expect(out.results.map((r: { op: string }) => r.op)).toEqual(['conv2d', 'conv2dBackwardFilter', 'matmul', 'matmul', 'matmul']);
    for (const r of out.results) {
      expect(r.fromCache).toBe(false);
      expect(r.tried).toBeGreaterThanOrEqual(1);
      expect(r.ms).toBeGreaterThan(0);
      expect(r.ms).toBeLessThanOrEqual(r.defaultMs);
    }
    const cached = JSON.parse(readFileSync(cache, 'utf8'));
    expect(Object.keys(cached.entries).length).toBe(5);
    const second = await run('node', args, { timeout: 300_000 });
    expect(second.stdout).toMatch(/\(cached\)/);
    expect(JSON.parse(readFileSync(json, 'utf8')).results.every((r: { fromCache: boolean }) => r.fromCache)).toBe(true);
  });

  it('with a coarse or a stuck GPU clock, prints and stores only measured, finite times', async () => {
    for (const clock of ['tick:65536', 'stuck']) {
      const cache = join(dir, `cache-${clock.replace(':', '-')}.json`);
      const json = join(dir, `out-${clock.replace(':', '-')}.json`);
      const args = ['dist/nudge.mjs', 'tune', '--model', 'small', '--arch', 'c4p', '--input', '9', '--batch', '3', '--ops', 'matmul', '--budget', '300ms', '--reps', '1', '--cache', cache, '--json', json];
      const out = await run('node', args, { timeout: 300_000, env: { ...process.env, NUDGE_SIMULATE_TIMESTAMPS: clock } });
      expect(out.stdout, clock).toMatch(/chosen config/);
      expectFinite(out, json);
      for (const line of out.stdout.split('\n').filter((l) => l.startsWith('matmul'))) expect(line, clock).toMatch(/ \d+\.\d\dx$/);
      if (clock === 'stuck') expect(out.stderr).toMatch(/queue completion/);
      const entries = Object.values(JSON.parse(readFileSync(cache, 'utf8')).entries) as { ms: number; defaultMs: number }[];
      expect(entries.length).toBe(3);
      for (const e of entries) expect(measured(e.ms) && measured(e.defaultMs), clock).toBe(true);
    }
  });

  it('prints a shape whose default could not be timed as such, never as a ratio', () => {
    const job = { op: 'matmul' as const, problem: { M: 2, K: 2, N: 4, transA: false, transB: false }, where: 'L1' };
    const base: TuneResult = { op: 'matmul', shape: '2x2x4', config: null, label: 'default', ms: 0.5, defaultMs: 1, gflops: 2, defaultGflops: 1, tried: 2, rejected: 0, unmeasured: 0, spaceSize: 3, fromCache: false };
    const untimed: TuneResult = { ...base, ms: null, defaultMs: null, gflops: null, defaultGflops: null, unmeasured: 1 };
    expect(speedUp(base)).toBe('2.00x');
    expect(speedUp(untimed)).toBeNull();
    expect(speedUp({ ms: 0, defaultMs: 1 })).toBeNull();
    const table = resultsTable([{ job, r: base }, { job, r: untimed }]);
    expect(table).not.toMatch(/Infinity|NaN|null/);
    expect(table.split('\n')[3]).toMatch(/not timed\s+not timed\s+-$/);
    expect(simulatedClock('tick:1000')(123_456n)).toBe(123_000n);
    expect(simulatedClock('stuck')(123_456n)).toBe(0n);
    for (const bad of ['tick:0', 'tick:', '65536', 'tick:1.5']) expect(() => simulatedClock(bad), bad).toThrow(/NUDGE_SIMULATE_TIMESTAMPS/);
  });

  it('exits 1 with a clear message when it cannot save its results', async () => {
    const notADir = join(dir, 'a-file');
    writeFileSync(notADir, 'not a directory');
    const cache = join(notADir, 'cache.json');
    const json = join(dir, 'unsaved.json');
    const args = ['dist/nudge.mjs', 'tune', '--model', 'small', '--arch', 'c4p', '--input', '9', '--batch', '3', '--ops', 'matmul', '--budget', '0ms', '--reps', '1', '--cache', cache, '--json', json];
    const bad = await run('node', args, { timeout: 300_000 }).catch((e) => e);
    expect(bad.code).toBe(1);
    // The results are still shown and written where asked.
    expect(bad.stdout).toMatch(/chosen config/);
    expect(JSON.parse(readFileSync(json, 'utf8')).results.length).toBe(3);
    const last = bad.stderr.trim().split('\n').pop();
    expect(last).toMatch(/^nudge: could not save 3 tune result\(s\) to .*a-file\/cache\.json: /);
    expect(bad.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(cache)).toBe(false);
  });

  it('rejects bad arguments with a clear message', async () => {
    const bad = await run('node', ['dist/nudge.mjs', 'tune', '--model', 'resnet'], { timeout: 60_000 }).catch((e) => e);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unknown model 'resnet'/);
  });
});
