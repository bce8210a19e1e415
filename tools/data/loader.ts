// Training and evaluation batches from prepared shards: a deterministic per-epoch shuffle,
// sharding by rank, decoding and augmentation in worker threads, and a prefetch queue.
// Train: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) + horizontal flip. Eval: the
// shorter side scaled to crop*256/224, centre crop (224 of 256 at the default size); a
// squashed set is scaled to the crop size whole.
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import { DataError } from './idx.js';
import { CropItem, WorkerPool } from './pool.js';
import { Manifest, readManifest, readShardIndex, splitProblem } from './shards.js';
import type { Split } from './sources.js';
import { seededPermutation } from '../../engine/random.js';

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
  private shardOf: Uint32Array;
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
    const problem = splitProblem(rec);
    if (problem) throw new DataError(`${dir}: the ${split} split is ${problem}${rec ? '; rerun nudge data prepare with the same options to prepare it (see report.txt there)' : ''}`);
    const all = rec!.shards.map((s) => readShardIndex(dir, this.manifest, s));
    this.count = all.reduce((a, e) => a + e.length, 0);
    this.shardOf = new Uint32Array(this.count);
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
    this.fds = rec!.shards.map((s) => openSync(join(dir, s.file), 'r'));
  }

  /** The shard file example i is stored in, for messages. */
  shardFile(i: number): string {
    return this.manifest.splits[this.split]!.shards[this.shardOf[i]].file;
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

/** (byte / 255 - mean[c]) / std[c] on the host, as Backend.imagesFromU8 does on the device. */
export function normalizeU8(x: Uint8Array, mean: readonly number[], std: readonly number[]): Float32Array {
  const C = mean.length;
  const scale = std.map((s) => 1 / (255 * s));
  const shift = mean.map((v, c) => v / std[c]);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * scale[i % C] - shift[i % C];
  return out;
}

export interface BatchU8 {
  x: Uint8Array;
  y: Uint32Array;
  n: number;
}

/**
 * Batches of NHWC crops: as bytes (loadBatchU8, normalized on the GPU by
 * Backend.imagesFromU8 with `normalization`) or normalized float32 (loadBatch). Implements
 * pcn's LabelledImages (the synchronous batch() is not available for decoded images).
 * Training crops and flips are a pure function of (seed, epoch, example index), so a run
 * resumed mid-epoch, any batch order and any worker count see the same crops.
 */
export class ImageLoader {
  readonly reader: ShardReader;
  readonly shape: [number, number, number];
  readonly classes: number;
  readonly count: number;
  readonly normalization: { mean: number[]; std: number[] };
  private pool: WorkerPool;
  private ownsPool: boolean;
  private pending = new Map<string, Promise<BatchU8>>();

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
    this.normalization = { mean: opts.mean ?? IMAGENET_MEAN, std: opts.std ?? IMAGENET_STD };
    this.ownsPool = !pool;
    this.pool = pool ?? new WorkerPool(opts.workers);
  }

  /** The RandomResizedCrop box and flip of example i in `epoch`: depends on nothing else. */
  augmentation(i: number, epoch: number): { box: CropBox; flip: boolean } {
    const rng = seedrandom(`${this.opts.seed}/aug/${epoch}/${i}`);
    const box = randomResizedCropBox(this.reader.widths[i], this.reader.heights[i], rng);
    return { box, flip: rng() < 0.5 };
  }

  private item(i: number, epoch: number): CropItem {
    const raw = this.reader.raw ? { width: this.reader.widths[i], height: this.reader.heights[i] } : undefined;
    const bytes = this.reader.read(i);
    if (this.opts.augment) return { bytes, raw, ...this.augmentation(i, epoch) };
    // Squashed sets (ImageNet32/64 style) are evaluated whole, not through the 256/224 margin.
    const resize = this.reader.manifest.options.squash ? this.opts.crop : Math.round((this.opts.crop * 256) / 224);
    return { bytes, raw, resize };
  }

  private async load(indices: ArrayLike<number>, epoch: number): Promise<BatchU8> {
    const n = indices.length;
    const out = this.opts.crop;
    const per = out * out * 3;
    const x = new Uint8Array(n * per);
    const y = new Uint32Array(n);
    for (let k = 0; k < n; k++) {
      const i = indices[k];
      if (!(i >= 0 && i < this.count)) throw new DataError(`example ${i} out of range 0..${this.count - 1}`);
      y[k] = this.reader.labels[i];
    }
    // Several images per message (fewer round trips), yet enough slices to keep every worker busy.
    const slice = Math.max(1, Math.min(16, Math.ceil(n / (2 * this.pool.size))));
    const parts: Promise<void>[] = [];
    for (let k0 = 0; k0 < n; k0 += slice) {
      const items: CropItem[] = [];
      for (let k = k0; k < Math.min(n, k0 + slice); k++) items.push(this.item(indices[k], epoch));
      const failed = (e: Error): never => {
        // The worker names the item's place in its message: say which image of which shard.
        const m = /^item (\d+): ([\s\S]*)$/.exec(e.message);
        const i = m ? indices[k0 + Number(m[1])] : undefined;
        const where = i !== undefined ? `${this.opts.split} image ${i} (in ${this.reader.shardFile(i)})` : `a ${this.opts.split} image`;
        throw new DataError(`${this.reader.dir}: decoding ${where} failed: ${m ? m[2] : e.message}`);
      };
      parts.push(this.pool.run({ op: 'crops', out, items }).then((r) => x.set(r.data, k0 * per), failed));
    }
    await Promise.all(parts);
    return { x, y, n };
  }

  private key(indices: ArrayLike<number>, epoch: number): string {
    return `${epoch}:${Array.prototype.join.call(indices, ',')}`;
  }

  /** Starts decoding a batch that will be asked for soon (the same indices and epoch). */
  prefetch(indices: ArrayLike<number>, epoch = 0): void {
    if (indices.length === 0) return;
    const key = this.key(indices, epoch);
    if (this.pending.has(key)) return;
    const p = this.load(Array.from(indices), epoch);
    p.catch(() => {}); // reported when the batch is asked for
    this.pending.set(key, p);
  }

  /** Crops as bytes, NHWC; `epoch` picks the training crops (default 0). */
  loadBatchU8(indices: ArrayLike<number>, epoch = 0): Promise<BatchU8> {
    const key = this.key(indices, epoch);
    const p = this.pending.get(key);
    if (p) {
      this.pending.delete(key);
      return p;
    }
    return this.load(indices, epoch);
  }

  /** Crops normalized on the host, for callers without a device. */
  async loadBatch(indices: ArrayLike<number>, epoch = 0): Promise<Batch> {
    const b = await this.loadBatchU8(indices, epoch);
    return { x: normalizeU8(b.x, this.normalization.mean, this.normalization.std), y: b.y, n: b.n };
  }

  batch(): Batch {
    throw new Error('ImageLoader decodes asynchronously: call loadBatch()');
  }

  /** This rank's batches of one epoch, `depth` batches decoded ahead. */
  async *epoch(epoch: number, batchSize: number, opts: { rank?: number; worldSize?: number; depth?: number; dropLast?: boolean } = {}): AsyncGenerator<BatchU8> {
    const order = rankOrder(this.count, this.opts.seed, epoch, opts.rank, opts.worldSize);
    const steps = opts.dropLast === false ? Math.ceil(order.length / batchSize) : Math.floor(order.length / batchSize);
    const depth = Math.max(1, opts.depth ?? 2);
    const queue: Promise<BatchU8>[] = [];
    let next = 0;
    const fill = () => {
      while (queue.length < depth && next < steps) {
        const p = this.load(order.subarray(next * batchSize, Math.min(order.length, (next + 1) * batchSize)), epoch);
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
