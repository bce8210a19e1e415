// `npm run bench -- step`: time per training step of EP (centered, random) and BP on the same
// model, batch and kernels, in the same run; the ratio to BP next to the FLOP model's floor
// (pcn/cost.ts); where the time goes (free phase, relaxation, weight gradient, optimizer, and
// per layer); and the peak GPU memory of each algorithm.
//
//   npm run bench -- step [--model vgg5|vgg10|both] [--batch 1] [--input 32|64] [--reps 2]
//                         [--K N] [--beta X] [--algorithms ep-centered,ep-random,bp]
//                         [--sweep async|sync|topdown] [--lazy true|false] [--tol X] [--double-batch true|false]
//                         [--per-layer true|false] [--fuse true|false|both] [--adapter NAME]
//
// Inputs default to 32 (VGG5) and 64 (VGG10); batch 1 and 2 reps keep a lavapipe run short
// (use --input 16 / 32 there); on a GPU use e.g. --batch 128 --reps 5.
import { parseArgs } from 'node:util';
import { Backend, Tensor, WebGPUBackend, createBackend, scope } from '../engine/index.js';
import { disposeNudged, eachErrorParamVjp, newNudgeStats, nudge, planPhases, NudgeStats, Scheme, Sweep } from '../pcn/ep.js';
import { Params } from '../pcn/layers.js';
import { PAPER_DEFAULTS, vgg10, vgg5 } from '../pcn/models.js';
import { ModelSpec, Network, disposeState } from '../pcn/network.js';
import { Sgd } from '../pcn/optim.js';
import { Algorithm, TrainConfig, trainStep } from '../pcn/train.js';
import { layerFlops, stepFlops } from '../pcn/cost.js';
import { printTable, timeOp } from './timing.js';

interface Stages {
  free: number;
  relax: number;
  wgrad: number;
  opt: number;
}

const MB = 1024 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Wall time of what fn records, to queue completion (the queue is drained first). */
async function wall(be: Backend, fn: () => void): Promise<number> {
  await be.sync();
  const t0 = performance.now();
  fn();
  await be.sync();
  return performance.now() - t0;
}

/** One training step split into stages, each timed to queue completion. */
async function stagedStep(net: Network, sgd: Sgd, x: Tensor, y: Tensor, cfg: TrainConfig, lr: number, stats?: NudgeStats): Promise<Stages> {
  const be = net.be;
  const st: Stages = { free: 0, relax: 0, wgrad: 0, opt: 0 };
  let free!: ReturnType<Network['forward']>;
  st.free = await wall(be, () => {
    free = net.forward(x);
    if (cfg.algorithm !== 'bp') be.softmaxCrossEntropy(free.h[net.depth], y, 'mean').grad.dispose();
  });
  let grads!: Params[];
  if (cfg.algorithm === 'bp') {
    st.wgrad = await wall(be, () => {
      const r = net.backward(free, y);
      r.loss.dispose();
      grads = r.grads;
    });
  } else {
    const scheme = cfg.algorithm.slice(3) as Scheme;
    const doubleBatch = cfg.doubleBatch && scheme === 'centered';
    const plan = planPhases(net, free, { beta: cfg.beta, K: cfg.K, scheme, sweep: cfg.sweep, lazy: cfg.lazy, tol: cfg.tol, stats, signSeed: 'bench', doubleBatch }, y);
    for (const [p, ph] of plan.phases.entries()) {
      await be.sync();
      const t0 = performance.now();
      const s = await nudge(net, ph.free ?? free, ph.labels ?? y, ph.opts);
      await be.sync();
      st.relax += performance.now() - t0;
      st.wgrad += await wall(be, () => eachErrorParamVjp(net, s, ph.rowScale, (i, g) => plan.take(p, i, g)));
      disposeNudged(s);
    }
    grads = plan.result();
    plan.dispose();
  }
  disposeState(free);
  st.opt = await wall(be, () => sgd.step(net.params(), grads, lr));
  return st;
}

