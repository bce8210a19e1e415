// The autotuner: picks, per (op, exact shape, dtype, adapter, kernel set), the fastest
// kernel config by measuring, and remembers it in the per-adapter cache.
//
// How a shape is tuned:
// 1. Random inputs of the exact shape are made on the host and uploaded.
// 2. The op's default path runs first: its time is the baseline and it is never skipped.
// 3. Then the starting point of each other algorithm (e.g. the workgroup-memory tiled
//    kernel's GPU default), whatever the budget; then hill climbing from the best config so
//    far (every config that differs from it in one field), then the rest of the space in a
//    seeded random order, until the time budget for the shape is spent.
// 4. Each candidate is first checked once against a float64 reference computed on the host
//    for a sample of output elements (corners and random ones) with the output buffer
//    poisoned with NaN, so a config that computes wrong values or leaves elements unwritten
//    can never win; then timed: one warm-up run, then the median of `reps` measurements
//    with GPU timestamp queries (queue-completion wall time where the adapter has none or
//    its timestamps are stuck), each repeating the run until it spans at least 100 ticks of
//    the timer (timer.ts). A candidate too fast to measure so is reported and never wins;
//    when the default cannot be measured, the shape is not tuned and nothing is saved.
// 5. A winner other than the default is re-timed against the default in alternation and
//    kept only if it still wins by the margin.
//
// Ops are recorded synchronously, so tuning cannot happen inside one: with autotune on, an
// untuned shape runs the default and is queued, and the queue is tuned at the next
// read()/sync() of the backend; later calls get the winner.
import { Tensor } from '../tensor.js';
import type { WebGPUBackend } from '../webgpu/backend.js';
import { AdapterIdentity, CacheEntry, cachePath, loadCache, saveEntries } from './cache.js';
import { Problem, TunableOp, TunableOpName, canonicalConfig, configLabel, kernelSetHash, tunableOp } from './ops.js';
import { KernelTimer, MAX_REPEATS, Span } from './timer.js';
import { FamilyConfig, withAlgoTag } from '../../kernels/candidates.js';
import type { KernelPrecision, TileSpaceOptions } from '../../kernels/candidates.js';

export interface TunerOptions {
  /** The cache file; null keeps results in memory only. Default: the per-adapter file in the XDG cache dir. */
  cacheFile?: string | null;
  /** Tune shapes that are not in the cache on first use (at the next read/sync). Default false. */
  autotune?: boolean;
  /** Time budget per shape in ms, compilation and probing included. Default 10 s. */
  budgetMs?: number;
  /** Measurements per candidate (the median is kept). Default 5. */
  reps?: number;
  /** Where problems with the cache and progress are reported. Default: stderr. */
  log?: (message: string) => void;
  /** Seed of the inputs and of the search order. */
  seed?: number;
}

export interface TuneResult {
  op: TunableOpName;
  shape: string;
  /** The winner: null is the op's default path. */
  config: unknown | null;
  label: string;
  /** Ms per run of the winner and of the default; null (and the GFLOP/s too) when the default could not be measured. */
  ms: number | null;
  defaultMs: number | null;
  gflops: number | null;
  defaultGflops: number | null;
  /** Candidates timed (default included), rejected by the probe, and too fast for the timer to measure. */
  tried: number;
  rejected: number;
  unmeasured: number;
  spaceSize: number;
  fromCache: boolean;
}

export interface TuneProgress {
  candidate: number;
  spaceSize: number;
  bestMs: number;
  elapsedMs: number;
}

/** Probe samples are compared with this relative error (norm over the samples). */
const PROBE_TOL = 1e-3;
/**
 * The same for f16 configs (only candidates with the backend's precision 'f16'). Rounding
 * the operands and products to f16 (unit roundoff u = 2^-11) gives a relative error near u;
 * accumulating in f16 adds about u * sqrt(K) / 2 (about 1% at K = 2304, a 3x3x256 conv).
 * A config past 2% is rejected: a wrong kernel is off by O(1).
 */
const PROBE_TOL_F16 = 2e-2;

const PROBE_RANDOM_SAMPLES = 48;
const WIN_MARGIN = 0.98;
/**
 * Alternating default/winner timings that confirm a winner. With 3, lavapipe kept winners
 * that then ran up to 30% slower than the default minutes later (bench conv, 2026-11-27,
 * twice in 11 shapes): the median of 5 single runs is less at the mercy of one slow spell.
 */
