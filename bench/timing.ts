// Timing helpers shared by the benches: median of repeated runs after warm-up.
import { Backend, WebGPUBackend } from '../engine/index.js';

export interface Timing {
  medianMs: number;
  minMs: number;
  runs: number;
  /** 'timestamp' (GPU timestamp queries around the pass) or 'queue' (wall clock to queue completion). */
  method: 'timestamp' | 'queue';
}

/**
 * Times `run` (which records GPU work) to queue completion: warm-up runs first (pipeline
 * compilation, pool growth), then `reps` timed runs; returns the median.
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
  for (let i = 0; i < reps; i++) {
    if (be instanceof WebGPUBackend && be.rt.hasTimestamps && opts.useTimestamps !== false) {
      const ms = await be.rt.timeGpu(run);
      if (ms !== null) {
        times.push(ms);
        method = 'timestamp';
        continue;
      }
    }
    const t0 = performance.now();
    run();
    await be.sync();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0], runs: reps, method };
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
