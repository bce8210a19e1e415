// `nudge train` and `nudge eval` on bad numbers and bad checkpoints: one clear line naming
// the option or the file, exit 1, and for arguments before any data or GPU work.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ReferenceBackend } from '../engine/index.js';
import { smallNet } from '../pcn/models.js';
import { Network } from '../pcn/network.js';
import { NamedArray, encodeSafetensors } from '../tools/safetensors.js';
import { paramArrays } from '../tools/train.js';

const run = promisify(execFile);

async function nudge(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', ['dist/nudge.mjs', ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Exit 1 with exactly one line on stderr, matching `re`, and no stack trace. */
function expectOneLineError(r: { code: number; stdout: string; stderr: string }, re: RegExp, what: string): void {
  expect(r.code, `${what}: ${r.stdout}${r.stderr}`).toBe(1);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('Warning: '));
  expect(lines, what).toHaveLength(1);
  expect(lines[0], what).toMatch(re);
  expect(lines[0], what).not.toMatch(/internal error|\.ts:\d+/);
}

describe('nudge train and eval check every number before any work', () => {
  it.each([
    [['--train-limit', '0'], /--train-limit must be a positive integer, got 0/],
    [['--train-limit', '1.5'], /--train-limit must be a positive integer, got 1\.5/],
    [['--train-limit', '0x10'], /--train-limit must be a number, got '0x10'/],
    [['--test-limit', '0'], /--test-limit must be a positive integer, got 0/],
    [['--checkpoint-every', '0'], /--checkpoint-every must be a positive integer, got 0/],
    [['--momentum', '7'], /--momentum must be in \[0, 1\), got 7/],
    [['--momentum', '1'], /--momentum must be in \[0, 1\), got 1/],
    [['--lr=-0.1'], /--lr must be positive, got -0\.1/],
    [['--lr', '0'], /--lr must be positive, got 0/],
    [['--lr-min', '0.5'], /--lr-min 0\.5 is above --lr 0\.01/],
    [['--weight-decay=-1'], /--weight-decay must be non-negative, got -1/],
    [['--beta', 'Infinity'], /--beta must be a number, got 'Infinity'/],
    [['--K', '2.5'], /--K must be a positive integer, got 2\.5/],
    [['--batch', ''], /--batch must be a number, got ''/],
    [['--epochs', '1e400'], /--epochs must be a number, got '1e400'/],
    [['--tol', '0'], /--tol must be positive, got 0/],
  ])('train %j', async (args, re) => {
    // A missing data directory shows that the number was refused before the data was read.
    expectOneLineError(await nudge(['train', ...args, '--data', 'fashion-mnist:/nonexistent']), re, args.join(' '));
  });

  it('eval --test-limit 0 is refused before the checkpoint is read', async () => {
    expectOneLineError(await nudge(['eval', '--checkpoint', '/nonexistent/ck.safetensors', '--test-limit', '0']), /--test-limit must be a positive integer, got 0/, 'eval');
  });

  it('output files that are directories, or one file named twice, are refused before any work', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nudge-out-'));
    for (const o of ['--checkpoint', '--log']) {
      expectOneLineError(await nudge(['train', o, dir, '--data', 'fashion-mnist:/nonexistent']), new RegExp(`${o} .* is a directory; give a file name`), o);
    }
    const f = join(dir, 'run.json');
    expectOneLineError(await nudge(['train', '--log', f, '--energy-trace', f, '--data', 'fashion-mnist:/nonexistent']), /--log and --energy-trace name the same file|--energy-trace and --log name the same file/, 'same');
  });

  it('a batch larger than the (limited) training set is refused: no step would run', async () => {
    const r = await nudge(['train', '--train-limit', '32', '--batch', '64']);
    expectOneLineError(r, /--batch 64 is larger than the training set \(32 images with --train-limit\): not one step would run/, 'batch');
  });
});

