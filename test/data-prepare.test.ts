// `nudge data prepare` and the loader on tiny fixtures in the official layout: decoding
// oddities, corrupt files, determinism across worker counts, resume, subsets, squash.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageLoader, normalizeU8, randomResizedCropBox, rankOrder } from '../tools/data/loader.js';
import { WorkerPool } from '../tools/data/pool.js';
import { fractionKeeps, prepare } from '../tools/data/prepare.js';
import { Manifest, decodeIndex, readManifest } from '../tools/data/shards.js';
import { OfficialFixture, makeOfficial } from './data-fixtures/imagenet.js';

let root: string;
let fx: OfficialFixture;
let trainTotal: number;
const SIZE = 24;
const SHARD = 3000; // bytes: several shards per split

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'nudge-data-prep-'));
  fx = await makeOfficial(join(root, 'src'));
  trainTotal = [...fx.trainPerClass.values()].reduce((a, b) => a + b, 0);
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

function filesOf(dir: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const f of readdirSync(dir).sort()) if (f !== 'report.txt') out[f] = readFileSync(join(dir, f));
  return out;
}

describe('nudge data prepare', () => {
  let m: Manifest;

  it('writes shards, indexes and a manifest with verified counts; oddities decode, the truncated file is listed', async () => {
    const out = join(root, 'w1');
    const r = await prepare({ src: fx.dir, out, size: SIZE, shardBytes: SHARD, workers: 1 });
    expect(r.mismatches).toEqual([]);
    m = readManifest(out);
    expect(m.classes).toEqual(fx.wnids);
    expect(m.words?.[0]).toBe(`words of ${fx.wnids[0]}`);
    const train = m.splits.train!;
    expect(train.complete).toBe(true);
    expect(train.shards.length).toBeGreaterThan(2);
    expect(train.images).toBe(trainTotal - fx.corrupt.length);
    expect(train.corrupt).toBe(1);
    expect(train.expected).toBe(trainTotal);
    expect(train.shards.flatMap((s) => s.corrupt.map((c) => c.name))).toEqual(fx.corrupt);
    expect(train.shards.flatMap((s) => s.corrupt.map((c) => c.reason))).toEqual(['truncated JPEG (no end-of-image marker)']);
    expect(readFileSync(join(out, 'report.txt'), 'utf8')).toContain(`corrupt ${fx.corrupt[0]}: truncated JPEG`);
    // Per-class counts follow the devkit (minus the corrupt file) and the label order is sorted wnids.
    const want = fx.wnids.map((w) => fx.trainPerClass.get(w)! - (fx.corrupt[0].startsWith(w) ? 1 : 0));
    expect(train.perClass).toEqual(want);
    const val = m.splits.val!;
    expect(val.images).toBe(fx.valWnids.length);
    // Every stored image is a 3-channel JPEG with its shorter side at SIZE, labels as the ground truth says.
    const labels: number[] = [];
    for (const s of val.shards) {
      const bin = readFileSync(join(out, s.file));
      for (const e of decodeIndex(readFileSync(join(out, s.index)), s.index)) {
        expect(Math.min(e.width, e.height)).toBe(SIZE);
        const meta = await sharp(bin.subarray(e.offset, e.offset + e.length)).metadata();
        expect([meta.format, meta.channels, meta.width, meta.height]).toEqual(['jpeg', 3, e.width, e.height]);
        labels.push(e.label);
      }
    }
    expect(labels).toEqual(fx.valWnids.map((w) => fx.wnids.indexOf(w)));
  });

  it('decodes CMYK, grayscale and PNG-named-.JPEG inputs to 3-channel sRGB with the right colours', async () => {
    const out = join(root, 'raw');
    await prepare({ src: fx.dir, out, size: SIZE, format: 'raw', splits: ['train'], workers: 2 });
    const s = readManifest(out).splits.train!.shards[0];
    const bin = readFileSync(join(out, s.file));
    const idx = decodeIndex(readFileSync(join(out, s.index)), s.index);
    const mean = (k: number) => {
      const e = idx[k];
      expect(e.length).toBe(e.width * e.height * 3);
      const px = bin.subarray(e.offset, e.offset + e.length);
      const sum = [0, 0, 0];
      for (let p = 0; p < px.length; p++) sum[p % 3] += px[p];
      return sum.map((v) => v / (px.length / 3));
    };
    // Class 0 image 0 was stored as CMYK, image 1 as RGB of nearly the same content.
    const cmyk = mean(0);
    const rgb = mean(1);
    for (let c = 0; c < 3; c++) expect(Math.abs(cmyk[c] - rgb[c])).toBeLessThan(25);
    // Class 1 image 0 is a PNG named .JPEG, class 2 image 0 is grayscale (three equal channels).
    const first = (cls: number) => idx.findIndex((e) => e.label === cls);
    expect(first(1)).toBeGreaterThan(0);
    const g = idx[first(2)];
    const gpx = bin.subarray(g.offset, g.offset + g.length);
    for (let p = 0; p < gpx.length; p += 3) expect(Math.abs(gpx[p] - gpx[p + 1]) + Math.abs(gpx[p] - gpx[p + 2])).toBeLessThan(3);
  });

  it('gives the same bytes for any number of workers', async () => {
    const out = join(root, 'w3');
    await prepare({ src: fx.dir, out, size: SIZE, shardBytes: SHARD, workers: 3 });
    expect(filesOf(out)).toEqual(filesOf(join(root, 'w1')));
  });

  it('resumes after the last finished shard and ends with the same bytes', async () => {
    const out = join(root, 'resume');
    const log: string[] = [];
    cpSync(join(root, 'w1'), out, { recursive: true });
    // Pretend the run died after two train shards, with a half-written third one.
    const man = readManifest(out);
    const train = man.splits.train!;
    for (const s of train.shards.slice(2)) {
      unlinkSync(join(out, s.file));
      unlinkSync(join(out, s.index));
    }
    const skipped = train.shards[0].items + train.shards[1].items;
    const corruptInKept = train.shards.slice(0, 2).reduce((a, s) => a + s.corrupt.length, 0);
    train.shards = train.shards.slice(0, 2);
    train.complete = false;
    for (const s of man.splits.val!.shards) {
      unlinkSync(join(out, s.file));
      unlinkSync(join(out, s.index));
    }
    delete man.splits.val;
    writeFileSync(join(out, 'manifest.json'), JSON.stringify(man, null, 1));
    writeFileSync(join(out, 'train-00002.bin.tmp'), 'partial garbage');
    const r = await prepare({ src: fx.dir, out, size: SIZE, shardBytes: SHARD, workers: 2, log: (l) => log.push(l) });
    expect(log.join('\n')).toMatch(/train: resuming after 2 finished shard\(s\)/);
    expect(r.written.train).toBe(trainTotal - fx.corrupt.length - (skipped - corruptInKept));
    expect(r.written.val).toBe(fx.valWnids.length);
    expect(existsSync(join(out, 'train-00002.bin.tmp'))).toBe(false);
    expect(filesOf(out)).toEqual(filesOf(join(root, 'w1')));
    // A finished preparation is not redone.
    const again = await prepare({ src: fx.dir, out, size: SIZE, shardBytes: SHARD, workers: 2 });
    expect(again.written).toEqual({ train: 0, val: 0 });
  });

  it('refuses to resume with other options', async () => {
    await expect(prepare({ src: fx.dir, out: join(root, 'w1'), size: 32, shardBytes: SHARD, workers: 1 })).rejects.toThrow(/different options.*choose another --out/);
  });

  it('makes Imagenette with a fraction per class, and squashed 32x32 raw variants', async () => {
    const out = join(root, 'nette');
    const r = await prepare({ src: fx.dir, out, subset: 'imagenette', fraction: 0.5, size: SIZE, workers: 2 });
    expect(r.mismatches).toEqual([]);
    const mm = readManifest(out);
    expect(mm.classes.length).toBe(10);
    expect(mm.classes).not.toContain('n01443537');
    const counts = mm.classes.map((w) => Math.floor(fx.trainPerClass.get(w)! * 0.5));
    const corruptInSubset = mm.splits.train!.corrupt;
    expect(mm.splits.train!.images + corruptInSubset).toBe(counts.reduce((a, b) => a + b, 0));
    expect(mm.splits.val!.images).toBe(10); // 2 per class, half kept
    const sq = join(root, 'sq32');
    await prepare({ src: fx.dir, out: sq, squash: 32, workers: 2 });
    const ms = readManifest(sq);
    expect(ms.options.format).toBe('raw');
    for (const s of ms.splits.val!.shards) {
      for (const e of decodeIndex(readFileSync(join(sq, s.index)), s.index)) expect([e.width, e.height, e.length]).toEqual([32, 32, 32 * 32 * 3]);
    }
  });

  it('reports counts that do not match the expected totals', async () => {
    const r = await prepare({ src: fx.dir, out: join(root, 'mismatch'), size: SIZE, workers: 1, splits: ['val'], expect: { val: 25 } });
    expect(r.mismatches).toEqual(['val: found 24 images (24 good + 0 corrupt), expected 25']);
  });

  it('keeps floor(n f) of every class with --fraction', () => {
    for (const [n, f] of [[1300, 0.1], [732, 0.25], [7, 0.5], [10, 1], [3, 0.34]] as const) {
      let kept = 0;
      for (let i = 0; i < n; i++) if (fractionKeeps(i, f)) kept++;
      expect(kept).toBe(Math.floor(n * f + 1e-9));
    }
  });
});

