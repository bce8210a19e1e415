// The training progress bar: its formatting, and when and how it draws.
import { describe, expect, it } from 'vitest';
import { Progress, formatDuration, formatProgress, formatRate } from '../tools/progress.js';

function sink(isTTY: boolean) {
  const out: string[] = [];
  return { out, stream: { isTTY, write: (s: string) => out.push(s) } };
}

describe('progress formatting', () => {
  it('durations and rates', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(7.4)).toBe('0:07');
    expect(formatDuration(754)).toBe('12:34');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(NaN)).toBe('--:--');
    expect(formatDuration(-1)).toBe('--:--');
    expect(formatRate(0.523)).toBe('0.52');
    expect(formatRate(12.34)).toBe('12.3');
    expect(formatRate(1234.4)).toBe('1234');
    expect(formatRate(NaN)).toBe('-');
  });

  it('a line with bar, percent, counts, rate, elapsed and ETA', () => {
    const s = formatProgress({ label: 'epoch 1/3', done: 250, total: 1000, rate: 50, elapsedS: 5, extra: 'loss 0.4321', barWidth: 10 });
    expect(s).toBe('epoch 1/3  [##........]   25%  250/1000 img  50.0 img/s  0:05 elapsed  ETA 0:15  loss 0.4321');
    // Unknown rate: no ETA; done past total clamps the bar.
    expect(formatProgress({ label: 'x', done: 0, total: 10, rate: NaN, elapsedS: 0, barWidth: 4 })).toBe('x  [....]    0%  0/10 img  - img/s  0:00 elapsed  ETA --:--');
    expect(formatProgress({ label: 'x', done: 12, total: 10, rate: 1, elapsedS: 0, barWidth: 4 })).toContain('[####]  100%');
    expect(formatProgress({ label: 'x', done: 1, total: 10, rate: 1, elapsedS: 0, barWidth: 0 })).not.toContain('[');
  });
});

describe('Progress', () => {
  it('on a terminal redraws in place (at most 10 times a second) and ends the line on finish', () => {
    let t = 0;
    const { out, stream } = sink(true);
    const p = new Progress({ total: 100, label: 'e1', stream, now: () => t });
    t = 1000;
    p.update(10);
    t = 1050;
    p.update(12); // within 100 ms: not drawn
    t = 2000;
    p.update(20, 'loss 1');
    expect(out.length).toBe(2);
    for (const s of out) {
      expect(s.startsWith('\r')).toBe(true);
      expect(s).not.toContain('\n');
    }
    // 20 images in 2 s: 10 img/s, 80 to go: 8 s.
    expect(out[1]).toContain('10.0 img/s');
    expect(out[1]).toContain('ETA 0:08');
    expect(out[1]).toContain('loss 1');
    p.finish();
    expect(out[out.length - 1]).toBe('\n');
  });

  it('without a terminal prints whole lines every interval, and the last one', () => {
    let t = 0;
    const { out, stream } = sink(false);
    const p = new Progress({ total: 100, label: 'e1', stream, now: () => t, intervalS: 5 });
    for (let i = 1; i <= 100; i++) {
      t = i * 200; // 5 img/s, 20 s in all
      p.update(i);
    }
    p.finish();
    // Lines at 0.2 s (first update), then every 5 s, and at the end.
    expect(out.length).toBeGreaterThanOrEqual(4);
    expect(out.length).toBeLessThanOrEqual(6);
    for (const s of out) {
      expect(s.endsWith('\n')).toBe(true);
      expect(s).not.toContain('\r');
    }
    expect(out[out.length - 1]).toContain('100/100 img');
    expect(out[out.length - 1]).toContain('5.00 img/s');
  });

  it('measures the rate over a recent window, so a slow start fades out', () => {
    let t = 0;
    const { stream } = sink(false);
    const p = new Progress({ total: 1000, stream, now: () => t, windowS: 10 });
    t = 30_000;
    p.update(10); // 10 images in the first 30 s
    for (let i = 1; i <= 20; i++) {
      t = 30_000 + i * 1000;
      p.update(10 + 20 * i); // then 20 img/s
    }
    expect(p.line()).toContain('20.0 img/s');
  });
});
