// `nudge train`: a PCN trained with EP or BP, with test accuracy per epoch and a JSONL log.
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { AnalogBackend, Backend, DeviceModel, createBackend, loadDeviceModel, seedFromString } from '../engine/index.js';
import { PAPER_DEFAULTS, smallNet, vgg10, vgg10Skip, vgg5 } from '../pcn/models.js';
import { Network, ModelSpec, buildLayers } from '../pcn/network.js';
import { Algorithm, EvalMetrics, LabelledImages, NonFiniteError, Position, evaluate, train } from '../pcn/train.js';
import { paramTensors } from '../pcn/layers.js';
import { Sgd } from '../pcn/optim.js';
import { COSTS, Cost } from '../pcn/loss.js';
import { NamedArray, encodeSafetensors, readSafetensors, writeFileAtomic } from './safetensors.js';
import { FASHION_MNIST_DIR, ImageSet, gather, loadIdxImageSet } from './data/dataset.js';
import { UserError } from './errors.js';
import { Lock, takeLock } from './lock.js';
import { Progress } from './progress.js';
import { EnergyTraceRecord, EpochRecord, energyTraceSvg, trainingCurvesSvg } from './train-plots.js';
import { imagenetDataSet } from './data/imagenet-set.js';

const CHECKPOINT_FORMAT = 'nudge-checkpoint-1';
const ALGORITHMS: Algorithm[] = ['ep-centered', 'ep-random', 'ep-forward', 'ep-backward', 'bp'];

export const TRAIN_USAGE = `  train      train a PCN with Equilibrium Propagation or backprop
             --data fashion-mnist[:DIR]   data set (IDX files; default dir ${FASHION_MNIST_DIR})
             --data imagenet:DIR[:CROP]   a set made by 'nudge data prepare' (crop default 224 of 256)
             --model small|vgg5|vgg10|vgg10skip  default small (conv 16+pool, conv 32+pool, dense 10); vgg10* need >= 32x32 inputs (--data imagenet:DIR[:CROP])
             --arch c16p,c32p             layers of the small model
             --algorithm ep-centered|ep-random|ep-forward|ep-backward|bp  (default ep-centered)
             --epochs N --batch N --lr X --momentum X --weight-decay X --lr-min X  (momentum in [0, 1))
             --beta X --K N --sweep async|sync|topdown  (topdown: L..1 in turn; K 3 is enough there)
             --lazy true|false              skip layers the nudge has not reached (exact; default true)
             --tol X                        stop a relaxation once no state moves by more than X*beta (default off)
             --double-batch                 ep-centered: both phases as one relaxation of a 2N batch (same gradient)
             --cost ce|mse                  cross-entropy (default) or squared error to the one-hot label (VGG5 MSE defaults: lr 0.04, batch 16, output gain 0.2)
             --clamp                        EP: clamp h_L to (1-beta) h_L^0 + beta y instead of nudging (traditional PCN)
             --energy-trace FILE.json       energy per relaxation iteration (first step of each epoch), plot in FILE.svg
             --plot FILE.svg                training curves (loss, top-1/top-5 per epoch)
             --progress on|off              progress bar with images/s and ETA on stderr (default on)
             --train-limit N                train on N images: a fixed random subset (drawn by --seed), reshuffled each epoch
             --test-limit N                 test on the first N test images
             --backend webgpu|reference|analog  (default webgpu)
             --device-model ideal|noisy-inference|reram-softbounds|FILE.json  (analog; see engine/analog/README.md)
             --analog-base webgpu|reference   the backend the analog one wraps (default webgpu)
             --autotune                       tune conv/matmul kernels of new shapes on first use (webgpu; see nudge tune)
             --seed S --log FILE.jsonl
             --checkpoint FILE.safetensors  write weights, optimizer state and position (atomically)
             --checkpoint-every N           also every N steps (default: each epoch end)
             --resume                       continue exactly from --checkpoint (the log, too; a finished run prints its final metrics)`;