interface AlgoResult {
  algorithm: Algorithm;
  /** The algorithm, marked when it ran on the unfused conv-block ops. */
  label: string;
  stepMs: number;
  stages: Stages;
  peakBytes: number | null;
  extraBytes: number | null;
  stats: NudgeStats | null;
  /** 2 when the centered phases ran as one double batch (each op then carries 2N rows). */
  rows: number;
}

async function benchModel(be: Backend, spec: ModelSpec, o: { batch: number; reps: number; K: number; beta: number; algorithms: Algorithm[]; lazy: boolean; sweep: Sweep; doubleBatch: boolean; tol?: number; perLayer: boolean; fuse: boolean[] }): Promise<void> {
  const net = new Network(be, spec);
  net.init('bench-step');
  const [H, W, C] = spec.input;
  const N = o.batch;
  const x = be.uniform([N, H, W, C], -1, 1, 'bench-x').keep();
  const labelVals = Array.from({ length: N }, (_, i) => (i * 7919) % spec.classes);
  const y = be.fromArray(labelVals, [N], 'u32').keep();
  const sgdCfg = { lr: 1e-3, momentum: 0.9, weightDecay: 3e-4, lrMin: 0 };
  const results: AlgoResult[] = [];
  const gpu = be instanceof WebGPUBackend ? be : null;
  const variants = o.algorithms.flatMap((algorithm) => o.fuse.map((fuse) => ({ algorithm, fuse })));
  for (const { algorithm, fuse } of variants) {
    if (gpu) gpu.fuse = fuse;
    const cfg: TrainConfig = { algorithm, epochs: 1, batch: N, beta: o.beta, K: o.K, sweep: o.sweep, lazy: o.lazy, tol: o.tol, doubleBatch: o.doubleBatch && algorithm === 'ep-centered', sgd: sgdCfg, seed: 'bench' };
    const sgd = new Sgd(be, sgdCfg, net.params());
    // Warm-up (pipelines compile, the pool grows), measuring the peak memory of the step on
    // the way: bytes held by live tensors, which pool growth does not change.
    await be.sync();
    const before = gpu ? gpu.rt.memory().inUseBytes : 0;
    gpu?.rt.resetPeak();
    (await trainStep(net, sgd, x, y, cfg, sgdCfg.lr, 0)).dispose();
    await be.sync();
    const peakBytes = gpu ? gpu.rt.memory().peakInUseBytes : null;
    const extraBytes = peakBytes === null ? null : peakBytes - before;
    const steps: number[] = [];
    for (let r = 0; r < o.reps; r++) {
      await be.sync();
      const t0 = performance.now();
      const loss = await trainStep(net, sgd, x, y, cfg, sgdCfg.lr, 2 + r);
      await be.sync();
      steps.push(performance.now() - t0);
      loss.dispose();
    }
    const staged: Stages[] = [];
    const stats = algorithm === 'bp' ? null : newNudgeStats(net.depth);
    for (let r = 0; r < o.reps; r++) staged.push(await stagedStep(net, sgd, x, y, cfg, sgdCfg.lr, r === 0 ? stats ?? undefined : undefined));
    const stages: Stages = {
      free: median(staged.map((s) => s.free)),
      relax: median(staged.map((s) => s.relax)),
      wgrad: median(staged.map((s) => s.wgrad)),
      opt: median(staged.map((s) => s.opt)),
    };
    results.push({ algorithm, label: fuse ? algorithm : `${algorithm} unfused`, stepMs: median(steps), stages, peakBytes, extraBytes, stats, rows: cfg.doubleBatch ? 2 : 1 });
    sgd.dispose();
  }
  if (gpu) gpu.fuse = true;
  // Ratios against BP as it ran with the same fusion setting.
  const bpOf = (r: AlgoResult) => results.find((b) => b.algorithm === 'bp' && b.label.endsWith('unfused') === r.label.endsWith('unfused'));
  const rows = results.map((r) => {
    const bp = bpOf(r);
    const model = r.algorithm === 'bp' ? 1 : stepFlops(spec, o.K, r.algorithm.slice(3) as Scheme, { lazy: o.lazy, sweep: o.sweep }).ratio;
    const s = r.stages;
    return [
      r.label,
      r.stepMs,
      bp ? (r.stepMs / bp.stepMs).toFixed(2) + 'x' : '',
      model.toFixed(2) + 'x',
      (N * 1000) / r.stepMs,
      s.free,
      s.relax,
      s.wgrad,
      s.opt,
      r.peakBytes === null ? 'n/a' : (r.peakBytes / MB).toFixed(1),
      r.extraBytes === null ? 'n/a' : (r.extraBytes / MB).toFixed(1),
      r.stats ? `${r.stats.iterations}/${r.stats.skipped}` : '',
    ];
  });
  console.log(`\n## ${spec.name}, input ${H}x${W}x${C}, ${spec.classes} classes, batch ${N}, K ${o.K}, beta ${o.beta}, sweep ${o.sweep}, lazy ${o.lazy}${o.doubleBatch ? ', centered as one double batch' : ''}${o.tol !== undefined ? `, tol ${o.tol}` : ''}`);
  console.log('step: median wall time of a whole step to queue completion; stages: the same step split with a sync after each (BP: backward in "wgrad");');
  console.log('FLOP floor: the FLOP model of pcn/cost.ts (EP/BP FLOPs of the schedule); peak: GPU bytes in use at the peak of a step, and above those before it; it/skip: relaxation iterations / skipped layer updates of one step\n');
  printTable(['algorithm', 'step ms', 'vs BP', 'FLOP floor', 'img/s', 'free ms', 'relax ms', 'wgrad ms', 'optim ms', 'peak MB', 'step MB', 'it/skip'], rows);
  if (o.perLayer) await perLayer(net, x, y, results, o);
  x.dispose();
  y.dispose();
}

