// ImageNet sources in their real layouts: the devkit's meta.mat and ground truth, the nested
// train tar, the flat val tar, Kaggle's CSVs, class folders; unsafe tar names are refused.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMat } from '../tools/data/matv5.js';
import { OFFICIAL, SourceItem, SourceReject, openSource, parseMeta, readDevkit } from '../tools/data/sources.js';
import { unsafeEntryName } from '../tools/data/tar.js';
import { IMAGENET_WNIDS } from '../tools/data/wnids.js';
import { SUBSETS } from '../tools/data/subsets.js';
import { OfficialFixture, makeImage, makeOfficial, tarOf } from './data-fixtures/imagenet.js';
import { writeMat } from './data-fixtures/matv5-writer.js';
import { writeImageParquet } from './data-fixtures/parquet-writer.js';

let root: string;
let fx: OfficialFixture;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'nudge-data-src-'));
  fx = await makeOfficial(join(root, 'official'));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

async function collect(gen: AsyncGenerator<SourceItem>): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const it of gen) out.push(it);
  return out;
}

describe('class lists', () => {
  it('has the 1000 ImageNet wnids sorted, n01440764 first, and subsets drawn from them', () => {
    expect(IMAGENET_WNIDS.length).toBe(1000);
    expect(new Set(IMAGENET_WNIDS).size).toBe(1000);
    expect(IMAGENET_WNIDS[0]).toBe('n01440764');
    expect(IMAGENET_WNIDS[999]).toBe('n15075141');
    expect([...IMAGENET_WNIDS].sort()).toEqual(IMAGENET_WNIDS);
    const all = new Set(IMAGENET_WNIDS);
    expect(SUBSETS.imagenette.length).toBe(10);
    expect(SUBSETS.imagewoof.length).toBe(10);
    expect(SUBSETS.imagenet100.length).toBe(100);
    for (const list of Object.values(SUBSETS)) {
      expect(new Set(list).size).toBe(list.length);
      for (const w of list) expect(all.has(w)).toBe(true);
    }
  });
});

describe('MAT-file v5 reader', () => {
  it('reads compressed and uncompressed struct arrays of doubles and strings', () => {
    const synsets = [
      { ILSVRC2012_ID: 2, WNID: 'n01443537', words: 'goldfish, Carassius auratus', num_children: 0 },
      { ILSVRC2012_ID: 1, WNID: 'n01440764', words: 'tench', num_children: 0 },
      { ILSVRC2012_ID: 1500, WNID: 'n00001740', words: 'entity', num_children: 3 },
    ];
    for (const compress of [false, true]) {
      const vars = readMat(writeMat({ synsets: { struct: synsets }, x: 3.5 }, compress));
      expect(vars.x).toEqual({ kind: 'numeric', dims: [1, 1], data: [3.5] });
      const s = vars.synsets;
      if (s.kind !== 'struct') throw new Error('not a struct');
      expect(s.fields).toEqual(['ILSVRC2012_ID', 'WNID', 'words', 'num_children']);
      expect(s.elements.length).toBe(3);
      expect(s.elements[0].words).toEqual({ kind: 'char', dims: [1, 27], text: 'goldfish, Carassius auratus' });
      const meta = parseMeta(writeMat({ synsets: { struct: synsets } }, compress), 'meta.mat');
      expect([...meta.idToWnid.entries()]).toEqual([
        [2, 'n01443537'],
        [1, 'n01440764'],
      ]);
    }
  });

  it('refuses a truncated file and a non-MAT file with a clear message', () => {
    const good = writeMat({ synsets: { struct: [{ ILSVRC2012_ID: 1, WNID: 'n01440764' }] } }, false);
    expect(() => readMat(good.subarray(0, good.length - 20), 'meta.mat')).toThrow(/meta.mat: .*truncated/);
    expect(() => readMat(Buffer.alloc(200), 'meta.mat')).toThrow(/not a level-5 MAT-file/);
    expect(() => parseMeta(writeMat({ other: 1 }, false), 'meta.mat')).toThrow(/no 'synsets' struct/);
  });
});

