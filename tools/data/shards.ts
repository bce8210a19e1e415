// The on-disk form of a prepared data set:
//   manifest.json               classes, options, per split: shards, counts, corrupt/rejected files
//   <split>-NNNNN.bin           encoded images back to back (JPEG or raw RGB)
//   <split>-NNNNN.idx           'NIDX', version, count, then per image: offset, length, label (u32),
//                               width, height (u16), all little-endian
// Shards and the manifest are written to temporary names and renamed, so a crash leaves
// whole shards only; the manifest lists exactly the finished ones.
import { readFileSync } from 'node:fs';
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
}

export interface PrepareSettings {
  size: number;
  format: 'jpeg' | 'raw';
  quality: number;
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
  if (m.format !== MANIFEST_FORMAT) throw new DataError(`${path}: not a nudge prepared data set (format '${m.format}')`);
  return m;
}
