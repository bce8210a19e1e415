// `nudge train`: a PCN trained with EP or BP, with test accuracy per epoch and a JSONL log.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { Backend, createBackend } from '../engine/index.js';
import { PAPER_DEFAULTS, smallNet, vgg5 } from '../pcn/models.js';
import { Network, ModelSpec } from '../pcn/network.js';
import { Algorithm, LabelledImages, NonFiniteError, Position, evaluate, train } from '../pcn/train.js';
import { Sgd } from '../pcn/optim.js';
import { NamedArray, encodeSafetensors, readSafetensors, writeFileAtomic } from './safetensors.js';
import { FASHION_MNIST_DIR, ImageSet, gather, loadIdxImageSet } from './data/dataset.js';
import { UserError } from './errors.js';

const CHECKPOINT_FORMAT = 'nudge-checkpoint-1';
const ALGORITHMS: Algorithm[] = ['ep-centered', 'ep-random', 'ep-forward', 'ep-backward', 'bp'];

export const TRAIN_USAGE = `  train      train a PCN with Equilibrium Propagation or backprop
             --data fashion-mnist[:DIR]   data set (IDX files; default dir ${FASHION_MNIST_DIR})
             --model small|vgg5           default small (conv 16+pool, conv 32+pool, dense 10)
             --arch c16p,c32p             layers of the small model
             --algorithm ep-centered|ep-random|ep-forward|ep-backward|bp  (default ep-centered)
             --epochs N --batch N --lr X --momentum X --weight-decay X --lr-min X
             --beta X --K N --sweep async|sync
             --train-limit N --test-limit N   use the first N examples (quick runs)
             --backend webgpu|reference       (default webgpu)
             --seed S --log FILE.jsonl
             --checkpoint FILE.safetensors  write weights, optimizer state and position (atomically)
             --checkpoint-every N           also every N steps (default: each epoch end)
             --resume                       continue exactly from --checkpoint`;

function dataSet(spec: string, split: 'train' | 'test'): LabelledImages {
  const [name, dir] = spec.split(':');
  if (name !== 'fashion-mnist' && name !== 'mnist') throw new UserError(`unknown data set '${name}' (available: fashion-mnist[:DIR], mnist:DIR)`);
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

/** Replaces the network's parameters with a checkpoint's `layerK.weight` / `layerK.bias`. */
function loadParams(net: Network, tensors: Record<string, NamedArray>): void {
  net.layers.forEach((layer, i) => {
    for (const [key, name] of [['w', 'weight'], ['b', 'bias']] as const) {
      const saved = tensors[`layer${i + 1}.${name}`];
      const cur = layer.params[key];
      if (!saved || saved.data.length !== cur.size) throw new UserError(`checkpoint lacks layer${i + 1}.${name} of shape [${cur.shape.join(',')}]`);
      layer.params[key] = net.be.fromArray(saved.data, cur.shape).keep();
      cur.dispose();
    }
  });
}

export const EVAL_USAGE = `  eval       evaluate a training checkpoint on the test split
             --checkpoint FILE.safetensors  (the model and data set come from it)
             --test-limit N --backend webgpu|reference --data fashion-mnist[:DIR]`;

export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      checkpoint: { type: 'string' },
      data: { type: 'string' },
      'test-limit': { type: 'string' },
      backend: { type: 'string', default: 'webgpu' },
    },
  });
  if (!values.checkpoint) throw new UserError('eval needs --checkpoint FILE');
  if (values.backend !== 'webgpu' && values.backend !== 'reference') throw new UserError('--backend must be webgpu or reference');
  const ck = readRunCheckpoint(values.checkpoint);
  const run = JSON.parse(ck.metadata.run) as { spec: ModelSpec; data: string };
  const testSet = dataSet(values.data ?? run.data, 'test');
  const be: Backend = await createBackend(values.backend as 'webgpu' | 'reference');
  const net = new Network(be, run.spec);
  net.init('eval'); // allocates parameters of the right shapes; overwritten below
  loadParams(net, ck.tensors);
  const limit = values['test-limit'] ? num(values['test-limit'], 'test-limit', 0) : undefined;
  const m = await evaluate(net, testSet, 256, limit);
  const pos = JSON.parse(ck.metadata.position);
  console.log(
    `${run.spec.name} from ${values.checkpoint} (after ${pos.epoch} epoch(s) + ${pos.step} step(s)) on ${values.data ?? run.data}: ` +
      `test top-1 ${(100 * m.top1).toFixed(2)}% top-5 ${(100 * m.top5).toFixed(2)}% loss ${m.loss.toFixed(4)} (${m.count} images)`,
  );
  return 0;
}

