// `nudge data fetch|prepare|info`.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { UserError } from '../errors.js';
import { fetchCommand, FETCH_USAGE } from './fetch.js';
import { DataError } from './idx.js';
import { defaultWorkers, relaunchWithThreadpool } from './pool.js';
import { MAX_SHARD_BYTES, prepare } from './prepare.js';
import { readManifest, readShardIndex, splitProblem } from './shards.js';
import type { Split } from './sources.js';
import { SUBSETS } from './subsets.js';

export const DATA_USAGE = `  data prepare  ImageNet archives -> resized JPEG (or raw) shards + index + manifest, resumable
             --src DIR          official tars + devkit, Kaggle CLS-LOC, Hugging Face parquet, or train/<class>/ val/<class>/
             --out DIR          shards, manifest.json, report.txt (skipped and rejected files)
             --size N           shorter side in pixels, 8..4096 (default 256)   --format jpeg|raw   --quality 1..100 (JPEG, default 90)
             --squash 32|64     whole image squashed to NxN, 8..512 (ImageNet32/64 style; raw by default)
             --subset ${Object.keys(SUBSETS).join('|')}   --fraction F in (0, 1] (every 1/F-th image of each class)
             --split train,val  --shard-mb N (default 1024, at most 4032)  --workers N (default cores-1)
             --expect-train N --expect-val N   expected counts when the source does not state them
  data info     summary of a prepared data set: --dir DIR [--verify] (re-hash and check every shard; exit 1 if damaged or incomplete)
${FETCH_USAGE}`;

/** A whole number as typed (no signs, exponents or hex), or undefined when the option is absent. */
function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw new UserError(`--${what} must be a whole number, got '${v}'`);
  return Number(v);
}

/** A plain decimal number as typed, or undefined when the option is absent. */
function num(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(\d+\.?\d*|\.\d+)$/.test(v.trim())) throw new UserError(`--${what} must be a number, got '${v}'`);
  return Number(v);
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
  const splits = [...new Set(values.split!.split(',').map((s) => s.trim()))];
  for (const s of splits) if (s !== 'train' && s !== 'val') throw new UserError(`--split takes train and/or val, got '${s}'`);
  const workers = int(values.workers, 'workers') ?? defaultWorkers();
  const shardMb = num(values['shard-mb'], 'shard-mb');
  const shardBytes = shardMb !== undefined ? Math.round(shardMb * 2 ** 20) : undefined;
  if (shardBytes !== undefined && !(shardBytes >= 1 && shardBytes <= MAX_SHARD_BYTES)) {
    throw new UserError(`--shard-mb must be above 0 and at most ${MAX_SHARD_BYTES / 2 ** 20} (shard offsets are 32-bit), got ${values['shard-mb']}`);
  }
  const expect: Partial<Record<Split, number>> = {};
  if (values['expect-train'] !== undefined) expect.train = int(values['expect-train'], 'expect-train');
  if (values['expect-val'] !== undefined) expect.val = int(values['expect-val'], 'expect-val');
  try {
    const r = await prepare({
      src: values.src,
      out: values.out,
      size: int(values.size, 'size'),
      format: values.format as 'jpeg' | 'raw' | undefined,
      quality: int(values.quality, 'quality'),
      squash: int(values.squash, 'squash'),
      subset: values.subset,
      fraction: num(values.fraction, 'fraction'),
      splits: splits as Split[],
      shardBytes,
      workers,
      expect,
      log: (l) => console.error(l),
    });
    for (const [split, rec] of Object.entries(r.manifest.splits)) {
      if (rec) console.log(`${split}: ${rec.images} images, ${rec.corrupt} skipped, ${rec.rejected.length} rejected, ${rec.shards.length} shard(s)${rec.mismatch ? ', INCOMPLETE' : ''}`);
    }
    if (r.mismatches.length) {
      const accept = Object.entries(r.manifest.splits)
        .filter(([, rec]) => rec?.mismatch)
        .map(([split, rec]) => `--expect-${split} ${rec!.images + rec!.corrupt}`);
      console.error(
        `nudge: image counts do not match the expected totals:\n  ${r.mismatches.join('\n  ')}\n` +
          `(see ${values.out}/report.txt; an incomplete download or a different source release?)\n` +
          `The split(s) stay incomplete and are not used for training: with the whole source in place, rerun the same command to prepare them again; ` +
          `if the counts found are right, rerun it with ${accept.join(' ')}.`,
      );
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
      let intact = true;
      for (const [file, want] of [[s.file, s.sha256], [s.index, s.indexSha256]]) {
        if (!existsSync(join(dir, file))) problems.push(`${file}: missing`);
        else if ((await sha(file)) !== want) problems.push(`${file}: sha256 differs from the manifest (damaged; delete it and its entry or prepare again)`);
        else continue;
        intact = false;
      }
      if (!intact) continue;
      // Matching hashes prove the files are what was written, not that the index is sound.
      try {
        readShardIndex(dir, m, s);
      } catch (e) {
        problems.push((e as Error).message);
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
  console.log(`${values.dir}: ${m.classes.length} classes, prepared from the ${m.source.kind} layout in ${m.source.root}, options ${JSON.stringify(m.options)}`);
  const incomplete: string[] = [];
  for (const [split, r] of Object.entries(m.splits)) {
    if (!r) continue;
    const bytes = r.shards.reduce((a, s) => a + s.bytes, 0);
    const problem = splitProblem(r);
    if (problem) incomplete.push(`${split}: ${problem}`);
    const state = problem ? problem.replace(/^incomplete/, 'INCOMPLETE') : 'complete';
    console.log(`  ${split}: ${state}, ${r.images} images, ${r.shards.length} shard(s), ${(bytes / 2 ** 20).toFixed(1)} MiB, ${r.corrupt} skipped, ${r.rejected.length} rejected${r.expected !== undefined ? `, expected ${r.expected}` : ''}`);
  }
  if (!values.verify) return 0;
  let problems: string[];
  try {
    problems = await verifyShards(values.dir);
  } catch (e) {
    if (e instanceof DataError) throw new UserError(e.message);
    throw e;
  }
  if (problems.length) console.error(`nudge: ${problems.length} damaged file(s):\n  ${problems.join('\n  ')}`);
  else console.log('all shards and indexes match their sha256 in the manifest');
  if (incomplete.length) console.error(`nudge: the set is incomplete (rerun nudge data prepare with the same options into ${values.dir}):\n  ${incomplete.join('\n  ')}`);
  return problems.length || incomplete.length ? 1 : 0;
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
