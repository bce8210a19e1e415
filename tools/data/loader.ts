// Training and evaluation batches from prepared shards: a deterministic per-epoch shuffle,
// sharding by rank, decoding and augmentation in worker threads, and a prefetch queue.
// Train: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) + horizontal flip. Eval: the
// shorter side scaled to crop*256/224, centre crop (224 of 256 at the default size); a
// squashed set is scaled to the crop size whole.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { DataError } from './idx.js';
import { WorkerPool } from './pool.js';
import { Manifest, decodeIndex, readManifest } from './shards.js';
import type { Split } from './sources.js';
import { seededPermutation } from '../../pcn/train.js';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

export interface LoaderOptions {
  split: Split;
  /** Output side (224 for ImageNet; 32 or 64 for small runs). */
  crop: number;
  /** Random crops and flips (train) or the centre crop (eval). */
  augment: boolean;
  seed: string;
  workers: number;
  mean?: number[];
  std?: number[];
}

export interface Batch {
  x: Float32Array;
  y: Uint32Array;
  n: number;
}

export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** torchvision's RandomResizedCrop box: 10 tries at a random area and aspect, then a centre fallback. */
export function randomResizedCropBox(width: number, height: number, rng: () => number, scale = [0.08, 1], ratio = [3 / 4, 4 / 3]): CropBox {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + rng() * (scale[1] - scale[0]));
    const aspect = Math.exp(logRatio[0] + rng() * (logRatio[1] - logRatio[0]));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const top = Math.floor(rng() * (height - h + 1));
      const left = Math.floor(rng() * (width - w + 1));
      return { left, top, width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** A seeded permutation of 0..n-1 for one epoch, cut to this rank's equal share. */
export function rankOrder(n: number, seed: string, epoch: number, rank = 0, worldSize = 1): Uint32Array {
  if (!(Number.isInteger(rank) && Number.isInteger(worldSize) && rank >= 0 && rank < worldSize)) throw new DataError(`rank ${rank} is not in 0..${worldSize - 1}`);
  const order = seededPermutation(n, `${seed}/loader-epoch${epoch}`);
  // Every rank gets the same number of examples (the tail is dropped), so steps line up.
  const per = Math.floor(n / worldSize);
  const mine = new Uint32Array(per);
  for (let i = 0; i < per; i++) mine[i] = order[i * worldSize + rank];
  return mine;
}

/** The images of one split of a prepared data set, read straight from the shard files. */
export class ShardReader {
  readonly count: number;
  readonly manifest: Manifest;
  private shardOf: Uint16Array;
  private offset: Float64Array;
  private length: Uint32Array;
  readonly labels: Uint32Array;
  readonly widths: Uint16Array;
  readonly heights: Uint16Array;
  private fds: number[];

  constructor(
    readonly dir: string,
    readonly split: Split,
  ) {
    this.manifest = readManifest(dir);
    const rec = this.manifest.splits[split];
    if (!rec || !rec.complete) throw new DataError(`${dir}: the ${split} split is ${rec ? 'not finished; rerun nudge data prepare to complete it' : 'missing'}`);
    const all = rec.shards.map((s) => decodeIndex(readFileSync(join(dir, s.index)), join(dir, s.index)));
    this.count = all.reduce((a, e) => a + e.length, 0);
    this.shardOf = new Uint16Array(this.count);
    this.offset = new Float64Array(this.count);
    this.length = new Uint32Array(this.count);
    this.labels = new Uint32Array(this.count);
    this.widths = new Uint16Array(this.count);
    this.heights = new Uint16Array(this.count);
    let i = 0;
    all.forEach((entries, s) => {
      for (const e of entries) {
        this.shardOf[i] = s;
        this.offset[i] = e.offset;
        this.length[i] = e.length;
        this.labels[i] = e.label;
        this.widths[i] = e.width;
        this.heights[i] = e.height;
        i++;
      }
    });
    this.fds = rec.shards.map((s) => openSync(join(dir, s.file), 'r'));
  }

  get raw(): boolean {
    return this.manifest.options.format === 'raw';
  }

  read(i: number): Uint8Array {
    const buf = new Uint8Array(this.length[i]);
    const got = readSync(this.fds[this.shardOf[i]], buf, 0, buf.length, this.offset[i]);
    if (got !== buf.length) throw new DataError(`${this.dir}: ${this.split} image ${i} is cut short in its shard (file truncated?)`);
    return buf;
  }

  close(): void {
    for (const fd of this.fds) closeSync(fd);
    this.fds = [];
  }
}

/**
 * Batches of normalized float32 NHWC crops. Implements pcn's LabelledImages (loadBatch and
 * prefetch; the synchronous batch() is not available for decoded images).
 */
export class ImageLoader {
  readonly reader: ShardReader;
  readonly shape: [number, number, number];
  readonly classes: number;
  readonly count: number;
  private pool: WorkerPool;
  private ownsPool: boolean;
  /** How often each example has been drawn: seeds its next augmentation. */
  private visits: Uint32Array;
  private pending = new Map<string, Promise<Batch>>();

  constructor(
    dir: string,
    readonly opts: LoaderOptions,
    pool?: WorkerPool,
  ) {
    if (!Number.isInteger(opts.crop) || opts.crop < 1) throw new DataError(`crop must be a positive integer, got ${opts.crop}`);
    this.reader = new ShardReader(dir, opts.split);
    this.shape = [opts.crop, opts.crop, 3];
    this.classes = this.reader.manifest.classes.length;
    this.count = this.reader.count;
    this.visits = new Uint32Array(this.count);
    this.ownsPool = !pool;
    this.pool = pool ?? new WorkerPool(opts.workers);
  }

  private loadOne(i: number): Promise<Float32Array> {
    const { crop, augment } = this.opts;
    const w = this.reader.widths[i];
    const h = this.reader.heights[i];
    const base = {
      op: 'crop' as const,
      bytes: this.reader.read(i),
      raw: this.reader.raw ? { width: w, height: h } : undefined,
      out: crop,
      mean: this.opts.mean ?? IMAGENET_MEAN,
      std: this.opts.std ?? IMAGENET_STD,
    };
    if (augment) {
      const rng = seedrandom(`${this.opts.seed}/aug/${i}/${this.visits[i]++}`);
      const box = randomResizedCropBox(w, h, rng);
      return this.pool.run({ ...base, box, flip: rng() < 0.5 }).then((r) => r.data as Float32Array);
    }
    // Squashed sets (ImageNet32/64 style) are evaluated whole, not through the 256/224 margin.
    const resize = this.reader.manifest.options.squash ? crop : Math.round((crop * 256) / 224);
    return this.pool.run({ ...base, resize }).then((r) => r.data as Float32Array);
  }

  private async load(indices: ArrayLike<number>): Promise<Batch> {
    const n = indices.length;
    const per = this.opts.crop * this.opts.crop * 3;
    const x = new Float32Array(n * per);
    const y = new Uint32Array(n);
    const parts: Promise<void>[] = [];
    for (let k = 0; k < n; k++) {
      const i = indices[k];
      if (!(i >= 0 && i < this.count)) throw new DataError(`example ${i} out of range 0..${this.count - 1}`);
      y[k] = this.reader.labels[i];
      parts.push(this.loadOne(i).then((img) => x.set(img, k * per)));
    }
    try {
      await Promise.all(parts);
    } catch (e) {
      throw new DataError(`${this.reader.dir}: decoding a ${this.opts.split} image failed: ${(e as Error).message}`);
    }
    return { x, y, n };
  }

  private key(indices: ArrayLike<number>): string {
    return Array.prototype.join.call(indices, ',');
  }

  /** Starts decoding a batch that will be asked for soon. */
  prefetch(indices: ArrayLike<number>): void {
    if (indices.length === 0) return;
    const key = this.key(indices);
    if (this.pending.has(key)) return;
    const p = this.load(Array.from(indices));
    p.catch(() => {}); // reported when the batch is asked for
    this.pending.set(key, p);
  }

  async loadBatch(indices: ArrayLike<number>): Promise<Batch> {
    const key = this.key(indices);
    const p = this.pending.get(key);
    if (p) {
      this.pending.delete(key);
      return p;
    }
    return this.load(indices);
  }

  batch(): Batch {
    throw new Error('ImageLoader decodes asynchronously: call loadBatch()');
  }

  /** This rank's batches of one epoch, `depth` batches decoded ahead. */
  async *epoch(epoch: number, batchSize: number, opts: { rank?: number; worldSize?: number; depth?: number; dropLast?: boolean } = {}): AsyncGenerator<Batch> {
    const order = rankOrder(this.count, this.opts.seed, epoch, opts.rank, opts.worldSize);
    const steps = opts.dropLast === false ? Math.ceil(order.length / batchSize) : Math.floor(order.length / batchSize);
    const depth = Math.max(1, opts.depth ?? 2);
    const queue: Promise<Batch>[] = [];
    let next = 0;
    const fill = () => {
      while (queue.length < depth && next < steps) {
        const p = this.load(order.subarray(next * batchSize, Math.min(order.length, (next + 1) * batchSize)));
        p.catch(() => {});
        queue.push(p);
        next++;
      }
    };
    fill();
    while (queue.length) {
      const b = await queue.shift()!;
      fill();
      yield b;
    }
  }

  async close(): Promise<void> {
    this.reader.close();
    if (this.ownsPool) await this.pool.close();
  }
}