describe('loader', () => {
  it('RandomResizedCrop boxes stay inside the image with scale 0.08-1 and ratio 3/4-4/3 (or the centre fallback)', () => {
    const rng = seedrandom('rrc');
    for (let t = 0; t < 2000; t++) {
      const W = 1 + Math.floor(rng() * 400);
      const H = 1 + Math.floor(rng() * 400);
      const b = randomResizedCropBox(W, H, rng);
      expect(b.left >= 0 && b.top >= 0 && b.left + b.width <= W && b.top + b.height <= H && b.width > 0 && b.height > 0).toBe(true);
      const area = (b.width * b.height) / (W * H);
      const ratio = b.width / b.height;
      if (W > 30 && H > 30 && W / H < 1.2 && H / W < 1.2) {
        expect(area).toBeGreaterThan(0.06);
        expect(ratio).toBeGreaterThan(0.7);
        expect(ratio).toBeLessThan(1.4);
      }
    }
  });

  it('shards each epoch by rank: equal, disjoint shares of one seeded permutation', () => {
    const n = 103;
    const parts = [0, 1, 2, 3].map((r) => rankOrder(n, 's', 5, r, 4));
    const seen = new Set<number>();
    for (const p of parts) {
      expect(p.length).toBe(25);
      for (const i of p) seen.add(i);
    }
    expect(seen.size).toBe(100);
    expect(rankOrder(n, 's', 5, 1, 4)).toEqual(parts[1]);
    expect(rankOrder(n, 's', 6, 1, 4)).not.toEqual(parts[1]);
  });

  it('decodes crops in workers: bytes or normalized, deterministic per seed and epoch, eval centre crops, prefetch and epochs', async () => {
    const dir = join(root, 'w1');
    const pool = new WorkerPool(2);
    const mk = (augment: boolean, seed = '7') => new ImageLoader(dir, { split: augment ? 'train' : 'val', crop: 16, augment, seed, workers: 2 }, pool);
    const a = mk(true);
    const b = mk(true);
    const idx = [0, 5, 9, 3];
    const ua = await a.loadBatchU8(idx, 3);
    expect(ua.x).toBeInstanceOf(Uint8Array);
    expect(ua.x.length).toBe(4 * 16 * 16 * 3);
    expect(Array.from(ua.y)).toEqual(idx.map((i) => a.reader.labels[i]));
    expect((await b.loadBatchU8(idx, 3)).x).toEqual(ua.x);
    // The float form is the same bytes normalized with ImageNet's mean/std, as imagesFromU8 does.
    const fa = await a.loadBatch(idx, 3);
    expect(fa.x).toEqual(normalizeU8(ua.x, a.normalization.mean, a.normalization.std));
    expect(fa.x[1]).toBeCloseTo((ua.x[1] / 255 - 0.456) / 0.224, 5);
    // Crop boxes and flips are drawn on the main thread: the worker count does not change them.
    const one = new ImageLoader(dir, { split: 'train', crop: 16, augment: true, seed: '7', workers: 1 });
    expect((await one.loadBatchU8(idx, 3)).x).toEqual(ua.x);
    await one.close();
    // Another epoch draws new crops; asking again for the same epoch gives the same ones.
    expect((await a.loadBatchU8(idx, 4)).x).not.toEqual(ua.x);
    expect((await a.loadBatchU8(idx, 3)).x).toEqual(ua.x);
    const e1 = mk(false);
    const e2 = mk(false, 'other');
    e1.prefetch([1, 2]);
    const c1 = await e1.loadBatchU8([1, 2]);
    expect(c1.x).toEqual((await e2.loadBatchU8([1, 2], 5)).x);
    let batches = 0;
    for await (const batch of e1.epoch(0, 5, { depth: 2 })) {
      expect(batch.n).toBe(5);
      batches++;
    }
    expect(batches).toBe(Math.floor(e1.count / 5));
    for (const l of [a, b, e1, e2]) await l.close();
    await pool.close();
  });

  it('a training crop is a pure function of (seed, epoch, example): any batching, order, prefetch or worker count', async () => {
    const dir = join(root, 'w1');
    const crop = 16;
    const per = crop * crop * 3;
    const whole = new ImageLoader(dir, { split: 'train', crop, augment: true, seed: 's', workers: 2 });
    const order = [7, 2, 11, 0, 5, 3, 9];
    const all = await whole.loadBatchU8(order, 1);
    // A "resumed" loader (new process state) asks for the same examples in other batches and orders.
    const resumed = new ImageLoader(dir, { split: 'train', crop, augment: true, seed: 's', workers: 1 });
    resumed.prefetch([9, 0], 1);
    const parts = [await resumed.loadBatchU8([3], 1), await resumed.loadBatchU8([9, 0], 1), await resumed.loadBatchU8([5, 11, 2, 7], 1)];
    const byExample = new Map<number, Uint8Array>();
    [[3], [9, 0], [5, 11, 2, 7]].forEach((ids, p) => ids.forEach((i, k) => byExample.set(i, parts[p].x.subarray(k * per, (k + 1) * per))));
    order.forEach((i, k) => expect(byExample.get(i), `example ${i}`).toEqual(all.x.subarray(k * per, (k + 1) * per)));
    // And it is exactly the published box and flip applied to the decoded shard image.
    const { resampleCrop } = await import('../tools/data/resample.mjs');
    for (const [k, i] of order.entries()) {
      const { box, flip } = whole.augmentation(i, 1);
      const { data, info } = await sharp(whole.reader.read(i)).raw().toBuffer({ resolveWithObject: true });
      const want = new Uint8Array(per);
      resampleCrop(data, info.width, box, crop, flip, want);
      expect(all.x.subarray(k * per, (k + 1) * per), `example ${i}`).toEqual(want);
    }
    // Epochs differ in their draws (over 7 examples, some box or flip changes).
    expect(order.some((i) => JSON.stringify(whole.augmentation(i, 1)) !== JSON.stringify(whole.augmentation(i, 2)))).toBe(true);
    await whole.close();
    await resumed.close();
  });

  it('reads squashed raw shards too; evaluating them at their own size gives the stored pixels (bytes, and normalized)', async () => {
    const dir = join(root, 'sq32');
    const l = new ImageLoader(dir, { split: 'val', crop: 32, augment: false, seed: '1', workers: 1 });
    const bt = await l.loadBatch([0, 1]);
    expect(bt.x.length).toBe(2 * 32 * 32 * 3);
    const bytes = await l.loadBatchU8([0, 1]);
    const s = readManifest(dir).splits.val!.shards[0];
    const e = decodeIndex(readFileSync(join(dir, s.index)), s.index)[1];
    const px = readFileSync(join(dir, s.file)).subarray(e.offset, e.offset + e.length);
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    let maxErr = 0;
    for (let p = 0; p < px.length; p++) maxErr = Math.max(maxErr, Math.abs(bt.x[px.length + p] - (px[p] / 255 - mean[p % 3]) / std[p % 3]));
    expect(maxErr).toBeLessThan(1e-5);
    expect(bytes.x.subarray(px.length)).toEqual(new Uint8Array(px));
    await l.close();
  });
});

