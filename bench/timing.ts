// Timing helpers shared by the benches: median of repeated measurements after warm-up.
import { Backend, WebGPUBackend } from '../engine/index.js';
import { KernelTimer, MAX_REPEATS } from '../engine/tune/timer.js';
import type { Runtime } from '../engine/webgpu/runtime.js';

export interface Timing {
  medianMs: number;
  minMs: number;
  /** Measurements taken; each times `repeats` runs back to back (enough for the timer's resolution). */
  runs: number;
  repeats: number;
  /** 'timestamp' (GPU timestamp queries around the passes) or 'queue' (wall clock to queue completion). */
  method: 'timestamp' | 'queue';
}

/** One timer per runtime and method: its resolution is measured once. */
const timers = new WeakMap<Runtime, Map<boolean, KernelTimer>>();

function timerFor(rt: Runtime, useTimestamps: boolean): KernelTimer {
  let byMethod = timers.get(rt);
  if (!byMethod) timers.set(rt, (byMethod = new Map()));
  let t = byMethod.get(useTimestamps);
  if (!t) byMethod.set(useTimestamps, (t = new KernelTimer(rt, { useTimestamps, log: (m) => console.error(`bench: ${m}`) })));
  return t;
}

/**
 * Times `run` (which records GPU work and disposes its outputs): warm-up runs first
 * (pipeline compilation, pool growth), then `reps` measurements; returns the median per run.
 * On webgpu a run shorter than the timer's resolution is repeated within each measurement
 * (engine/tune/timer.ts); one that cannot be measured so throws.
 */
export async function timeOp(be: Backend, run: () => void, opts: { warmup?: number; reps?: number; useTimestamps?: boolean } = {}): Promise<Timing> {
  const warmup = opts.warmup ?? 1;
  const reps = opts.reps ?? 5;
  for (let i = 0; i < warmup; i++) {
    run();
    await be.sync();
  }
  const times: number[] = [];
  let method: Timing['method'] = 'queue';
  let repeats = 1;
  if (be instanceof WebGPUBackend) {
    const timer = timerFor(be.rt, opts.useTimestamps !== false);
    for (let i = 0; i < reps; i++) {
      const s = await timer.measure(run, repeats);
      if (!s) throw new Error(`timeOp: the ${timer.method} timer cannot measure this run even ${MAX_REPEATS} times in a row`);
      times.push(s.ms);
      repeats = s.repeats;
    }
    method = timer.method;
  } else {
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      run();
      await be.sync();
      times.push(performance.now() - t0);
    }
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0], runs: reps, repeats, method };
}

export function printTable(headers: string[], rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNum(c) : c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => String(r[i]).length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  console.log(line(headers));
  console.log('|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
  for (const r of cells) console.log(line(r.map(String)));
}

function formatNum(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