const CONFIRM_ROUNDS = 5;

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function adapterIdentity(be: WebGPUBackend): AdapterIdentity {
  const i = be.gpu.info;
  return { vendor: i.vendor, architecture: i.architecture, name: i.name, description: i.description, backend: i.backend };
}

/** A config's fields as path -> canonical value, nested configs (Winograd's or conv-as-matmul's `matmul`) flattened. */
function flatFields(c: Record<string, unknown>, prefix = '', out = new Map<string, string>()): Map<string, string> {
  for (const [k, v] of Object.entries(c)) {
    if (v !== null && typeof v === 'object') flatFields(v as Record<string, unknown>, `${prefix}${k}.`, out);
    else out.set(`${prefix}${k}`, canonicalConfig(v));
  }
  return out;
}

/**
 * Configs that differ from `c` in exactly one field (same set of fields), nested fields
 * counted one by one: a Winograd config's neighbours differ in one of its GEMM tile's fields,
 * not in any of them (compared whole, every GEMM tile would be "one field" away).
 */
export function neighbours(c: unknown, space: unknown[]): unknown[] {
  if (c === null || typeof c !== 'object') return [];
  const a = flatFields(c as Record<string, unknown>);
  return space.filter((d) => {
    const b = flatFields(d as Record<string, unknown>);
    if (b.size !== a.size) return false;
    let diff = 0;
    for (const [k, v] of a) {
      if (!b.has(k)) return false;
      if (b.get(k) !== v) diff++;
    }
    return diff === 1;
  });
}

export class Tuner {
  readonly cacheFile: string | null;
  readonly autotune: boolean;
  readonly budgetMs: number;
  readonly reps: number;
  private readonly log: (m: string) => void;
  private readonly seed: number;
  private readonly adapter: AdapterIdentity;
  /** Valid cache entries and this process's results, by `op|shape|precision` (f32, or f16 for mixed). */
  private entries = new Map<string, CacheEntry>();
  private pending = new Map<string, { op: TunableOpName; problem: Problem }>();
  private reportedStale = new Set<string>();
  /** Keys whose entry passed validEntry's checks (entries this process measured are added as made). */
  private checked = new Set<string>();
  private tuning = false;
  private readonly timer: KernelTimer;
  /** Keys whose default could not be measured: autotune does not queue them again. */
  private untimed = new Set<string>();
  /** This process's results not yet in the cache file (a failed save is retried at the next). */
  private unsaved = new Map<string, CacheEntry>();
  /** Why the last save failed, while results are unsaved. */
  saveError: string | null = null;

  constructor(
    readonly be: WebGPUBackend,
    opts: TunerOptions = {},
  ) {
    this.adapter = adapterIdentity(be);
    this.cacheFile = opts.cacheFile === undefined ? cachePath(this.adapter) : opts.cacheFile;
    this.autotune = opts.autotune ?? false;
    this.budgetMs = opts.budgetMs ?? 10_000;
    this.reps = opts.reps ?? 5;
    this.log = opts.log ?? ((m) => process.stderr.write(`nudge: tune: ${m}\n`));
    this.seed = opts.seed ?? 1;
    this.timer = new KernelTimer(be.rt, { log: this.log });
    if (this.cacheFile) {
      const { entries, problems } = loadCache(this.cacheFile, this.adapter);
      for (const p of problems) this.log(p);
      // Configs stored before the register tiles carried `algo` get it, so they still match their candidates.
      for (const [k, e] of Object.entries(entries)) this.entries.set(k, { ...e, config: withAlgoTag(e.config) });
    }
  }

  /**
   * The cache key. Its dtype field is the backend's kernel precision: 'f16' (f16 math on f32
   * tensors) when f16 configs may compete, so f32 and f16 winners never mix.
   */
  static key(op: TunableOpName, p: Problem, precision: KernelPrecision = 'f32'): string {
    return `${op}|${tunableOp(op).key(p)}|${precision}`;
  }

  /** The candidate-space options of this backend: its precision, workgroup memory and subgroup size. */
  private spaceOptions(): TileSpaceOptions {
    const limit = this.be.rt.device.limits?.maxComputeWorkgroupStorageSize;
    return {
      precision: this.be.precision,
      maxStorageBytes: typeof limit === 'number' ? limit : undefined,
      subgroupSize: this.be.subgroupTiles ?? undefined,
      matrices: this.be.subgroupMatrices,
      matrixSubgroup: this.be.matrixSubgroup ?? undefined,
    };
  }

