// safetensors files (the format PyTorch, numpy and JAX tools read): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the
// raw little-endian data. Written to a temporary name, synced and renamed, so a crash leaves
// either the old file or the new one.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../engine/index.js';

export { writeFileAtomic };

export interface NamedArray {
  shape: number[];
  data: Float32Array;
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export function encodeSafetensors(tensors: Record<string, NamedArray>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name];
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new CheckpointError(`${name}: ${t.data.length} values for shape [${t.shape.join(',')}]`);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors[name].data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, pos);
    pos += d.byteLength;
  }
  return out;
}

export function decodeSafetensors(buf: Buffer, what: string): { tensors: Record<string, NamedArray>; metadata: Record<string, string> } {
  if (buf.length < 8) throw new CheckpointError(`${what}: truncated (${buf.length} bytes), not a safetensors file`);
  const hlen = Number(buf.readBigUInt64LE(0));
  if (hlen <= 0 || 8 + hlen > buf.length) throw new CheckpointError(`${what}: header length ${hlen} does not fit in ${buf.length} bytes (truncated or not safetensors)`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
  } catch {
    throw new CheckpointError(`${what}: header is not valid JSON (corrupt file)`);
  }
  const dataStart = 8 + hlen;
  const tensors: Record<string, NamedArray> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (e.dtype !== 'F32') throw new CheckpointError(`${what}: tensor ${name} has dtype ${e.dtype}; only F32 is supported`);
    const [b, end] = e.data_offsets;
    const n = e.shape.reduce((x, y) => x * y, 1);
    if (end - b !== 4 * n || dataStart + end > buf.length) throw new CheckpointError(`${what}: tensor ${name} data is truncated or inconsistent with its shape`);
    const copy = new Uint8Array(end - b);
    copy.set(buf.subarray(dataStart + b, dataStart + end));
    tensors[name] = { shape: e.shape, data: new Float32Array(copy.buffer) };
  }
  return { tensors, metadata: (header.__metadata__ as Record<string, string>) ?? {} };
}

/** Writes atomically: temporary file, fsync, rename. */
export function readSafetensors(path: string) {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new CheckpointError(`cannot read checkpoint ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return decodeSafetensors(buf, path);
}
