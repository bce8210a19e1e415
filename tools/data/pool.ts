// A pool of image workers (tools/data/data-worker.mjs), one task in flight per worker so
// that N workers means N cores of decode work.
import { spawn } from 'node:child_process';
import { writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { availableParallelism, constants } from 'node:os';
import { Worker } from 'node:worker_threads';

export interface PrepareTask {
  op: 'prepare';
  bytes: Uint8Array;
  /** Set when bytes are raw pixels (IDX images) rather than an encoded file. */
  raw?: { width: number; height: number; channels: number };
  size: number;
  squash?: number;
  format: 'jpeg' | 'raw';
  quality: number;
}

/** One image of a CropsTask. */
export interface CropItem {
  bytes: Uint8Array;
  /** Set when bytes are raw RGB (a raw-format shard). */
  raw?: { width: number; height: number; channels?: number };
  /** Train: the crop box in source pixels and whether to mirror. */
  box?: { left: number; top: number; width: number; height: number };
  flip?: boolean;
  /** Eval: the square the image is scaled to cover before the centre crop. */
  resize?: number;
}

/** Several images cropped to out x out RGB bytes, returned as one buffer (image k at k*out*out*3). */
export interface CropsTask {
  op: 'crops';
  out: number;
  items: CropItem[];
}

export interface TaskResult {
  data: Uint8Array;
  width?: number;
  height?: number;
}

interface Pending {
  task: PrepareTask | CropsTask;
  resolve: (r: TaskResult) => void;
  reject: (e: Error) => void;
}

/** Worker file: next to this module in the sources, next to the bundle in dist/. */
const WORKER_URL = new URL('./data-worker.mjs', import.meta.url);

// sharp runs its work on libuv's thread pool, one per process and shared by every worker
// thread: with the default 4 threads, workers beyond 4 just queue (measured on 16 cores:
// 350 img/s at 4, 8 and 15 workers). libuv sizes the pool from UV_THREADPOOL_SIZE when it
// first starts, and an ES-module program starts it before any of its code runs (the loader
// reads files asynchronously), so the variable must be in the environment at launch.
export const THREADPOOL_SIZE = String(Math.max(4, availableParallelism() + 2));

/** The child's end of the pipe of relaunchWithThreadpool, by fd number. */
const PARENT_PIPE_ENV = 'NUDGE_PARENT_PIPE_FD';
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs this same command again in a child process with UV_THREADPOOL_SIZE set, unless it is
 * set already (then returns undefined and the caller goes on). Resolves to the child's exit
 * code, 128 + the signal's number where a signal ended it. SIGINT, SIGTERM and SIGHUP sent to
 * this process are passed on to the child; the child ends itself when this process ends
 * however it ends (kill -9 too: see exitWithParent).
 */
export function relaunchWithThreadpool(): Promise<number> | undefined {
  if (process.env.UV_THREADPOOL_SIZE) {
    // Here in the relaunched child (bench's too): end when the parent does.
    exitWithParent();
    return undefined;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      // fd 3: a pipe the child only watches; the kernel closes this end when this process dies.
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
      env: { ...process.env, UV_THREADPOOL_SIZE: THREADPOOL_SIZE, [PARENT_PIPE_ENV]: '3' },
    });
    child.stdio[3]?.on('error', () => {});
    const forward = (sig: NodeJS.Signals) => void child.kill(sig);
    for (const s of FORWARDED) process.on(s, forward);
    const done = () => {
      for (const s of FORWARDED) process.off(s, forward);
    };
    child.on('error', (e) => {
      done();
      reject(e);
    });
    child.on('exit', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

/**
 * In a child started by relaunchWithThreadpool: exits when the parent's end of the pipe closes,
 * i.e. when the parent is gone, so that a killed parent leaves no run behind writing files.
 */
export function exitWithParent(): void {
  const fd = Number(process.env[PARENT_PIPE_ENV]);
  // Not for this process's own children: fd 3 is nothing of theirs.
  delete process.env[PARENT_PIPE_ENV];
  if (!Number.isInteger(fd) || fd < 3) return;
  let pipe: Socket;
  try {
    pipe = new Socket({ fd, readable: true, writable: false });
  } catch {
    return;
  }
  pipe.once('close', () => {
    try {
      writeSync(2, 'nudge: the process that started this run has ended; stopping\n');
    } catch {
      // no stderr left to tell
    }
    process.exit(1);
  });
  pipe.on('error', () => {});
  pipe.resume();
  // Watching must not keep the process alive once its work is done.
  pipe.unref();
}

export function defaultWorkers(): number {
  return Math.max(1, availableParallelism() - 1);
}

export class ImageWorkerError extends Error {}

export class WorkerPool {
  private workers: Worker[] = [];
  private idle: Worker[] = [];
  private queue: Pending[] = [];
  private inflight = new Map<Worker, Pending & { id: number }>();
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_URL);
      w.on('message', (msg: { id: number; ok: boolean; error?: string } & TaskResult) => {
        const p = this.inflight.get(w);
        this.inflight.delete(w);
        if (p) {
          if (msg.ok) p.resolve({ data: msg.data, width: msg.width, height: msg.height });
          else p.reject(new ImageWorkerError(msg.error ?? 'unknown error'));
        }
        this.idle.push(w);
        this.pump();
      });
      w.on('error', (e) => {
        const p = this.inflight.get(w);
        this.inflight.delete(w);
        p?.reject(new Error(`image worker died: ${e.message}`));
      });
      w.unref();
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run(task: PrepareTask | CropsTask): Promise<TaskResult> {
    if (this.closed) return Promise.reject(new Error('worker pool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ task, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.shift()!;
      const p = this.queue.shift()!;
      const id = this.nextId++;
      this.inflight.set(w, { ...p, id });
      w.ref();
      // The bytes are copied, not transferred: callers may hold views into a shared buffer.
      w.postMessage({ id, ...p.task });
    }
    for (const w of this.idle) w.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
