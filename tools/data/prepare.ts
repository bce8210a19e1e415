// `nudge data prepare`: source archives -> resized, re-encoded shards with an index and a
// manifest. Decoding runs in worker threads; results are consumed strictly in source order,
// so shard contents and boundaries do not depend on the number of workers. A finished
// shard is renamed into place and then recorded in the manifest (atomically); a rerun
// streams the source again, skipping (without decoding) the items of recorded shards.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../engine/index.js';
import { DataError } from './idx.js';
import { ImageWorkerError, TaskResult, WorkerPool } from './pool.js';
import { Lock, takeLock } from '../lock.js';
import { FULL_COUNTS, Source, Split, SplitSource, openSource } from './sources.js';
import { IndexEntry, MANIFEST_FORMAT, Manifest, PrepareSettings, ShardRecord, SplitRecord, decodeIndex, encodeIndex } from './shards.js';
import { SUBSETS } from './subsets.js';

export interface PrepareOptions {
  src: string;
  out: string;
  size?: number;
  format?: 'jpeg' | 'raw';
  quality?: number;
  squash?: number;
  subset?: string;
  fraction?: number;
  splits?: Split[];
  shardBytes?: number;
  workers: number;
  /** Expected selected images per split, overriding what the source states. */
  expect?: Partial<Record<Split, number>>;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
}

export interface PrepareResult {
  manifest: Manifest;
  /** Per split: images written this run (0 when everything was already done). */
  written: Partial<Record<Split, number>>;
  /** Count mismatches against the expected totals (empty when all verified). */
  mismatches: string[];
}

/** Every f-th item of a class, in source order: floor(n f) of a class of n, exactly. */
export function fractionKeeps(position: number, fraction: number): boolean {
  if (fraction >= 1) return true;
  const eps = 1e-9;
  return Math.floor((position + 1) * fraction + eps) > Math.floor(position * fraction + eps);
}

/** Why a file would not decode, from its bytes alone (deterministic, unlike decoder messages). */
export function corruptReason(b: Uint8Array): string {
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xd8) {
    return b.length >= 4 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9 ? 'corrupt JPEG data' : 'truncated JPEG (no end-of-image marker)';
  }
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'corrupt PNG data';
  return b.length === 0 ? 'empty file' : 'not a decodable image';
}

function settingsOf(o: PrepareOptions): PrepareSettings {
  const squash = o.squash ?? null;
  return {
    size: squash ?? o.size ?? 256,
    format: o.format ?? (squash ? 'raw' : 'jpeg'),
    quality: o.quality ?? 90,
    squash,
    subset: o.subset ?? null,
    fraction: o.fraction ?? 1,
    shardBytes: o.shardBytes ?? 1 << 30,
  };
}

function validate(s: PrepareSettings): void {
  if (!Number.isInteger(s.size) || s.size < 8 || s.size > 4096) throw new DataError(`--size must be an integer in 8..4096, got ${s.size}`);
  if (s.squash !== null && ![32, 64].includes(s.squash) && !(Number.isInteger(s.squash) && s.squash >= 8 && s.squash <= 512)) throw new DataError(`--squash must be 32 or 64 (or another size 8..512), got ${s.squash}`);
  if (!Number.isInteger(s.quality) || s.quality < 1 || s.quality > 100) throw new DataError(`--quality must be 1..100, got ${s.quality}`);
  if (!(s.fraction > 0 && s.fraction <= 1)) throw new DataError(`--fraction must be in (0, 1], got ${s.fraction}`);
  if (!(s.shardBytes >= 1 && s.shardBytes < 2 ** 32 - 2 ** 26)) throw new DataError(`shard size must be below 4 GiB (offsets are 32-bit), got ${s.shardBytes}`);
  if (s.subset !== null && !SUBSETS[s.subset]) throw new DataError(`unknown subset '${s.subset}' (available: ${Object.keys(SUBSETS).join(', ')})`);
}

/** An open shard being filled: data goes straight to a temporary file. */
class ShardWriter {
  private fd: number;
  private hash = createHash('sha256');
  bytes = 0;
  items = 0;
  entries: IndexEntry[] = [];
  corrupt: { name: string; reason: string }[] = [];

  constructor(
    readonly dir: string,
    readonly base: string,
  ) {
    this.fd = openSync(join(dir, `${base}.bin.tmp`), 'w');
  }

  add(data: Uint8Array, label: number, width: number, height: number): void {
    this.entries.push({ offset: this.bytes, length: data.length, label, width, height });
    writeSync(this.fd, data);
    this.hash.update(data);
    this.bytes += data.length;
    this.items++;
  }

  skip(name: string, reason: string): void {
    this.corrupt.push({ name, reason });
    this.items++;
  }