function dataSet(spec: string, split: 'train' | 'test', seed?: string): LabelledImages {
  if (spec.startsWith('imagenet:')) return imagenetDataSet(spec.slice('imagenet:'.length), split, seed);
  const [name, dir] = spec.split(':');
  if (name !== 'fashion-mnist' && name !== 'mnist') throw new UserError(`unknown data set '${name}' (available: fashion-mnist[:DIR], mnist:DIR, imagenet:DIR[:CROP])`);
  if (name === 'mnist' && !dir) throw new UserError('mnist needs a directory: --data mnist:/path/to/idx-files');
  let set: ImageSet;
  try {
    set = loadIdxImageSet(dir ?? FASHION_MNIST_DIR, split, name);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  return { shape: set.shape, classes: set.classes, count: set.count, batch: (idx) => gather(set, idx) };
}

/** What a numeric option must be: a test and its words for the error. */
type Range = [(n: number) => boolean, string];
const POSITIVE_INT: Range = [(n) => Number.isInteger(n) && n >= 1, 'a positive integer'];
const POSITIVE: Range = [(n) => n > 0, 'positive'];
const NON_NEGATIVE: Range = [(n) => n >= 0, 'non-negative'];
// Momentum 1 or more never forgets a gradient: the velocity grows without bound.
const MOMENTUM: Range = [(n) => n >= 0 && n < 1, 'in [0, 1)'];

/** A numeric option (`fallback` when absent), checked against its range before any work. */
function num(v: string | undefined, what: string, fallback: number, range: Range): number {
  if (v === undefined) return fallback;
  // Decimal notation only: Number() also takes '', ' ', '0x10' and 'Infinity'.
  const n = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new UserError(`--${what} must be a number, got '${v}'`);
  if (!range[0](n)) throw new UserError(`--${what} must be ${range[1]}, got ${v}`);
  return n;
}

/** An optional numeric option: undefined when absent. */
function optNum(v: string | undefined, what: string, range: Range): number | undefined {
  return v === undefined ? undefined : num(v, what, 0, range);
}

/** The `run` metadata of a checkpoint: what made it (its JSON text is the run's identity). */
interface RunMeta {
  spec: ModelSpec;
  data: string;
  cfg?: { cost?: Cost };
}

/** Reads a training checkpoint written by `nudge train`; every error is one line naming the file. */
function readRunCheckpoint(path: string) {
  let ck;
  try {
    ck = readSafetensors(path);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  if (ck.metadata.format !== CHECKPOINT_FORMAT) throw new UserError(`${path} is not a nudge training checkpoint`);
  const corrupt = (why: string) => new UserError(`${path}: ${why} (corrupt checkpoint)`);
  const json = (key: 'run' | 'position'): unknown => {
    const text = ck.metadata[key];
    if (text === undefined) throw corrupt(`its metadata lacks '${key}'`);
    try {
      return JSON.parse(text);
    } catch {
      throw corrupt(`its metadata '${key}' is not valid JSON`);
    }
  };
  const run = json('run') as RunMeta;
  if (!isRecord(run) || !isRecord(run.spec) || typeof run.data !== 'string') throw corrupt(`its metadata 'run' lacks the model spec or the data set`);
  const { input, classes } = run.spec;
  const positive = (v: unknown) => isCount(v) && v > 0;
  if (!Array.isArray(input) || input.length !== 3 || !input.every(positive) || !positive(classes)) throw corrupt('its model spec has no input shape or class count');
  try {
    buildLayers(run.spec);
  } catch (e) {
    throw corrupt(`its model spec is invalid: ${(e as Error).message}`);
  }
  if (run.cfg !== undefined && (!isRecord(run.cfg) || (run.cfg.cost !== undefined && !COSTS.includes(run.cfg.cost)))) throw corrupt(`its metadata 'run' has an unknown cost`);
  const position = json('position') as Position;
  const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const last = position?.last;
  if (
    !isRecord(position) ||
    !isCount(position.epoch) ||
    !isCount(position.step) ||
    (position.lossSum !== undefined && !finite(position.lossSum)) ||
    (position.lossCount !== undefined && !isCount(position.lossCount)) ||
    (last !== undefined && !(isRecord(last) && finite(last.trainLoss) && isRecord(last.test) && ['top1', 'top5', 'loss'].every((k) => finite(last.test[k as 'top1'])) && isCount(last.test.count)))
  ) {
    throw corrupt(`its metadata 'position' is not {epoch, step, ...} of non-negative integers`);
  }
  return { ...ck, run, position };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** Checkpoint names of a layer's parameters: `layerK.weight`, `layerK.bias`, and `layerK.skip.weight` where a skip enters. */
const PARAM_NAMES = [['w', 'weight'], ['b', 'bias'], ['s', 'skip.weight']] as const;

/** The network's parameters as named arrays (the checkpoint's weights, readable by PyTorch/numpy). */
export async function paramArrays(net: Network): Promise<Record<string, NamedArray>> {
  const out: Record<string, NamedArray> = {};
  for (const [i, layer] of net.layers.entries()) {
    for (const [key, name] of PARAM_NAMES) {
      const t = layer.params[key];
      if (t) out[`layer${i + 1}.${name}`] = { shape: [...t.shape], data: Float32Array.from(await net.be.read(t)) };
    }
  }
  return out;
}

/** Replaces the network's parameters with a checkpoint's (see paramArrays); errors name `file`. */
export function loadParams(net: Network, tensors: Record<string, NamedArray>, file = 'checkpoint'): void {
  net.layers.forEach((layer, i) => {
    for (const [key, name] of PARAM_NAMES) {
      const cur = layer.params[key];
      if (!cur) continue;
      const full = `layer${i + 1}.${name}`;
      const saved = Object.hasOwn(tensors, full) ? tensors[full] : undefined;
      const want = `[${cur.shape.join(',')}]`;
      if (!saved) throw new UserError(`${file} lacks ${full} of shape ${want}`);
      if (saved.shape.join(',') !== cur.shape.join(',')) throw new UserError(`${file}: ${full} has shape [${saved.shape.join(',')}], the model's is ${want}`);
      if (!saved.data.every(Number.isFinite)) throw new UserError(`${file}: ${full} holds NaN or infinite values (the run diverged)`);
      layer.params[key] = net.be.fromArray(saved.data, cur.shape).keep();
      cur.dispose();
    }
  });
}

/**
 * The JSONL log of a run up to a resume position, and whether it has its header (a start or
 * resume record). Records past the position are dropped (the resumed run logs them again,
 * so the log reads as the uninterrupted run's), and so is a last line the kill cut short.
 */
function logBefore(file: string, pos: Position, stepsPerEpoch: number): { text: string; header: boolean } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { text: '', header: false };
    throw new UserError(`cannot read log ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const global = pos.epoch * stepsPerEpoch + pos.step;
  const kept: string[] = [];
  let header = false;
  lines.forEach((line, i) => {
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      if (i === lines.length - 1) return;
    }
    if (!isRecord(rec)) throw new UserError(`${file}:${i + 1} is not a JSON record: not this run's log (resume with another --log)`);
    const keep =
      rec.event === 'step' ? (rec.step as number) < global
      : rec.event === 'epoch' ? (rec.epoch as number) < pos.epoch
      : rec.event === 'energy' ? (rec.epoch as number) < pos.epoch || (rec.epoch === pos.epoch && pos.step > 0)
      : true;
    if (keep) kept.push(line);
    header ||= rec.event === 'start' || rec.event === 'resume';
  });
  return { text: kept.map((l) => `${l}\n`).join(''), header };
}

/** The data set's images and classes are the ones the checkpoint's model was built for. */
function checkDataFits(data: LabelledImages, spec: ModelSpec, name: string, file: string): void {
  if (data.shape.join('x') !== spec.input.join('x') || data.classes !== spec.classes) {
    throw new UserError(`${name} has ${data.shape.join('x')} images in ${data.classes} classes; the model of ${file} takes ${spec.input.join('x')} in ${spec.classes}`);
  }
}

export const EVAL_USAGE = `  eval       evaluate a training checkpoint on the test split
             --checkpoint FILE.safetensors  (the model and data set come from it)
             --test-limit N (the first N test images) --backend webgpu|reference|analog --data fashion-mnist[:DIR]
             --device-model P|FILE.json  evaluate under a device model (implies --backend analog)
             --analog-base webgpu|reference --seed S (of the device noise)
             --autotune  tune new conv/matmul shapes on first use`;

/**
 * The backend named by --backend / --device-model / --analog-base (analog wraps the base):
 * the flags and the device model are checked now, the backend is created by the returned function.
 */
function backendFromFlags(values: { backend?: string; 'device-model'?: string; 'analog-base'?: string; autotune?: boolean }, seed: string): () => Promise<Backend> {
  // Tuned kernel configs come from the tune cache; --autotune also tunes new shapes on first use.
  const tune = values.autotune ? { autotune: true } : {};
  const name = values['device-model'] !== undefined && values.backend === 'webgpu' ? 'analog' : values.backend;
  if (name !== 'webgpu' && name !== 'reference' && name !== 'analog') throw new UserError('--backend must be webgpu, reference or analog');
  if (name !== 'analog') {
    if (values['analog-base'] !== undefined) throw new UserError('--analog-base applies to --backend analog only');
    if (values['device-model'] !== undefined) throw new UserError(`--device-model needs --backend analog, not ${name} (use --analog-base ${name})`);
    if (values.autotune && name !== 'webgpu') throw new UserError('--autotune applies to the webgpu backend');
    return () => createBackend(name, { tune });
  }
  if (values['device-model'] === undefined) throw new UserError('--backend analog needs --device-model PRESET|FILE.json (presets: ideal, noisy-inference, reram-softbounds)');
  const base = values['analog-base'] ?? 'webgpu';
  if (base !== 'webgpu' && base !== 'reference') throw new UserError('--analog-base must be webgpu or reference');
  let model: DeviceModel;
  try {
    model = loadDeviceModel(values['device-model']);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  return async () => new AnalogBackend(await createBackend(base, { tune }), model, { seed: seedFromString(seed) });
}

export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      checkpoint: { type: 'string' },
      data: { type: 'string' },
      'test-limit': { type: 'string' },
      backend: { type: 'string', default: 'webgpu' },
      'device-model': { type: 'string' },
      'analog-base': { type: 'string' },
      seed: { type: 'string', default: '1' },
      autotune: { type: 'boolean', default: false },
    },
  });
  if (!values.checkpoint) throw new UserError('eval needs --checkpoint FILE');
  if (!['webgpu', 'reference', 'analog'].includes(values.backend!)) throw new UserError('--backend must be webgpu, reference or analog');
  const limit = optNum(values['test-limit'], 'test-limit', POSITIVE_INT);
  const makeBackend = backendFromFlags(values, values.seed!);
  const ck = readRunCheckpoint(values.checkpoint);
  const { run, position: pos } = ck;
  const testSet = dataSet(values.data ?? run.data, 'test');
  checkDataFits(testSet, run.spec, values.data ?? run.data, values.checkpoint);
  const be: Backend = await makeBackend();
  const net = new Network(be, run.spec);
  net.init('eval'); // allocates parameters of the right shapes; overwritten below
  loadParams(net, ck.tensors, values.checkpoint);
  const cost = run.cfg?.cost ?? 'ce';
  const m = await evaluate(net, testSet, 256, limit, cost);
  if (!Number.isFinite(m.loss)) {
    throw new NonFiniteError(
      `${values.checkpoint}: the model's outputs on the test set are non-finite (${cost === 'mse' ? 'MSE' : 'loss'} ${m.loss}; its finite weights overflow float32): a diverged model has no accuracy to report`,
    );
  }
  console.log(
    `${run.spec.name} from ${values.checkpoint} (after ${pos.epoch} epoch(s) + ${pos.step} step(s)) on ${values.data ?? run.data}: ` +
      `${be instanceof AnalogBackend ? `under device model ${be.model.name}, ` : ''}test top-1 ${(100 * m.top1).toFixed(2)}% top-5 ${(100 * m.top5).toFixed(2)}% ${cost === 'mse' ? 'MSE' : 'loss'} ${m.loss.toFixed(4)} (${m.count} images)`,
  );
  return 0;
}

