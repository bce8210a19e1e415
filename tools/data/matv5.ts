// A minimal reader for MATLAB level-5 MAT-files (the format of the ImageNet devkit's
// data/meta.mat): numeric, char, struct and cell arrays, compressed or not. Enough to read
// the `synsets` struct; sparse, object and function-handle arrays are refused by name.
// Every size and count in the file is checked against the bytes that hold it before use, so a
// hostile file ends in a one-line DataError, not a hang, a RangeError or an exhausted heap.
import { inflateSync } from 'node:zlib';
import { DataError } from './idx.js';

export type MatValue =
  | { kind: 'numeric'; dims: number[]; data: number[] }
  | { kind: 'char'; dims: number[]; text: string }
  | { kind: 'struct'; dims: number[]; fields: string[]; elements: Record<string, MatValue>[] }
  | { kind: 'cell'; dims: number[]; cells: MatValue[] };

const MI = { INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9, INT64: 12, UINT64: 13, MATRIX: 14, COMPRESSED: 15, UTF8: 16, UTF16: 17, UTF32: 18 };
const MX = { CELL: 1, STRUCT: 2, OBJECT: 3, CHAR: 4, SPARSE: 5, FIRST_NUMERIC: 6, LAST_NUMERIC: 15 };
/** Inflated bytes allowed over the whole file: the devkit's meta.mat holds a few MB. */
export const MAT_MAX_INFLATED = 64 << 20;
/** Cells and structs nested deeper than this are refused (the devkit nests two levels). */
export const MAT_MAX_DEPTH = 32;
/** A struct without fields stores nothing per element, so its element count has no bytes to check against. */
const MAX_FIELDLESS_ELEMENTS = 1 << 16;

