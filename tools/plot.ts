// Line charts as standalone SVG: training curves, energy traces, accuracy-vs-noise studies.
// SVG rather than PNG so that no image library is needed and plots diff as text.

export interface Series {
  name: string;
  points: [number, number][];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  logY?: boolean;
  width?: number;
  height?: number;
}

// Colour-blind-safe palette (Okabe-Ito), cycled.
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Short tick label: no float noise like 0.30000000000000004. */
export function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return String(Number(v.toPrecision(4)));
}

/** 4-8 round tick values covering [lo, hi] (1, 2, 5 times a power of ten). */
export function linearTicks(lo: number, hi: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => (hi - lo) / s <= 7) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const v = 10 ** e;
    if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
  }
  return out.length >= 2 ? out : [lo, hi];
}

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: number[];
}

function axis(values: number[], log: boolean, what: string): Axis {
  const usable = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (usable.length === 0) throw new Error(`plot: no plottable ${what} values${log ? ' (log axis needs positive values)' : ''}`);
  let lo = Math.min(...usable);
  let hi = Math.max(...usable);
  if (lo === hi) {
    const pad = log ? lo * 0.5 : Math.abs(lo) * 0.1 || 1;
    lo -= log ? pad : pad;
    hi += pad;
  }
  if (log) return { lo, hi, log, ticks: logTicks(lo, hi) };
  const ticks = linearTicks(lo, hi);
  return { lo: Math.min(lo, ticks[0]), hi: Math.max(hi, ticks[ticks.length - 1]), log, ticks };
}

/** An SVG document with one line (and point markers) per series and a legend. */
export function lineChartSvg(chart: LineChart): string {
  const W = chart.width ?? 640;
  const H = chart.height ?? 400;
  const m = { left: 70, right: 160, top: 36, bottom: 50 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = chart.series.flatMap((s) => s.points);
  const xa = axis(all.map((p) => p[0]), chart.logX ?? false, 'x');
  const ya = axis(all.map((p) => p[1]), chart.logY ?? false, 'y');
  const t = (a: Axis, v: number) => (a.log ? (Math.log10(v) - Math.log10(a.lo)) / (Math.log10(a.hi) - Math.log10(a.lo)) : (v - a.lo) / (a.hi - a.lo));
  const X = (v: number) => m.left + t(xa, v) * pw;
  const Y = (v: number) => m.top + (1 - t(ya, v)) * ph;
  const ok = (p: [number, number]) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!xa.log || p[0] > 0) && (!ya.log || p[1] > 0);
  const f = (v: number) => v.toFixed(1);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(chart.title)}</text>`);
  for (const v of xa.ticks) {
    out.push(`<line x1="${f(X(v))}" y1="${m.top}" x2="${f(X(v))}" y2="${m.top + ph}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${f(X(v))}" y="${m.top + ph + 16}" text-anchor="middle">${tickLabel(v)}</text>`);
  }
  for (const v of ya.ticks) {
    out.push(`<line x1="${m.left}" y1="${f(Y(v))}" x2="${m.left + pw}" y2="${f(Y(v))}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${m.left - 6}" y="${f(Y(v) + 4)}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`);
  chart.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const pts = s.points.filter(ok);
    if (pts.length > 1) {
      out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${f(X(p[0]))},${f(Y(p[1]))}`).join(' ')}"/>`);
    }
    if (pts.length <= 60) {
      for (const p of pts) out.push(`<circle cx="${f(X(p[0]))}" cy="${f(Y(p[1]))}" r="3" fill="${colour}"/>`);
    }
    const ly = m.top + 10 + i * 18;
    out.push(`<line x1="${m.left + pw + 12}" y1="${ly}" x2="${m.left + pw + 32}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<text x="${m.left + pw + 38}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