describe('official ILSVRC2012 archives', () => {
  it('maps validation ground-truth IDs through meta.mat, not through sorted order', async () => {
    const dk = await readDevkit(join(fx.dir, OFFICIAL.devkit));
    expect(dk.idToWnid.size).toBe(fx.wnids.length); // the inner node (id 1001) is not a class
    expect(dk.valWnids).toEqual(fx.valWnids);
    // The fixture's ids are scrambled: sorted-position lookup would give other classes.
    const wrong = fx.valWnids.filter((w) => fx.wnids[fx.ids.get(w)! - 1] !== w);
    expect(wrong.length).toBeGreaterThan(fx.valWnids.length / 2);
    for (const [w, n] of fx.trainPerClass) expect(dk.trainCounts.get(w)).toBe(n);
  });

  it('streams the nested train tar and the flat val tar with their labels and counts', async () => {
    const src = await openSource(fx.dir);
    expect(src.kind).toBe('official');
    expect(src.classes).toEqual(fx.wnids);
    const train = await collect(src.splits.train!.items(() => {}));
    const total = [...fx.trainPerClass.values()].reduce((a, b) => a + b, 0);
    expect(train.length).toBe(total);
    for (const it of train) expect(it.name.startsWith(`${it.cls}/${it.cls}_`)).toBe(true);
    expect(src.splits.train!.expected).toEqual(fx.trainPerClass);
    const val = await collect(src.splits.val!.items(() => {}));
    expect(val.map((v) => v.cls)).toEqual(fx.valWnids);
    expect(val[4].name).toBe('ILSVRC2012_val_00000005.JPEG');
  });

  it('refuses tar entries with absolute paths or ..', async () => {
    expect(unsafeEntryName('/etc/passwd')).toBe(true);
    expect(unsafeEntryName('../x.JPEG')).toBe(true);
    expect(unsafeEntryName('a/../../x.JPEG')).toBe(true);
    expect(unsafeEntryName('C:\\x.JPEG')).toBe(true);
    expect(unsafeEntryName('n01440764/n01440764_1.JPEG')).toBe(false);
    expect(unsafeEntryName('a..b.JPEG')).toBe(false);
    const dir = join(root, 'hostile');
    mkdirSync(dir);
    const img = await makeImage(20, 20, 0, 0);
    const val = await tarOf([
      { name: 'ILSVRC2012_val_00000001.JPEG', data: img },
      { name: '../ILSVRC2012_val_00000002.JPEG', data: img },
      { name: '/abs/ILSVRC2012_val_00000002.JPEG', data: img },
    ]);
    writeFileSync(join(dir, OFFICIAL.val), val);
    const { gzipSync } = await import('node:zlib');
    const meta = writeMat({ synsets: { struct: [{ ILSVRC2012_ID: 1, WNID: 'n01440764', num_children: 0 }] } }, true);
    writeFileSync(
      join(dir, OFFICIAL.devkit),
      gzipSync(await tarOf([
        { name: 'd/data/meta.mat', data: meta },
        { name: 'd/data/ILSVRC2012_validation_ground_truth.txt', data: Buffer.from('1\n1\n') },
      ])),
    );
    const src = await openSource(dir);
    const rejects: SourceReject[] = [];
    const items = await collect(src.splits.val!.items((r) => rejects.push(r)));
    expect(items.map((i) => i.name)).toEqual(['ILSVRC2012_val_00000001.JPEG']);
    expect(rejects.map((r) => r.name)).toEqual(['../ILSVRC2012_val_00000002.JPEG', '/abs/ILSVRC2012_val_00000002.JPEG']);
    expect(rejects[0].reason).toMatch(/unsafe path/);
  });

  it('says what is missing when the val tar comes without the devkit', async () => {
    const dir = join(root, 'nodevkit');
    mkdirSync(dir);
    writeFileSync(join(dir, OFFICIAL.val), await tarOf([]));
    await expect(openSource(dir)).rejects.toThrow(/needs the labels in ILSVRC2012_devkit_t12.tar.gz/);
  });
});

