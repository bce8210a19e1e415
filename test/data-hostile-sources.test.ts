// Hostile and broken inputs for the source readers: MAT-files whose sizes, counts and
// nesting lie, tars cut anywhere (nested ones included), corrupt and bomb-sized gzip, odd tar
// entry names, symlinks and special files in folder trees, parquet row counts that lie, IDX
// gzip bombs. Each must end in one line naming the file (or a reject), never a hang or a raw
// error.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, parseIdx } from '../tools/data/idx.js';
import { MAT_MAX_DEPTH, MAT_MAX_INFLATED, readMat } from '../tools/data/matv5.js';
import { MAX_DEVKIT_BYTES, MAX_DEVKIT_MEMBER_BYTES, MAX_IMAGE_BYTES, OFFICIAL, Source, SourceItem, SourceReject, openSource, readDevkit } from '../tools/data/sources.js';
import { makeImage, tarOf } from './data-fixtures/imagenet.js';
import { writeMat } from './data-fixtures/matv5-writer.js';
import { writeImageParquet } from './data-fixtures/parquet-writer.js';

let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'nudge-hostile-'));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The DataError fn throws; fails the test if it throws anything else or nothing. */
async function dataError(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(DataError);
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('expected a DataError, got none');
}

async function drain(src: Source, split: 'train' | 'val'): Promise<{ items: SourceItem[]; rejects: SourceReject[] }> {
  const items: SourceItem[] = [];
  const rejects: SourceReject[] = [];
  for await (const it of src.splits[split]!.items((r) => rejects.push(r))) items.push(it);
  return { items, rejects };
}

// ---------- a MAT-file builder that can lie ----------

const mi = { INT8: 1, INT32: 5, UINT32: 6, DOUBLE: 9, MATRIX: 14, COMPRESSED: 15, UTF32: 18 };
const mx = { CELL: 1, STRUCT: 2, OBJECT: 3, CHAR: 4, DOUBLE: 6 };

function el(type: number, data: Buffer): Buffer {
  const out = Buffer.alloc(8 + ((data.length + 7) & ~7));
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(data.length, 4);
  data.copy(out, 8);
  return out;
}

function i32(...v: number[]): Buffer {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeInt32LE(x, 4 * i));
  return b;
}

/** An miMATRIX element: flags, dims, name, then the class's own elements. */
function matrix(cls: number, dims: number[], name: string, ...rest: Buffer[]): Buffer {
  return el(mi.MATRIX, Buffer.concat([el(mi.UINT32, i32(cls, 0)), el(mi.INT32, i32(...dims)), el(mi.INT8, Buffer.from(name, 'latin1')), ...rest]));
}

function mat(...vars: Buffer[]): Buffer {
  const header = Buffer.alloc(128, 0x20);
  header.writeUInt16LE(0x0100, 124);
  header.write('IM', 126, 'latin1');
  return Buffer.concat([header, ...vars]);
}

const double = (name: string, x: number) => {
  const d = Buffer.alloc(8);
  d.writeDoubleLE(x);
  return matrix(mx.DOUBLE, [1, 1], name, el(mi.DOUBLE, d));
};

