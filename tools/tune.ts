// `nudge tune`: pre-tunes every conv and matmul shape one training step of a model uses,
// and prints what was chosen and how much faster it is than the default kernel.
import { parseArgs } from 'node:util';
import {
  ConvGeometry,
  MatmulShape,
  Problem,
  TunableOpName,
  TuneResult,
  Tuner,
  WebGPUBackend,
  convGeometry,
  createBackend,
  isTime,
  tunerOptionsFromEnv,
} from '../engine/index.js';
import { writeFileAtomic } from '../engine/files.js';
import { ConvLayer, DenseLayer } from '../pcn/layers.js';
import { ModelSpec, buildLayers } from '../pcn/network.js';
import { smallNet, vgg10, vgg10Skip, vgg5 } from '../pcn/models.js';
import { UserError } from './errors.js';

export const TUNE_USAGE = `  tune       pre-tune the conv/matmul kernels of a model's training step on this adapter
             --model vgg5|vgg10|vgg10skip|small  --arch c16p,c32p (small)  --batch N (default 64)
             --input N        spatial input size (default: 32 vgg5, 224 vgg10, 28 small)
             --budget 30s     time budget per shape (ms, s or m; default 10s)
             --ops conv2d,conv2dBackwardData,conv2dBackwardFilter,matmul   (default all)
             --force          re-tune shapes already in the cache
             --double-batch   the shapes of training with --double-batch (centered EP, both phases as 2N)
             --cache FILE     tune cache file (default: per adapter under $XDG_CACHE_HOME/nudge/tune)
             --json FILE      also write the results as JSON`;

export interface TuneJob {
  op: TunableOpName;
  problem: Problem;
  /** Which layer(s) use it, for the table. */
  where: string;
}

export function modelSpec(model: string, input: number | undefined, arch: string | undefined): ModelSpec {
  switch (model) {
    case 'vgg5':
      return vgg5([input ?? 32, input ?? 32, 3], 10);
    case 'vgg10':
      return vgg10([input ?? 224, input ?? 224, 3], 1000);
    case 'vgg10skip':
      return vgg10Skip([input ?? 224, input ?? 224, 3], 1000);
    case 'small':
      return smallNet(arch ?? 'c16p,c32p', [input ?? 28, input ?? 28, 1], 10);
    default:
      throw new UserError(`unknown model '${model}' (vgg5, vgg10, vgg10skip, small)`);
  }
}

/**
 * The conv and matmul problems one training step (EP or BP) runs: per conv layer the
 * forward, the backward-data (not for the first layer: nothing below the input needs a
 * signal) and the backward-filter, and the same three for a strided 1x1 skip entering the
 * layer; per dense layer the forward matmul, A*W^T for the
 * signal below and X^T*G for the weight gradient. Shapes shared by several layers are
 * listed once.
 */