  get hasPending(): boolean {
    return this.pending.size > 0 && !this.tuning;
  }

  /**
   * The config to use for this problem: a valid cached winner, else undefined (the op's
   * default). With autotune on, an unknown shape is queued for tuning.
   */
  configFor<F extends TunableOpName>(op: F, p: Problem): FamilyConfig[F] | undefined {
    const key = Tuner.key(op, p, this.be.precision);
    const e = this.validEntry(key, tunableOp(op), p);
    // validEntry checked the stored config against the op's candidates: it is one of the family's.
    if (e) return e.config === null ? undefined : (e.config as FamilyConfig[F]);
    if (this.autotune && !this.tuning && !this.untimed.has(key)) this.pending.set(key, { op, problem: p });
    return undefined;
  }

  /**
   * A cache entry that may be trusted for the running code, reporting a stale one once.
   * configFor() runs on every conv/matmul an op records, so each key is checked against the
   * kernel hash and its candidate space once (the space can hold thousands of configs).
   */
  private validEntry(key: string, top: TunableOp, p: Problem): CacheEntry | undefined {
    const e = this.entries.get(key);
    if (!e || this.checked.has(key)) return e;
    let why = '';
    if (e.kernels !== kernelSetHash(top)) why = 'the kernels changed since it was tuned';
    else if (e.config !== null) {
      const want = canonicalConfig(e.config);
      if (!top.candidates(p, this.spaceOptions()).some((c) => canonicalConfig(c) === want)) why = `its config ${e.configKey} is no longer a candidate`;
    }
    if (!why) {
      this.checked.add(key);
      return e;
    }
    if (!this.reportedStale.has(key)) {
      this.reportedStale.add(key);
      this.log(`cached entry for ${key} is stale (${why}): ignored, using the default`);
    }
    this.entries.delete(key);
    return undefined;
  }

  /** Tunes the shapes queued by configFor(). */
  async tunePending(onResult?: (r: TuneResult) => void): Promise<TuneResult[]> {
    const out: TuneResult[] = [];
    const jobs = [...this.pending.values()];
    this.pending.clear();
    for (const j of jobs) {
      const r = await this.tune(j.op, j.problem);
      onResult?.(r);
      out.push(r);
    }
    return out;
  }

  /** Results this process measured that are not in the cache file (see saveError). */
  get unsavedCount(): number {
    return this.unsaved.size;
  }