describe('MAT-file reader on hostile files', () => {
  const refuses = async (bytes: Buffer, re: RegExp) => {
    const msg = await dataError(() => readMat(bytes, 'meta.mat'));
    expect(msg).toMatch(/^meta\.mat: /);
    expect(msg).toMatch(re);
  };

  it('refuses a struct whose field-name length is 0 (it looped until the heap ran out)', async () => {
    await refuses(mat(matrix(mx.STRUCT, [1, 1], 'synsets', el(mi.INT32, i32(0)), el(mi.INT8, Buffer.from('WNID\0\0\0\0')))), /field-name length 0/);
    await refuses(mat(matrix(mx.STRUCT, [1, 1], 'synsets', el(mi.INT32, i32(3)), el(mi.INT8, Buffer.from('WNID')))), /not a multiple of the name length 3/);
  });

  it('refuses a fieldless struct claiming a billion elements (they were all built)', async () => {
    await refuses(mat(matrix(mx.STRUCT, [1_000_000_000, 1], 'synsets', el(mi.INT32, i32(8)), el(mi.INT8, Buffer.alloc(0)))), /with 0 field\(s\) is larger than/);
  });

  it('refuses char data above U+10FFFF and reads a 300k-character string (both were RangeErrors)', async () => {
    const u32 = Buffer.alloc(8);
    u32.writeUInt32LE(0x41, 0);
    u32.writeUInt32LE(0x110000, 4);
    await refuses(mat(matrix(mx.CHAR, [1, 2], 'words', el(mi.UTF32, u32))), /'words' holds 1114112, not a Unicode code point/);
    const long = 'tench '.repeat(50_000);
    const v = readMat(writeMat({ words: long }, true), 'meta.mat').words;
    expect(v.kind === 'char' && v.text).toBe(long);
  });

  it('refuses dims that are negative or claim more than the data holds', async () => {
    await refuses(mat(matrix(mx.CELL, [-1, 1], 'c')), /'c' has dims \[-1,1\]/);
    await refuses(mat(matrix(mx.DOUBLE, [1000, 1], 'x', el(mi.DOUBLE, Buffer.alloc(8)))), /'x' of dims \[1000,1\] holds 1 values/);
    // A char matrix of 100000 rows held in 2 characters was read as 99999 empty lines.
    await refuses(mat(matrix(mx.CHAR, [100_000, 2], 'w', el(mi.INT8, Buffer.from('ab')))), /'w' of dims \[100000,2\] holds 2 characters/);
    await refuses(mat(matrix(mx.CELL, [2 ** 31 - 1, 2 ** 31 - 1], 'c')), /cell 'c' of dims \[2147483647,2147483647\] is larger than the 0 bytes/);
    // An element whose size runs past the end of the file.
    const cut = mat(double('x', 1));
    cut.writeUInt32LE(0xffffffff, 128 + 4);
    await refuses(cut, /claims 4294967295 bytes, past the end/);
  });

  it('refuses cells nested deeper than the limit (a deep file overflowed the stack)', async () => {
    // 100000 cells, each holding the next, written front to back: each level's tag says how
    // many bytes follow it.
    const levels = 100_000;
    const head = (cls: number) => Buffer.concat([el(mi.UINT32, i32(cls, 0)), el(mi.INT32, i32(1, 1)), el(mi.INT8, Buffer.alloc(0))]);
    const h = head(mx.CELL);
    const inner = matrix(mx.DOUBLE, [0, 0], '');
    const buf = Buffer.alloc(levels * (8 + h.length) + inner.length);
    for (let i = 0; i < levels; i++) {
      const at = i * (8 + h.length);
      buf.writeUInt32LE(mi.MATRIX, at);
      buf.writeUInt32LE(buf.length - at - 8, at + 4);
      h.copy(buf, at + 8);
    }
    inner.copy(buf, levels * (8 + h.length));
    await refuses(mat(buf), new RegExp(`nested deeper than ${MAT_MAX_DEPTH} levels`));
  });

  it('refuses a compressed element that inflates past the limit (it was inflated whole)', async () => {
    const z = deflateSync(Buffer.alloc(MAT_MAX_INFLATED + (1 << 20)));
    const tag = Buffer.alloc(8);
    tag.writeUInt32LE(mi.COMPRESSED, 0);
    tag.writeUInt32LE(z.length, 4);
    await refuses(mat(tag, z), /compressed element at byte 128 inflates past the 64 MiB/);
  });

  it('keeps names out of the prototype and control characters out of messages', async () => {
    const v = readMat(mat(matrix(mx.STRUCT, [1, 1], 's', el(mi.INT32, i32(16)), el(mi.INT8, Buffer.from('__proto__\0\0\0\0\0\0\0')), double('', 7))), 'meta.mat').s;
    if (v.kind !== 'struct') throw new Error('not a struct');
    expect(Object.keys(v.elements[0])).toEqual(['__proto__']);
    await refuses(mat(matrix(mx.OBJECT, [1, 1], 'a\nb')), /variable 'a\\x0ab' has array class 3/);
  });
});

