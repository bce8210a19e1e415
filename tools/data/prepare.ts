// `nudge data prepare`: source archives -> resized, re-encoded shards with an index and a
// manifest. Decoding runs in worker threads; results are consumed strictly in source order,
// so shard contents and boundaries do not depend on the number of workers. A finished
// shard is renamed into place and then recorded in the manifest (atomically); a rerun
// streams the source again, skipping (without decoding) the items of recorded shards.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../engine/index.js';
import { DataError } from './idx.js';
import { MAX_SIDE, sizeProblem } from './image-limits.mjs';
import { ImageWorkerError, TaskResult, WorkerPool } from './pool.js';
import { Lock, takeLock } from '../lock.js';
import { FULL_COUNTS, Source, SourceItem, Split, SplitSource, openSource } from './sources.js';
import { IndexEntry, MANIFEST_FORMAT, Manifest, PrepareSettings, ShardRecord, SplitRecord, checkManifest, encodeIndex, readShardIndex, splitProblem } from './shards.js';
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

/**
 * Why an image failed in a worker: too large or too elongated by its header's size (the
 * worker's own refusal, decided by the same rule), else corruption as the bytes show it.
 */
async function skipReason(bytes: Uint8Array, raw: SourceItem['raw'], s: PrepareSettings): Promise<string> {
  let dims: { width: number; height: number } | undefined = raw;
  if (!dims) {
    try {
      // Loaded only here: failures are rare, and the CLI need not load libvips to start.
      const { default: sharp } = await import('sharp');
      const md = await sharp(bytes, { limitInputPixels: false }).metadata();
      if (md.width && md.height) dims = { width: md.width, height: md.height };
    } catch {
      // no readable header: the bytes say why
    }
  }
  return (dims && sizeProblem(dims.width, dims.height, { size: s.size, squash: s.squash, encoded: !raw })) ?? corruptReason(bytes);
}

function settingsOf(o: PrepareOptions): PrepareSettings {
  const squash = o.squash ?? null;
  const format = o.format ?? (squash ? 'raw' : 'jpeg');
  return {
    size: squash ?? o.size ?? 256,
    format,
    quality: format === 'raw' ? null : (o.quality ?? 90),
    squash,
    subset: o.subset ?? null,
    fraction: o.fraction ?? 1,
    shardBytes: o.shardBytes ?? 1 << 30,
  };
}

/** Shard offsets are 32-bit: a shard closes once past shardBytes, so leave room for its last image. */
export const MAX_SHARD_BYTES = 2 ** 32 - 2 ** 26;
export const MAX_WORKERS = 256;

/** Every option as given, each error naming the option the CLI takes for it. */
function validate(o: PrepareOptions): void {
  const integer = (v: number | undefined, name: string, lo: number, hi: number, extra = '') => {
    if (v !== undefined && !(Number.isInteger(v) && v >= lo && v <= hi)) throw new DataError(`--${name} must be an integer in ${lo}..${hi}${extra}, got ${v}`);
  };
  integer(o.squash, 'squash', 8, 512, ' (32 and 64 are the ImageNet32/64 sizes)');
  integer(o.size, 'size', 8, 4096);
  if (o.squash !== undefined && o.size !== undefined && o.size !== o.squash) throw new DataError(`--squash ${o.squash} makes ${o.squash}x${o.squash} images: drop --size ${o.size}`);
  if (o.format !== undefined && o.format !== 'jpeg' && o.format !== 'raw') throw new DataError(`--format must be jpeg or raw, got ${o.format}`);
  integer(o.quality, 'quality', 1, 100);
  if (o.quality !== undefined && settingsOf(o).format === 'raw') throw new DataError(`--quality applies to JPEG shards only, and these are raw${o.squash !== undefined && o.format === undefined ? ' (--squash makes raw shards unless --format jpeg)' : ''}`);
  if (o.fraction !== undefined && !(o.fraction > 0 && o.fraction <= 1)) throw new DataError(`--fraction must be in (0, 1], got ${o.fraction}`);
  if (o.shardBytes !== undefined && !(Number.isInteger(o.shardBytes) && o.shardBytes >= 1 && o.shardBytes <= MAX_SHARD_BYTES)) throw new DataError(`shard size must be 1..${MAX_SHARD_BYTES} bytes (offsets are 32-bit), got ${o.shardBytes}`);
  integer(o.workers, 'workers', 1, MAX_WORKERS);
  for (const [split, n] of Object.entries(o.expect ?? {})) integer(n, `expect-${split}`, 0, 2 ** 32 - 1);
  if (o.subset !== undefined && !SUBSETS[o.subset]) throw new DataError(`unknown subset '${o.subset}' (available: ${Object.keys(SUBSETS).join(', ')})`);
}