  /**
   * Tunes one problem (or returns the cached result unless `force`). Saves the result to
   * the cache file.
   */
  async tune(
    op: TunableOpName,
    p: Problem,
    opts: { budgetMs?: number; force?: boolean; onProgress?: (pr: TuneProgress) => void } = {},
  ): Promise<TuneResult> {
    const top = tunableOp(op);
    const key = Tuner.key(op, p, this.be.precision);
    const space = top.candidates(p, this.spaceOptions());
    const flops = top.flops(p);
    const gf = (ms: number) => flops / (ms * 1e6);
    const cached = opts.force ? undefined : this.validEntry(key, top, p);
    if (cached) {
      return {
        op, shape: top.key(p), config: cached.config, label: configLabel(cached.config), ms: cached.ms, defaultMs: cached.defaultMs,
        gflops: gf(cached.ms), defaultGflops: gf(cached.defaultMs), tried: cached.tried, rejected: cached.rejected, unmeasured: 0, spaceSize: space.length, fromCache: true,
      };
    }
    const budget = opts.budgetMs ?? this.budgetMs;
    const be = this.be;
    this.tuning = true;
    const start = performance.now();
    const rand = xorshift(hashString(key) ^ this.seed);
    // Inputs: uniform in [-1, 1) from a fast generator (shapes can hold 10^8 elements).
    const host = top.inputShapes(p).map((s) => {
      const n = s.reduce((a, b) => a * b, 1);
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = rand() * 2 - 1;
      return a;
    });
    const inputs = host.map((h, i) => be.fromArray(h, top.inputShapes(p)[i]));
    let tried = 0;
    let rejected = 0;
    let unmeasured = 0;
    let best: { config: unknown | null; ms: number } | null = null;
    let defaultMs = NaN;
    // Runs per measurement found for each config (by identity), the start for its re-timing.
    const repeats = new Map<unknown, number>();
    try {
      // Probe samples: the first and last elements and random ones, with their references.
      const outSize = this.outputSize(top, p, inputs);
      const sample = [0, outSize - 1];
      for (let i = 0; i < PROBE_RANDOM_SAMPLES && i < outSize; i++) sample.push(Math.floor(rand() * outSize));
      const want = sample.map((i) => top.reference(p, host, i));

      const measure = async (config: unknown | null): Promise<number | null> => {
        if (!(await this.probe(top, p, inputs, config, sample, want))) {
          rejected++;
          this.log(`${key}: config ${configLabel(config)} failed the probe check against the reference: rejected`);
          return null;
        }
        tried++;
        const t = await this.time(() => top.run(be, p, inputs, config));
        if (!t) {
          unmeasured++;
          this.log(`${key}: config ${configLabel(config)} could not be timed (too fast for the timer even ${MAX_REPEATS} runs in a row, or an unusable reading): not a candidate`);
          return null;
        }
        repeats.set(config, t.repeats);
        return t.ms;
      };

      const d = await measure(null);
      if (rejected > 0) throw new Error(`tune ${key}: the default kernel failed its check against the reference`);
      if (d === null) {
        this.untimed.add(key);
        this.log(`${key}: the default kernel could not be timed, so nothing can be compared with it: not tuned, nothing saved (the default is used)`);
        return {
          op, shape: top.key(p), config: null, label: configLabel(null), ms: null, defaultMs: null,
          gflops: null, defaultGflops: null, tried, rejected, unmeasured, spaceSize: space.length, fromCache: false,
        };
      }
      defaultMs = d;
      best = { config: null, ms: defaultMs };
      const seen = new Set<string>();
      const def = top.defaultConfig(p, be);
      if (def !== null) seen.add(canonicalConfig(def));
      const order = space.slice();
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      // Where hill climbing starts: the default's config (or, for a default path outside the space, the first in order).
      let climbFrom: unknown | null = def ?? order[0] ?? null;
      let climbMs = defaultMs;
      const next = (): unknown | undefined => {
        for (const c of neighbours(climbFrom, order)) if (!seen.has(canonicalConfig(c))) return c;
        for (const c of order) if (!seen.has(canonicalConfig(c))) return c;
        return undefined;
      };
      // Seeds (other algorithms' defaults) that are in the space, tried whatever the budget.
      const inSpace = new Map(order.map((c) => [canonicalConfig(c), c]));
      const seeds = top
        .seeds(p, this.be)
        .map((c) => inSpace.get(canonicalConfig(c)))
        .filter((c): c is NonNullable<typeof c> => c !== undefined && !seen.has(canonicalConfig(c)));
      let n = 0;
      for (;;) {
        const seed = seeds.shift();
        if (seed === undefined && performance.now() - start > budget) break;
        const c = seed ?? next();
        if (c === undefined) break;
        seen.add(canonicalConfig(c));
        const ms = await measure(c);
        n++;
        // A new winner must beat the best by a margin: timings jitter by a few percent, and
        // a tie should keep the default (or the earlier winner) rather than a random config.
        if (ms !== null && ms < best.ms * WIN_MARGIN) best = { config: c, ms };
        if (ms !== null && ms < climbMs) {
          climbFrom = c;
          climbMs = ms;
        }
        opts.onProgress?.({ candidate: n, spaceSize: space.length, bestMs: best.ms, elapsedMs: performance.now() - start });
      }
      if (best.config !== null) {
        // Confirm the winner against the default, timed in alternation so that a slow spell
        // of the machine hits both: on a CPU adapter one config's timings can swing by 40%
        // between minutes, and a winner from a lucky minute would make every later run slower.
        const winner = best.config;
        const a: number[] = [];
        const b: number[] = [];
        for (let r = 0; r < CONFIRM_ROUNDS; r++) {
          const d = await this.time(() => top.run(be, p, inputs, null), 1, repeats.get(null));
          const w = await this.time(() => top.run(be, p, inputs, winner), 1, repeats.get(winner));
          if (d) a.push(d.ms);
          if (w) b.push(w.ms);
        }
        const med = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
        if (a.length > 0) defaultMs = med(a);
        if (a.length > 0 && b.length > 0) {
          const wMs = med(b);
          best = wMs < defaultMs * WIN_MARGIN ? { config: winner, ms: wMs } : { config: null, ms: defaultMs };
          if (best.config === null) this.log(`${key}: ${configLabel(winner)} did not beat the default when re-timed side by side (${wMs.toFixed(2)} vs ${defaultMs.toFixed(2)} ms): keeping the default`);
        } else {
          best = { config: null, ms: defaultMs };
          this.log(`${key}: ${a.length ? configLabel(winner) : 'the default'} could not be timed when re-timed side by side: keeping the default`);
        }
      }
    } finally {
      for (const t of inputs) t.dispose();
      this.tuning = false;
    }
    const entry: CacheEntry = {
      config: best.config,
      configKey: configLabel(best.config),
      ms: best.ms,
      defaultMs,
      kernels: kernelSetHash(top),
      tried,
      rejected,
      tunedAt: new Date().toISOString(),
    };
    this.entries.set(key, entry);
    this.checked.add(key);
    this.untimed.delete(key);
    if (this.cacheFile) {
      this.unsaved.set(key, entry);
      this.saveUnsaved();
    }
    return {
      op, shape: top.key(p), config: best.config, label: entry.configKey, ms: best.ms, defaultMs,
      gflops: gf(best.ms), defaultGflops: gf(defaultMs), tried, rejected, unmeasured, spaceSize: space.length, fromCache: false,
    };
  }

