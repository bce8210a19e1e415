// The SVG plots `nudge train --plot` and `--energy-trace` write.
import { describe, expect, it } from 'vitest';
import { energyTraceSvg, stackSvgs, trainingCurvesSvg } from '../tools/train-plots.js';

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

describe('training plots', () => {
  it('stacks standalone charts into one document, one below the other', () => {
    const a = '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="400" viewBox="0 0 640 400"></svg>';
    const b = '<svg xmlns="http://www.w3.org/2000/svg" width="500" height="300" viewBox="0 0 500 300"></svg>';
    const s = stackSvgs([a, b]);
    expect(s).toMatch(/^<svg [^>]*width="640" height="700"/);
    expect(s).toContain('<svg x="0" y="0" xmlns');
    expect(s).toContain('<svg x="0" y="400" xmlns');
    expect(() => stackSvgs(['<svg></svg>'])).toThrow(/width and height/);
  });

  it('training curves: loss and accuracy panels with a point per epoch', () => {
    const epochs = [0, 1, 2].map((epoch) => ({ epoch, trainLoss: 1 / (epoch + 1), testLoss: 1.1 / (epoch + 1), top1: 0.5 + 0.1 * epoch, top5: 0.9 }));
    const s = trainingCurvesSvg('net bp', epochs);
    expect(count(s, /<svg /g)).toBe(3);
    expect(s).toContain('net bp: loss');
    expect(s).toContain('net bp: test accuracy');
    for (const name of ['train loss', 'test loss', 'top-1', 'top-5']) expect(s).toContain(`>${name}</text>`);
    expect(count(s, /<circle /g)).toBe(12);
  });

  it('energy trace: F change per phase and E_k per layer (zeros left off the log axis)', () => {
    const points = (sign: number) =>
      [0, 1, 2].map((it) => ({ iteration: it, layers: [0, it * 0.1, it * 0.2], E: it * 0.3, C: 10 - it, F: it * 0.3 + sign * 0.02 * (10 - it) }));
    const s = energyTraceSvg('net', [{ epoch: 0, phases: [{ beta: 0.02, points: points(1) }, { beta: -0.02, points: points(-1) }] }]);
    expect(s).toContain('>epoch 1, beta +0.02</text>');
    expect(s).toContain('>epoch 1, beta -0.02</text>');
    expect(s).toContain('>layer 3</text>');
    // 2 phases x 3 points, then layers 2 and 3 at iterations 1, 2 (layer 1 is all zero).
    expect(count(s, /<circle /g)).toBe(6 + 4);
  });
});