describe('MNIST-format IDX import', () => {
  it('prepares IDX files (gzipped) into the same shards: grey pixels become equal RGB channels, labels kept', async () => {
    const dir = join(root, 'idx');
    mkdirSync(dir);
    const n = 13;
    const idx = (dims: number[], data: Uint8Array) => {
      const head = Buffer.alloc(4 + 4 * dims.length);
      head.writeUInt8(0x08, 2);
      head.writeUInt8(dims.length, 3);
      dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
      return gzipSync(Buffer.concat([head, data]));
    };
    const pixels = new Uint8Array(n * 28 * 28).map((_, i) => (i * 7) % 256);
    const labels = new Uint8Array(n).map((_, i) => (i * 3) % 10);
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), idx([n, 28, 28], pixels));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), idx([n], labels));
    const out = join(root, 'idx-out');
    const r = await prepare({ src: dir, out, size: 28, format: 'raw', workers: 1 });
    expect(r.mismatches).toEqual([]);
    const m = readManifest(out);
    expect(m.source.kind).toBe('idx');
    expect(m.classes).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const s = m.splits.train!.shards[0];
    const bin = readFileSync(join(out, s.file));
    const entries = decodeIndex(readFileSync(join(out, s.index)), s.index);
    expect(entries.map((e) => e.label)).toEqual(Array.from(labels));
    const e = entries[4];
    const rgb = bin.subarray(e.offset, e.offset + e.length);
    for (let p = 0; p < 28 * 28; p++) expect([rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2]]).toEqual(Array(3).fill(pixels[4 * 784 + p]));
  });
});