export async function trainCommand(args: string[]): Promise<number> {
  // Taken in trainLocked once the checkpoint path is known; released here however the run ends.
  const held: { lock?: Lock } = {};
  try {
    return await trainLocked(args, held);
  } finally {
    held.lock?.release();
  }
}

async function trainLocked(args: string[], held: { lock?: Lock }): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      data: { type: 'string', default: 'fashion-mnist' },
      model: { type: 'string', default: 'small' },
      arch: { type: 'string', default: 'c16p,c32p' },
      algorithm: { type: 'string', default: 'ep-centered' },
      epochs: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      momentum: { type: 'string' },
      'weight-decay': { type: 'string' },
      'lr-min': { type: 'string' },
      beta: { type: 'string' },
      K: { type: 'string' },
      sweep: { type: 'string', default: 'async' },
      'train-limit': { type: 'string' },
      'test-limit': { type: 'string' },
      backend: { type: 'string', default: 'webgpu' },
      'device-model': { type: 'string' },
      'analog-base': { type: 'string' },
      seed: { type: 'string', default: '1' },
      log: { type: 'string' },
      checkpoint: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      resume: { type: 'boolean', default: false },
      lazy: { type: 'string', default: 'true' },
      tol: { type: 'string' },
      'energy-trace': { type: 'string' },
      plot: { type: 'string' },
      progress: { type: 'string', default: 'on' },
      'double-batch': { type: 'boolean', default: false },
      cost: { type: 'string', default: 'ce' },
      clamp: { type: 'boolean', default: false },
      autotune: { type: 'boolean', default: false },
    },
  });
  if (!COSTS.includes(values.cost as Cost)) throw new UserError(`--cost must be ${COSTS.join(' or ')}`);
  const cost = values.cost as Cost;
  if (values.clamp && values.algorithm === 'bp') throw new UserError('--clamp applies to the EP algorithms (it replaces the nudge of the output layer)');
  if (values['double-batch'] && values.algorithm !== 'ep-centered') throw new UserError('--double-batch applies to --algorithm ep-centered only');
  if (values['double-batch'] && values['energy-trace']) throw new UserError('--energy-trace traces each phase on its own; drop --double-batch for it');
  const algorithm = values.algorithm as Algorithm;
  if (values.lazy !== 'true' && values.lazy !== 'false') throw new UserError('--lazy must be true or false');
  if (values.progress !== 'on' && values.progress !== 'off') throw new UserError('--progress must be on or off');
  const tol = optNum(values.tol, 'tol', POSITIVE);
  for (const [flag, file, ext] of [['energy-trace', values['energy-trace'], '.json'], ['plot', values.plot, '.svg']] as const) {
    if (file !== undefined && !file.endsWith(ext)) throw new UserError(`--${flag} needs a ${ext} file name, got '${file}'`);
  }
  // Output files are checked before any work: a directory there would fail only at the first write.
  const outputs = (['checkpoint', 'log', 'plot', 'energy-trace'] as const).filter((o) => values[o] !== undefined);
  for (const o of outputs) {
    const path = values[o]!;
    if (existsSync(path) && statSync(path).isDirectory()) throw new UserError(`--${o} ${path} is a directory; give a file name`);
    const same = outputs.find((p) => p !== o && values[p] === path);
    if (same) throw new UserError(`--${o} and --${same} name the same file ${path}`);
  }
  if (!ALGORITHMS.includes(algorithm)) throw new UserError(`--algorithm must be one of ${ALGORITHMS.join(', ')}`);
  if (values.sweep !== 'async' && values.sweep !== 'sync' && values.sweep !== 'topdown') throw new UserError('--sweep must be async, sync or topdown');
  if (!['webgpu', 'reference', 'analog'].includes(values.backend!)) throw new UserError('--backend must be webgpu, reference or analog');
  // The paper's hyperparameters per model: VGG10's for vgg10/vgg10skip, VGG5's otherwise.
  const vgg10ish = values.model === 'vgg10' || values.model === 'vgg10skip';
  // VGG5's MSE runs have their own learning rate and batch in the paper.
  const d = vgg10ish ? PAPER_DEFAULTS.vgg10 : cost === 'mse' ? PAPER_DEFAULTS.vgg5Mse : PAPER_DEFAULTS.vgg5;
  // Every number is checked here, before the data is read or the GPU opened.
  const epochs = num(values.epochs, 'epochs', 1, POSITIVE_INT);
  const batch = num(values.batch, 'batch', d.batch, POSITIVE_INT);
  const beta = num(values.beta, 'beta', d.beta, POSITIVE);
  const K = num(values.K, 'K', d.K, POSITIVE_INT);
  const lr = num(values.lr, 'lr', d.lr, POSITIVE);
  const momentum = num(values.momentum, 'momentum', d.momentum, MOMENTUM);
  const weightDecay = num(values['weight-decay'], 'weight-decay', d.weightDecay, NON_NEGATIVE);
  const lrMin = num(values['lr-min'], 'lr-min', d.lrMin, NON_NEGATIVE);
  if (lrMin > lr) throw new UserError(`--lr-min ${lrMin} is above --lr ${lr} (the cosine schedule falls from lr to lr-min)`);
  const trainLimit = optNum(values['train-limit'], 'train-limit', POSITIVE_INT);
  const testLimit = optNum(values['test-limit'], 'test-limit', POSITIVE_INT);
  const checkpointEvery = optNum(values['checkpoint-every'], 'checkpoint-every', POSITIVE_INT);
  if (values.resume && !values.checkpoint) throw new UserError('--resume needs --checkpoint FILE');
  const makeBackend = backendFromFlags(values, `${values.seed}/analog`);
  const trainSet = dataSet(values.data!, 'train', values.seed);
  const testSet = dataSet(values.data!, 'test');
  const trainCount = Math.min(trainLimit ?? trainSet.count, trainSet.count);
  const testCount = Math.min(testLimit ?? testSet.count, testSet.count);
  if (batch > trainCount) {
    throw new UserError(`--batch ${batch} is larger than the training set (${trainCount} images${trainLimit !== undefined ? ' with --train-limit' : ''}): not one step would run`);
  }
  if (testCount === 0) throw new UserError(`${values.data} has no test images`);
  const stepsPerEpoch = Math.floor(trainCount / batch);
  let spec: ModelSpec;
  try {
    if (values.model === 'vgg5') spec = vgg5(trainSet.shape, trainSet.classes);
    else if (values.model === 'vgg10') spec = vgg10(trainSet.shape, trainSet.classes);
    else if (values.model === 'vgg10skip') spec = vgg10Skip(trainSet.shape, trainSet.classes);
    else if (values.model === 'small') spec = smallNet(values.arch!, trainSet.shape, trainSet.classes);
    else throw new UserError(`--model must be small, vgg5, vgg10 or vgg10skip`);
    // The paper's output gain for VGG5 with MSE.
    if (values.model === 'vgg5' && cost === 'mse') spec = { ...spec, outputGain: 0.2 };
    // Shapes are checked now (e.g. VGG10's five pools need at least 32x32 inputs), before any GPU work.
    buildLayers(spec);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`--model ${values.model} on ${trainSet.shape.join('x')} inputs: ${(e as Error).message}`);
  }
  const cfg = {
    algorithm,
    epochs,
    batch,
    beta,
    K,
    sweep: values.sweep as 'async' | 'sync' | 'topdown',
    // Only when not the default, so that runs (and their checkpoints' identity) stay as before.
    ...(values.lazy === 'false' ? { lazy: false } : {}),
    ...(tol !== undefined ? { tol } : {}),
    ...(values['double-batch'] ? { doubleBatch: true } : {}),
    ...(cost !== 'ce' ? { cost } : {}),
    ...(values.clamp ? { clamp: true } : {}),
    seed: values.seed!,
    sgd: { lr, momentum, weightDecay, lrMin },
  };
  // What must be equal for a resumed run to continue the same run.
  // An analog run is also identified by its device model (a plain run's identity is unchanged).
  const analogRun = values.backend === 'analog' || values['device-model'] !== undefined;
  // A limited run of several epochs once drew a fresh subset per epoch (now one fixed subset, trainOrder): its checkpoints continue another run.
  const fixedSubset = trainCount < trainSet.count && epochs > 1;
  const runIdentity = JSON.stringify({
    spec,
    cfg,
    data: values.data,
    trainLimit: trainLimit ?? null,
    ...(fixedSubset ? { trainSubset: 'fixed' } : {}),
    ...(analogRun ? { deviceModel: values['device-model'] } : {}),
  });
  // Two runs on one checkpoint would overwrite each other's (tools/lock.ts).
  if (values.checkpoint) {
    mkdirSync(dirname(values.checkpoint), { recursive: true });
    held.lock = await takeLock(`${values.checkpoint}.lock`, `checkpoint ${values.checkpoint}`);
  }
  let resume: { position: Position; velocity: NamedArray[]; params: Record<string, NamedArray> } | undefined;
  const epochLine = (epoch: number, trainLoss: number, test: EvalMetrics) =>
    `epoch ${epoch + 1}: train loss ${trainLoss.toFixed(4)}, test top-1 ${(100 * test.top1).toFixed(2)}% top-5 ${(100 * test.top5).toFixed(2)}% (${test.count} images)`;
  const finishedLine = () => `${values.checkpoint} holds the finished run (${epochs} epoch(s)); nothing to resume. Its final metrics:`;
  if (values.resume) {
    const file = values.checkpoint!;
    const ck = readRunCheckpoint(file);
    if (ck.metadata.run !== runIdentity) {
      throw new UserError(`${file} was written by a different run (model, algorithm, hyperparameters, data or seed differ); resume with the same options`);
    }
    const pos = ck.position;
    if (pos.epoch > epochs || (pos.epoch === epochs ? pos.step !== 0 : pos.step >= stepsPerEpoch)) {
      throw new UserError(`${file}: its position (epoch ${pos.epoch + 1}, step ${pos.step}) is past the run's ${epochs} epoch(s) of ${stepsPerEpoch} steps (corrupt checkpoint)`);
    }
    if (pos.epoch === epochs && pos.last) {
      console.log(finishedLine());
      console.log(epochLine(epochs - 1, pos.last.trainLoss, pos.last.test));
      return 0;
    }
    const velocity: NamedArray[] = [];
    for (let i = 0; Object.hasOwn(ck.tensors, `optimizer.velocity.${i}`); i++) velocity.push(ck.tensors[`optimizer.velocity.${i}`]);
    resume = { position: pos, velocity, params: ck.tensors };
  }
  const be: Backend = await makeBackend();
  const net = new Network(be, spec);
  net.init(cfg.seed);
  if (resume) {
    const file = values.checkpoint!;
    loadParams(net, resume.params, file);
    // One velocity per parameter tensor, in Sgd's order.
    const params = net.params().flatMap(paramTensors);
    if (resume.velocity.length !== params.length) throw new UserError(`${file} holds ${resume.velocity.length} optimizer velocities for the model's ${params.length} parameter tensors (corrupt checkpoint)`);
    resume.velocity.forEach((v, i) => {
      if (v.shape.join(',') !== params[i].shape.join(',')) throw new UserError(`${file}: optimizer.velocity.${i} has shape [${v.shape.join(',')}], its parameter's is [${params[i].shape.join(',')}] (corrupt checkpoint)`);
      if (!v.data.every(Number.isFinite)) throw new UserError(`${file}: optimizer.velocity.${i} holds NaN or infinite values (the run diverged)`);
    });
    // A finished run written before checkpoints kept the last metrics: measure them.
    if (resume.position.epoch === epochs) {
      const test = await evaluate(net, testSet, 256, testLimit, cost);
      console.log(finishedLine());
      console.log(`test top-1 ${(100 * test.top1).toFixed(2)}% top-5 ${(100 * test.top5).toFixed(2)}% (${test.count} images)`);
      return 0;
    }
  }
  const saveCheckpoint = async (pos: Position, sgd: Sgd) => {
    if (!values.checkpoint) return;
    const tensors = await paramArrays(net);
    for (const [i, v] of sgd.velocity.entries()) {
      tensors[`optimizer.velocity.${i}`] = { shape: [...v.shape], data: Float32Array.from(await be.read(v)) };
    }
    for (const [name, t] of Object.entries(tensors)) {
      if (!t.data.every(Number.isFinite)) {
        throw new NonFiniteError(
          `${name} became non-finite by epoch ${pos.epoch + 1}, step ${pos.step}; the last good checkpoint ${values.checkpoint} was left as it was. Lower the learning rate or beta and resume or restart.`,
        );
      }
    }
    mkdirSync(dirname(values.checkpoint), { recursive: true });
    writeFileAtomic(values.checkpoint, encodeSafetensors(tensors, { format: CHECKPOINT_FORMAT, run: runIdentity, position: JSON.stringify(pos) }));
  };
  const log = (rec: object) => {
    if (values.log) appendFileSync(values.log, JSON.stringify(rec) + '\n');
  };
  let logHeader = false;
  if (values.log) {
    mkdirSync(dirname(values.log), { recursive: true });
    // A resumed run continues its log from the checkpoint: what the killed run logged past it is redone.
    const kept = resume ? logBefore(values.log, resume.position, stepsPerEpoch) : { text: '', header: false };
    writeFileAtomic(values.log, Buffer.from(kept.text));
    logHeader = kept.header;
  }
  console.log(
    `nudge train: ${spec.name} on ${values.data} (${trainCount} train / ${testCount} test), ` +
      `${algorithm}${algorithm === 'bp' ? '' : ` beta ${cfg.beta} K ${cfg.K} ${cfg.sweep}${tol !== undefined ? ` tol ${tol}` : ''}${values['double-batch'] ? ' double-batch' : ''}${values.lazy === 'false' ? ' no-lazy' : ''}${values.clamp ? ' clamped' : ''}`}${cost === 'mse' ? ', MSE cost' : ''}, ${cfg.epochs} epoch(s), batch ${cfg.batch}, ` +
      `lr ${cfg.sgd.lr} cosine to ${cfg.sgd.lrMin}, backend ${be.name}${be instanceof AnalogBackend ? ` with device model ${be.model.name}` : ''}`,
  );
  if (resume) console.log(`resuming from ${values.checkpoint}: epoch ${resume.position.epoch + 1}, step ${resume.position.step}`);
  // The log reads as the uninterrupted run's; a resume is marked only where the log starts with it.
  if (!logHeader) log({ event: resume ? 'resume' : 'start', model: spec.name, ...cfg, data: values.data, backend: be.name, position: resume?.position });
  let bar: Progress | null = null;
  const curves: EpochRecord[] = [];
  const energy: EnergyTraceRecord[] = [];
  const writePlots = () => {
    const title = `${spec.name} ${algorithm}`;
    if (values.plot && curves.length > 0) {
      mkdirSync(dirname(values.plot), { recursive: true });
      writeFileAtomic(values.plot, Buffer.from(trainingCurvesSvg(title, curves)));
    }
    if (values['energy-trace'] && energy.length > 0) {
      const file = values['energy-trace'];
      mkdirSync(dirname(file), { recursive: true });
      const doc = { model: spec.name, algorithm, beta: cfg.beta, K: cfg.K, sweep: cfg.sweep, batch: cfg.batch, note: 'sums over the batch; E_k = 1/2 ||e_k||^2, F = E + beta C', epochs: energy };
      writeFileAtomic(file, Buffer.from(JSON.stringify(doc, null, 1)));
      writeFileAtomic(file.replace(/\.json$/, '.svg'), Buffer.from(energyTraceSvg(title, energy)));
    }
  };
  const result = await train(
    net,
    trainSet,
    testSet,
    cfg,
    {
      onStep: (m) => {
        log({ event: 'step', ...m });
      },
      onProgress: (p) => {
        if (values.progress === 'off') return;
        if (!bar) bar = new Progress({ total: p.total, label: `epoch ${p.epoch + 1}/${cfg.epochs}` });
        bar.update(p.done, p.lastLoss === null ? undefined : `loss ${p.lastLoss.toFixed(4)}`);
      },
      onEnergyTrace: (epoch, phases) => {
        energy.push({ epoch, phases });
        log({ event: 'energy', epoch, phases: phases.map((ph) => ({ beta: ph.beta, F: ph.points.map((pt) => pt.F) })) });
      },
      onEpoch: (epoch, test, tr) => {
        log({ event: 'epoch', epoch, trainLoss: tr.loss, ...test, seconds: tr.seconds });
        bar?.finish();
        bar = null;
        curves.push({ epoch, trainLoss: tr.loss, testLoss: test.loss, top1: test.top1, top5: test.top5 });
        writePlots();
        console.log(`${epochLine(epoch, tr.loss, test)}, ${tr.seconds.toFixed(0)} s`);
      },
      onCheckpoint: saveCheckpoint,
    },
    {
      trainLimit,
      testLimit,
      checkpointEvery,
      start: resume?.position,
      velocity: resume?.velocity.map((v) => v.data),
      energyTrace: values['energy-trace'] !== undefined,
    },
  );
  console.log(`test accuracy ${(100 * result.test.top1).toFixed(2)}% (top-1), wall time ${result.seconds.toFixed(0)} s`);
  return 0;
}
