// `nudge train --data imagenet:DIR[:CROP]`: a prepared data set as pcn's LabelledImages.
// Train split: random resized crops + flips; test: the val split, centre crops. CROP
// defaults to 224/256 of the prepared size (224 for 256) or the squashed size.
import { UserError } from '../errors.js';
import { DataError } from './idx.js';
import { ImageLoader } from './loader.js';
import { WorkerPool, defaultWorkers } from './pool.js';
import { readManifest } from './shards.js';

let shared: WorkerPool | undefined;

export function parseImagenetSpec(rest: string): { dir: string; crop?: number } {
  const m = /^(.*):(\d+)$/.exec(rest);
  return m ? { dir: m[1], crop: Number(m[2]) } : { dir: rest };
}

export function imagenetDataSet(rest: string, split: 'train' | 'test', seed = '1'): ImageLoader {
  const { dir, crop } = parseImagenetSpec(rest);
  if (!dir) throw new UserError('imagenet needs a directory: --data imagenet:DIR[:CROP] (prepare it with nudge data prepare)');
  try {
    const m = readManifest(dir);
    const o = m.options;
    const size = crop ?? (o.squash ?? Math.round((o.size * 224) / 256));
    const workers = Number(process.env.NUDGE_DATA_WORKERS) || defaultWorkers();
    // One pool for the train and test loaders of a run.
    shared ??= new WorkerPool(workers);
    return new ImageLoader(dir, { split: split === 'train' ? 'train' : 'val', crop: size, augment: split === 'train', seed, workers }, shared);
  } catch (e) {
    if (e instanceof DataError) throw new UserError(e.message);
    throw e;
  }
}
