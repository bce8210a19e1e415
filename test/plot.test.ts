// The SVG line chart: every finite point becomes a coordinate inside the plot area, ticks
// are round numbers, and bad data gets a clear error rather than an empty picture.
import { describe, expect, it } from 'vitest';
import { lineChartSvg, linearTicks, tickLabel } from '../tools/plot.js';
import { freshSeed, rng } from './helpers.js';

describe('plot', () => {
  it('draws one polyline per series with all its points inside the frame', () => {
    const r = rng(freshSeed());
    const a: [number, number][] = Array.from({ length: 7 }, (_, i) => [i, r() * 10 - 3]);
    const b: [number, number][] = Array.from({ length: 5 }, (_, i) => [i * 1.5, r()]);
    const svg = lineChartSvg({ title: 'T <&>', xLabel: 'step', yLabel: 'loss', series: [{ name: 'ep', points: a }, { name: 'bp', points: b }] });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('T &lt;&amp;&gt;');
    const lines = [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) => m[1].split(' '));
    expect(lines.map((l) => l.length)).toEqual([7, 5]);
    for (const l of lines) {
      for (const p of l) {
        const [x, y] = p.split(',').map(Number);
        expect(x).toBeGreaterThanOrEqual(70 - 1e-9);
        expect(x).toBeLessThanOrEqual(640 - 160 + 1e-9);
        expect(y).toBeGreaterThanOrEqual(36 - 1e-9);
        expect(y).toBeLessThanOrEqual(400 - 50 + 1e-9);
      }
    }
    // x is increasing in the data, so it must be increasing on the page.
    const xs = lines[0].map((p) => Number(p.split(',')[0]));
    for (let i = 1; i < xs.length; i++) expect(xs[i]).toBeGreaterThan(xs[i - 1]);
  });

  it('round ticks cover the range', () => {
    const r = rng(freshSeed());
    const lo = -r() * 3;
    const hi = 1 + r() * 50;
    const t = linearTicks(lo, hi);
    expect(t.length).toBeGreaterThanOrEqual(3);
    expect(t.length).toBeLessThanOrEqual(8);
    const step = t[1] - t[0];
    expect(t[0]).toBeLessThanOrEqual(lo + step);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(hi - step);
    expect(tickLabel(0.1 + 0.2)).toBe('0.3');
  });

  it('log axes skip non-positive values and refuse data with none', () => {
    const svg = lineChartSvg({ title: '', xLabel: '', yLabel: '', logY: true, series: [{ name: 's', points: [[0, 1], [1, 0], [2, 100]] }] });
    expect([...svg.matchAll(/<circle/g)].length).toBe(2);
    expect(() => lineChartSvg({ title: '', xLabel: '', yLabel: '', logY: true, series: [{ name: 's', points: [[0, -1]] }] })).toThrow(/log axis/);
  });
});