/**
 * Per layer: the time of one forward (pre-activation), one top-down signal (VJP) and one weight
 * gradient through that layer, and the time each algorithm's schedule spends there (counts of
 * each op from the measured step times the unit times).
 */
async function perLayer(net: Network, x: Tensor, y: Tensor, results: AlgoResult[], o: { reps: number }): Promise<void> {
  const be = net.be;
  const free = net.forward(x);
  const L = net.depth;
  const F = layerFlops(net.spec);
  const unit: { pre: number; vjp: number; grad: number }[] = [];
  for (let k = 1; k <= L; k++) {
    const layer = net.layers[k - 1];
    const v = be.uniform(free.h[k].shape, -1, 1, `v${k}`);
    const opts = { reps: o.reps, useTimestamps: false };
    const pre = (await timeOp(be, () => scope(() => void layer.pre(be, free.h[k - 1])), opts)).medianMs;
    const vjp = k > 1 ? (await timeOp(be, () => scope(() => void layer.vjp(be, v, free.pre[k]!, free.h[k - 1].shape)), opts)).medianMs : 0;
    const grad = (await timeOp(be, () => scope(() => void layer.paramVjp(be, free.h[k - 1], v, free.pre[k]!)), opts)).medianMs;
    v.dispose();
    unit.push({ pre, vjp, grad });
  }
  disposeState(free);
  void y;
  const modelled = (r: AlgoResult, k: number): number => {
    const u = unit[k - 1];
    if (!r.stats) return u.pre + (k > 1 ? u.vjp : 0) + u.grad;
    const phases = r.algorithm === 'ep-centered' ? 2 : 1;
    // stats were summed over the phases of one step; one weight gradient per phase where e_k
    // can be non-zero. A double batch's ops carry 2N rows: counted as two ops at N.
    return u.pre * (1 + r.rows * r.stats.pre[k]) + u.vjp * r.rows * r.stats.vjp[k] + u.grad * phases;
  };
  const headers = ['layer', 'state', 'GFLOP/img', 'fwd ms', 'vjp ms', 'wgrad ms', ...results.map((r) => `${r.label} ms`)];
  const rows = net.layers.map((layer, i) => {
    const k = i + 1;
    return [`${k} ${layer.constructor.name.replace('Layer', '').toLowerCase()}`, layer.outShape.join('x'), F[i] / 1e9, unit[i].pre, unit[i].vjp, unit[i].grad, ...results.map((r) => modelled(r, k))];
  });
  const totals = results.map((r) => net.layers.reduce((a, _, i) => a + modelled(r, i + 1), 0));
  rows.push(['sum (model)', '', F.reduce((a, b) => a + b, 0) / 1e9, '', '', '', ...totals]);
  rows.push(['measured step', '', '', '', '', '', ...results.map((r) => r.stepMs)]);
  console.log('\nper layer: unit times of one op through the layer (median), and each schedule\'s time there = op counts of one measured step x unit times\n');
  printTable(headers, rows);
}

