// Tiny ImageNet look-alikes in the real layouts, made in a temp dir: sharp-made JPEGs
// (including CMYK, grayscale, a PNG named .JPEG and a truncated file), the official nested
// train tar, the flat val tar and a devkit whose ILSVRC2012_IDs are not in sorted-wnid order.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import tar from 'tar-stream';
import { writeMat } from './matv5-writer.js';

/** A w x h image whose colour says its class, plus a little per-image pattern. */
export async function makeImage(w: number, h: number, cls: number, k: number, kind: 'jpeg' | 'cmyk' | 'gray' | 'png' = 'jpeg'): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  const base = [(cls * 67) % 256, (cls * 131 + 40) % 256, (cls * 29 + 90) % 256];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = 3 * (y * w + x);
      const stripe = ((x + k * 3) >> 2) % 2 ? 30 : 0;
      px[o] = (base[0] + stripe + y) % 256;
      px[o + 1] = (base[1] + stripe) % 256;
      px[o + 2] = (base[2] + x) % 256;
    }
  }
  const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
  if (kind === 'png') return img.png().toBuffer();
  if (kind === 'gray') return img.grayscale().jpeg({ quality: 95 }).toBuffer();
  if (kind === 'cmyk') return img.toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
  return img.jpeg({ quality: 95 }).toBuffer();
}

export async function tarOf(files: { name: string; data: Buffer }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const f of files) pack.entry({ name: f.name, size: f.data.length }, f.data);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** Ten Imagenette classes plus two others, so subsets can be tested: 12 classes. */
export const FIXTURE_WNIDS = [
  'n01440764', 'n02102040', 'n02979186', 'n03000684', 'n03028079', 'n03394916', 'n03417042', 'n03425413', 'n03445777', 'n03888605',
  'n01443537', 'n04591713',
].sort();

export interface OfficialFixture {
  dir: string;
  wnids: string[];
  /** ILSVRC2012_ID of each wnid (a shuffled order). */
  ids: Map<string, number>;
  trainPerClass: Map<string, number>;
  /** wnid of val image k (1-based) at k-1. */
  valWnids: string[];
  /** Names of the files expected to fail decoding. */
  corrupt: string[];
}

/**
 * dir/ILSVRC2012_img_train.tar (nXXXXXXXX.tar per class), dir/ILSVRC2012_img_val.tar,
 * dir/ILSVRC2012_devkit_t12.tar.gz. trainPerClass images per class (class c gets
 * trainPerClass + (c % 2), so counts differ), valPerClass val images per class, shuffled.
 */
export async function makeOfficial(dir: string, opts: { trainPerClass?: number; valPerClass?: number; compressMeta?: boolean; w?: number; h?: number } = {}): Promise<OfficialFixture> {
  mkdirSync(dir, { recursive: true });
  const wnids = FIXTURE_WNIDS;
  const per = opts.trainPerClass ?? 3;
  const valPer = opts.valPerClass ?? 2;
  const W = opts.w ?? 40;
  const H = opts.h ?? 30;
  // IDs in a scrambled order: id k belongs to wnids[(k * 5) % n].
  const ids = new Map<string, number>();
  wnids.forEach((_, k) => ids.set(wnids[(k * 5) % wnids.length], k + 1));
  const trainPerClass = new Map<string, number>();
  const corrupt: string[] = [];
  const inner: { name: string; data: Buffer }[] = [];
  for (const [c, wnid] of wnids.entries()) {
    const n = per + (c % 2);
    trainPerClass.set(wnid, n);
    const files: { name: string; data: Buffer }[] = [];
    for (let k = 0; k < n; k++) {
      const name = `${wnid}_${1000 + k}.JPEG`;
      // The known oddities of the real archive, spread over the classes.
      const kind = c === 0 && k === 0 ? 'cmyk' : c === 1 && k === 0 ? 'png' : c === 2 && k === 0 ? 'gray' : 'jpeg';
      let data = await makeImage(W + ((c + k) % 3) * 7, H + (k % 2) * 5, c, k, kind);
      if (c === 3 && k === 1) {
        data = data.subarray(0, Math.floor(data.length / 2));
        corrupt.push(`${wnid}/${name}`);
      }
      files.push({ name, data });
    }
    inner.push({ name: `${wnid}.tar`, data: await tarOf(files) });
  }
  writeFileSync(join(dir, 'ILSVRC2012_img_train.tar'), await tarOf(inner));
  // Validation: valPer per class, in a scrambled order of classes.
  const valWnids: string[] = [];
  for (let k = 0; k < valPer * wnids.length; k++) valWnids.push(wnids[(k * 7 + 3) % wnids.length]);
  const valFiles: { name: string; data: Buffer }[] = [];
  for (const [k, wnid] of valWnids.entries()) {
    const name = `ILSVRC2012_val_${String(k + 1).padStart(8, '0')}.JPEG`;
    valFiles.push({ name, data: await makeImage(W + (k % 4) * 5, H + 6, wnids.indexOf(wnid), 50 + k) });
  }
  writeFileSync(join(dir, 'ILSVRC2012_img_val.tar'), await tarOf(valFiles));
  // Devkit: meta.mat (leaf synsets plus an inner node that must be ignored) and the ground truth.
  const synsets = [...wnids.map((w) => ({ w, id: ids.get(w)! }))]
    .sort((a, b) => a.id - b.id)
    .map(({ w, id }) => ({ ILSVRC2012_ID: id, WNID: w, words: `words of ${w}`, gloss: 'a class', num_children: 0, num_train_images: trainPerClass.get(w)! }));
  synsets.push({ ILSVRC2012_ID: 1001, WNID: 'n00001740', words: 'entity', gloss: 'inner node', num_children: 2, num_train_images: 0 });
  const meta = writeMat({ synsets: { struct: synsets } }, opts.compressMeta ?? true);
  const gt = valWnids.map((w) => String(ids.get(w))).join('\n') + '\n';
  const devkit = await tarOf([
    { name: 'ILSVRC2012_devkit_t12/data/meta.mat', data: meta },
    { name: 'ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt', data: Buffer.from(gt) },
    { name: 'ILSVRC2012_devkit_t12/readme.txt', data: Buffer.from('fixture') },
  ]);
  writeFileSync(join(dir, 'ILSVRC2012_devkit_t12.tar.gz'), gzipSync(devkit));
  return { dir, wnids, ids, trainPerClass, valWnids, corrupt };
}