export function trainingShapes(spec: ModelSpec, batch: number, opts: { doubleBatch?: boolean } = {}): TuneJob[] {
  if (opts.doubleBatch) {
    // Centered EP with both phases as one double batch: the free phase's forward at N,
    // everything of the relaxation and the weight gradient at 2N, except the first layer's
    // forward (its input is clamped, so its pre-activation is the free phase's, stacked).
    const forward = (j: TuneJob) => j.op === 'conv2d' || (j.op === 'matmul' && !(j.problem as MatmulShape).transA && !(j.problem as MatmulShape).transB);
    const free = trainingShapes(spec, batch).filter(forward);
    const keys = new Set(free.map((j) => Tuner.key(j.op, j.problem)));
    const relaxed = trainingShapes(spec, 2 * batch).filter((j) => !(forward(j) && j.where === 'L1') && !keys.has(Tuner.key(j.op, j.problem)));
    return [...free, ...relaxed];
  }
  const jobs = new Map<string, TuneJob>();
  const add = (op: TunableOpName, problem: Problem, where: string) => {
    const key = Tuner.key(op, problem);
    const j = jobs.get(key);
    if (j) j.where += `,${where}`;
    else jobs.set(key, { op, problem, where });
  };
  buildLayers(spec).forEach((layer, i) => {
    const name = `L${i + 1}`;
    if (layer instanceof ConvLayer) {
      const g: ConvGeometry = convGeometry('conv2d', [batch, ...layer.inShape], layer.filterShape, layer.opts);
      add('conv2d', g, name);
      if (i > 0) add('conv2dBackwardData', g, name);
      add('conv2dBackwardFilter', g, name);
      if (layer.skip) {
        // The strided 1x1 skip from an earlier state: its conv, its VJP to that state, its filter gradient.
        const sg = convGeometry('conv2d', [batch, ...layer.skip.inShape], layer.skipFilterShape, { stride: layer.skip.stride as 1 | 2, pad: 0 });
        const where = `${name}skip`;
        add('conv2d', sg, where);
        add('conv2dBackwardData', sg, where);
        add('conv2dBackwardFilter', sg, where);
      }
    } else if (layer instanceof DenseLayer) {
      const F = layer.features;
      const O = layer.outShape[0];
      add('matmul', { M: batch, K: F, N: O, transA: false, transB: false } satisfies MatmulShape, name);
      if (i > 0) add('matmul', { M: batch, K: O, N: F, transA: false, transB: true }, name);
      add('matmul', { M: F, K: batch, N: O, transA: true, transB: false }, name);
    }
  });
  return [...jobs.values()];
}

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
  if (!m) throw new UserError(`--budget: cannot read '${s}' (use e.g. 500ms, 30s, 2m)`);
  const v = Number(m[1]);
  return m[2] === 'ms' ? v : m[2] === 'm' ? v * 60_000 : v * 1000;
}

/**
 * A stand-in for the GPU clock, for tests (NUDGE_SIMULATE_TIMESTAMPS): 'tick:NS' rounds
 * every timestamp down to a multiple of NS ns (a coarse timer), 'stuck' holds them at 0.
 */
export function simulatedClock(spec: string): (ns: bigint) => bigint {
  if (spec === 'stuck') return () => 0n;
  const m = /^tick:([1-9]\d*)$/.exec(spec);
  if (!m) throw new UserError(`NUDGE_SIMULATE_TIMESTAMPS: cannot read '${spec}' (use tick:NS or stuck)`);
  const q = BigInt(m[1]);
  return (t) => t - (t % q);
}

/** GFLOP/s with 2 decimals, or 'not timed' where the default could not be measured. */
function formatGflops(g: number | null): string {
  return isTime(g) ? g.toFixed(2) : 'not timed';
}

/** How many times faster than the default, only from two measured (positive, finite) times. */
export function speedUp(r: Pick<TuneResult, 'ms' | 'defaultMs'>): string | null {
  return isTime(r.ms) && isTime(r.defaultMs) ? `${(r.defaultMs / r.ms).toFixed(2)}x` : null;
}

function formatRow(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i >= cells.length - 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
}

