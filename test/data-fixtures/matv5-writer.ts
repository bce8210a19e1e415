// Writes small level-5 MAT-files (little-endian) for the devkit fixtures: doubles, char
// arrays (UTF-16 code units, as MATLAB stores them) and struct arrays, each variable
// optionally zlib-compressed as MATLAB v7 saves them.
import { deflateSync } from 'node:zlib';

export type MatIn = number | string | { struct: Record<string, MatIn>[] };

const miINT8 = 1;
const miUINT16 = 4;
const miINT32 = 5;
const miUINT32 = 6;
const miDOUBLE = 9;
const miMATRIX = 14;
const miCOMPRESSED = 15;

function element(type: number, data: Buffer): Buffer {
  if (data.length <= 4 && type !== miMATRIX) {
    const out = Buffer.alloc(8);
    out.writeUInt32LE((data.length << 16) | type, 0);
    data.copy(out, 4);
    return out;
  }
  const padded = (data.length + 7) & ~7;
  const out = Buffer.alloc(8 + padded);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(data.length, 4);
  data.copy(out, 8);
  return out;
}

function int32s(v: number[]): Buffer {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeInt32LE(x, 4 * i));
  return b;
}

function matrix(name: string, v: MatIn): Buffer {
  const flags = (cls: number) => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(cls, 0);
    return element(miUINT32, b);
  };
  const nameEl = element(miINT8, Buffer.from(name, 'ascii'));
  let parts: Buffer[];
  if (typeof v === 'number') {
    const d = Buffer.alloc(8);
    d.writeDoubleLE(v, 0);
    parts = [flags(6), element(miINT32, int32s([1, 1])), nameEl, element(miDOUBLE, d)];
  } else if (typeof v === 'string') {
    const d = Buffer.alloc(2 * v.length);
    for (let i = 0; i < v.length; i++) d.writeUInt16LE(v.charCodeAt(i), 2 * i);
    parts = [flags(4), element(miINT32, int32s([1, v.length])), nameEl, element(miUINT16, d)];
  } else {
    const fields = Object.keys(v.struct[0] ?? {});
    const len = Math.max(...fields.map((f) => f.length)) + 1;
    const names = Buffer.alloc(len * fields.length);
    fields.forEach((f, i) => names.write(f, i * len, 'ascii'));
    parts = [flags(2), element(miINT32, int32s([v.struct.length, 1])), nameEl, element(miINT32, int32s([len])), element(miINT8, names)];
    for (const rec of v.struct) for (const f of fields) parts.push(element(miMATRIX, matrix('', rec[f])));
  }
  return Buffer.concat(parts);
}

export function writeMat(vars: Record<string, MatIn>, compress: boolean): Buffer {
  const header = Buffer.alloc(128, 0x20);
  header.write('MATLAB 5.0 MAT-file, written by the nudge test fixtures', 0, 'ascii');
  header.writeUInt16LE(0x0100, 124);
  header.write('IM', 126, 'ascii');
  const parts: Buffer[] = [header];
  for (const [name, v] of Object.entries(vars)) {
    const m = element(miMATRIX, matrix(name, v));
    if (!compress) {
      parts.push(m);
      continue;
    }
    const z = deflateSync(m);
    const tag = Buffer.alloc(8);
    tag.writeUInt32LE(miCOMPRESSED, 0);
    tag.writeUInt32LE(z.length, 4);
    parts.push(tag, z);
  }
  return Buffer.concat(parts);
}