/** The output directory, made if need be; a file or an unmakeable path is a clear error. */
function makeOutDir(out: string): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new DataError(`--out ${out} is a file, not a directory: name a directory for the shards`);
  try {
    mkdirSync(out, { recursive: true });
  } catch (e) {
    throw new DataError(`--out ${out}: cannot create the directory (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
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
  if ((m as { format?: unknown } | null)?.format !== MANIFEST_FORMAT) throw new DataError(`${path} is not a nudge manifest; choose an empty --out directory`);
  checkManifest(m, path);
  // Raw sets recorded a JPEG quality that never applied.
  if (m.options.format === 'raw') m.options.quality = null;
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
  fallbackExpected: number | undefined,
): Promise<{ written: number; record: SplitRecord; mismatch?: string }> {
  const label = new Map(classes.map((c, i) => [c, i]));
  const fresh = (): SplitRecord => ({ complete: false, shards: [], images: 0, perClass: [], corrupt: 0, rejected: [] });
  let record: SplitRecord = manifest.splits[split] ?? fresh();
  manifest.splits[split] = record;
  const log = opts.log ?? (() => {});
  let expected: number | undefined = opts.expect?.[split];
  if (expected === undefined && src.expected) {
    expected = 0;
    for (const c of classes) expected += Math.floor((src.expected.get(c) ?? 0) * settings.fraction + 1e-9);
  }
  expected ??= fallbackExpected;
  if (record.complete || record.mismatch !== undefined) {
    // A run that went to the end of the source; complete only if its count was right.
    const found = record.images + record.corrupt;
    const passed = splitProblem(record) === undefined;
    if (expected === undefined || found === expected) {
      if (passed) log(`${split}: already complete (${record.images} images in ${record.shards.length} shard(s))`);
      else {
        Object.assign(record, { complete: true, expected });
        delete record.mismatch;
        save();
        log(`${split}: the ${found} images found last run are ${expected === undefined ? 'all this run expects' : `the ${expected} expected now`}: complete`);
      }
      return { written: 0, record };
    }
    if (passed) {
      // Complete and checked: never thrown away over a changed expectation (a typo in --expect).
      const by = opts.expect?.[split] !== undefined ? `--expect-${split} ${expected}` : `the source says ${expected}`;
      throw new DataError(`${split} in ${opts.out} is complete with ${found} images, but ${by}: prepare into another --out to make it again`);
    }
    // Short (or over) of what is expected: the source was incomplete or changed, so none of
    // it can be trusted as a prefix to resume from.
    log(`${split}: the last run found ${found} images, ${expected} expected: preparing it again from the start`);
    const old = record.shards;
    record = manifest.splits[split] = fresh();
    save();
    for (const s of old) for (const f of [s.file, s.index]) rmSync(join(opts.out, f), { force: true });
  }
  const skip = record.shards.reduce((a, s) => a + s.items, 0);
  if (skip > 0) log(`${split}: resuming after ${record.shards.length} finished shard(s) (${skip} items)`);
  const rejected: { name: string; reason: string }[] = [];
  const positionInClass = new Map<string, number>();
  let seq = 0;
  let written = 0;
  let shard: ShardWriter | undefined;
  const window = pool.size * 4;
  const queue: { name: string; cls: number; bytes: Uint8Array; raw: SourceItem['raw']; result: Promise<TaskResult> }[] = [];
  const t0 = performance.now();
  let lastLog = t0;

  const consume = async (q: (typeof queue)[number]) => {
    shard ??= new ShardWriter(opts.out, `${split}-${String(record.shards.length).padStart(5, '0')}`);
    let r: TaskResult | undefined;
    try {
      r = await q.result;
    } catch (e) {
      if (!(e instanceof ImageWorkerError)) throw e;
      // libvips' messages race between threads (its error buffer is shared), so the manifest
      // gets a reason derived from the image's header and bytes, and the library's words go
      // to the log only.
      shard.skip(q.name, await skipReason(q.bytes, q.raw, settings));
      log(`${split}: skipping ${q.name}: ${e.message.split('\n')[0]}`);
    }
    if (r && (r.width! > MAX_SIDE || r.height! > MAX_SIDE)) {
      // The workers refuse these from the header; this catches any rounding they missed.
      shard.skip(q.name, `image too elongated: resized to ${r.width}x${r.height}, over the ${MAX_SIDE}-pixel side a shard image can have`);
      log(`${split}: skipping ${q.name}: resized to ${r.width}x${r.height}`);
    } else if (r) {
      (shard as ShardWriter).add(r.data as Uint8Array, q.cls, r.width!, r.height!);
      written++;
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
      const result = pool.run({ op: 'prepare', bytes: item.bytes, raw: item.raw, size: settings.size, squash: settings.squash ?? undefined, format: settings.format, quality: settings.quality ?? 0 });
      // Attach a handler now so a failure waiting in the queue is not an unhandled rejection.
      result.catch(() => {});
      queue.push({ name: item.name, cls, bytes: item.bytes, raw: item.raw, result });
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
    for (const e of readShardIndex(opts.out, manifest, s)) {
      perClass[e.label]++;
      images++;
    }
  }
  const corrupt = record.shards.reduce((a, s) => a + s.corrupt.length, 0);
  const found = images + corrupt;
  // A short split is recorded as such, never as complete: a rerun prepares it again.
  const mismatch = expected !== undefined && found !== expected ? `found ${found} images (${images} good + ${corrupt} skipped), expected ${expected}` : undefined;
  Object.assign(record, { complete: mismatch === undefined, images, perClass, expected, corrupt, rejected });
  if (mismatch) record.mismatch = mismatch;
  else delete record.mismatch;
  save();
  const secs = (performance.now() - t0) / 1000;
  log(`${split}: ${images} images in ${record.shards.length} shard(s), ${record.corrupt} skipped, ${rejected.length} rejected; ${written} decoded this run in ${secs.toFixed(1)} s`);
  return { written, record, mismatch };
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
  validate(opts);
  const settings = settingsOf(opts);
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
  makeOutDir(opts.out);
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
      // A whole data set with no stated counts (Kaggle train, Hugging Face) is checked against ImageNet's.
      const fallback = !settings.subset && settings.fraction === 1 && source.kind !== 'folder' ? FULL_COUNTS[split] : undefined;
      const r = await prepareSplit(source.splits[split]!, split, classes, settings, manifest, opts, pool, save, fallback);
      written[split] = r.written;
      if (r.mismatch) mismatches.push(`${split}: ${r.mismatch}`);
    }
  } finally {
    await pool.close();
  }
  writeReport(opts.out, manifest, mismatches);
  return { manifest, written, mismatches };
}

function writeReport(out: string, m: Manifest, mismatches: string[]): void {
  const lines: string[] = [`prepared from the ${m.source.kind} layout in ${m.source.root}`, `options ${JSON.stringify(m.options)}`, `${m.classes.length} classes`];
  for (const [split, r] of Object.entries(m.splits)) {
    if (!r) continue;
    const problem = splitProblem(r);
    lines.push(`${split}: ${r.images} images in ${r.shards.length} shard(s), ${r.corrupt} skipped${r.expected !== undefined ? `, expected ${r.expected}` : ''}${problem ? `; ${problem.replace(/^incomplete/, 'INCOMPLETE')}` : ''}`);
    for (const s of r.shards) for (const c of s.corrupt) lines.push(`  skipped ${c.name}: ${c.reason}`);
    for (const c of r.rejected) lines.push(`  rejected ${c.name}: ${c.reason}`);
  }
  for (const mm of mismatches) lines.push(`COUNT MISMATCH ${mm}`);
  writeFileSync(join(out, 'report.txt'), lines.join('\n') + '\n');
}
