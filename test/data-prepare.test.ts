// `nudge data prepare` and the loader on tiny fixtures in the official layout: decoding
// oddities, corrupt files, determinism across worker counts, resume, subsets, squash.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError } from '../tools/data/idx.js';
import { ImageLoader, ShardReader, normalizeU8, randomResizedCropBox, rankOrder } from '../tools/data/loader.js';
import { WorkerPool } from '../tools/data/pool.js';
import { fractionKeeps, prepare } from '../tools/data/prepare.js';
import { verifyShards } from '../tools/data/command.js';
import { IndexEntry, Manifest, decodeIndex, encodeIndex, readManifest, splitProblem } from '../tools/data/shards.js';
import type { Split } from '../tools/data/sources.js';
import { OfficialFixture, makeImage, makeOfficial } from './data-fixtures/imagenet.js';

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
    expect(readFileSync(join(out, 'report.txt'), 'utf8')).toContain(`skipped ${fx.corrupt[0]}: truncated JPEG`);
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
    // A JPEG quality does not apply to raw pixels, so none is recorded.
    expect(ms.options.quality).toBe(null);
    for (const s of ms.splits.val!.shards) {
      for (const e of decodeIndex(readFileSync(join(sq, s.index)), s.index)) expect([e.width, e.height, e.length]).toEqual([32, 32, 32 * 32 * 3]);
    }
  });

  it('reports counts that do not match the expected totals', async () => {
    const r = await prepare({ src: fx.dir, out: join(root, 'mismatch'), size: SIZE, workers: 1, splits: ['val'], expect: { val: 25 } });
    expect(r.mismatches).toEqual(['val: found 24 images (24 good + 0 skipped), expected 25']);
  });

  it('keeps floor(n f) of every class with --fraction', () => {
    for (const [n, f] of [[1300, 0.1], [732, 0.25], [7, 0.5], [10, 1], [3, 0.34]] as const) {
      let kept = 0;
      for (let i = 0; i < n; i++) if (fractionKeeps(i, f)) kept++;
      expect(kept).toBe(Math.floor(n * f + 1e-9));
    }
  });
});

/** The JPEG with its frame header (SOF0) claiming width x height instead. */
function claimSize(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let o = 2; o + 9 < out.length; ) {
    if (out[o] !== 0xff) throw new Error('lost in the JPEG markers');
    if (out[o + 1] === 0xc0) {
      out.writeUInt16BE(height, o + 5);
      out.writeUInt16BE(width, o + 7);
      return out;
    }
    o += 2 + out.readUInt16BE(o + 2);
  }
  throw new Error('no SOF0 marker');
}

/** The bytes of the first `entries` members of a tar, closed with the end-of-archive blocks: a valid, shorter archive. */
function tarPrefix(tar: Buffer, entries: number): Buffer {
  let o = 0;
  for (let k = 0; k < entries; k++) o += 512 + Math.ceil(parseInt(tar.toString('latin1', o + 124, o + 136).trim(), 8) / 512) * 512;
  return Buffer.concat([tar.subarray(0, o), Buffer.alloc(1024)]);
}

function shardFiles(dir: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const f of readdirSync(dir).sort()) if (/\.(bin|idx)$/.test(f)) out[f] = readFileSync(join(dir, f));
  return out;
}