  finish(): ShardRecord {
    fsyncSync(this.fd);
    closeSync(this.fd);
    const index = encodeIndex(this.entries);
    writeFileAtomic(join(this.dir, `${this.base}.idx`), index);
    renameSync(join(this.dir, `${this.base}.bin.tmp`), join(this.dir, `${this.base}.bin`));
    return {
      file: `${this.base}.bin`,
      index: `${this.base}.idx`,
      images: this.entries.length,
      items: this.items,
      bytes: this.bytes,
      sha256: this.hash.digest('hex'),
      indexSha256: createHash('sha256').update(index).digest('hex'),
      corrupt: this.corrupt,
    };
  }

  abandon(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

function loadExisting(out: string, settings: PrepareSettings, classes: string[]): Manifest | undefined {
  const path = join(out, 'manifest.json');
  if (!existsSync(path)) return undefined;
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw new DataError(`${path} is unreadable (${(e as Error).message}); choose another --out or remove it`);
  }
  if (m.format !== MANIFEST_FORMAT) throw new DataError(`${path} is not a nudge manifest; choose an empty --out directory`);
  if (JSON.stringify(m.options) !== JSON.stringify(settings) || JSON.stringify(m.classes) !== JSON.stringify(classes)) {
    throw new DataError(
      `${out} holds a preparation with different options or classes (${JSON.stringify(m.options)}); ` + `rerun with the same options to resume, or choose another --out`,
    );
  }
  return m;
}

async function prepareSplit(
  src: SplitSource,
  split: Split,
  classes: string[],
  settings: PrepareSettings,
  manifest: Manifest,
  opts: PrepareOptions,
  pool: WorkerPool,
  save: () => void,
): Promise<{ written: number; record: SplitRecord; expected?: number }> {
  const label = new Map(classes.map((c, i) => [c, i]));
  const prev = manifest.splits[split];
  const record: SplitRecord = prev ?? { complete: false, shards: [], images: 0, perClass: [], corrupt: 0, rejected: [] };
  manifest.splits[split] = record;
  const log = opts.log ?? (() => {});
  let expected: number | undefined = opts.expect?.[split];
  if (expected === undefined && src.expected) {
    expected = 0;
    for (const c of classes) expected += Math.floor((src.expected.get(c) ?? 0) * settings.fraction + 1e-9);
  }
  if (record.complete) {
    log(`${split}: already complete (${record.images} images in ${record.shards.length} shard(s))`);
    return { written: 0, record, expected };
  }
  const skip = record.shards.reduce((a, s) => a + s.items, 0);
  if (skip > 0) log(`${split}: resuming after ${record.shards.length} finished shard(s) (${skip} items)`);
  const rejected: { name: string; reason: string }[] = [];
  const positionInClass = new Map<string, number>();
  let seq = 0;
  let written = 0;
  let shard: ShardWriter | undefined;
  const window = pool.size * 4;
  const queue: { name: string; cls: number; bytes: Uint8Array; result: Promise<TaskResult> }[] = [];
  const t0 = performance.now();
  let lastLog = t0;

  const consume = async (q: (typeof queue)[number]) => {
    shard ??= new ShardWriter(opts.out, `${split}-${String(record.shards.length).padStart(5, '0')}`);
    try {
      const r = await q.result;
      shard.add(r.data as Uint8Array, q.cls, r.width!, r.height!);
      written++;
    } catch (e) {
      if (!(e instanceof ImageWorkerError)) throw e;
      // libvips' messages race between threads (its error buffer is shared), so the manifest
      // gets a reason derived from the bytes, and the library's words go to the log only.
      shard.skip(q.name, corruptReason(q.bytes));
      log(`${split}: skipping ${q.name}: ${e.message.split('\n')[0]}`);
    }
    if (shard.bytes >= settings.shardBytes) {
      record.shards.push(shard.finish());
      shard = undefined;
      save();
    }
    const now = performance.now();
    if (now - lastLog > 5000) {
      lastLog = now;
      const rate = written / ((now - t0) / 1000);
      const total = expected !== undefined ? ` of ${expected}` : '';
      const eta = expected !== undefined && rate > 0 ? `, ETA ${Math.round((expected - skip - written) / rate)} s` : '';
      log(`${split}: ${skip + written}${total} images, ${rate.toFixed(0)} img/s${eta}`);
    }
  };

  try {
    for await (const item of src.items((r) => rejected.push(r))) {
      const cls = label.get(item.cls);
      if (cls === undefined) continue; // not in the chosen class list
      const pos = positionInClass.get(item.cls) ?? 0;
      positionInClass.set(item.cls, pos + 1);
      if (!fractionKeeps(pos, settings.fraction)) continue;
      if (seq++ < skip) continue;
      const result = pool.run({ op: 'prepare', bytes: item.bytes, raw: item.raw, size: settings.size, squash: settings.squash ?? undefined, format: settings.format, quality: settings.quality });
      // Attach a handler now so a failure waiting in the queue is not an unhandled rejection.
      result.catch(() => {});
      queue.push({ name: item.name, cls, bytes: item.bytes, result });
      while (queue.length >= window) await consume(queue.shift()!);
    }
    while (queue.length) await consume(queue.shift()!);
    if (shard && (shard as ShardWriter).items > 0) record.shards.push((shard as ShardWriter).finish());
    else (shard as ShardWriter | undefined)?.abandon();
    shard = undefined;
  } catch (e) {
    (shard as ShardWriter | undefined)?.abandon();
    throw e;
  }
  if (seq < skip) throw new DataError(`${split}: the source now has ${seq} selected items but the finished shards account for ${skip}: the source changed; use a new --out`);
  // Counts from the written indexes: what a reader will see.
  const perClass = new Array(classes.length).fill(0);
  let images = 0;
  for (const s of record.shards) {
    for (const e of decodeIndex(readFileSync(join(opts.out, s.index)), s.index)) {
      perClass[e.label]++;
      images++;
    }
  }
  Object.assign(record, {
    complete: true,
    images,
    perClass,
    expected,
    corrupt: record.shards.reduce((a, s) => a + s.corrupt.length, 0),
    rejected,
  });
  save();
  const secs = (performance.now() - t0) / 1000;
  log(`${split}: ${images} images in ${record.shards.length} shard(s), ${record.corrupt} corrupt, ${rejected.length} rejected; ${written} decoded this run in ${secs.toFixed(1)} s`);
  return { written, record, expected };
}

/** Held by a prepare in its --out, so that two runs never write the same shards (tools/lock.ts). */
export const PREPARE_LOCK = '.nudge-prepare.lock';

export async function prepare(opts: PrepareOptions): Promise<PrepareResult> {
  // Taken in prepareLocked once --out exists; released here however the run ends.
  const held: { lock?: Lock } = {};
  try {
    return await prepareLocked(opts, held);
  } finally {
    held.lock?.release();
  }
}

async function prepareLocked(opts: PrepareOptions, held: { lock?: Lock }): Promise<PrepareResult> {
  const settings = settingsOf(opts);
  validate(settings);
  const source: Source = await openSource(opts.src);
  let classes = source.classes;
  if (settings.subset) {
    const want = [...SUBSETS[settings.subset]];
    const have = new Set(source.classes);
    const missing = want.filter((w) => !have.has(w));
    if (missing.length) throw new DataError(`subset ${settings.subset}: ${missing.length} class(es) not in the source (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''})`);
    classes = want.sort();
  }
  const splits = (opts.splits ?? ['train', 'val']).filter((s) => source.splits[s]);
  if (splits.length === 0) throw new DataError(`${opts.src}: none of the requested splits (${(opts.splits ?? []).join(', ')}) is present`);
  mkdirSync(opts.out, { recursive: true });
  held.lock = await takeLock(join(opts.out, PREPARE_LOCK), `--out ${opts.out}`);
  const manifest: Manifest = loadExisting(opts.out, settings, classes) ?? {
    format: MANIFEST_FORMAT,
    source: { kind: source.kind, root: source.root },
    options: settings,
    classes,
    words: source.words ? classes.map((c) => source.words!.get(c) ?? '') : undefined,
    splits: {},
  };
  const save = () => writeFileAtomic(join(opts.out, 'manifest.json'), Buffer.from(JSON.stringify(manifest, null, 1)));
  save();
  opts.log?.(`prepare: ${source.kind} layout in ${opts.src}, ${classes.length} classes, splits ${splits.join('+')}, ${opts.workers} worker(s)`);
  const pool = new WorkerPool(opts.workers);
  const written: PrepareResult['written'] = {};
  const mismatches: string[] = [];
  try {
    for (const split of splits) {
      const r = await prepareSplit(source.splits[split]!, split, classes, settings, manifest, opts, pool, save);
      written[split] = r.written;
      const found = r.record.images + r.record.corrupt;
      let expected = r.expected;
      // A whole data set with no stated counts (Kaggle train, Hugging Face) is checked against ImageNet's.
      if (expected === undefined && !settings.subset && settings.fraction === 1 && source.kind !== 'folder') expected = FULL_COUNTS[split];
      if (expected !== undefined && found !== expected) {
        mismatches.push(`${split}: found ${found} images (${r.record.images} good + ${r.record.corrupt} corrupt), expected ${expected}`);
      }
    }
  } finally {
    await pool.close();
  }
  writeReport(opts.out, manifest, mismatches);
  return { manifest, written, mismatches };
}

function writeReport(out: string, m: Manifest, mismatches: string[]): void {
  const lines: string[] = [`prepared from ${m.source.kind} layout in ${m.source.root}`, `options ${JSON.stringify(m.options)}`, `${m.classes.length} classes`];
  for (const [split, r] of Object.entries(m.splits)) {
    if (!r) continue;
    lines.push(`${split}: ${r.images} images in ${r.shards.length} shard(s)${r.expected !== undefined ? `, expected ${r.expected}` : ''}`);
    for (const s of r.shards) for (const c of s.corrupt) lines.push(`  corrupt ${c.name}: ${c.reason}`);
    for (const c of r.rejected) lines.push(`  rejected ${c.name}: ${c.reason}`);
  }
  for (const mm of mismatches) lines.push(`COUNT MISMATCH ${mm}`);
  writeFileSync(join(out, 'report.txt'), lines.join('\n') + '\n');
}
