// The autotuner's memory: one JSON file per adapter in the user's cache directory
// ($XDG_CACHE_HOME/nudge/tune, else ~/.cache/nudge/tune).
//
// What is stored is never trusted blindly. A file that does not parse or has the wrong
// form is reported and ignored (and replaced at the next save). An entry whose kernel-set
// hash differs from the running code's, or whose config is no longer a candidate, is
// stale: reported and ignored. A time that is not a positive finite number (what a timer
// too coarse for the kernel reads) is never stored, and such an entry in a file is
// malformed. Saves are atomic (temporary file + rename) and serialized
// across processes by a lock file, re-reading the file under the lock so that two
// processes tuning different shapes at the same time both keep their results.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { writeFileAtomic } from '../files.js';

export const CACHE_FORMAT = 'nudge-tune-cache';
export const CACHE_VERSION = 1;

/** What makes timings comparable: the same adapter and driver. */
export interface AdapterIdentity {
  vendor: string;
  architecture: string;
  name: string;
  description: string;
  backend: string;
}

export interface CacheEntry {
  /** The winning config (as the kernel generators take it), or null for the op's built-in default path. */
  config: unknown;
  configKey: string;
  /** Median ms of the winner and of the default, measured side by side: positive and finite. */
  ms: number;
  defaultMs: number;
  /** Hash of the kernel generators and candidate set the measurement was made with. */
  kernels: string;
  /** Candidates timed, and candidates rejected by the probe check. */
  tried: number;
  rejected: number;
  tunedAt: string;
}

export interface CacheFile {
  format: string;
  version: number;
  adapter: AdapterIdentity;
  entries: Record<string, CacheEntry>;
}

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'nudge', 'tune');
}

export function adapterHash(a: AdapterIdentity): string {
  return createHash('sha256').update(JSON.stringify([a.vendor, a.architecture, a.name, a.description, a.backend])).digest('hex').slice(0, 12);
}

/** The cache file for an adapter: a readable slug plus a hash of the full identity. */
export function cachePath(a: AdapterIdentity, dir = cacheDir()): string {
  const slug = `${a.vendor}-${a.name}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'adapter';
  return join(dir, `${slug}-${adapterHash(a)}.json`);
}

/** A measured time (or rate) that can be compared: a positive finite number. */
export function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

function isEntry(v: unknown): v is CacheEntry {
  if (!v || typeof v !== 'object') return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.configKey === 'string' &&
    'config' in e &&
    isTime(e.ms) &&
    isTime(e.defaultMs) &&
    typeof e.kernels === 'string' &&
    typeof e.tried === 'number' &&
    typeof e.rejected === 'number' &&
    typeof e.tunedAt === 'string'
  );
}

export interface LoadResult {
  entries: Record<string, CacheEntry>;
  /** What was wrong with the file, for the user; empty when it was fine or absent. */
  problems: string[];
}

/**
 * Reads the cache file for `adapter`. Never throws for a bad file: a missing file is an
 * empty cache, and a corrupt one (or one for another adapter) is reported and ignored.
 * Entries of the wrong form are dropped one by one, each reported.
 */
export function loadCache(path: string, adapter: AdapterIdentity): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { entries: {}, problems: [] };
    return { entries: {}, problems: [`cannot read ${path} (${code ?? (e as Error).message}): ignoring it`] };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { entries: {}, problems: [`${path} is corrupt (${(e as Error).message}): ignoring it; it will be rewritten`] };
  }
  const d = doc as Partial<CacheFile>;
  if (!d || typeof d !== 'object' || d.format !== CACHE_FORMAT || typeof d.entries !== 'object' || d.entries === null || !d.adapter) {
    return { entries: {}, problems: [`${path} is not a nudge tune cache: ignoring it; it will be rewritten`] };
  }
  if (d.version !== CACHE_VERSION) {
    return { entries: {}, problems: [`${path} has cache version ${String(d.version)}, this nudge writes ${CACHE_VERSION}: ignoring it`] };
  }
  if (adapterHash(d.adapter as AdapterIdentity) !== adapterHash(adapter)) {
    return { entries: {}, problems: [`${path} was written for another adapter (${(d.adapter as AdapterIdentity).name}): ignoring it`] };
  }
  const entries: Record<string, CacheEntry> = {};
  const problems: string[] = [];
  for (const [k, v] of Object.entries(d.entries)) {
    if (isEntry(v)) entries[k] = v;
    else problems.push(`${path}: entry '${k}' is malformed: ignored`);
  }
  return { entries, problems };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A lock older than this is from a crashed writer (a save takes milliseconds). */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

function withLock<T>(path: string, fn: () => T): T {
  const lock = `${path}.lock`;
  const start = Date.now();
  let fd: number | null = null;
  while (fd === null) {
    try {
      fd = openSync(lock, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) unlinkSync(lock);
      } catch {
        /* the holder just released it */
      }
      if (Date.now() - start > LOCK_WAIT_MS) throw new Error(`tune cache ${path} is locked by another process (${lock}); remove the lock file if no nudge is running`);
      sleepSync(5 + Math.random() * 20);
    }
  }
  try {
    writeSync(fd, String(process.pid));
    return fn();
  } finally {
    closeSync(fd);
    try {
      unlinkSync(lock);
    } catch {
      /* removed as stale by another process: nothing to do */
    }
  }
}

/**
 * Merges `entries` into the cache file under the lock: entries already in the file for
 * other keys are kept; for the same key the newer measurement wins. Returns what was
 * wrong with the file as it was found (it is rewritten whole, valid). Throws for an entry
 * whose times are not positive and finite.
 */
export function saveEntries(path: string, adapter: AdapterIdentity, entries: Record<string, CacheEntry>): string[] {
  for (const [k, e] of Object.entries(entries)) {
    if (!isTime(e.ms) || !isTime(e.defaultMs)) throw new Error(`tune cache: refusing to save '${k}' with times ${e.ms} / ${e.defaultMs} ms (not positive and finite)`);
  }
  mkdirSync(dirname(path), { recursive: true });
  return withLock(path, () => {
    const current = existsSync(path) ? loadCache(path, adapter) : { entries: {}, problems: [] };
    const merged: Record<string, CacheEntry> = { ...current.entries };
    for (const [k, e] of Object.entries(entries)) {
      const old = merged[k];
      if (!old || old.tunedAt <= e.tunedAt) merged[k] = e;
    }
    const doc: CacheFile = { format: CACHE_FORMAT, version: CACHE_VERSION, adapter, entries: merged };
    writeFileAtomic(path, Buffer.from(JSON.stringify(doc, null, 1) + '\n'));
    return current.problems;
  });
}