describe('Kaggle CLS-LOC and class-folder trees', () => {
  it('reads LOC_synset_mapping.txt, LOC_val_solution.csv and the CLS-LOC folders', async () => {
    const dir = join(root, 'kaggle');
    const wn = ['n01440764', 'n01443537', 'n01484850'];
    mkdirSync(join(dir, 'ILSVRC/Data/CLS-LOC/val'), { recursive: true });
    // The mapping file is in sorted order in the real data; shuffle it to check we sort.
    writeFileSync(join(dir, 'LOC_synset_mapping.txt'), `${wn[2]} great white shark\n${wn[0]} tench, Tinca tinca\n${wn[1]} goldfish\n`);
    for (const [c, w] of wn.entries()) {
      mkdirSync(join(dir, 'ILSVRC/Data/CLS-LOC/train', w), { recursive: true });
      for (let k = 0; k < 2; k++) writeFileSync(join(dir, 'ILSVRC/Data/CLS-LOC/train', w, `${w}_${k}.JPEG`), await makeImage(16, 16, c, k));
    }
    const sol = ['ImageId,PredictionString'];
    for (let k = 1; k <= 4; k++) {
      const w = wn[(k * 2) % 3];
      sol.push(`ILSVRC2012_val_${String(k).padStart(8, '0')},${w} 1 2 30 40 ${w} 5 6 7 8`);
      writeFileSync(join(dir, 'ILSVRC/Data/CLS-LOC/val', `ILSVRC2012_val_${String(k).padStart(8, '0')}.JPEG`), await makeImage(16, 16, 0, k));
    }
    writeFileSync(join(dir, 'LOC_val_solution.csv'), sol.join('\n') + '\n');
    const src = await openSource(dir);
    expect(src.kind).toBe('kaggle');
    expect(src.classes).toEqual(wn);
    expect(src.words?.get('n01440764')).toBe('tench, Tinca tinca');
    const train = await collect(src.splits.train!.items(() => {}));
    expect(train.map((t) => t.cls)).toEqual([wn[0], wn[0], wn[1], wn[1], wn[2], wn[2]]);
    const val = await collect(src.splits.val!.items(() => {}));
    expect(val.map((v) => v.cls)).toEqual([1, 2, 3, 4].map((k) => wn[(k * 2) % 3]));
  });

  it('takes any class-per-folder tree, classes sorted by folder name', async () => {
    const dir = join(root, 'folders');
    for (const split of ['train', 'val']) {
      for (const [c, name] of ['zebra', 'apple'].entries()) {
        mkdirSync(join(dir, split, name), { recursive: true });
        writeFileSync(join(dir, split, name, 'b.jpg'), await makeImage(12, 12, c, 0));
        writeFileSync(join(dir, split, name, 'a.png'), await makeImage(12, 12, c, 1, 'png'));
        writeFileSync(join(dir, split, name, 'notes.txt'), 'not an image');
      }
    }
    const src = await openSource(dir);
    expect(src.kind).toBe('folder');
    expect(src.classes).toEqual(['apple', 'zebra']);
    const val = await collect(src.splits.val!.items(() => {}));
    expect(val.map((v) => v.name)).toEqual(['apple/a.png', 'apple/b.jpg', 'zebra/a.png', 'zebra/b.jpg']);
  });

  it('names the layouts it knows when it finds none', async () => {
    const dir = join(root, 'empty');
    mkdirSync(dir);
    await expect(openSource(dir)).rejects.toThrow(/no known ImageNet layout.*ILSVRC2012_img_train.tar.*LOC_synset_mapping.txt.*parquet/);
  });
});

describe('Hugging Face imagenet-1k parquet shards', () => {
  it('reads image {bytes, path} and integer labels (sorted-wnid order) over shards and row groups', async () => {
    const dir = join(root, 'hf');
    mkdirSync(join(dir, 'data'), { recursive: true });
    const labels = [0, 999, 5, 5, 17, 0, 321];
    const imgs = await Promise.all(labels.map((l, k) => makeImage(10 + k, 8, l % 12, k)));
    const rows = labels.map((label, k) => ({ bytes: imgs[k], path: `x_${k}.JPEG`, label }));
    writeFileSync(join(dir, 'data', 'train-00000-of-00002.parquet'), writeImageParquet(rows.slice(0, 5), 2));
    writeFileSync(join(dir, 'data', 'train-00001-of-00002.parquet'), writeImageParquet(rows.slice(5), 1));
    writeFileSync(join(dir, 'data', 'validation-00000-of-00001.parquet'), writeImageParquet([rows[2], { ...rows[3], label: -1 }], 8));
    const src = await openSource(dir);
    expect(src.kind).toBe('hf');
    expect(src.classes).toEqual(IMAGENET_WNIDS);
    const train = await collect(src.splits.train!.items(() => {}));
    expect(train.map((t) => t.cls)).toEqual(labels.map((l) => IMAGENET_WNIDS[l]));
    expect(train.map((t) => t.name)).toEqual([0, 1, 2, 3, 4].map((i) => `train-00000-of-00002.parquet#${i}`).concat(['train-00001-of-00002.parquet#0', 'train-00001-of-00002.parquet#1']));
    train.forEach((t, k) => expect(t.bytes.equals(imgs[k])).toBe(true));
    const rejects: SourceReject[] = [];
    const val = await collect(src.splits.val!.items((r) => rejects.push(r)));
    expect(val.map((v) => v.cls)).toEqual([IMAGENET_WNIDS[5]]);
    expect(rejects).toEqual([{ name: 'validation-00000-of-00001.parquet#1', reason: 'label -1 out of range (test split?)' }]);
  });
});
