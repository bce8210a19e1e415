// A progress bar for long runs: images/s and ETA on stderr, redrawn in place on a terminal,
// one line every few seconds otherwise (logs, CI), so stdout stays clean for results.

export interface ProgressStream {
  isTTY?: boolean;
  write(s: string): unknown;
}

/** 0:07, 12:34, 1:02:03. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** 0.52, 12.3, 1234: three significant digits, no exponent. */
export function formatRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export interface ProgressLine {
  label: string;
  done: number;
  total: number;
  /** Items per second; NaN while unknown. */
  rate: number;
  elapsedS: number;
  /** Free text after the numbers (loss, ...). */
  extra?: string;
  /** Characters of the bar; 0 leaves it out. */
  barWidth?: number;
}

/** `label [#####.....]  45% 1234/2730 img  312 img/s  0:04 elapsed  ETA 0:05  extra` */
export function formatProgress(p: ProgressLine): string {
  const frac = p.total > 0 ? Math.min(1, Math.max(0, p.done / p.total)) : 0;
  const width = p.barWidth ?? 24;
  const parts: string[] = [p.label];
  if (width > 0) {
    const full = Math.floor(frac * width);
    parts.push(`[${'#'.repeat(full)}${'.'.repeat(width - full)}]`);
  }
  parts.push(`${(100 * frac).toFixed(0).padStart(3)}%`);
  parts.push(`${p.done}/${p.total} img`);
  parts.push(`${formatRate(p.rate)} img/s`);
  parts.push(`${formatDuration(p.elapsedS)} elapsed`);
  const eta = p.rate > 0 ? (p.total - p.done) / p.rate : NaN;
  parts.push(`ETA ${formatDuration(eta)}`);
  if (p.extra) parts.push(p.extra);
  return parts.join('  ');
}

export interface ProgressOptions {
  total: number;
  label?: string;
  stream?: ProgressStream;
  /** Without a terminal: seconds between printed lines (default 10). */
  intervalS?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
  /** The rate is measured over this many seconds of recent updates (default 20). */
  windowS?: number;
}

/** Tracks done/total and draws; the rate comes from the recent updates, so a resumed run or a slow start does not skew the ETA for long. */
export class Progress {
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly t0: number;
  private lastDraw = -Infinity;
  private drawn = false;
  private history: [number, number][] = [];
  private done = 0;
  label: string;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.now = opts.now ?? (() => performance.now());
    this.t0 = this.now();
    this.label = opts.label ?? '';
    this.history.push([this.t0, 0]);
  }

  private rate(t: number): number {
    const windowMs = (this.opts.windowS ?? 20) * 1000;
    while (this.history.length > 2 && t - this.history[1][0] >= windowMs) this.history.shift();
    const [t0, d0] = this.history[0];
    return t > t0 ? ((this.done - d0) * 1000) / (t - t0) : NaN;
  }

  line(extra?: string): string {
    const t = this.now();
    return formatProgress({ label: this.label, done: this.done, total: this.opts.total, rate: this.rate(t), elapsedS: (t - this.t0) / 1000, extra });
  }

  /** Sets the count of items done; draws when due (TTY: at most 10 times a second). */
  update(done: number, extra?: string): void {
    this.done = done;
    const t = this.now();
    this.history.push([t, done]);
    const tty = !!this.stream.isTTY;
    const due = tty ? t - this.lastDraw >= 100 : t - this.lastDraw >= (this.opts.intervalS ?? 10) * 1000;
    if (!due && done < this.opts.total) return;
    this.draw(extra);
  }

  private draw(extra?: string): void {
    this.lastDraw = this.now();
    const text = this.line(extra);
    if (this.stream.isTTY) this.stream.write(`\r${text}\x1b[K`);
    else this.stream.write(text + '\n');
    this.drawn = true;
  }

  /** Ends the bar's line on a terminal, so that what is printed next starts on a fresh one. */
  finish(): void {
    if (this.stream.isTTY && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