describe('hostile input to prepare', () => {
  it('skips an image too elongated for a shard (raw and JPEG) and one over the pixel limit, saying so, and a rerun completes', async () => {
    const src = join(root, 'odd-src');
    for (const c of ['a', 'b']) mkdirSync(join(src, 'train', c), { recursive: true });
    for (let k = 0; k < 2; k++) writeFileSync(join(src, 'train', 'a', `ok${k}.jpg`), await makeImage(40, 30, 0, k));
    writeFileSync(join(src, 'train', 'b', 'ok.jpg'), await makeImage(30, 40, 1, 0));
    // At --size 64, a 1x1100 image would be 64x70400: more than a JPEG or the index can hold.
    writeFileSync(join(src, 'train', 'b', 'long.png'), await sharp({ create: { width: 1, height: 1100, channels: 3, background: '#808080' } }).png().toBuffer());
    // A header claiming 20000x20000 (400 M pixels) is over the decoder's limit before any pixel is read.
    writeFileSync(join(src, 'train', 'b', 'huge.jpg'), claimSize(await makeImage(40, 30, 1, 1), 20000, 20000));
    for (const format of ['raw', 'jpeg'] as const) {
      const out = join(root, `odd-${format}`);
      const r = await prepare({ src, out, size: 64, format, splits: ['train'], workers: 2 });
      expect(r.mismatches).toEqual([]);
      const train = readManifest(out).splits.train!;
      expect([train.complete, train.images, train.corrupt]).toEqual([true, 3, 2]);
      const reasons = Object.fromEntries(train.shards.flatMap((s) => s.corrupt.map((c) => [c.name, c.reason])));
      expect(Object.keys(reasons).sort()).toEqual(['b/huge.jpg', 'b/long.png']);
      expect(reasons['b/long.png']).toBe('image too elongated: 1x1100 would be resized to 64x70400, over the 65535-pixel side a shard image can have');
      expect(reasons['b/huge.jpg']).toBe('image too large to decode: 20000x20000 pixels, over the limit of 268435456');
      const report = readFileSync(join(out, 'report.txt'), 'utf8');
      expect(report).toContain('train: 3 images in 1 shard(s), 2 skipped');
      expect(report).toContain('  skipped b/long.png: image too elongated');
      expect(report).not.toMatch(/corrupt (PNG|JPEG) data/);
      const again = await prepare({ src, out, size: 64, format, splits: ['train'], workers: 1 });
      expect(again.written).toEqual({ train: 0 });
    }
  });

  it('refuses an --out that is a file, or lies under one, naming it', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'not a directory');
    for (const [out, want] of [
      [file, /--out .*a-file is a file, not a directory/],
      [join(file, 'sub'), /--out .*a-file\/sub: cannot create the directory \(ENOTDIR\)/],
    ] as const) {
      const e = await prepare({ src: fx.dir, out, size: SIZE, workers: 1 }).catch((x: Error) => x);
      expect(e).toBeInstanceOf(DataError);
      expect((e as Error).message).toMatch(want);
    }
    expect(readFileSync(file, 'utf8')).toBe('not a directory');
  });

  it('checks each option, naming it: --squash 7 is about --squash, quality does not apply to raw, shard size 0', async () => {
    const bad: [Partial<Parameters<typeof prepare>[0]>, RegExp][] = [
      [{ squash: 7 }, /^--squash must be an integer in 8\.\.512/],
      [{ squash: 32.5 }, /^--squash must be/],
      [{ size: 7 }, /^--size must be an integer in 8\.\.4096, got 7/],
      [{ size: 24.5 }, /^--size must be/],
      [{ squash: 32, size: 64 }, /--squash 32 makes 32x32 images: drop --size 64/],
      [{ quality: 0 }, /^--quality must be an integer in 1\.\.100, got 0/],
      [{ quality: 80, format: 'raw' }, /^--quality applies to JPEG shards only/],
      [{ quality: 80, squash: 32 }, /^--quality applies to JPEG shards only.*--format jpeg/],
      [{ fraction: 0 }, /^--fraction must be in \(0, 1\], got 0/],
      [{ fraction: 1.5 }, /^--fraction must be/],
      [{ shardBytes: 0 }, /^shard size must be 1\.\.\d+ bytes/],
      [{ shardBytes: 2 ** 32 }, /^shard size must be/],
      [{ workers: 0 }, /^--workers must be an integer in 1\.\.256, got 0/],
      [{ expect: { val: -1 } }, /^--expect-val must be an integer/],
      [{ expect: { train: 2.5 } }, /^--expect-train must be an integer/],
    ];
    for (const [o, want] of bad) {
      const out = join(root, 'never-made');
      const e = await prepare({ src: fx.dir, out, workers: 1, ...o }).catch((x: Error) => x);
      expect(e, JSON.stringify(o)).toBeInstanceOf(DataError);
      expect((e as Error).message, JSON.stringify(o)).toMatch(want);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('a split short of its expected count is not complete: refused by the loader, prepared again by a rerun', async () => {
    const src = join(root, 'short-src');
    cpSync(fx.dir, src, { recursive: true });
    const fullTar = readFileSync(join(src, 'ILSVRC2012_img_train.tar'));
    // Half the class tars, then a proper end of archive: a valid archive that is just shorter.
    writeFileSync(join(src, 'ILSVRC2012_img_train.tar'), tarPrefix(fullTar, 6));
    const out = join(root, 'short');
    const log: string[] = [];
    const opts = { src, out, size: SIZE, shardBytes: SHARD, workers: 2, log: (l: string) => log.push(l) };
    const r = await prepare(opts);
    expect(r.mismatches).toHaveLength(1);
    expect(r.mismatches[0]).toMatch(new RegExp(`^train: found (\\d+) images \\(\\d+ good \\+ \\d+ skipped\\), expected ${trainTotal}$`));
    const found = Number(/found (\d+)/.exec(r.mismatches[0])![1]);
    expect(found).toBeLessThan(trainTotal);
    let m = readManifest(out);
    expect(m.splits.train!.complete).toBe(false);
    expect(splitProblem(m.splits.train)).toMatch(/^incomplete: its count check failed \(found \d+ images/);
    expect(m.splits.val!.complete).toBe(true);
    expect(() => new ShardReader(out, 'train')).toThrow(/the train split is incomplete: its count check failed .*rerun nudge data prepare/);
    // Still short: the rerun prepares it again (not "already complete") and fails the same way.
    log.length = 0;
    const again = await prepare(opts);
    expect(log.join('\n')).toMatch(new RegExp(`train: the last run found ${found} images, ${trainTotal} expected: preparing it again from the start`));
    expect(log.join('\n')).toMatch(/val: already complete/);
    expect(again.mismatches).toEqual(r.mismatches);
    expect(again.written.train).toBe(found - m.splits.train!.corrupt);
    // With the whole tar back, the same command makes exactly what a clean run makes.
    writeFileSync(join(src, 'ILSVRC2012_img_train.tar'), fullTar);
    const fixed = await prepare(opts);
    expect(fixed.mismatches).toEqual([]);
    m = readManifest(out);
    expect([m.splits.train!.complete, m.splits.train!.mismatch, m.splits.train!.images]).toEqual([true, undefined, trainTotal - 1]);
    expect(shardFiles(out)).toEqual(shardFiles(join(root, 'w1')));
    expect(new ShardReader(out, 'train').count).toBe(trainTotal - 1);
  });

  it('a short split counts as complete when the count found is what this run expects (--expect), and an old "complete" short split is not', async () => {
    const src = join(root, 'short-src2');
    cpSync(fx.dir, src, { recursive: true });
    writeFileSync(join(src, 'ILSVRC2012_img_train.tar'), tarPrefix(readFileSync(join(fx.dir, 'ILSVRC2012_img_train.tar')), 4));
    const out = join(root, 'short2');
    const opts = { src, out, size: SIZE, workers: 1, splits: ['train' as const] };
    const r = await prepare(opts);
    const m = readManifest(out);
    const found = m.splits.train!.images + m.splits.train!.corrupt;
    expect(r.mismatches).toHaveLength(1);
    // A manifest written before a failed check was recorded said complete: it is not.
    const old = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    old.splits.train.complete = true;
    delete old.splits.train.mismatch;
    writeFileSync(join(out, 'manifest.json'), JSON.stringify(old));
    expect(splitProblem(readManifest(out).splits.train)).toBe(`incomplete: ${found} images found (${m.splits.train!.images} good + ${m.splits.train!.corrupt} skipped), ${trainTotal} expected`);
    expect(() => new ShardReader(out, 'train')).toThrow(/incomplete/);
    const ok = await prepare({ ...opts, expect: { train: found } });
    expect([ok.mismatches, ok.written.train]).toEqual([[], 0]);
    expect(readManifest(out).splits.train!.complete).toBe(true);
    expect(new ShardReader(out, 'train').count).toBe(m.splits.train!.images);
    // A complete split is never thrown away over a different --expect: that is refused.
    await expect(prepare({ ...opts, expect: { train: found + 1 } })).rejects.toThrow(new RegExp(`train in .* is complete with ${found} images, but --expect-train ${found + 1}: prepare into another --out`));
    expect(readManifest(out).splits.train!.complete).toBe(true);
  });
});

describe('shard sets that lie', () => {
  /** A copy of the w1 set whose train-00000 index has its first record changed by `edit` (the manifest's hash kept in step). */
  function tampered(name: string, edit: (e: IndexEntry) => void, base = 'w1', split: Split = 'train'): string {
    const dir = join(root, name);
    rmSync(dir, { recursive: true, force: true });
    cpSync(join(root, base), dir, { recursive: true });
    const m = readManifest(dir);
    const s = m.splits[split]!.shards[0];
    const entries = decodeIndex(readFileSync(join(dir, s.index)), s.index);
    edit(entries[0]);
    const idx = encodeIndex(entries);
    writeFileSync(join(dir, s.index), idx);
    s.indexSha256 = createHash('sha256').update(idx).digest('hex');
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
    return dir;
  }

  it('checks every index record before use: bytes inside the shard, label among the classes, size as prepared (errors name the index)', async () => {
    const cases: [string, (e: IndexEntry) => void, RegExp][] = [
      ['label', (e) => (e.label = 999999), /train-00000\.idx: image 0 has label 999999, but the set has 12 classes/],
      ['side', (e) => ((e.width = 65535), (e.height = 65535)), /train-00000\.idx: image 0 is 65535x65535, but the set was prepared with its shorter side at 24/],
      ['zero', (e) => (e.width = 0), /train-00000\.idx: image 0 is 0x\d+/],
      ['bytes', (e) => (e.length = 1e9), /train-00000\.idx: image 0 claims bytes 0\.\.1000000000, but train-00000\.bin has \d+/],
    ];
    for (const [name, edit, want] of cases) {
      const dir = tampered(`lie-${name}`, edit);
      expect(() => new ShardReader(dir, 'train'), name).toThrow(want);
      // --verify finds it though every hash matches.
      const problems = await verifyShards(dir);
      expect(problems, name).toHaveLength(1);
      expect(problems[0], name).toMatch(want);
    }
    // A raw shard's length is its size exactly.
    expect(() => new ShardReader(tampered('lie-raw', (e) => (e.length = 100), 'sq32', 'val'), 'val')).toThrow(/val-00000\.idx: image 0 is 32x32 raw RGB, 3072 bytes, but its length is 100/);
    // A shard file cut short, and an index that lost a record.
    const cut = tampered('lie-cut', () => {});
    const bin = join(cut, 'train-00000.bin');
    writeFileSync(bin, readFileSync(bin).subarray(0, 10));
    expect(() => new ShardReader(cut, 'train')).toThrow(/train-00000\.idx: image 0 claims bytes 0\.\.\d+, but train-00000\.bin has 10/);
    const fewer = tampered('lie-fewer', () => {});
    const idxPath = join(fewer, 'train-00000.idx');
    writeFileSync(idxPath, encodeIndex(decodeIndex(readFileSync(idxPath), 'x').slice(1)));
    expect(() => new ShardReader(fewer, 'train')).toThrow(/train-00000\.idx: \d+ images, but the manifest says \d+/);
  });

  it('a JPEG index whose longer side is wrong fails the crop in the worker, naming the image and its shard', async () => {
    const dir = tampered('lie-long', (e) => {
      if (e.width >= e.height) e.width = 60000;
      else e.height = 60000;
    });
    const l = new ImageLoader(dir, { split: 'train', crop: 16, augment: true, seed: '1', workers: 1 });
    try {
      await expect(l.loadBatchU8([3, 0], 0)).rejects.toThrow(/decoding train image 0 \(in train-00000\.bin\) failed: the shard image is \d+x\d+ .*crop box .* does not fit: the index's size for it is wrong/);
      // The other images are unharmed.
      expect((await l.loadBatchU8([3, 1], 0)).n).toBe(2);
    } finally {
      await l.close();
    }
  });

  it('refuses manifest shard names that could reach outside the data directory', async () => {
    for (const name of ['../w1/train-00000.bin', '/etc/passwd', 'sub/train-00000.bin', 'sub\\x.bin', '..', '.']) {
      const dir = join(root, 'lie-names');
      rmSync(dir, { recursive: true, force: true });
      cpSync(join(root, 'w1'), dir, { recursive: true });
      const m = readManifest(dir);
      m.splits.train!.shards[1].file = name;
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
      const want = `train: shard 1 names the file ${JSON.stringify(name)}, which is not a plain file name in the data directory`;
      expect(() => readManifest(dir), name).toThrow(want);
      expect(() => new ShardReader(dir, 'train'), name).toThrow(want);
      // Nor does a resume into it follow the name.
      await expect(prepare({ src: fx.dir, out: dir, size: SIZE, shardBytes: SHARD, workers: 1 }), name).rejects.toThrow(want);
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
