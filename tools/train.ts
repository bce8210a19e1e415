// `nudge train`: a PCN trained with EP or BP, with test accuracy per epoch and a JSONL log.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { AnalogBackend, Backend, DeviceModel, createBackend, loadDeviceModel, seedFromString } from '../engine/index.js';
import { PAPER_DEFAULTS, smallNet, vgg10, vgg10Skip, vgg5 } from '../pcn/models.js';
import { Network, ModelSpec, buildLayers } from '../pcn/network.js';
import { Algorithm, LabelledImages, NonFiniteError, Position, evaluate, train } from '../pcn/train.js';
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
             --epochs N --batch N --lr X --momentum X --weight-decay X --lr-min X
             --beta X --K N --sweep async|sync|topdown  (topdown: L..1 in turn; K 3 is enough there)
             --lazy true|false              skip layers the nudge has not reached (exact; default true)
             --tol X                        stop a relaxation once no state moves by more than X*beta (default off)
             --double-batch                 ep-centered: both phases as one relaxation of a 2N batch (same gradient)
             --cost ce|mse                  cross-entropy (default) or squared error to the one-hot label (VGG5 MSE defaults: lr 0.04, batch 16, output gain 0.2)
             --clamp                        EP: clamp h_L to (1-beta) h_L^0 + beta y instead of nudging (traditional PCN)
             --energy-trace FILE.json       energy per relaxation iteration (first step of each epoch), plot in FILE.svg
             --plot FILE.svg                training curves (loss, top-1/top-5 per epoch)
             --progress on|off              progress bar with images/s and ETA on stderr (default on)
             --train-limit N --test-limit N   use the first N examples (quick runs)
             --backend webgpu|reference|analog  (default webgpu)
             --device-model ideal|noisy-inference|reram-softbounds|FILE.json  (analog; see engine/analog/README.md)
             --analog-base webgpu|reference   the backend the analog one wraps (default webgpu)
             --autotune                       tune conv/matmul kernels of new shapes on first use (webgpu; see nudge tune)
             --seed S --log FILE.jsonl
             --checkpoint FILE.safetensors  write weights, optimizer state and position (atomically)
             --checkpoint-every N           also every N steps (default: each epoch end)
             --resume                       continue exactly from --checkpoint`;

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

function num(v: string | undefined, what: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UserError(`--${what} must be a number, got '${v}'`);
  return n;
}

/** Reads a training checkpoint written by `nudge train`, with user-facing errors. */
function readRunCheckpoint(path: string) {
  let ck;
  try {
    ck = readSafetensors(path);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  if (ck.metadata.format !== CHECKPOINT_FORMAT) throw new UserError(`${path} is not a nudge training checkpoint`);
  return ck;
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

/** Replaces the network's parameters with a checkpoint's (see paramArrays). */
export function loadParams(net: Network, tensors: Record<string, NamedArray>): void {
  net.layers.forEach((layer, i) => {
    for (const [key, name] of PARAM_NAMES) {
      const cur = layer.params[key];
      if (!cur) continue;
      const saved = tensors[`layer${i + 1}.${name}`];
      if (!saved || saved.data.length !== cur.size) throw new UserError(`checkpoint lacks layer${i + 1}.${name} of shape [${cur.shape.join(',')}]`);
      layer.params[key] = net.be.fromArray(saved.data, cur.shape).keep();
      cur.dispose();
    }
  });
}

export const EVAL_USAGE = `  eval       evaluate a training checkpoint on the test split
             --checkpoint FILE.safetensors  (the model and data set come from it)
             --test-limit N --backend webgpu|reference|analog --data fashion-mnist[:DIR]
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
  const makeBackend = backendFromFlags(values, values.seed!);
  const ck = readRunCheckpoint(values.checkpoint);
  const run = JSON.parse(ck.metadata.run) as { spec: ModelSpec; data: string; cfg?: { cost?: Cost } };
  const testSet = dataSet(values.data ?? run.data, 'test');
  const be: Backend = await makeBackend();
  const net = new Network(be, run.spec);
  net.init('eval'); // allocates parameters of the right shapes; overwritten below
  loadParams(net, ck.tensors);
  const limit = values['test-limit'] ? num(values['test-limit'], 'test-limit', 0) : undefined;
  const cost = run.cfg?.cost ?? 'ce';
  const m = await evaluate(net, testSet, 256, limit, cost);
  const pos = JSON.parse(ck.metadata.position);
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
  const tol = values.tol === undefined ? undefined : num(values.tol, 'tol', 0);
  if (tol !== undefined && !(tol > 0)) throw new UserError(`--tol must be positive, got ${values.tol}`);
  for (const [flag, file, ext] of [['energy-trace', values['energy-trace'], '.json'], ['plot', values.plot, '.svg']] as const) {
    if (file !== undefined && !file.endsWith(ext)) throw new UserError(`--${flag} needs a ${ext} file name, got '${file}'`);
  }
  if (!ALGORITHMS.includes(algorithm)) throw new UserError(`--algorithm must be one of ${ALGORITHMS.join(', ')}`);
  if (values.sweep !== 'async' && values.sweep !== 'sync' && values.sweep !== 'topdown') throw new UserError('--sweep must be async, sync or topdown');
  if (!['webgpu', 'reference', 'analog'].includes(values.backend!)) throw new UserError('--backend must be webgpu, reference or analog');
  const makeBackend = backendFromFlags(values, `${values.seed}/analog`);
  const trainSet = dataSet(values.data!, 'train', values.seed);
  const testSet = dataSet(values.data!, 'test');
  // The paper's hyperparameters per model: VGG10's for vgg10/vgg10skip, VGG5's otherwise.
  const vgg10ish = values.model === 'vgg10' || values.model === 'vgg10skip';
  // VGG5's MSE runs have their own learning rate and batch in the paper.
  const d = vgg10ish ? PAPER_DEFAULTS.vgg10 : cost === 'mse' ? PAPER_DEFAULTS.vgg5Mse : PAPER_DEFAULTS.vgg5;
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
    epochs: num(values.epochs, 'epochs', 1),
    batch: num(values.batch, 'batch', d.batch),
    beta: num(values.beta, 'beta', d.beta),
    K: num(values.K, 'K', d.K),
    sweep: values.sweep as 'async' | 'sync' | 'topdown',
    // Only when not the default, so that runs (and their checkpoints' identity) stay as before.
    ...(values.lazy === 'false' ? { lazy: false } : {}),
    ...(tol !== undefined ? { tol } : {}),
    ...(values['double-batch'] ? { doubleBatch: true } : {}),
    ...(cost !== 'ce' ? { cost } : {}),
    ...(values.clamp ? { clamp: true } : {}),
    seed: values.seed!,
    sgd: {
      lr: num(values.lr, 'lr', d.lr),
      momentum: num(values.momentum, 'momentum', d.momentum),
      weightDecay: num(values['weight-decay'], 'weight-decay', d.weightDecay),
      lrMin: num(values['lr-min'], 'lr-min', d.lrMin),
    },
  };
  for (const [k, v] of [['epochs', cfg.epochs], ['batch', cfg.batch], ['K', cfg.K]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new UserError(`--${k} must be a positive integer, got ${v}`);
  }
  if (!(cfg.beta > 0)) throw new UserError(`--beta must be positive, got ${cfg.beta}`);
  const trainLimit = values['train-limit'] ? num(values['train-limit'], 'train-limit', 0) : undefined;
  const testLimit = values['test-limit'] ? num(values['test-limit'], 'test-limit', 0) : undefined;
  // What must be equal for a resumed run to continue the same run.
  // An analog run is also identified by its device model (a plain run's identity is unchanged).
  const analogRun = values.backend === 'analog' || values['device-model'] !== undefined;
  const runIdentity = JSON.stringify({ spec, cfg, data: values.data, trainLimit: trainLimit ?? null, ...(analogRun ? { deviceModel: values['device-model'] } : {}) });
  // Two runs on one checkpoint would overwrite each other's (tools/lock.ts).
  if (values.checkpoint) {
    mkdirSync(dirname(values.checkpoint), { recursive: true });
    held.lock = await takeLock(`${values.checkpoint}.lock`, `checkpoint ${values.checkpoint}`);
  }
  let resume: { position: Position; velocity: Float32Array[]; params: Record<string, NamedArray> } | undefined;
  if (values.resume) {
    if (!values.checkpoint) throw new UserError('--resume needs --checkpoint FILE');
    const ck = readRunCheckpoint(values.checkpoint);
    if (ck.metadata.run !== runIdentity) {
      throw new UserError(`${values.checkpoint} was written by a different run (model, algorithm, hyperparameters, data or seed differ); resume with the same options`);
    }
    const velocity: Float32Array[] = [];
    for (let i = 0; `optimizer.velocity.${i}` in ck.tensors; i++) velocity.push(ck.tensors[`optimizer.velocity.${i}`].data);
    resume = { position: JSON.parse(ck.metadata.position), velocity, params: ck.tensors };
  }
  const be: Backend = await makeBackend();
  const net = new Network(be, spec);
  net.init(cfg.seed);
  if (resume) loadParams(net, resume.params);
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
  if (values.log && !resume) {
    mkdirSync(dirname(values.log), { recursive: true });
    writeFileSync(values.log, '');
  }
  console.log(
    `nudge train: ${spec.name} on ${values.data} (${trainLimit ?? trainSet.count} train / ${testLimit ?? testSet.count} test), ` +
      `${algorithm}${algorithm === 'bp' ? '' : ` beta ${cfg.beta} K ${cfg.K} ${cfg.sweep}${tol !== undefined ? ` tol ${tol}` : ''}${values['double-batch'] ? ' double-batch' : ''}${values.lazy === 'false' ? ' no-lazy' : ''}${values.clamp ? ' clamped' : ''}`}${cost === 'mse' ? ', MSE cost' : ''}, ${cfg.epochs} epoch(s), batch ${cfg.batch}, ` +
      `lr ${cfg.sgd.lr} cosine to ${cfg.sgd.lrMin}, backend ${be.name}${be instanceof AnalogBackend ? ` with device model ${be.model.name}` : ''}`,
  );
  if (resume) console.log(`resuming from ${values.checkpoint}: epoch ${resume.position.epoch + 1}, step ${resume.position.step}`);
  log({ event: resume ? 'resume' : 'start', model: spec.name, ...cfg, data: values.data, backend: be.name, position: resume?.position });
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
        console.log(
          `epoch ${epoch + 1}: train loss ${tr.loss.toFixed(4)}, test top-1 ${(100 * test.top1).toFixed(2)}% top-5 ${(100 * test.top5).toFixed(2)}% (${test.count} images), ${tr.seconds.toFixed(0)} s`,
        );
      },
      onCheckpoint: saveCheckpoint,
    },
    {
      trainLimit,
      testLimit,
      checkpointEvery: values['checkpoint-every'] ? num(values['checkpoint-every'], 'checkpoint-every', 0) : undefined,
      start: resume?.position,
      velocity: resume?.velocity,
      energyTrace: values['energy-trace'] !== undefined,
    },
  );
  console.log(`test accuracy ${(100 * result.test.top1).toFixed(2)}% (top-1), wall time ${result.seconds.toFixed(0)} s`);
  return 0;
}
