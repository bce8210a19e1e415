// Hostile and broken inputs for the source readers: MAT-files whose sizes, counts and
// nesting lie, IDX gzip bombs. Each must end in one line naming the file, never a hang or a
// raw error.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, parseIdx } from '../tools/data/idx.js';
import { MAT_MAX_DEPTH, MAT_MAX_INFLATED, readMat } from '../tools/data/matv5.js';
import { Source, SourceItem, SourceReject } from '../tools/data/sources.js';
import { writeMat } from './data-fixtures/matv5-writer.js';

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

// ---------- IDX ----------

describe('IDX gzip bombs', () => {
  it('stops inflating at the bound and says so', async () => {
    const raw = Buffer.concat([Buffer.from([0, 0, 8, 1, 0, 0, 0x10, 0]), Buffer.alloc(4096)]);
    expect(parseIdx(gzipSync(raw), 'x-idx1-ubyte.gz', 8192).dims).toEqual([4096]);
    expect(await dataError(() => parseIdx(gzipSync(raw), 'x-idx1-ubyte.gz', 1000))).toBe('x-idx1-ubyte.gz: inflates to more than 1000 bytes; store a file this large uncompressed');
  });
});