describe('nudge eval on bad checkpoints', () => {
  const spec = smallNet('c4p', [28, 28, 1], 10);
  let dir: string;
  let params: Record<string, NamedArray>;
  const run0 = JSON.stringify({ spec, cfg: {}, data: 'fashion-mnist', trainLimit: null });
  const position0 = JSON.stringify({ epoch: 1, step: 0 });
  const write = (name: string, tensors: Record<string, NamedArray>, meta: Record<string, string> = {}) => {
    const file = join(dir, name);
    writeFileSync(file, encodeSafetensors(tensors, { format: 'nudge-checkpoint-1', run: run0, position: position0, ...meta }));
    return file;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nudge-badck-'));
    const net = new Network(new ReferenceBackend(), spec);
    net.init('bad-checkpoints');
    params = await paramArrays(net);
  });

  it.each([
    ['run is not JSON', { run: '{"spec":' }, /its metadata 'run' is not valid JSON \(corrupt checkpoint\)/],
    ['position is not JSON', { position: 'epoch 1' }, /its metadata 'position' is not valid JSON/],
    ['run lacks the spec', { run: JSON.stringify({ data: 'fashion-mnist' }) }, /its metadata 'run' lacks the model spec/],
    ['spec without layers', { run: JSON.stringify({ spec: { ...spec, layers: 'none' }, data: 'fashion-mnist' }) }, /its model spec is invalid/],
    ['spec without input', { run: JSON.stringify({ spec: { ...spec, input: [28, 28] }, data: 'fashion-mnist' }) }, /its model spec has no input shape/],
    ['position of strings', { position: JSON.stringify({ epoch: 'one', step: 0 }) }, /its metadata 'position' is not \{epoch, step/],
    ['position null', { position: 'null' }, /its metadata 'position' is not \{epoch, step/],
  ])('%s', async (what, meta, re) => {
    const file = write(`${what.replace(/ /g, '-')}.safetensors`, params, meta as Record<string, string>);
    const r = await nudge(['eval', '--checkpoint', file]);
    expectOneLineError(r, new RegExp(`^nudge: ${file.replace(/[.]/g, '\\.')}: .*${re.source}`), what);
  });

  it('a header that lies (no shape, a length past the end) is one line naming the file', async () => {
    const good = encodeSafetensors(params, { format: 'nudge-checkpoint-1', run: run0, position: position0 });
    const long = Buffer.from(good);
    long.writeBigUInt64LE(BigInt(good.length), 0);
    const noShape = Buffer.from(good.toString('latin1').replace('"shape":[3,3,1,4],', '"shape":null,'.padEnd('"shape":[3,3,1,4],'.length)), 'latin1');
    for (const [name, buf, re] of [['long', long, /header length \d+ does not fit/], ['noshape', noShape, /tensor layer1\.weight has no shape/]] as const) {
      const file = join(dir, `${name}.safetensors`);
      writeFileSync(file, buf);
      expectOneLineError(await nudge(['eval', '--checkpoint', file]), new RegExp(`${file.replace(/[.]/g, '\\.')}: .*${re.source}`), name);
    }
  });

  it('weights of the wrong shape or with NaN are refused by name', async () => {
    const w = params['layer2.weight'];
    const turned = write('turned.safetensors', { ...params, 'layer2.weight': { shape: [...w.shape].reverse(), data: w.data } });
    expectOneLineError(await nudge(['eval', '--checkpoint', turned, '--backend', 'reference']), /turned\.safetensors: layer2\.weight has shape \[10,784\], the model's is \[784,10\]/, 'shape');
    const nan = Float32Array.from(w.data);
    nan[3] = NaN;
    const bad = write('nan.safetensors', { ...params, 'layer2.weight': { shape: w.shape, data: nan } });
    expectOneLineError(await nudge(['eval', '--checkpoint', bad, '--backend', 'reference']), /nan\.safetensors: layer2\.weight holds NaN or infinite values/, 'nan');
  });

  it('finite weights whose outputs overflow float32: non-finite outputs, no accuracy, exit 1', async () => {
    // The output layer's weights near the float32 maximum: its sums overflow to +-Inf.
    const w = params['layer2.weight'];
    const huge = Float32Array.from(w.data, (v) => Math.sign(v) * 3e38);
    const file = write('huge.safetensors', { ...params, 'layer2.weight': { shape: w.shape, data: huge } });
    const r = await nudge(['eval', '--checkpoint', file, '--test-limit', '16']);
    expectOneLineError(r, /huge\.safetensors: the model's outputs on the test set are non-finite/, 'overflow');
    expect(r.stdout).not.toMatch(/top-1/);
  });
});
