// `npm run bench -- analog-study`: the same small conv PCN trained with centered EP and with
// BP on the analog backend, under increasing output read noise and under decreasing update
// resolution (dw_min), same seed, data and epochs for every point. Writes an SVG with one
// panel per non-ideality and prints a markdown table of test accuracy (measured under the
// same device model it was trained on).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AnalogBackend, Backend, DeviceModel, createBackend, parseDeviceModel, seedFromString } from '../engine/index.js';
import { PAPER_DEFAULTS, smallNet } from '../pcn/models.js';
import { Network } from '../pcn/network.js';
import { Algorithm, LabelledImages, TrainConfig, train } from '../pcn/train.js';
import { FASHION_MNIST_DIR, gather, loadIdxImageSet } from '../tools/data/dataset.js';
import { lineChartSvg } from '../tools/plot.js';

/** x value standing for exact digital updates on the resolution axis. */
const DIGITAL_BITS = 12;

interface Point {
  series: 'read noise' | 'update resolution';
  x: number;
  label: string;
  model: DeviceModel;
}

function points(noise: number[], bits: number[], range: number): Point[] {
  const out: Point[] = [];
  for (const s of noise) {
    const io = { outNoise: s, noiseManagement: true };
    out.push({ series: 'read noise', x: s, label: `out noise ${s}`, model: parseDeviceModel(s === 0 ? {} : { forward: io, backward: io }, `noise-${s}`) });
  }
  out.push({ series: 'update resolution', x: DIGITAL_BITS, label: 'digital updates', model: parseDeviceModel({}, 'digital') });
  for (const b of bits) {
    const update = { dwMin: range / 2 ** b, wMax: range / 2, wMin: -range / 2 };
    out.push({ series: 'update resolution', x: b, label: `${b} bits (dw_min ${(range / 2 ** b).toPrecision(3)})`, model: parseDeviceModel({ update }, `bits-${b}`) });
  }
  return out;
}

function dataSet(split: 'train' | 'test'): LabelledImages {
  const set = loadIdxImageSet(FASHION_MNIST_DIR, split);
  return { shape: set.shape, classes: set.classes, count: set.count, batch: (idx) => gather(set, idx) };
}

function list(v: string, what: string): number[] {
  if (v.trim() === '') return [];
  const xs = v.split(',').map(Number);
  if (xs.some((x) => !Number.isFinite(x))) throw new Error(`--${what} must be comma-separated numbers, got '${v}'`);
  return xs;
}