  /** Writes every unsaved result to the cache file; on failure they stay for the next save. */
  private saveUnsaved(): void {
    try {
      for (const problem of saveEntries(this.cacheFile!, this.adapter, Object.fromEntries(this.unsaved))) this.log(problem);
      this.unsaved.clear();
      this.saveError = null;
    } catch (e) {
      this.saveError = (e as Error).message;
      this.log(`could not save ${this.cacheFile}: ${this.saveError} (${this.unsaved.size} result(s) kept in memory, tried again at the next save)`);
    }
  }

  private outputSize(top: TunableOp, p: Problem, inputs: Tensor[]): number {
    const out = top.run(this.be, p, inputs, null);
    const n = out.size;
    out.dispose();
    return n;
  }

  /** Runs `config` once on a NaN-poisoned output and compares the sampled elements with the reference. */
  private async probe(top: TunableOp, p: Problem, inputs: Tensor[], config: unknown | null, sample: number[], want: number[]): Promise<boolean> {
    const rt = this.be.rt;
    const wasPoison = rt.poison;
    rt.poison = true;
    let out: Tensor;
    try {
      out = top.run(this.be, p, inputs, config);
    } catch (e) {
      this.log(`${top.name} ${top.key(p)}: config ${configLabel(config)} could not be generated: ${(e as Error).message}`);
      return false;
    } finally {
      rt.poison = wasPoison;
    }
    try {
      const got = await this.readElements(out, sample);
      let num = 0;
      let den = 0;
      for (let i = 0; i < want.length; i++) {
        if (!Number.isFinite(got[i])) return false;
        num += (got[i] - want[i]) ** 2;
        den += want[i] ** 2;
      }
      const f16 = config !== null && top.uses(config).f16 !== undefined;
      return Math.sqrt(num / Math.max(den, 1e-30)) < (f16 ? PROBE_TOL_F16 : PROBE_TOL);
    } finally {
      out.dispose();
    }
  }

  /** Reads single elements of a tensor (4-byte copies into one small buffer). */
  private async readElements(t: Tensor, idx: number[]): Promise<Float32Array> {
    const rt = this.be.rt;
    const [src] = this.be.buffers('tune', t);
    const dst = this.be.newTensor([idx.length]);
    try {
      const buf = dst.storage('tune').buffer;
      idx.forEach((i, k) => rt.copy(src, buf, 4, i * 4, k * 4));
      return new Float32Array(await rt.readBytes(buf, idx.length * 4));
    } finally {
      dst.dispose();
    }
  }

  /**
   * Median ms per run over `reps` measurements after one warm-up run (the probe already
   * compiled the kernel), each repeating the run until its span is well above the timer's
   * resolution, starting from `repeats` runs; null when the run cannot be measured.
   */
  private async time(run: () => Tensor, reps = this.reps, repeats = 1): Promise<Span | null> {
    const rt = this.be.rt;
    {
      const out = run();
      await rt.sync();
      out.dispose();
    }
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      const s = await this.timer.measure(() => run().dispose(), repeats);
      if (!s) return null;
      repeats = s.repeats;
      times.push(s.ms);
    }
    times.sort((a, b) => a - b);
    return { ms: times[Math.floor(times.length / 2)], repeats };
  }
}
