// The on-disk form of a prepared data set:
//   manifest.json               classes, options, per split: shards, counts, corrupt/rejected files
//   <split>-NNNNN.bin           encoded images back to back (JPEG or raw RGB)
//   <split>-NNNNN.idx           'NIDX', version, count, then per image: offset, length, label (u32),
//                               width, height (u16), all little-endian
// Shards and the manifest are written to temporary names and renamed, so a crash leaves
// whole shards only; the manifest lists exactly the finished ones.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataError } from './idx.js';
import type { Split } from './sources.js';

export const MANIFEST_FORMAT = 'nudge-imagenet-shards-1';
const IDX_MAGIC = 0x5844494e; // 'NIDX'
const IDX_HEADER = 12;
const IDX_RECORD = 16;

export interface ShardRecord {
  file: string;
  index: string;
  images: number;
  /** Selected source items this shard accounts for (images + corrupt): what a resume skips. */
  items: number;
  bytes: number;
  sha256: string;
  indexSha256: string;
  corrupt: { name: string; reason: string }[];
}

export interface SplitRecord {
  complete: boolean;
  shards: ShardRecord[];
  images: number;
  perClass: number[];
  /** Selected images the source should have held (undefined when the source does not say). */
  expected?: number;
  corrupt: number;
  rejected: { name: string; reason: string }[];
  /** Set when the count check failed ('found N images (...), expected M'): the split is then not complete. */
  mismatch?: string;
}

export interface PrepareSettings {
  size: number;
  format: 'jpeg' | 'raw';
  /** JPEG quality; null for raw shards. */
  quality: number | null;
  squash: number | null;
  subset: string | null;
  fraction: number;
  shardBytes: number;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  source: { kind: string; root: string };
  options: PrepareSettings;
  /** Class index = position here (sorted wnids). */
  classes: string[];
  words?: string[];
  splits: Partial<Record<Split, SplitRecord>>;
}

export interface IndexEntry {
  offset: number;
  length: number;
  label: number;
  width: number;
  height: number;
}

export function encodeIndex(entries: IndexEntry[]): Buffer {
  const buf = Buffer.alloc(IDX_HEADER + IDX_RECORD * entries.length);
  buf.writeUInt32LE(IDX_MAGIC, 0);
  buf.writeUInt32LE(1, 4);
  buf.writeUInt32LE(entries.length, 8);
  entries.forEach((e, i) => {
    const o = IDX_HEADER + i * IDX_RECORD;
    buf.writeUInt32LE(e.offset, o);
    buf.writeUInt32LE(e.length, o + 4);
    buf.writeUInt32LE(e.label, o + 8);
    buf.writeUInt16LE(e.width, o + 12);
    buf.writeUInt16LE(e.height, o + 14);
  });
  return buf;
}

export function decodeIndex(buf: Buffer, what: string): IndexEntry[] {
  if (buf.length < IDX_HEADER || buf.readUInt32LE(0) !== IDX_MAGIC) throw new DataError(`${what}: not a shard index`);
  const n = buf.readUInt32LE(8);
  if (buf.length !== IDX_HEADER + n * IDX_RECORD) throw new DataError(`${what}: truncated (${buf.length} bytes for ${n} entries)`);
  const out: IndexEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = IDX_HEADER + i * IDX_RECORD;
    out.push({ offset: buf.readUInt32LE(o), length: buf.readUInt32LE(o + 4), label: buf.readUInt32LE(o + 8), width: buf.readUInt16LE(o + 12), height: buf.readUInt16LE(o + 14) });
  }
  return out;
}

export function readManifest(dir: string): Manifest {
  const path = join(dir, 'manifest.json');
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? `${path} not found: prepare the data set first with 'nudge data prepare --src <archives> --out ${dir}'` : `${path}: ${(e as Error).message}`);
  }
  checkManifest(m, path);
  return m;
}