export function resultsTable(rows: { job: TuneJob; r: TuneResult }[]): string {
  const head = ['op', 'shape', 'layers', 'chosen config', 'tried', 'default GFLOP/s', 'tuned GFLOP/s', 'speed-up'];
  const body = rows.map(({ job, r }) => [
    r.op,
    r.shape,
    job.where,
    r.label + (r.fromCache ? ' (cached)' : ''),
    `${r.tried}/${r.spaceSize + 1}`,
    formatGflops(r.defaultGflops),
    formatGflops(r.gflops),
    speedUp(r) ?? '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  widths[3] = Math.min(widths[3], 60);
  return [formatRow(head, widths), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map((b) => formatRow(b, widths))].join('\n');
}

export async function tuneCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      model: { type: 'string', default: 'vgg5' },
      arch: { type: 'string' },
      batch: { type: 'string', default: '64' },
      input: { type: 'string' },
      budget: { type: 'string', default: '10s' },
      ops: { type: 'string' },
      force: { type: 'boolean', default: false },
      'double-batch': { type: 'boolean', default: false },
      cache: { type: 'string' },
      json: { type: 'string' },
      reps: { type: 'string', default: '5' },
    },
  });
  const batch = Number(values.batch);
  if (!Number.isInteger(batch) || batch < 1) throw new UserError(`--batch must be a positive integer, got '${values.batch}'`);
  const input = values.input === undefined ? undefined : Number(values.input);
  if (input !== undefined && (!Number.isInteger(input) || input < 2)) throw new UserError(`--input must be an integer >= 2, got '${values.input}'`);
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) throw new UserError(`--reps must be a positive integer`);
  const budgetMs = parseDuration(values.budget!);
  const spec = modelSpec(values.model!, input, values.arch);
  let jobs = trainingShapes(spec, batch, { doubleBatch: values['double-batch'] });
  if (values.ops) {
    const want = new Set(values.ops.split(','));
    for (const o of want) if (!['conv2d', 'conv2dBackwardData', 'conv2dBackwardFilter', 'matmul'].includes(o)) throw new UserError(`--ops: unknown op '${o}'`);
    jobs = jobs.filter((j) => want.has(j.op));
  }
  const clock = process.env.NUDGE_SIMULATE_TIMESTAMPS ? simulatedClock(process.env.NUDGE_SIMULATE_TIMESTAMPS) : null;
  const be = (await createBackend('webgpu', { tune: false })) as WebGPUBackend;
  be.rt.timestampClock = clock;
  const tuner = new Tuner(be, tunerOptionsFromEnv({ budgetMs, reps, ...(values.cache ? { cacheFile: values.cache } : {}) }));
  console.log(`nudge tune: ${spec.name} batch ${batch} on ${be.gpu.info.name} (${be.gpu.info.description}); ${jobs.length} shapes, budget ${budgetMs / 1000} s each; cache ${tuner.cacheFile ?? '(none)'}`);
  const rows: { job: TuneJob; r: TuneResult }[] = [];
  const t0 = performance.now();
  for (const [i, job] of jobs.entries()) {
    const label = `[${i + 1}/${jobs.length}] ${job.op} ${Tuner.key(job.op, job.problem).split('|')[1]}`;
    const tty = process.stderr.isTTY;
    const r = await tuner.tune(job.op, job.problem, {
      force: values.force,
      onProgress: (p) => {
        if (tty) process.stderr.write(`\r${label}: ${p.candidate} tried of ${p.spaceSize}, best ${p.bestMs.toFixed(2)} ms, ${(p.elapsedMs / 1000).toFixed(0)}/${budgetMs / 1000} s   `);
      },
    });
    if (tty) process.stderr.write('\r\x1b[K');
    const elapsed = (performance.now() - t0) / 1000;
    const eta = (elapsed / (i + 1)) * (jobs.length - i - 1);
    const ratio = speedUp(r);
    const rate = ratio === null ? 'not timed (too fast for the timer), keeps the default' : `${formatGflops(r.gflops)} GFLOP/s (${ratio} default)`;
    process.stderr.write(`${label}: ${r.label} ${rate}${r.fromCache ? ' cached' : ''}; ${elapsed.toFixed(0)} s, ETA ${eta.toFixed(0)} s\n`);
    rows.push({ job, r });
  }
  console.log(resultsTable(rows));
  if (values.json) {
    const doc = { model: spec.name, batch, adapter: be.gpu.info, budgetMs, results: rows.map(({ job, r }) => ({ ...r, where: job.where })) };
    try {
      writeFileAtomic(values.json, Buffer.from(JSON.stringify(doc, null, 1) + '\n'));
    } catch (e) {
      throw new UserError(`cannot write --json ${values.json}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const untimed = rows.filter(({ r }) => r.defaultMs === null).length;
  if (untimed > 0) process.stderr.write(`nudge tune: ${untimed} of ${rows.length} shapes could not be timed (the default kernel ran too fast for this adapter's timer): they keep the default kernels\n`);
  if (tuner.unsavedCount > 0) throw new UserError(`could not save ${tuner.unsavedCount} tune result(s) to ${tuner.cacheFile}: ${tuner.saveError}`);
  return 0;
}