/** A name or text from the file, fit for a one-line message. */
function shown(s: string): string {
  const t = s.length > 64 ? `${s.slice(0, 64)}...` : s;
  return t.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** String.fromCodePoint over any number of code points (a spread of 300k arguments overflows the stack). */
function fromCodes(codes: number[], start = 0, step = 1, count = codes.length): string {
  const parts: string[] = [];
  for (let c = 0; c < count; c += 4096) {
    const chunk: number[] = [];
    for (let k = c; k < Math.min(count, c + 4096); k++) chunk.push(codes[start + k * step]);
    parts.push(String.fromCodePoint(...chunk));
  }
  return parts.join('');
}

interface Element {
  type: number;
  data: Uint8Array;
  /** Offset of the next element. */
  next: number;
}

class Reader {
  constructor(
    readonly bytes: Uint8Array,
    readonly little: boolean,
    readonly what: string,
  ) {}

  fail(msg: string): never {
    throw new DataError(`${this.what}: ${msg}`);
  }

  view(b: Uint8Array): DataView {
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  element(buf: Uint8Array, pos: number): Element {
    if (pos + 8 > buf.length) this.fail(`truncated element tag at byte ${pos}`);
    const v = this.view(buf);
    const first = v.getUint32(pos, this.little);
    // Small data element: size in the upper 16 bits, type in the lower, data packed in the tag.
    if (first >>> 16 !== 0) {
      const n = first >>> 16;
      if (n > 4) this.fail(`small data element of ${n} bytes at byte ${pos}`);
      return { type: first & 0xffff, data: buf.subarray(pos + 4, pos + 4 + n), next: pos + 8 };
    }
    const n = v.getUint32(pos + 4, this.little);
    if (pos + 8 + n > buf.length) this.fail(`element at byte ${pos} claims ${n} bytes, past the end of the data (truncated file?)`);
    const padded = first === MI.COMPRESSED ? n : (n + 7) & ~7;
    return { type: first, data: buf.subarray(pos + 8, pos + 8 + n), next: Math.min(buf.length, pos + 8 + padded) };
  }

  numbers(el: Element): number[] {
    const v = this.view(el.data);
    const sizes: Record<number, number> = { [MI.INT8]: 1, [MI.UINT8]: 1, [MI.INT16]: 2, [MI.UINT16]: 2, [MI.INT32]: 4, [MI.UINT32]: 4, [MI.SINGLE]: 4, [MI.DOUBLE]: 8, [MI.INT64]: 8, [MI.UINT64]: 8 };
    const size = sizes[el.type];
    if (!size) this.fail(`numeric data of element type ${el.type}`);
    const out: number[] = [];
    for (let o = 0; o + size <= el.data.length; o += size) {
      switch (el.type) {
        case MI.INT8: out.push(v.getInt8(o)); break;
        case MI.UINT8: out.push(v.getUint8(o)); break;
        case MI.INT16: out.push(v.getInt16(o, this.little)); break;
        case MI.UINT16: out.push(v.getUint16(o, this.little)); break;
        case MI.INT32: out.push(v.getInt32(o, this.little)); break;
        case MI.UINT32: out.push(v.getUint32(o, this.little)); break;
        case MI.SINGLE: out.push(v.getFloat32(o, this.little)); break;
        case MI.DOUBLE: out.push(v.getFloat64(o, this.little)); break;
        case MI.INT64: out.push(Number(v.getBigInt64(o, this.little))); break;
        case MI.UINT64: out.push(Number(v.getBigUint64(o, this.little))); break;
      }
    }
    return out;
  }

  text(el: Element, dims: number[], count: number, name: string): string {
    let codes: number[];
    if (el.type === MI.UTF8) codes = [...new TextDecoder().decode(el.data)].map((c) => c.codePointAt(0)!);
    else codes = this.numbers(el.type === MI.UTF16 ? { ...el, type: MI.UINT16 } : el.type === MI.UTF32 ? { ...el, type: MI.UINT32 } : el);
    for (const c of codes) if (!(Number.isInteger(c) && c >= 0 && c <= 0x10ffff)) this.fail(`char array '${shown(name)}' holds ${c}, not a Unicode code point`);
    // Char arrays are column-major: row r is codes[r], codes[r + rows], ...
    const rows = dims[0] ?? 1;
    if (rows <= 1) return fromCodes(codes);
    if (codes.length !== count) this.fail(`char array '${shown(name)}' of dims [${dims.join(',')}] holds ${codes.length} characters`);
    const cols = codes.length / rows;
    const lines: string[] = [];
    for (let r = 0; r < rows; r++) lines.push(fromCodes(codes, r, rows, cols));
    return lines.join('\n');
  }

  /** The contents of an miMATRIX element, `depth` cells or structs down. */
  matrix(body: Uint8Array, depth = 0): { name: string; value: MatValue } {
    if (body.length === 0) return { name: '', value: { kind: 'numeric', dims: [0, 0], data: [] } };
    if (depth > MAT_MAX_DEPTH) this.fail(`cells or structs nested deeper than ${MAT_MAX_DEPTH} levels`);
    const flagsEl = this.element(body, 0);
    const flags = this.numbers(flagsEl);
    const cls = flags[0] & 0xff;
    const complex = (flags[0] & 0x800) !== 0;
    const dimsEl = this.element(body, flagsEl.next);
    const dims = this.numbers(dimsEl);
    const nameEl = this.element(body, dimsEl.next);
    const name = new TextDecoder().decode(nameEl.data);
    for (const d of dims) if (!(Number.isInteger(d) && d >= 0)) this.fail(`variable '${shown(name)}' has dims [${dims.join(',')}]`);
    // Exact while below 2^53; anything near that fails the byte checks below anyway.
    const count = dims.reduce((a, b) => a * b, 1);
    let pos = nameEl.next;
    // Every cell and struct field is an element of at least a tag's 8 bytes.
    const holds = (n: number) => n <= (body.length - pos) / 8;
    if (cls === MX.CHAR) {
      const el = this.element(body, pos);
      return { name, value: { kind: 'char', dims, text: this.text(el, dims, count, name) } };
    }
    if (cls >= MX.FIRST_NUMERIC && cls <= MX.LAST_NUMERIC) {
      if (complex) this.fail(`variable '${shown(name)}' is complex; not supported`);
      const data = count === 0 ? [] : this.numbers(this.element(body, pos));
      if (data.length < count) this.fail(`numeric array '${shown(name)}' of dims [${dims.join(',')}] holds ${data.length} values`);
      return { name, value: { kind: 'numeric', dims, data } };
    }
    if (cls === MX.CELL) {
      if (!holds(count)) this.fail(`cell '${shown(name)}' of dims [${dims.join(',')}] is larger than the ${body.length - pos} bytes that hold it`);
      const cells: MatValue[] = [];
      for (let i = 0; i < count; i++) {
        const el = this.element(body, pos);
        if (el.type !== MI.MATRIX) this.fail(`cell '${shown(name)}' element ${i} has element type ${el.type}`);
        cells.push(this.matrix(el.data, depth + 1).value);
        pos = el.next;
      }
      return { name, value: { kind: 'cell', dims, cells } };
    }
    if (cls === MX.STRUCT) {
      const lenEl = this.element(body, pos);
      const fieldLen = this.numbers(lenEl)[0];
      const namesEl = this.element(body, lenEl.next);
      // A length of 0 would never step through the names.
      if (!(Number.isInteger(fieldLen) && fieldLen >= 1)) this.fail(`struct '${shown(name)}' has field-name length ${fieldLen}`);
      if (namesEl.data.length % fieldLen !== 0) this.fail(`struct '${shown(name)}': ${namesEl.data.length} bytes of field names are not a multiple of the name length ${fieldLen}`);
      const fields: string[] = [];
      for (let o = 0; o + fieldLen <= namesEl.data.length; o += fieldLen) {
        const raw = namesEl.data.subarray(o, o + fieldLen);
        const end = raw.indexOf(0);
        fields.push(new TextDecoder().decode(end < 0 ? raw : raw.subarray(0, end)));
      }
      pos = namesEl.next;
      if (fields.length === 0 ? count > MAX_FIELDLESS_ELEMENTS : !holds(count * fields.length)) {
        this.fail(`struct '${shown(name)}' of dims [${dims.join(',')}] with ${fields.length} field(s) is larger than the ${body.length - pos} bytes that hold it`);
      }
      const elements: Record<string, MatValue>[] = [];
      for (let i = 0; i < count; i++) {
        // No prototype: a field named __proto__ is a field like any other.
        const rec: Record<string, MatValue> = Object.create(null);
        for (const f of fields) {
          const el = this.element(body, pos);
          if (el.type !== MI.MATRIX) this.fail(`struct '${shown(name)}' field ${shown(f)} has element type ${el.type}`);
          rec[f] = this.matrix(el.data, depth + 1).value;
          pos = el.next;
        }
        elements.push(rec);
      }
      return { name, value: { kind: 'struct', dims, fields, elements } };
    }
    return this.fail(`variable '${shown(name)}' has array class ${cls} (sparse/object arrays are not supported)`);
  }
}

/** The named variables of a level-5 MAT-file. */
export function readMat(bytes: Uint8Array, what = 'MAT-file'): Record<string, MatValue> {
  if (bytes.length < 128) throw new DataError(`${what}: too short for a MAT-file header`);
  const endian = String.fromCharCode(bytes[126], bytes[127]);
  if (endian !== 'IM' && endian !== 'MI') {
    const head = new TextDecoder().decode(bytes.subarray(0, 8));
    throw new DataError(`${what}: not a level-5 MAT-file${head.startsWith('\x89HDF') ? ' (it is HDF5, a v7.3 MAT-file: not supported)' : ''}`);
  }
  const r = new Reader(bytes, endian === 'IM', what);
  const out: Record<string, MatValue> = Object.create(null);
  let pos = 128;
  let inflatedTotal = 0;
  while (pos + 8 <= bytes.length) {
    const el = r.element(bytes, pos);
    let matrixEl = el;
    if (el.type === MI.COMPRESSED) {
      let inflated: Uint8Array;
      const room = MAT_MAX_INFLATED - inflatedTotal;
      try {
        inflated = inflateSync(el.data, { maxOutputLength: Math.max(1, room) });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
          throw new DataError(`${what}: compressed element at byte ${pos} inflates past the ${MAT_MAX_INFLATED >> 20} MiB allowed for a whole MAT-file`);
        }
        throw new DataError(`${what}: corrupt compressed element at byte ${pos} (${(e as Error).message})`);
      }
      inflatedTotal += inflated.length;
      matrixEl = r.element(inflated, 0);
    }
    if (matrixEl.type === MI.MATRIX) {
      const { name, value } = r.matrix(matrixEl.data);
      out[name] = value;
    }
    pos = el.next;
  }
  return out;
}

/** A struct field as a number (the first element of a numeric array). */
export function matNumber(v: MatValue | undefined, what: string): number {
  if (!v || v.kind !== 'numeric' || v.data.length === 0) throw new DataError(`${what}: expected a number`);
  return v.data[0];
}

export function matString(v: MatValue | undefined, what: string): string {
  if (!v || v.kind !== 'char') throw new DataError(`${what}: expected a string`);
  return v.text;
}