/** A file name the manifest may give a shard: one plain name inside the data directory. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** The manifest's shape, and shard names that cannot reach outside the data directory. */
export function checkManifest(m: unknown, path: string): asserts m is Manifest {
  const bad = (why: string): never => {
    throw new DataError(`${path}: ${why}`);
  };
  if (typeof m !== 'object' || m === null || Array.isArray(m)) bad('not a JSON object');
  const o = m as Record<string, unknown>;
  if (o.format !== MANIFEST_FORMAT) bad(`not a nudge prepared data set (format '${String(o.format)}')`);
  if (!Array.isArray(o.classes) || o.classes.length === 0 || !o.classes.every((c) => typeof c === 'string')) bad('no class list');
  const opt = o.options as Record<string, unknown> | undefined;
  if (typeof opt !== 'object' || opt === null || !Number.isInteger(opt.size) || (opt.format !== 'jpeg' && opt.format !== 'raw')) bad('options are missing or malformed');
  if (typeof o.splits !== 'object' || o.splits === null) bad('no splits');
  const count = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  for (const [split, r] of Object.entries(o.splits as Record<string, unknown>)) {
    if (split !== 'train' && split !== 'val') bad(`unknown split '${split}'`);
    const rec = r as Record<string, unknown> | null;
    if (typeof rec !== 'object' || rec === null || !Array.isArray(rec.shards) || !count(rec.images) || !count(rec.corrupt) || !Array.isArray(rec.rejected)) bad(`${split}: malformed split record`);
    for (const [i, sh] of (rec!.shards as unknown[]).entries()) {
      const s = sh as Record<string, unknown> | null;
      if (typeof s !== 'object' || s === null || !count(s.images) || !count(s.items) || !count(s.bytes) || !Array.isArray(s.corrupt)) bad(`${split}: shard ${i} is malformed`);
      for (const f of [s!.file, s!.index]) {
        if (typeof f !== 'string' || !SAFE_NAME.test(f)) bad(`${split}: shard ${i} names the file ${JSON.stringify(f)}, which is not a plain file name in the data directory`);
      }
    }
  }
}

/** Why a split cannot be used (missing, unfinished, short of its expected count), or undefined. */
export function splitProblem(rec: SplitRecord | undefined): string | undefined {
  if (!rec) return 'missing';
  if (rec.mismatch) return `incomplete: its count check failed (${rec.mismatch})`;
  if (!rec.complete) return 'incomplete: the preparation did not finish';
  const found = rec.images + rec.corrupt;
  // Manifests from before a failed check was recorded said complete regardless.
  if (rec.expected !== undefined && found !== rec.expected) return `incomplete: ${found} images found (${rec.images} good + ${rec.corrupt} skipped), ${rec.expected} expected`;
  return undefined;
}

/**
 * A shard's index, every record checked before use: its bytes inside the shard file, its
 * label among the classes, its size as the options made it (the shorter side at --size or
 * the squash square; raw bytes exactly width x height x 3).
 */
export function readShardIndex(dir: string, m: Manifest, s: ShardRecord): IndexEntry[] {
  const what = join(dir, s.index);
  let buf: Buffer;
  let binBytes: number;
  try {
    buf = readFileSync(what);
    binBytes = statSync(join(dir, s.file)).size;
  } catch (e) {
    throw new DataError(`${(e as NodeJS.ErrnoException).path ?? what}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (e as Error).message}`);
  }
  const entries = decodeIndex(buf, what);
  if (entries.length !== s.images) throw new DataError(`${what}: ${entries.length} images, but the manifest says ${s.images}`);
  const classes = m.classes.length;
  const { size, squash, format } = m.options;
  for (const [i, e] of entries.entries()) {
    const fail = (why: string): never => {
      throw new DataError(`${what}: image ${i} ${why}`);
    };
    if (e.length < 1 || e.offset + e.length > binBytes) fail(`claims bytes ${e.offset}..${e.offset + e.length}, but ${s.file} has ${binBytes}`);
    if (e.label >= classes) fail(`has label ${e.label}, but the set has ${classes} classes`);
    const sized = squash ? e.width === squash && e.height === squash : Math.min(e.width, e.height) === size;
    if (!sized) fail(`is ${e.width}x${e.height}, but the set was prepared ${squash ? `squashed to ${squash}x${squash}` : `with its shorter side at ${size}`}`);
    if (format === 'raw' && e.length !== e.width * e.height * 3) fail(`is ${e.width}x${e.height} raw RGB, ${e.width * e.height * 3} bytes, but its length is ${e.length}`);
  }
  return entries;
}
