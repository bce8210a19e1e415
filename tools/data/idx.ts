// IDX files (MNIST, Fashion-MNIST), plain or gzipped, and the in-memory image data set
// they make.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export class DataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataError';
  }
}

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** A gzipped IDX file may inflate to this much (MNIST's largest is 47 MB): more is a gzip bomb or a mistake. */
export const IDX_MAX_INFLATED = 1 << 30;

/** Parses an IDX file of unsigned bytes (type 0x08), gzipped or not. */
export function parseIdx(bytes: Uint8Array, what: string, maxInflated = IDX_MAX_INFLATED): IdxArray {
  let buf = bytes;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf, { maxOutputLength: maxInflated });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new DataError(`${what}: inflates to more than ${maxInflated} bytes; store a file this large uncompressed`);
      throw new DataError(`${what}: corrupt or truncated gzip data (${(e as Error).message})`);
    }
  }
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== 0) throw new DataError(`${what}: not an IDX file (bad magic)`);
  if (buf[2] !== 0x08) throw new DataError(`${what}: IDX element type 0x${buf[2].toString(16)} is not unsigned byte`);
  const rank = buf[3];
  const header = 4 + 4 * rank;
  if (buf.length < header) throw new DataError(`${what}: truncated IDX header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (buf.length - header < count) {
    throw new DataError(`${what}: truncated: ${buf.length - header} bytes of data for dims [${dims.join(',')}] (${count} expected)`);
  }
  return { dims, data: buf.subarray(header, header + count) };
}

export function readIdx(path: string): IdxArray {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DataError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseIdx(bytes, path);
}
