// The plots `nudge train` writes: training curves (--plot) and energy traces (--energy-trace).
import { EnergyPoint } from '../pcn/ep.js';
import { lineChartSvg } from './plot.js';

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  testLoss: number;
  top1: number;
  top5: number;
}

export interface EnergyTraceRecord {
  epoch: number;
  phases: { beta: number; points: EnergyPoint[] }[];
}

/** Stacks standalone SVG documents (as lineChartSvg writes them) vertically in one document. */
export function stackSvgs(docs: string[]): string {
  let y = 0;
  let width = 0;
  const parts = docs.map((d) => {
    const m = /<svg[^>]*\swidth="(\d+(?:\.\d+)?)"[^>]*\sheight="(\d+(?:\.\d+)?)"/.exec(d);
    if (!m) throw new Error('stackSvgs: a document without width and height');
    const w = Number(m[1]);
    const h = Number(m[2]);
    const placed = d.replace('<svg ', `<svg x="0" y="${y}" `);
    y += h;
    width = Math.max(width, w);
    return placed;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}">\n${parts.join('')}</svg>\n`;
}

/** Loss (train and test) and test top-1/top-5 per epoch, two charts in one SVG. */
export function trainingCurvesSvg(title: string, epochs: EpochRecord[]): string {
  const x = (e: EpochRecord) => e.epoch + 1;
  const loss = lineChartSvg({
    title: `${title}: loss`,
    xLabel: 'epoch',
    yLabel: 'cross-entropy',
    series: [
      { name: 'train loss', points: epochs.map((e) => [x(e), e.trainLoss]) },
      { name: 'test loss', points: epochs.map((e) => [x(e), e.testLoss]) },
    ],
  });
  const acc = lineChartSvg({
    title: `${title}: test accuracy`,
    xLabel: 'epoch',
    yLabel: 'accuracy (%)',
    series: [
      { name: 'top-1', points: epochs.map((e) => [x(e), 100 * e.top1]) },
      { name: 'top-5', points: epochs.map((e) => [x(e), 100 * e.top5]) },
    ],
  });
  return stackSvgs([loss, acc]);
}

/**
 * The energy through the relaxation: the change of F = E + beta C per iteration for every traced phase, and
 * E_k per layer for the first epoch's first phase.
 */
export function energyTraceSvg(title: string, records: EnergyTraceRecord[]): string {
  const phaseName = (r: EnergyTraceRecord, beta: number) => `epoch ${r.epoch + 1}, beta ${beta > 0 ? '+' : ''}${beta}`;
  const total = lineChartSvg({
    title: `${title}: F = E + beta C minus its free-state value (sums over the batch)`,
    xLabel: 'iteration',
    yLabel: 'F - F(free)',
    // The phases' F differ by 2 beta C at the free state already; their changes are what the relaxation does.
    series: records.flatMap((r) => r.phases.map((ph) => ({ name: phaseName(r, ph.beta), points: ph.points.map((p): [number, number] => [p.iteration, p.F - ph.points[0].F]) }))),
  });
  const first = records[0]?.phases[0];
  if (!first) return total;
  const L = first.points[0]?.layers.length ?? 0;
  // E_k is 0 at the free state, so the log axis starts at iteration 1 (zeros are left out).
  const layers = lineChartSvg({
    title: `${title}: layer energies E_k, ${phaseName(records[0], first.beta)}`,
    xLabel: 'iteration',
    yLabel: 'E_k = 1/2 ||e_k||^2',
    logY: true,
    series: Array.from({ length: L }, (_, k) => ({
      name: `layer ${k + 1}`,
      points: first.points.filter((p) => p.layers[k] > 0).map((p): [number, number] => [p.iteration, p.layers[k]]),
    })),
  });
  return stackSvgs([total, layers]);
}