export async function benchStep(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string', default: 'both' },
      batch: { type: 'string', default: '1' },
      input: { type: 'string' },
      reps: { type: 'string', default: '2' },
      K: { type: 'string' },
      beta: { type: 'string' },
      classes: { type: 'string' },
      algorithms: { type: 'string', default: 'ep-centered,ep-random,bp' },
      lazy: { type: 'string', default: 'true' },
      sweep: { type: 'string', default: 'async' },
      'double-batch': { type: 'string', default: 'false' },
      tol: { type: 'string' },
      'per-layer': { type: 'string', default: 'true' },
      adapter: { type: 'string' },
      fuse: { type: 'string', default: 'true' },
    },
  });
  if (!['true', 'false', 'both'].includes(values.fuse!)) throw new Error(`--fuse must be true, false or both, got '${values.fuse}'`);
  const fuse = values.fuse === 'both' ? [true, false] : [values.fuse === 'true'];
  const int = (v: string | undefined, what: string, min = 1): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${what} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const models = values.model === 'both' ? ['vgg5', 'vgg10'] : [values.model!];
  for (const m of models) if (m !== 'vgg5' && m !== 'vgg10') throw new Error(`--model must be vgg5, vgg10 or both, got '${m}'`);
  const algorithms = values.algorithms!.split(',') as Algorithm[];
  for (const a of algorithms) if (!['ep-centered', 'ep-random', 'ep-forward', 'ep-backward', 'bp'].includes(a)) throw new Error(`unknown algorithm '${a}'`);
  const batch = int(values.batch, 'batch')!;
  const reps = int(values.reps, 'reps')!;
  const inputArg = int(values.input, 'input', 8);
  if (!['async', 'sync', 'topdown'].includes(values.sweep!)) throw new Error(`--sweep must be async, sync or topdown, got '${values.sweep}'`);
  const tol = values.tol === undefined ? undefined : Number(values.tol);
  if (tol !== undefined && !(tol > 0)) throw new Error(`--tol must be a positive number, got '${values.tol}'`);
  const be = await createBackend('webgpu', { adapter: values.adapter });
  const info = be instanceof WebGPUBackend ? `${be.gpu.info.name} (${be.gpu.info.driver})` : be.name;
  console.log(`# nudge bench step, ${new Date().toISOString().slice(0, 10)}, adapter ${info}; medians of ${reps} runs after 1 warm-up, wall clock to queue completion`);
  for (const m of models) {
    const d = PAPER_DEFAULTS[m as 'vgg5' | 'vgg10'];
    const classes = int(values.classes, 'classes') ?? (m === 'vgg5' ? 10 : 1000);
    // VGG5 pools three times, VGG10 five.
    const input = inputArg ?? (m === 'vgg5' ? 32 : 64);
    const pools = m === 'vgg5' ? 8 : 32;
    if (input % pools !== 0) throw new Error(`--input for ${m} must be a multiple of ${pools}, got ${input}`);
    const spec = m === 'vgg5' ? vgg5([input, input, 3], classes) : vgg10([input, input, 3], classes);
    await benchModel(be, spec, {
      batch,
      reps,
      K: int(values.K, 'K') ?? d.K,
      beta: values.beta === undefined ? d.beta : Number(values.beta),
      algorithms,
      lazy: values.lazy !== 'false',
      sweep: values.sweep as Sweep,
      doubleBatch: values['double-batch'] === 'true',
      tol,
      perLayer: values['per-layer'] !== 'false',
      fuse,
    });
  }
}
