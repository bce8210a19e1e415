// The built CLI: `nudge data prepare` and `nudge train --data imagenet:` run in a relaunched
// child (tools/data/pool.ts) that must die with the process the user started, and the locks of
// tools/lock.ts keep two runs off one output directory or checkpoint. NUDGE_TEST_HOLD_LOCK makes
// a run stop once it holds its lock: the lock file names the child's pid, and the run is
// stopped at a known point.
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PREPARE_LOCK, prepare } from '../tools/data/prepare.js';

const CLI = 'dist/nudge.mjs';
let root: string;
let src: string;
const started: number[] = [];

/** The environment of a run that relaunches itself (no UV_THREADPOOL_SIZE). */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, NUDGE_DATA_WORKERS: '1', ...extra };
  delete e.UV_THREADPOOL_SIZE;
  return e;
}

function nudge(args: string[], extra: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', [CLI, ...args], { env: env(extra), timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

/** Gone, or a zombie nobody has reaped yet (it has ended all the same). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`still waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

type Exit = { code: number | null; signal: string | null };

function holderOf(lock: string): number | undefined {
  try {
    return JSON.parse(readFileSync(lock, 'utf8')).pid;
  } catch {
    return undefined;
  }
}

/** Starts a run that stops once it holds `lock`; resolves when it does, with the pid holding it. */
async function startHeld(args: string[], lock: string): Promise<{ parent: ChildProcess; holder: number; stderr: () => string; exit: () => Promise<Exit> }> {
  const parent = spawn('node', [CLI, ...args], { env: env({ NUDGE_TEST_HOLD_LOCK: '1' }), stdio: ['ignore', 'ignore', 'pipe'] });
  started.push(parent.pid!);
  let err = '';
  parent.stderr!.on('data', (d) => (err += d));
  let ended: Exit | undefined;
  parent.on('exit', (code, signal) => (ended = { code, signal }));
  const exit = async () => {
    await until(() => ended !== undefined, `nudge (pid ${parent.pid}) to exit`);
    return ended!;
  };
  await until(() => holderOf(lock) !== undefined || ended !== undefined, `${lock} to be taken`);
  const holder = holderOf(lock);
  if (holder === undefined) throw new Error(`the run ended before it took its lock: ${err}`);
  started.push(holder);
  return { parent, holder, stderr: () => err, exit };
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' (npm test does it)`);
  root = mkdtempSync(join(tmpdir(), 'nudge-orphans-'));
  src = join(root, 'src');
  for (const split of ['train', 'val']) {
    for (const [k, cls] of ['a', 'b'].entries()) {
      mkdirSync(join(src, split, cls), { recursive: true });
      for (let i = 0; i < 4; i++) {
        const png = await sharp({ create: { width: 20, height: 16, channels: 3, background: { r: 60 * i, g: 200 * k, b: 40 } } }).png().toBuffer();
        writeFileSync(join(src, split, cls, `${i}.png`), png);
      }
    }
  }
});