describe('RandomResizedCrop resample', () => {
  /** Direct float64 triangle filter over the box (no separable passes, no precomputed taps). */
  function reference(src: Uint8Array, width: number, box: { left: number; top: number; width: number; height: number }, out: number, flip: boolean): Float64Array {
    const res = new Float64Array(out * out * 3);
    const axis = (size: number, o: number) => {
      const scale = size / out;
      const support = Math.max(1, scale);
      const center = (o + 0.5) * scale;
      const w = new Float64Array(size);
      let sum = 0;
      for (let i = 0; i < size; i++) {
        w[i] = Math.max(0, 1 - Math.abs(i + 0.5 - center) / support);
        sum += w[i];
      }
      return w.map((v) => v / sum);
    };
    for (let oy = 0; oy < out; oy++) {
      const wy = axis(box.height, oy);
      for (let ox = 0; ox < out; ox++) {
        const wx = axis(box.width, ox);
        for (let c = 0; c < 3; c++) {
          let acc = 0;
          for (let j = 0; j < box.height; j++) {
            if (wy[j] === 0) continue;
            for (let i = 0; i < box.width; i++) acc += wy[j] * wx[i] * src[((box.top + j) * width + box.left + i) * 3 + c];
          }
          res[(oy * out + (flip ? out - 1 - ox : ox)) * 3 + c] = acc;
        }
      }
    }
    return res;
  }

  it('matches a direct float64 triangle filter, rounded to bytes, on random images, boxes and sizes (shrink, grow, flip)', async () => {
    const { resampleCrop } = await import('../tools/data/resample.mjs');
    const seed = `resample-${Date.now()}`;
    const rng = seedrandom(seed);
    for (let t = 0; t < 12; t++) {
      const W = 5 + Math.floor(rng() * 60);
      const H = 5 + Math.floor(rng() * 60);
      const src = new Uint8Array(W * H * 3).map(() => Math.floor(rng() * 256));
      const bw = 1 + Math.floor(rng() * W);
      const bh = 1 + Math.floor(rng() * H);
      const box = { left: Math.floor(rng() * (W - bw + 1)), top: Math.floor(rng() * (H - bh + 1)), width: bw, height: bh };
      const out = 1 + Math.floor(rng() * 40);
      const flip = rng() < 0.5;
      // Written at an offset into a larger buffer, as the worker fills a batch.
      const dst = new Uint8Array(out * out * 3 + 5).fill(77);
      resampleCrop(src, W, box, out, flip, dst, 5);
      expect(Array.from(dst.subarray(0, 5))).toEqual([77, 77, 77, 77, 77]);
      const got = dst.subarray(5);
      const want = reference(src, W, box, out, flip);
      // Rounded to bytes: within half a grey level of the exact value (plus float32 slack).
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
      expect(err, `${seed}, case ${t}`).toBeLessThanOrEqual(0.5 + 1e-3);
    }
  });
});
