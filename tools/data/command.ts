// `nudge data fetch|prepare|info`.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { UserError } from '../errors.js';
import { fetchCommand, FETCH_USAGE } from './fetch.js';
import { DataError } from './idx.js';
import { defaultWorkers, relaunchWithThreadpool } from './pool.js';
import { prepare } from './prepare.js';
import { readManifest } from './shards.js';
import type { Split } from './sources.js';
import { SUBSETS } from './subsets.js';

export const DATA_USAGE = `  data prepare  ImageNet archives -> resized JPEG (or raw) shards + index + manifest, resumable
             --src DIR          official tars + devkit, Kaggle CLS-LOC, Hugging Face parquet, or train/<class>/ val/<class>/
             --out DIR          shards, manifest.json, report.txt (corrupt and rejected files)
             --size N           shorter side in pixels (default 256)   --format jpeg|raw   --quality Q (default 90)
             --squash 32|64     whole image squashed to NxN (ImageNet32/64 style; raw by default)
             --subset ${Object.keys(SUBSETS).join('|')}   --fraction F (every 1/F-th image of each class)
             --split train,val  --shard-mb N (default 1024)  --workers N (default cores-1)
             --expect-train N --expect-val N   expected counts when the source does not state them
  data info     summary of a prepared data set: --dir DIR [--verify] (re-hash every shard against the manifest)
${FETCH_USAGE}`;

function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UserError(`--${what} must be a number, got '${v}'`);
  return n;
}

async function prepareCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      src: { type: 'string' },
      out: { type: 'string' },
      size: { type: 'string' },
      format: { type: 'string' },
      quality: { type: 'string' },
      squash: { type: 'string' },
      subset: { type: 'string' },
      fraction: { type: 'string' },
      split: { type: 'string', default: 'train,val' },
      'shard-mb': { type: 'string' },
      workers: { type: 'string' },
      'expect-train': { type: 'string' },
      'expect-val': { type: 'string' },
    },
  });
  if (!values.src || !values.out) throw new UserError('data prepare needs --src DIR and --out DIR');
  if (values.format !== undefined && values.format !== 'jpeg' && values.format !== 'raw') throw new UserError('--format must be jpeg or raw');
  const splits = values.split!.split(',').map((s) => s.trim());
  for (const s of splits) if (s !== 'train' && s !== 'val') throw new UserError(`--split takes train and/or val, got '${s}'`);
  const workers = int(values.workers, 'workers') ?? defaultWorkers();
  if (!Number.isInteger(workers) || workers < 1) throw new UserError(`--workers must be a positive integer, got ${workers}`);
  const shardMb = int(values['shard-mb'], 'shard-mb');
  const expect: Partial<Record<Split, number>> = {};
  if (values['expect-train']) expect.train = int(values['expect-train'], 'expect-train');
  if (values['expect-val']) expect.val = int(values['expect-val'], 'expect-val');
  try {
    const r = await prepare({
      src: values.src,
      out: values.out,
      size: int(values.size, 'size'),
      format: values.format as 'jpeg' | 'raw' | undefined,
      quality: int(values.quality, 'quality'),
      squash: int(values.squash, 'squash'),
      subset: values.subset,
      fraction: int(values.fraction, 'fraction'),
      splits: splits as Split[],
      shardBytes: shardMb !== undefined ? Math.round(shardMb * 2 ** 20) : undefined,
      workers,
      expect,
      log: (l) => console.error(l),
    });
    for (const [split, rec] of Object.entries(r.manifest.splits)) {
      if (rec) console.log(`${split}: ${rec.images} images, ${rec.corrupt} corrupt, ${rec.rejected.length} rejected, ${rec.shards.length} shard(s)`);
    }
    if (r.mismatches.length) {
      console.error(`nudge: image counts do not match the expected totals:\n  ${r.mismatches.join('\n  ')}\n(see ${values.out}/report.txt; an incomplete download or a different source release?)`);
      return 1;
    }
    return 0;
  } catch (e) {
    if (e instanceof DataError) throw new UserError(e.message);
    throw e;
  }
}

/** Re-hashes every shard and index against the manifest; returns the problems found. */
export async function verifyShards(dir: string): Promise<string[]> {
  const m = readManifest(dir);
  const problems: string[] = [];
  const sha = async (file: string) => {
    const h = createHash('sha256');
    for await (const c of createReadStream(join(dir, file), { highWaterMark: 1 << 22 })) h.update(c as Buffer);
    return h.digest('hex');
  };
  for (const r of Object.values(m.splits)) {
    for (const s of r?.shards ?? []) {
      for (const [file, want] of [[s.file, s.sha256], [s.index, s.indexSha256]]) {
        if (!existsSync(join(dir, file))) problems.push(`${file}: missing`);
        else if ((await sha(file)) !== want) problems.push(`${file}: sha256 differs from the manifest (damaged; delete it and its entry or prepare again)`);
      }
    }
  }
  return problems;
}

async function infoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { dir: { type: 'string' }, verify: { type: 'boolean', default: false } } });
  if (!values.dir) throw new UserError('data info needs --dir DIR');
  let m;
  try {
    m = readManifest(values.dir);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  console.log(`${values.dir}: ${m.classes.length} classes from a ${m.source.kind} layout, options ${JSON.stringify(m.options)}`);
  for (const [split, r] of Object.entries(m.splits)) {
    if (!r) continue;
    const bytes = r.shards.reduce((a, s) => a + s.bytes, 0);
    console.log(`  ${split}: ${r.complete ? 'complete' : 'INCOMPLETE'}, ${r.images} images, ${r.shards.length} shard(s), ${(bytes / 2 ** 20).toFixed(1)} MiB, ${r.corrupt} corrupt, ${r.rejected.length} rejected${r.expected !== undefined ? `, expected ${r.expected}` : ''}`);
  }
  if (!values.verify) return 0;
  const problems = await verifyShards(values.dir);
  if (problems.length) {
    console.error(`nudge: ${problems.length} damaged file(s):\n  ${problems.join('\n  ')}`);
    return 1;
  }
  console.log('all shards and indexes match their sha256 in the manifest');
  return 0;
}

export async function dataCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'prepare':
      return relaunchWithThreadpool() ?? prepareCommand(rest);
    case 'fetch':
      return fetchCommand(rest);
    case 'info':
      return infoCommand(rest);
    default:
      throw new UserError(`data needs a subcommand: prepare, fetch or info${sub ? ` (got '${sub}')` : ''}`);
  }
}