export async function benchAnalogStudy(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      'train-limit': { type: 'string', default: '2048' },
      'test-limit': { type: 'string', default: '1000' },
      epochs: { type: 'string', default: '1' },
      arch: { type: 'string', default: 'c16p,c32p' },
      noise: { type: 'string', default: '0,0.02,0.05,0.1,0.2,0.5' },
      bits: { type: 'string', default: '8,6,4,3' },
      range: { type: 'string', default: '3' },
      algorithms: { type: 'string', default: 'ep-centered,bp' },
      betas: { type: 'string', default: String(PAPER_DEFAULTS.vgg5.beta) },
      seed: { type: 'string', default: '1' },
      out: { type: 'string', default: 'bench/analog-study.svg' },
      base: { type: 'string', default: 'webgpu' },
    },
  });
  const trainLimit = Number(values['train-limit']);
  const testLimit = Number(values['test-limit']);
  // A run is an algorithm and, for EP, a beta: EP's gradient is a difference of two noisy
  // equilibria divided by 2 beta, so its noise tolerance should depend on beta.
  const betas = list(values.betas!, 'betas');
  const runs: { algorithm: Algorithm; beta: number; name: string }[] = (values.algorithms!.split(',') as Algorithm[]).flatMap((algorithm): { algorithm: Algorithm; beta: number; name: string }[] =>
    algorithm === 'bp'
      ? [{ algorithm, beta: betas[0], name: 'BP' }]
      : betas.map((beta) => ({ algorithm, beta, name: `EP-${algorithm.slice(3)}${betas.length > 1 ? ` β=${beta}` : ''}` })),
  );
  const pts = points(list(values.noise!, 'noise'), list(values.bits!, 'bits'), Number(values.range));
  const trainSet = dataSet('train');
  const testSet = dataSet('test');
  const d = PAPER_DEFAULTS.vgg5;
  const inner: Backend = await createBackend(values.base as 'webgpu' | 'reference');
  const spec = smallNet(values.arch!, trainSet.shape, trainSet.classes);
  console.log(
    `analog study: ${spec.name}, ${trainLimit} train / ${testLimit} test Fashion-MNIST images, ${values.epochs} epoch(s), ` +
      `${runs.map((r) => r.name).join(', ')}; ${pts.length} device models, base backend ${inner.name}`,
  );
  const results: { run: string; point: Point; top1: number; seconds: number }[] = [];
  const t0 = performance.now();
  // Identical device models (the ideal point of both series) train once.
  const done = new Map<string, { top1: number; seconds: number }>();
  for (const { algorithm, beta, name: run } of runs) {
    for (const point of pts) {
      const key = `${run}/${JSON.stringify({ ...point.model, name: '' })}`;
      const earlier = done.get(key);
      if (earlier) {
        results.push({ run, point, ...earlier });
        console.log(`  ${run.padEnd(24)} ${point.series.padEnd(17)} ${point.label.padEnd(32)} top-1 ${(100 * earlier.top1).toFixed(2)}%  (same model as an earlier point)`);
        continue;
      }
      const cfg: TrainConfig = {
        algorithm,
        epochs: Number(values.epochs),
        batch: d.batch,
        beta,
        K: d.K,
        sweep: 'async',
        seed: values.seed!,
        sgd: { lr: d.lr, momentum: d.momentum, weightDecay: d.weightDecay, lrMin: d.lrMin },
      };
      const be = new AnalogBackend(inner, point.model, { seed: seedFromString(`${values.seed}/analog`) });
      const net = new Network(be, spec);
      net.init(values.seed!);
      let top1 = NaN;
      let seconds = NaN;
      try {
        const r = await train(net, trainSet, testSet, cfg, {}, { trainLimit, testLimit, logEvery: 1000 });
        top1 = r.test.top1;
        seconds = r.seconds;
      } catch (e) {
        // A diverged run is a result too (accuracy NaN, shown as such); anything else is a bug.
        if ((e as Error).name !== 'NonFiniteError') throw e;
        console.log(`  ${run} ${point.label}: ${(e as Error).message}`);
      }
      for (const p of net.params()) {
        p.w.dispose();
        p.b.dispose();
      }
      be.dispose();
      results.push({ run, point, top1, seconds });
      done.set(key, { top1, seconds });
      console.log(`  ${run.padEnd(24)} ${point.series.padEnd(17)} ${point.label.padEnd(32)} top-1 ${(100 * top1).toFixed(2)}%  ${seconds.toFixed(0)} s`);
    }
  }
  // Chance level in both panels also puts both y axes on a comparable scale from 10%.
  const panel = (series: Point['series'], title: string, xLabel: string) => {
    const xs = pts.filter((p) => p.series === series).map((p) => p.x);
    return lineChartSvg({
      title,
      xLabel,
      yLabel: 'test top-1 accuracy (%)',
      series: [
        ...runs.map(({ name }) => ({
          name,
          points: results
            .filter((r) => r.run === name && r.point.series === series)
            .map((r) => [r.point.x, 100 * r.top1] as [number, number])
            .sort((p, q) => p[0] - q[0]),
        })),
        { name: 'chance', points: [[Math.min(...xs), 100 / trainSet.classes], [Math.max(...xs), 100 / trainSet.classes]] as [number, number][] },
      ],
    });
  };
  const left = panel('read noise', 'Accuracy vs output read noise', 'output read-noise std (normalized units)');
  const right = panel('update resolution', 'Accuracy vs update resolution', `bits of dw_min (range / 2^bits; ${DIGITAL_BITS} = digital)`);
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="1280" height="400" viewBox="0 0 1280 400">\n' +
    left.replace('<svg ', '<svg x="0" y="0" ') +
    right.replace('<svg ', '<svg x="640" y="0" ') +
    '</svg>\n';
  writeFileSync(values.out!, svg);
  const rows = pts.map((p) => {
    const cells = runs.map(({ name }) => {
      const r = results.find((q) => q.run === name && q.point === p)!;
      return `${(100 * r.top1).toFixed(2)} | ${r.seconds.toFixed(0)}`;
    });
    return `| ${p.series} | ${p.label} | ${cells.join(' | ')} |`;
  });
  console.log(`\n| non-ideality | device model | ${runs.map(({ name }) => `${name} top-1 % | s`).join(' | ')} |`);
  console.log(`|---|---|${runs.map(() => '---:|---:').join('|')}|`);
  for (const r of rows) console.log(r);
  console.log(`\nwrote ${values.out}; wall time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