afterEach(() => {
  // A failed test must not leave runs behind.
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('relaunched runs die with nudge', () => {
  it('SIGTERM to nudge reaches the relaunched prepare: it releases its lock and nudge exits 143', async () => {
    const out = join(root, 'term');
    const lock = join(out, PREPARE_LOCK);
    const run = await startHeld(['data', 'prepare', '--src', src, '--out', out, '--workers', '1'], lock);
    expect(run.holder, 'the prepare was not relaunched in a child').not.toBe(run.parent.pid);
    expect(gone(run.holder)).toBe(false);
    run.parent.kill('SIGTERM');
    expect(await run.exit()).toEqual({ code: 128 + 15, signal: null });
    await until(() => gone(run.holder), `child ${run.holder} to end`);
    expect(existsSync(lock), 'the lock was left behind').toBe(false);
  });

  it('kill -9 of nudge ends the relaunched prepare, which releases its lock', async () => {
    const out = join(root, 'kill');
    const lock = join(out, PREPARE_LOCK);
    const run = await startHeld(['data', 'prepare', '--src', src, '--out', out, '--workers', '1'], lock);
    expect(run.holder).not.toBe(run.parent.pid);
    run.parent.kill('SIGKILL');
    expect(await run.exit()).toEqual({ code: null, signal: 'SIGKILL' });
    await until(() => gone(run.holder), `child ${run.holder} to end after its parent was killed`);
    await until(() => !existsSync(lock), 'the lock to be released');
    // The child shares the parent's stderr and says why it stopped.
    await until(() => run.stderr().includes('stopping'), 'the child to say it stops');
    expect(run.stderr()).toMatch(/the process that started this run has ended; stopping/);
  });

  it('train --data imagenet: is relaunched too: a second run on its checkpoint is refused, SIGTERM ends it', async () => {
    const set = join(root, 'set');
    const p = await nudge(['data', 'prepare', '--src', src, '--out', set, '--size', '16', '--workers', '1']);
    expect(p.code, p.stderr).toBe(0);
    const ck = join(root, 'run', 'ck.safetensors');
    const args = ['train', '--data', `imagenet:${set}:12`, '--arch', 'c4p', '--train-limit', '8', '--test-limit', '4', '--batch', '4', '--K', '1', '--backend', 'reference', '--progress', 'off', '--checkpoint', ck];
    const run = await startHeld(args, `${ck}.lock`);
    expect(run.holder).not.toBe(run.parent.pid);
    const second = await nudge(args);
    expect(second.code).toBe(1);
    expect(second.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^nudge: checkpoint .*ck\\.safetensors is in use by nudge pid ${run.holder} since `))]);
    expect(existsSync(ck), 'a checkpoint was written').toBe(false);
    run.parent.kill('SIGTERM');
    expect((await run.exit()).code).toBe(128 + 15);
    await until(() => gone(run.holder), `child ${run.holder} to end`);
    expect(existsSync(`${ck}.lock`)).toBe(false);
    // With the lock released, the same command runs and checkpoints.
    const third = await nudge(args);
    expect(third.code, third.stderr).toBe(0);
    expect(existsSync(ck)).toBe(true);
    expect(existsSync(`${ck}.lock`)).toBe(false);
  });
});

describe('the lock on a prepare output directory', () => {
  it('a second prepare on the same --out fails at once naming the holder pid, and writes nothing', async () => {
    const out = join(root, 'busy');
    const lock = join(out, PREPARE_LOCK);
    const run = await startHeld(['data', 'prepare', '--src', src, '--out', out, '--workers', '1'], lock);
    const before = readFileSync(lock, 'utf8');
    const second = await nudge(['data', 'prepare', '--src', src, '--out', out, '--workers', '1']);
    expect(second.code).toBe(1);
    expect(second.stderr.trim().split('\n')).toEqual([`nudge: --out ${out} is in use by nudge pid ${run.holder} since ${JSON.parse(before).started} (lock ${lock}); wait for it to finish or stop it`]);
    expect(readdirSync(out)).toEqual([PREPARE_LOCK]);
    expect(readFileSync(lock, 'utf8')).toBe(before);
    run.parent.kill('SIGKILL');
    await until(() => gone(run.holder), `child ${run.holder} to end`);
  });

  it('a stale lock (dead pid, or a pid reused by another process) is taken over; one from another host is not', async () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    expect(gone(dead)).toBe(true);
    const stale = [
      { pid: dead, host: hostname(), started: '2020-01-01T00:00:00.000Z', procStart: null, nonce: 'x' },
      // This test's own pid is alive, but it started at another time than the lock says.
      { pid: process.pid, host: hostname(), started: '2020-01-01T00:00:00.000Z', procStart: '1', nonce: 'y' },
    ];
    for (const [i, holder] of stale.entries()) {
      const out = join(root, `stale-${i}`);
      mkdirSync(out);
      writeFileSync(join(out, PREPARE_LOCK), JSON.stringify(holder));
      const r = await nudge(['data', 'prepare', '--src', src, '--out', out, '--workers', '1']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^train: 8 images,/m);
      expect(readdirSync(out)).not.toContain(PREPARE_LOCK);
    }
    const out = join(root, 'remote');
    mkdirSync(out);
    writeFileSync(join(out, PREPARE_LOCK), JSON.stringify({ pid: 4242, host: 'elsewhere.invalid', started: '2020-01-01T00:00:00.000Z', procStart: null, nonce: 'z' }));
    const r = await nudge(['data', 'prepare', '--src', src, '--out', out, '--workers', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([`nudge: --out ${out} is in use by nudge pid 4242 on host elsewhere.invalid since 2020-01-01T00:00:00.000Z; if that run is gone, delete ${join(out, PREPARE_LOCK)}`]);
    expect(readdirSync(out)).toEqual([PREPARE_LOCK]);
  });

  it('is released when prepare fails, and refused to a second prepare in the same process', async () => {
    const out = join(root, 'inproc');
    await prepare({ src, out, size: 16, workers: 1 });
    expect(existsSync(join(out, PREPARE_LOCK))).toBe(false);
    // Other options on the same --out: refused after the lock is taken, and the lock goes.
    await expect(prepare({ src, out, size: 20, workers: 1 })).rejects.toThrow(/different options/);
    expect(existsSync(join(out, PREPARE_LOCK))).toBe(false);
    const both = await Promise.allSettled([prepare({ src, out, size: 16, workers: 1 }), prepare({ src, out, size: 16, workers: 1 })]);
    expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = both.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason.message).toMatch(new RegExp(`is in use by this process \\(pid ${process.pid}\\)`));
    expect(existsSync(join(out, PREPARE_LOCK))).toBe(false);
  });
});