// ---------- tars cut, corrupt, bombed ----------

/** Where entry k of a tarOf archive starts (its header), for entries of these sizes. */
function entryOffset(sizes: number[], k: number): number {
  let at = 0;
  for (let i = 0; i < k; i++) at += 512 + Math.ceil(sizes[i] / 512) * 512;
  return at;
}

/** A ustar header block alone, for entries whose data is made separately. */
function ustarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write('0', 156, 'latin1');
  h.write('ustar\0' + '00', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

/** A gzip file of many members that inflates to `mib` MiB of zeros after `head`: cheap to build. */
function zeroGzip(head: Buffer, mib: number): Buffer {
  const member = gzipSync(Buffer.alloc(1 << 20));
  return Buffer.concat([gzipSync(head), ...Array.from({ length: mib }, () => member)]);
}

describe('official archives cut or corrupt', () => {
  let dir: string;
  let devkit: Buffer;
  const wnids = ['n01440764', 'n01443537'];
  let valFiles: { name: string; data: Buffer }[];
  let inner: { name: string; data: Buffer }[];
  let innerSizes: number[];

  beforeAll(async () => {
    dir = join(root, 'cut');
    mkdirSync(dir);
    const meta = writeMat({ synsets: { struct: wnids.map((w, i) => ({ ILSVRC2012_ID: i + 1, WNID: w, num_children: 0, num_train_images: 2 })) } }, true);
    devkit = gzipSync(await tarOf([
      { name: 'd/data/meta.mat', data: meta },
      { name: 'd/data/ILSVRC2012_validation_ground_truth.txt', data: Buffer.from('1\n2\n1\n2\n') },
    ]));
    valFiles = await Promise.all([1, 2, 3, 4].map(async (k) => ({ name: `ILSVRC2012_val_0000000${k}.JPEG`, data: await makeImage(30, 20, k % 2, k) })));
    inner = [];
    innerSizes = [];
    for (const [c, w] of wnids.entries()) {
      const files = await Promise.all([0, 1].map(async (k) => ({ name: `${w}_${k}.JPEG`, data: await makeImage(30, 20, c, k) })));
      if (c === 0) innerSizes = files.map((f) => f.data.length);
      inner.push({ name: `${w}.tar`, data: await tarOf(files) });
    }
  });

  const layout = (name: string, files: Record<string, Buffer>) => {
    const d = join(dir, name);
    mkdirSync(d);
    writeFileSync(join(d, OFFICIAL.devkit), devkit);
    for (const [f, b] of Object.entries(files)) writeFileSync(join(d, f), b);
    return d;
  };

  it('names the val tar and the entry when the tar ends inside an entry (was a raw stream error)', async () => {
    const val = await tarOf(valFiles);
    const at = entryOffset(valFiles.map((f) => f.data.length), 2) + 512 + 100;
    const d = layout('val-cut', { [OFFICIAL.val]: val.subarray(0, at) });
    const msg = await dataError(async () => drain(await openSource(d), 'val'));
    expect(msg).toBe(`${join(d, OFFICIAL.val)}: truncated tar archive: it ends inside entry ILSVRC2012_val_00000003.JPEG`);
  });

  it('names the train tar, the class tar and the image when a nested tar is cut in its data', async () => {
    const train = await tarOf(inner);
    // Into the data of the second image of the first class tar.
    const at = 512 + entryOffset(innerSizes, 1) + 512 + 50;
    const d = layout('train-cut', { [OFFICIAL.train]: train.subarray(0, at) });
    const msg = await dataError(async () => drain(await openSource(d), 'train'));
    expect(msg).toBe(`${join(d, OFFICIAL.train)}:n01440764.tar: truncated tar archive: it ends inside entry n01440764_1.JPEG`);
  });

  it('says a tar cut exactly at an entry boundary lacks its end-of-archive marker (it read as a shorter archive)', async () => {
    const train = await tarOf(inner);
    const at = entryOffset(inner.map((f) => f.data.length), 1);
    const d = layout('train-boundary', { [OFFICIAL.train]: train.subarray(0, at), [OFFICIAL.val]: Buffer.alloc(0) });
    const src = await openSource(d);
    const msg = await dataError(async () => drain(src, 'train'));
    expect(msg).toBe(`${join(d, OFFICIAL.train)}: truncated tar archive: no end-of-archive marker after the last entry (cut at an entry boundary?)`);
    expect(await dataError(async () => drain(src, 'val'))).toBe(`${join(d, OFFICIAL.val)}: empty file, not a tar archive`);
    // The whole archive still reads.
    writeFileSync(join(d, OFFICIAL.train), train);
    expect((await drain(await openSource(d), 'train')).items.length).toBe(4);
  });

  it('names the devkit (and the member) when its gzip is truncated or corrupt', async () => {
    const d = join(dir, 'devkits');
    mkdirSync(d);
    const path = join(d, OFFICIAL.devkit);
    // Cut inside meta.mat, the first member: the error came from reading its body.
    writeFileSync(path, devkit.subarray(0, Math.floor(devkit.length / 2)));
    expect(await dataError(() => readDevkit(path))).toBe(`${path}: corrupt or truncated gzip data (unexpected end of file), inside entry d/data/meta.mat`);
    const crc = Buffer.from(devkit);
    crc[crc.length - 6] ^= 0xff;
    writeFileSync(path, crc);
    expect(await dataError(() => readDevkit(path))).toBe(`${path}: corrupt or truncated gzip data (incorrect data check)`);
    writeFileSync(path, Buffer.from('not gzip at all'));
    expect(await dataError(() => readDevkit(path))).toMatch(/corrupt or truncated gzip data \(incorrect header check\)$/);
  });

  it('refuses a bomb-sized devkit before holding it in memory', async () => {
    const d = join(dir, 'bombs');
    mkdirSync(d);
    const path = join(d, OFFICIAL.devkit);
    // A meta.mat that says it is 300 MiB: it was read whole.
    writeFileSync(path, zeroGzip(ustarHeader('d/data/meta.mat', 300 << 20), 1));
    expect(await dataError(() => readDevkit(path))).toBe(`${path}: d/data/meta.mat is ${300 << 20} bytes, more than the ${MAX_DEVKIT_MEMBER_BYTES >> 20} MiB allowed; not the devkit's`);
    // A member we skip, inflating past the whole devkit's bound: it was inflated to the end.
    writeFileSync(path, zeroGzip(ustarHeader('d/evaluation/junk', MAX_DEVKIT_BYTES + (8 << 20)), (MAX_DEVKIT_BYTES >> 20) + 8));
    expect(await dataError(() => readDevkit(path))).toBe(`${path}: inflates to more than ${MAX_DEVKIT_BYTES} bytes; not the archive expected here`);
  });
});

describe('odd tar entry names', () => {
  it('rejects names with control characters, very long names and second copies; reports them escaped', async () => {
    const dir = join(root, 'names');
    mkdirSync(dir);
    const img = await makeImage(20, 20, 0, 0);
    const meta = writeMat({ synsets: { struct: [{ ILSVRC2012_ID: 1, WNID: 'n01440764', num_children: 0 }] } }, true);
    writeFileSync(join(dir, OFFICIAL.devkit), gzipSync(await tarOf([
      { name: 'd/data/meta.mat', data: meta },
      { name: 'd/data/ILSVRC2012_validation_ground_truth.txt', data: Buffer.from('1\n1\n1\n') },
    ])));
    writeFileSync(join(dir, OFFICIAL.val), await tarOf([
      { name: 'ILSVRC2012_val_00000001.JPEG', data: img },
      { name: 'x\nILSVRC2012_val_00000002.JPEG', data: img },
      { name: `${'d'.repeat(2000)}/ILSVRC2012_val_00000002.JPEG`, data: img },
      { name: 'val/ILSVRC2012_val_00000001.JPEG', data: img },
      { name: 'xILSVRC2012_val_00000003.JPEG', data: img },
    ]));
    const inner = await tarOf([
      { name: 'n01440764_1.JPEG', data: img },
      { name: 'n01440764_1.JPEG', data: img },
    ]);
    writeFileSync(join(dir, OFFICIAL.train), await tarOf([
      { name: 'n01440764.tar', data: inner },
      { name: 'again/n01440764.tar', data: inner },
    ]));
    const src = await openSource(dir);
    const val = await drain(src, 'val');
    expect(val.items.map((i) => i.name)).toEqual(['ILSVRC2012_val_00000001.JPEG']);
    expect(val.rejects.map((r) => [r.name.slice(0, 40), r.reason])).toEqual([
      ['x\\x0aILSVRC2012_val_00000002.JPEG', 'control characters in the name'],
      ['d'.repeat(40), 'name longer than 1024 characters'],
      ['val/ILSVRC2012_val_00000001.JPEG', 'a second entry for validation image 1'],
      ['xILSVRC2012_val_00000003.JPEG', 'no ground-truth label for this file name'],
    ]);
    const train = await drain(src, 'train');
    expect(train.items.map((i) => i.name)).toEqual(['n01440764/n01440764_1.JPEG']);
    expect(train.rejects).toEqual([
      { name: 'n01440764/n01440764_1.JPEG', reason: 'a second entry of this name' },
      { name: 'again/n01440764.tar', reason: 'a second tar of this class' },
    ]);
  });
});

// ---------- folder trees ----------

describe('class-folder trees with links and special files', () => {
  it('follows symlinks only inside the source folder and rejects the rest (they read any file)', async () => {
    const outside = join(root, 'outside');
    mkdirSync(join(outside, 'pear'), { recursive: true });
    writeFileSync(join(outside, 'secret.jpg'), await makeImage(12, 12, 9, 9));
    writeFileSync(join(outside, 'pear', 'p.jpg'), await makeImage(12, 12, 8, 8));
    const dir = join(root, 'links');
    for (const name of ['apple', 'zebra']) mkdirSync(join(dir, 'train', name), { recursive: true });
    writeFileSync(join(dir, 'train', 'apple', 'a.jpg'), await makeImage(12, 12, 0, 0));
    writeFileSync(join(dir, 'train', 'zebra', 'z.jpg'), await makeImage(12, 12, 1, 0));
    symlinkSync(join(outside, 'secret.jpg'), join(dir, 'train', 'apple', 'evil.jpg'));
    symlinkSync('../zebra/z.jpg', join(dir, 'train', 'apple', 'alias.jpg'));
    symlinkSync(join(dir, 'train', 'nowhere.jpg'), join(dir, 'train', 'apple', 'dangling.jpg'));
    symlinkSync(join(outside, 'pear'), join(dir, 'train', 'pear'));
    symlinkSync(join(dir, 'train', 'zebra'), join(dir, 'train', 'zebra2'));
    const src = await openSource(dir);
    expect(src.classes).toEqual(['apple', 'zebra', 'zebra2']);
    const { items, rejects } = await drain(src, 'train');
    expect(items.map((i) => i.name)).toEqual(['apple/a.jpg', 'apple/alias.jpg', 'zebra/z.jpg', 'zebra2/z.jpg']);
    expect(items[1].bytes.equals(items[2].bytes)).toBe(true);
    const out = 'symlink that leaves the source folder (or dangles)';
    // The class folders are listed first, then each one's files.
    expect(rejects).toEqual([
      { name: 'pear', reason: out },
      { name: 'apple/dangling.jpg', reason: out },
      { name: 'apple/evil.jpg', reason: out },
    ]);
    // A split folder that is itself a link out of the tree.
    const dir2 = join(root, 'links2');
    mkdirSync(dir2);
    symlinkSync(join(dir, 'train'), join(dir2, 'train'));
    expect(await dataError(() => openSource(dir2))).toBe(`${join(dir2, 'train')} leads outside ${dir2} (a symlink?): links are followed only inside the source folder`);
  });

  it('rejects a FIFO named like an image (the read blocked forever), a file above the size bound and a name with a newline', async () => {
    const dir = join(root, 'special');
    mkdirSync(join(dir, 'val', 'apple'), { recursive: true });
    writeFileSync(join(dir, 'val', 'apple', 'a.jpg'), await makeImage(12, 12, 0, 0));
    writeFileSync(join(dir, 'val', 'apple', 'b\nc.jpg'), await makeImage(12, 12, 0, 1));
    execFileSync('mkfifo', [join(dir, 'val', 'apple', 'fifo.jpg')]);
    // Sparse: no disk space, but a size that would be read whole.
    writeFileSync(join(dir, 'val', 'apple', 'huge.jpg'), '');
    truncateSync(join(dir, 'val', 'apple', 'huge.jpg'), MAX_IMAGE_BYTES + 1);
    const { items, rejects } = await drain(await openSource(dir), 'val');
    expect(items.map((i) => i.name)).toEqual(['apple/a.jpg']);
    expect(rejects).toEqual([
      { name: 'apple/b\\x0ac.jpg', reason: 'control characters in the name' },
      { name: 'apple/fifo.jpg', reason: 'not a regular file' },
      { name: 'apple/huge.jpg', reason: `${MAX_IMAGE_BYTES + 1} bytes, more than the 256 MiB allowed` },
    ]);
  });
});

// ---------- parquet and IDX ----------

describe('parquet row counts that lie', () => {
  it('refuses a row group whose num_rows disagrees with its columns (a row was dropped silently)', async () => {
    const dir = join(root, 'hf-lie');
    mkdirSync(dir);
    const imgs = await Promise.all([0, 1, 2, 3].map((k) => makeImage(10, 8, k, k)));
    const good = writeImageParquet(imgs.map((b, k) => ({ bytes: b, path: `x${k}`, label: k })), 2);
    // The footer's row groups end in num_rows (field 3, i64, zigzag 2 = 0x04) then STOP.
    const metaStart = good.length - 8 - good.readUInt32LE(good.length - 8);
    const sites: number[] = [];
    for (let i = metaStart; i < good.length - 10; i++) if (good[i] === 0x16 && good[i + 1] === 0x04 && good[i + 2] === 0x00) sites.push(i);
    expect(sites.length).toBe(2);
    const path = join(dir, 'train-00000-of-00001.parquet');
    writeFileSync(path, good);
    expect((await drain(await openSource(dir), 'train')).items.length).toBe(4);
    for (const [claims, zigzag] of [[1, 0x02], [3, 0x06]]) {
      const lie = Buffer.from(good);
      lie[sites[0] + 1] = zigzag;
      writeFileSync(path, lie);
      expect(await dataError(async () => drain(await openSource(dir), 'train'))).toBe(`${path}: row group 0 claims ${claims} rows but its image.bytes column holds 2 values`);
    }
  });
});

describe('IDX gzip bombs', () => {
  it('stops inflating at the bound and says so', async () => {
    const raw = Buffer.concat([Buffer.from([0, 0, 8, 1, 0, 0, 0x10, 0]), Buffer.alloc(4096)]);
    expect(parseIdx(gzipSync(raw), 'x-idx1-ubyte.gz', 8192).dims).toEqual([4096]);
    expect(await dataError(() => parseIdx(gzipSync(raw), 'x-idx1-ubyte.gz', 1000))).toBe('x-idx1-ubyte.gz: inflates to more than 1000 bytes; store a file this large uncompressed');
  });
});