export async function trainCommand(args: string[]): Promise<number> {
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
      seed: { type: 'string', default: '1' },
      log: { type: 'string' },
      checkpoint: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      resume: { type: 'boolean', default: false },
    },
  });
  const algorithm = values.algorithm as Algorithm;
  if (!ALGORITHMS.includes(algorithm)) throw new UserError(`--algorithm must be one of ${ALGORITHMS.join(', ')}`);
  if (values.sweep !== 'async' && values.sweep !== 'sync') throw new UserError('--sweep must be async or sync');
  if (values.backend !== 'webgpu' && values.backend !== 'reference') throw new UserError('--backend must be webgpu or reference');
  const trainSet = dataSet(values.data!, 'train');
  const testSet = dataSet(values.data!, 'test');
  const d = PAPER_DEFAULTS.vgg5;
  let spec: ModelSpec;
  if (values.model === 'vgg5') spec = vgg5(trainSet.shape, trainSet.classes);
  else if (values.model === 'small') {
    try {
      spec = smallNet(values.arch!, trainSet.shape, trainSet.classes);
    } catch (e) {
      throw new UserError((e as Error).message);
    }
  } else throw new UserError(`--model must be small or vgg5 (vgg10 needs ImageNet, not available yet)`);
  const cfg = {
    algorithm,
    epochs: num(values.epochs, 'epochs', 1),
    batch: num(values.batch, 'batch', d.batch),
    beta: num(values.beta, 'beta', d.beta),
    K: num(values.K, 'K', d.K),
    sweep: values.sweep as 'async' | 'sync',
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
  const runIdentity = JSON.stringify({ spec, cfg, data: values.data, trainLimit: trainLimit ?? null });
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
  const be: Backend = await createBackend(values.backend as 'webgpu' | 'reference');
  const net = new Network(be, spec);
  net.init(cfg.seed);
  if (resume) loadParams(net, resume.params);
  const saveCheckpoint = async (pos: Position, sgd: Sgd) => {
    if (!values.checkpoint) return;
    const tensors: Record<string, NamedArray> = {};
    for (const [i, layer] of net.layers.entries()) {
      tensors[`layer${i + 1}.weight`] = { shape: [...layer.params.w.shape], data: Float32Array.from(await be.read(layer.params.w)) };
      tensors[`layer${i + 1}.bias`] = { shape: [...layer.params.b.shape], data: Float32Array.from(await be.read(layer.params.b)) };
    }
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
      `${algorithm}${algorithm === 'bp' ? '' : ` beta ${cfg.beta} K ${cfg.K} ${cfg.sweep}`}, ${cfg.epochs} epoch(s), batch ${cfg.batch}, ` +
      `lr ${cfg.sgd.lr} cosine to ${cfg.sgd.lrMin}, backend ${be.name}`,
  );
  if (resume) console.log(`resuming from ${values.checkpoint}: epoch ${resume.position.epoch + 1}, step ${resume.position.step}`);
  log({ event: resume ? 'resume' : 'start', model: spec.name, ...cfg, data: values.data, backend: be.name, position: resume?.position });
  const result = await train(
    net,
    trainSet,
    testSet,
    cfg,
    {
      onStep: (m) => {
        log({ event: 'step', ...m });
        if (process.stdout.isTTY) process.stdout.write(`\r  epoch ${m.epoch + 1} step ${m.step + 1} loss ${m.loss.toFixed(4)} ${m.imagesPerSec.toFixed(0)} img/s   `);
      },
      onEpoch: (epoch, test, tr) => {
        log({ event: 'epoch', epoch, trainLoss: tr.loss, ...test, seconds: tr.seconds });
        if (process.stdout.isTTY) process.stdout.write('\n');
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
    },
  );
  console.log(`test accuracy ${(100 * result.test.top1).toFixed(2)}% (top-1), wall time ${result.seconds.toFixed(0)} s`);
  return 0;
}
