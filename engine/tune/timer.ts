// Timing recorded GPU work so that a coarse timer cannot fake a result. Some adapters'
// timestamps advance in steps far longer than a small kernel (a run then reads as 0 or
// one step), so the timer's resolution is found first, and a run too short for it is
// repeated between one pair of readings until the span is well above it.
//
// The resolution of GPU timestamps: the shortest nonzero span of a batch of tiny fill
// dispatches, the batch doubled until one shows (on a fine clock that is one fill). When
// not one shows, the timestamps are stuck and the wall clock to queue completion is used.
import type { Runtime } from '../webgpu/runtime.js';

/** A measurement spans at least this many ticks of the timer, so one tick is at most 1% of it. */
export const MIN_SPAN_TICKS = 100;
/** Runs repeated in one measurement at most: a run that still spans too few ticks cannot be measured. */
export const MAX_REPEATS = 4096;
/** Calibration batches; the shortest nonzero span is kept (a first run can include driver work). */
const CALIBRATION_TRIALS = 5;
const CALIBRATION_WORDS = 64;

export type TimingMethod = 'timestamp' | 'queue';

export interface Span {
  /** Milliseconds per run. */
  ms: number;
  /** Runs measured together. */
  repeats: number;
}

export interface KernelTimerOptions {
  /** Use GPU timestamp queries where the adapter has them (default true). */
  useTimestamps?: boolean;
  /** Where a switch to the wall clock is reported. */
  log?: (message: string) => void;
}

/** The smallest step of performance.now(). */
function wallTick(): number {
  let tick = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    let t1 = t0;
    while (t1 === t0) t1 = performance.now();
    tick = Math.min(tick, t1 - t0);
  }
  return tick;
}

export class KernelTimer {
  private calibrated: Promise<void> | null = null;
  private _method: TimingMethod;
  private _tickMs = NaN;
  private readonly log: (m: string) => void;

  constructor(
    private readonly rt: Runtime,
    opts: KernelTimerOptions = {},
  ) {
    this._method = opts.useTimestamps !== false && rt.hasTimestamps ? 'timestamp' : 'queue';
    this.log = opts.log ?? (() => {});
  }

  /** How spans are measured (known after the first measurement or resolution()). */
  get method(): TimingMethod {
    return this._method;
  }

  /** The timer's resolution in ms: the shortest nonzero span it was seen to report. */
  async resolution(): Promise<number> {
    this.calibrated ??= this.calibrate();
    await this.calibrated;
    return this._tickMs;
  }

  private async calibrate(): Promise<void> {
    if (this._method === 'timestamp') {
      const tick = await this.timestampTick();
      if (tick > 0 && Number.isFinite(tick)) {
        this._tickMs = tick;
        return;
      }
      this._method = 'queue';
      this.log(`the GPU timestamps gave no usable span over up to ${MAX_REPEATS} dispatches: timing by queue completion (wall clock) instead`);
    }
    this._tickMs = wallTick();
  }

  private async timestampTick(): Promise<number> {
    const rt = this.rt;
    const t = rt.newTensor([CALIBRATION_WORDS]);
    const buf = t.storage('timer').buffer;
    const fill = () => rt.fillWords(buf, CALIBRATION_WORDS, 0);
    try {
      fill();
      await rt.sync();
      let tick = Infinity;
      for (let trial = 0; trial < CALIBRATION_TRIALS; trial++) {
        for (let n = 1; n <= MAX_REPEATS; n *= 2) {
          const ms = await rt.timeGpu(() => {
            for (let i = 0; i < n; i++) fill();
          });
          if (ms === null || !Number.isFinite(ms)) return NaN;
          if (ms > 0) {
            tick = Math.min(tick, ms);
            break;
          }
        }
        // Not one nonzero span in a whole trial: the clock is stuck.
        if (tick === Infinity) break;
      }
      return tick;
    } finally {
      t.dispose();
    }
  }

  /** Milliseconds of `n` runs of `record` recorded back to back; NaN when unreadable. */
  private async span(record: () => void, n: number): Promise<number> {
    const batch = () => {
      for (let i = 0; i < n; i++) record();
    };
    if (this._method === 'timestamp') return (await this.rt.timeGpu(batch)) ?? NaN;
    const t0 = performance.now();
    batch();
    await this.rt.sync();
    return performance.now() - t0;
  }

  /**
   * One measurement of `record` (which records one run and disposes its outputs): `repeats`
   * runs between two readings, doubled (or scaled up from a short nonzero span) until the
   * span is at least MIN_SPAN_TICKS ticks. Null when it cannot be: still too short after
   * MAX_REPEATS runs, or an unusable reading. Never a zero or non-finite time.
   */
  async measure(record: () => void, repeats = 1): Promise<Span | null> {
    const minSpan = MIN_SPAN_TICKS * (await this.resolution());
    let n = Math.max(1, Math.min(MAX_REPEATS, Math.floor(repeats)));
    for (;;) {
      const ms = await this.span(record, n);
      if (!Number.isFinite(ms) || ms < 0) return null;
      if (ms > 0 && ms >= minSpan) return { ms: ms / n, repeats: n };
      if (n >= MAX_REPEATS) return null;
      const grow = ms > 0 ? 2 ** Math.ceil(Math.log2(minSpan / ms)) : 2;
      n = Math.min(MAX_REPEATS, n * Math.max(2, grow));
    }
  }
}
