// The built `nudge data` commands end to end (npm test builds dist/ first): prepare a fixture
// in the official layout, inspect it, train on it with `nudge train --data imagenet:DIR`.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../tools/safetensors.js';
import { OfficialFixture, makeOfficial } from './data-fixtures/imagenet.js';

const run = promisify(execFile);
const CLI = 'dist/nudge.mjs';

async function nudge(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', [CLI, ...args], { env: { ...process.env, ...env }, timeout: 90_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let root: string;
let fx: OfficialFixture;

beforeAll(async () => {
  if (!existsSync(join(CLI, '..', 'data-worker.mjs'))) throw new Error(`dist/data-worker.mjs is missing: run 'npm run build' (npm test does it)`);
  root = mkdtempSync(join(tmpdir(), 'nudge-data-cli-'));
  fx = await makeOfficial(join(root, 'src'));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('nudge data (built CLI)', () => {
  it('prepares official-layout archives in worker threads from the bundle, then trains on them', async () => {
    const out = join(root, 'prepared');
    const p = await nudge(['data', 'prepare', '--src', fx.dir, '--out', out, '--size', '20', '--shard-mb', '0.004', '--workers', '2']);
    expect(p.stderr).not.toMatch(/internal error/);
    expect(p.code).toBe(0);
    const trainTotal = [...fx.trainPerClass.values()].reduce((a, b) => a + b, 0);
    expect(p.stdout).toContain(`train: ${trainTotal - 1} images, 1 skipped, 0 rejected`);
    expect(p.stdout).toContain(`val: ${fx.valWnids.length} images, 0 skipped`);
    const info = await nudge(['data', 'info', '--dir', out]);
    expect(info.code).toBe(0);
    expect(info.stdout).toContain(`12 classes, prepared from the official layout in ${fx.dir}`);
    expect(info.stdout).toMatch(/train: complete, \d+ images, [2-9] shard/);
    expect((await nudge(['data', 'info', '--dir', out, '--verify'])).stdout).toMatch(/all shards and indexes match/);
    const t = await nudge(['train', '--data', `imagenet:${out}:16`, '--arch', 'c8p', '--train-limit', '32', '--test-limit', '16', '--batch', '8', '--K', '2', '--backend', 'reference']);
    expect(t.stderr).not.toMatch(/nudge:|rror/);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/on imagenet:.* \(32 train \/ 16 test\)/);
    expect(t.stdout).toMatch(/epoch 1: train loss [0-9.]+, test top-1 [0-9.]+% .*\(16 images\)/);
    // A damaged shard is found by --verify.
    const bin = join(out, 'train-00001.bin');
    const bytes = readFileSync(bin);
    bytes[100] ^= 0xff;
    writeFileSync(bin, bytes);
    const v = await nudge(['data', 'info', '--dir', out, '--verify']);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/1 damaged file\(s\):\s+train-00001.bin: sha256 differs/);
  });

  it('train --resume after a kill gets the crops the uninterrupted run had (augmentation keyed by seed, epoch, example)', async () => {
    const out = join(root, 'resume-set');
    expect((await nudge(['data', 'prepare', '--src', fx.dir, '--out', out, '--size', '20', '--workers', '1'])).code).toBe(0);
    const dir = mkdtempSync(join(root, 'run-'));
    const args = ['train', '--data', `imagenet:${out}:12`, '--arch', 'c8p', '--train-limit', '40', '--test-limit', '8', '--batch', '4', '--K', '2', '--epochs', '2', '--backend', 'reference', '--checkpoint-every', '1'];
    const full = join(dir, 'full.jsonl');
    expect((await nudge([...args, '--log', full])).code).toBe(0);
    const ck = join(dir, 'ck.safetensors');
    const part = join(dir, 'part.jsonl');
    const child = spawn('node', [CLI, ...args, '--log', part, '--checkpoint', ck], {
      stdio: 'ignore',
      // With UV_THREADPOOL_SIZE set, nudge does not relaunch itself: the kill reaches the run.
      env: { ...process.env, NUDGE_DATA_WORKERS: '2', UV_THREADPOOL_SIZE: '4' },
    });
    const deadline = Date.now() + 60_000;
    while (!existsSync(ck) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    expect(existsSync(ck), 'no checkpoint was written').toBe(true);
    const pos = JSON.parse(readSafetensors(ck).metadata.position);
    if (pos.epoch >= 2) throw new Error('the run finished before it could be killed; the test needs a slower run');
    // Another worker count on resume: crops must not depend on it.
    const r = await nudge([...args, '--log', part, '--checkpoint', ck, '--resume'], { NUDGE_DATA_WORKERS: '1' });
    expect(r.stderr).not.toMatch(/nudge:|rror/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/resuming from .*epoch [12], step \d+/);
    // Losses and test numbers follow the crops: any other crop would change them. The
    // reference backend computes in float64 but the checkpoint holds float32 parameters, so
    // the resumed losses agree to ~1e-8, not to the last bit.
    const lastEpoch = (file: string) => {
      const recs = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const { seconds: _s, ...rest } = recs.filter((x) => x.event === 'epoch').pop();
      return rest;
    };
    const [a, b] = [lastEpoch(part), lastEpoch(full)];
    expect({ ...a, loss: 0, trainLoss: 0 }).toEqual({ ...b, loss: 0, trainLoss: 0 });
    for (const k of ['loss', 'trainLoss']) expect(Math.abs(a[k] - b[k]) / Math.abs(b[k]), k).toBeLessThan(1e-6);
  });

  it('exits 1 with the numbers when counts do not match, and names bad input without a stack trace', async () => {
    const mm = join(root, 'mm');
    const args = ['data', 'prepare', '--src', fx.dir, '--out', mm, '--split', 'val', '--size', '16', '--expect-val', '30', '--workers', '1'];
    const r = await nudge(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/counts do not match.*val: found 24 images \(24 good \+ 0 skipped\), expected 30/s);
    expect(r.stderr).toMatch(/stay incomplete.*rerun the same command to prepare them again.*rerun it with --expect-val 24\./s);
    expect(r.stdout).toMatch(/val: 24 images, 0 skipped, 0 rejected, \d+ shard\(s\), INCOMPLETE/);
    // The short split is not complete: info says so, --verify fails on it, a rerun prepares it again.
    const info = await nudge(['data', 'info', '--dir', mm]);
    expect(info.stdout).toMatch(/val: INCOMPLETE: its count check failed \(found 24 images \(24 good \+ 0 skipped\), expected 30\), 24 images/);
    const verify = await nudge(['data', 'info', '--dir', mm, '--verify']);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(/all shards and indexes match/);
    expect(verify.stderr).toMatch(/nudge: the set is incomplete .*\n  val: incomplete: its count check failed/);
    const again = await nudge(args);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/val: the last run found 24 images, 30 expected: preparing it again/);
    expect(again.stderr).not.toMatch(/already complete/);
    // What the message says to do when the count found is right.
    const accepted = await nudge([...args.slice(0, -4), '--expect-val', '24', '--workers', '1']);
    expect(accepted.code).toBe(0);
    expect((await nudge(['data', 'info', '--dir', mm, '--verify'])).code).toBe(0);
    const missing = await nudge(['data', 'prepare', '--src', join(root, 'nowhere'), '--out', join(root, 'x')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nowhere: not a directory/);
    const train = await nudge(['train', '--data', `imagenet:${join(root, 'nowhere')}`]);
    expect(train.code).toBe(1);
    expect(train.stderr).toMatch(/manifest.json not found: prepare the data set first/);
    for (const x of [missing, train]) expect(x.stderr).not.toMatch(/internal error|\.ts:\d+/);
  });

  it('checks every numeric option of data prepare, naming it, and an --out that is a file, in one line each', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    const cases: [string[], RegExp][] = [
      [['--size', '7'], /--size must be an integer in 8\.\.4096, got 7/],
      [['--size', '24px'], /--size must be a whole number, got '24px'/],
      [['--size', '0x20'], /--size must be a whole number/],
      [['--quality', '101'], /--quality must be an integer in 1\.\.100, got 101/],
      [['--quality', '9.5'], /--quality must be a whole number/],
      [['--squash', '7'], /--squash must be an integer in 8\.\.512/],
      [['--squash', '32', '--quality', '80'], /--quality applies to JPEG shards only/],
      [['--fraction', '0'], /--fraction must be in \(0, 1\], got 0/],
      [['--fraction', '1/2'], /--fraction must be a number, got '1\/2'/],
      [['--shard-mb', '0'], /--shard-mb must be above 0 and at most 4032 \(shard offsets are 32-bit\), got 0/],
      [['--shard-mb', '5000'], /--shard-mb must be above 0 and at most 4032/],
      [['--shard-mb=-1'], /--shard-mb must be a number, got '-1'/],
      [['--workers', '0'], /--workers must be an integer in 1\.\.256, got 0/],
      [['--workers', '1e3'], /--workers must be a whole number/],
      [['--expect-train=-5'], /--expect-train must be a whole number, got '-5'/],
      [['--expect-val', ''], /--expect-val must be a whole number, got ''/],
    ];
    const runs = await Promise.all(
      cases.map(([extra]) => nudge(['data', 'prepare', '--src', fx.dir, '--out', join(root, 'never'), ...extra], { UV_THREADPOOL_SIZE: '4' })),
    );
    runs.forEach((r, k) => {
      const what = cases[k][0].join(' ');
      expect(r.code, what).toBe(1);
      expect(r.stderr, what).toMatch(cases[k][1]);
      expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
    });
    expect(existsSync(join(root, 'never'))).toBe(false);
    const onFile = await nudge(['data', 'prepare', '--src', fx.dir, '--out', file, '--workers', '1'], { UV_THREADPOOL_SIZE: '4' });
    expect(onFile.code).toBe(1);
    expect(onFile.stderr.trim()).toBe(`nudge: --out ${file} is a file, not a directory: name a directory for the shards`);
  });

  it('bench data: --help, and argument mistakes in one line', async () => {
    const bench = async (args: string[]) => {
      try {
        const { stdout, stderr } = await run('node', ['dist/bench.mjs', ...args], { timeout: 60_000 });
        return { code: 0, stdout, stderr };
      } catch (e) {
        return e as { code: number; stdout: string; stderr: string };
      }
    };
    const help = await bench(['data', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: npm run bench -- data .*--images N.*--workers A,B.*--batch N.*--repeat N/s);
    for (const [args, code, want] of [
      [['data', '--bogus'], 2, /^bench: Unknown option '--bogus'/],
      [['data', '--images', '0'], 1, /^bench: --images must be a whole number in 1\.\.\d+, got '0'$/],
      [['data', '--workers', '1,x'], 1, /^bench: --workers must be a whole number in 1\.\.256, got 'x'$/],
      [['nosuch'], 2, /^bench: unknown suite 'nosuch'\nusage: npm run bench -- </],
    ] as const) {
      const r = await bench([...args]);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr.trim(), args.join(' ')).toMatch(want);
      expect(r.stderr, args.join(' ')).not.toMatch(/\n\s+at |ERR_PARSE_ARGS/);
    }
  });

  it('fetch: a gated download over plain http says what to do, sends no token and never prints it', async () => {
    const server = http.createServer((req, res) => {
      res.writeHead(req.headers.authorization ? 403 : 401);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/data/train-00000-of-00257.parquet`;
    try {
      const r = await nudge(['data', 'fetch', '--url', url, '--out', join(root, 'dl')], { HF_TOKEN: 'hf_do_not_print_me' });
      // Plain http: the token stays home, and the 401 says why (over https the hub's 403 is tested in data-fetch).
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/HTTP 401: access denied; the token was not sent here \(HF_TOKEN is sent only over https\)/);
      expect(r.stdout + r.stderr).not.toContain('hf_do_not_print_me');
      const r2 = await nudge(['data', 'fetch', '--url', url, '--out', join(root, 'dl')], { HF_TOKEN: '' });
      expect(r2.stderr).toMatch(/HTTP 401: access denied.*HF_TOKEN/);
    } finally {
      server.close();
    }
  });
});
