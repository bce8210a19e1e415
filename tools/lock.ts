// Exclusive locks on what a run writes (a prepare's output directory, a training checkpoint), so
// two runs never write the same files. A lock is a file created with O_EXCL holding the holder's
// pid, host and start time; a lock whose holder is dead (kill -9, a crash) is taken over.
import { closeSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { UserError } from './errors.js';

interface Holder {
  pid: number;
  host: string;
  started: string;
  /** Linux: the process's start time in /proc/PID/stat, which tells a reused pid from the holder. */
  procStart: string | null;
  nonce: string;
}

export interface Lock {
  readonly path: string;
  /** Removes the lock file if it is still this lock's; safe to call more than once. */
  release(): void;
}

/** A lock file younger than this with unreadable content is taken to be still being written. */
const UNREADABLE_GRACE_MS = 10_000;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const held = new Set<Lock>();

/** State and start time of a process from /proc (Linux); undefined elsewhere or when it is gone. */
function procStat(pid: number): { state: string; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ..." where comm may hold spaces and parentheses; starttime is field 22.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return f.length > 19 ? { state: f[0], start: f[19] } : undefined;
}

function alive(h: Holder): boolean {
  if (h.pid === process.pid) return true;
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to another user.
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const st = procStat(h.pid);
  // A zombie has ended (nobody reaped it yet); another start time means the pid was reused.
  if (st && (st.state === 'Z' || (h.procStart !== null && st.start !== h.procStart))) return false;
  return true;
}

function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Holder;
    return Number.isInteger(h.pid) && h.pid > 0 && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** Creates path with the given content unless it exists (then false). */
function create(path: string, text: string, what: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new UserError(`cannot lock ${what}: ${(e as Error).message}`);
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The lock file's content, or undefined when it is gone. */
function readLock(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Why the lock's holder still holds it (a one-line error), or undefined when the lock is stale. */
function stillHeld(path: string, text: string, what: string): string | undefined {
  const h = parseHolder(text);
  if (!h) {
    let age = Infinity;
    try {
      age = Date.now() - statSync(path).mtimeMs;
    } catch {
      // gone since it was read: stale for our purposes, the caller retries
    }
    return age < UNREADABLE_GRACE_MS ? `${what} is being locked by another nudge run (${path} is still being written); try again` : undefined;
  }
  if (h.host !== hostname()) {
    return `${what} is in use by nudge pid ${h.pid} on host ${h.host} since ${h.started}; if that run is gone, delete ${path}`;
  }
  if (!alive(h)) return undefined;
  const who = h.pid === process.pid ? `this process (pid ${h.pid})` : `nudge pid ${h.pid}`;
  return `${what} is in use by ${who} since ${h.started} (lock ${path}); wait for it to finish or stop it`;
}

/**
 * Replaces the stale lock whose content was `stale` by ours. Takeovers are serialized by a
 * second O_EXCL file, so two runs that both found the lock stale cannot both end up holding it.
 */
function takeOver(path: string, stale: string, mine: string, what: string): boolean {
  const guard = `${path}.takeover`;
  if (!create(guard, mine, what)) {
    // Another run is taking over now; its guard outlives it only if it died in these few calls.
    const g = readLock(guard);
    if (g !== undefined && stillHeld(guard, g, what) === undefined) rmSync(guard, { force: true });
    return false;
  }
  try {
    if (readLock(path) !== stale) return false; // released or taken over meanwhile: look again
    unlinkSync(path);
    return create(path, mine, what);
  } finally {
    rmSync(guard, { force: true });
  }
}

function releaseAll(): void {
  for (const l of [...held]) l.release();
}

// Killed by a signal, a process does not run its 'exit' handlers: release first, then die of
// the same signal. Where the program has a handler of its own (a graceful stop), that one
// decides, and its process.exit releases through 'exit'.
function onSignal(sig: NodeJS.Signals): void {
  if (process.listenerCount(sig) > 1) return;
  watchProcess(false); // the default action again, for the signal sent below
  releaseAll();
  process.kill(process.pid, sig);
}

function watchProcess(on: boolean): void {
  if (on) {
    process.on('exit', releaseAll);
    for (const s of SIGNALS) process.on(s, onSignal);
  } else {
    process.off('exit', releaseAll);
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}

/**
 * Takes the lock file `path` for `what` (named in the error), failing at once with a one-line
 * UserError naming the holder's pid while another live process holds it. Released by release(),
 * and when the process exits or is stopped by SIGINT, SIGTERM or SIGHUP.
 */
export async function takeLock(path: string, what: string): Promise<Lock> {
  const me: Holder = { pid: process.pid, host: hostname(), started: new Date().toISOString(), procStart: procStat(process.pid)?.start ?? null, nonce: randomBytes(8).toString('hex') };
  const mine = JSON.stringify(me) + '\n';
  for (let attempt = 0; !create(path, mine, what); attempt++) {
    if (attempt >= 100) throw new UserError(`cannot lock ${what}: ${path} keeps changing (other runs starting at the same time?)`);
    const text = readLock(path);
    if (text === undefined) continue; // released just now
    const why = stillHeld(path, text, what);
    if (why) throw new UserError(why);
    if (takeOver(path, text, mine, what)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const lock: Lock = {
    path,
    release() {
      if (!held.delete(lock)) return;
      if (held.size === 0) watchProcess(false);
      try {
        if (readLock(path) === mine) unlinkSync(path);
      } catch {
        // unreadable or gone: nothing of ours to remove
      }
    },
  };
  if (held.size === 0) watchProcess(true);
  held.add(lock);
  // Test hook (test/orphans.test.ts): hold the lock and go no further, so that a test can stop
  // the run at a known point or try a second run against it.
  if (process.env.NUDGE_TEST_HOLD_LOCK) await new Promise(() => setInterval(() => {}, 1 << 30));
  return lock;
}
