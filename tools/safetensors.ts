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
  const hlenBig = buf.readBigUInt64LE(0);
  // Compared as a bigint: a huge length read from the file must not wrap or round first.
  if (hlenBig === 0n || hlenBig > BigInt(buf.length - 8)) {
    throw new CheckpointError(`${what}: header length ${hlenBig} does not fit in ${buf.length} bytes (truncated or not safetensors)`);
  }
  const hlen = Number(hlenBig);
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
  } catch {
    throw new CheckpointError(`${what}: header is not valid JSON (corrupt file)`);
  }
  if (!isObject(header)) throw new CheckpointError(`${what}: header is not a JSON object (corrupt file)`);
  const dataStart = 8 + hlen;
  const dataLength = buf.length - dataStart;
  const entries: [string, NamedArray][] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bad = (why: string) => new CheckpointError(`${what}: tensor ${name} ${why} (corrupt file)`);
    if (!isObject(entry)) throw bad('is not a {dtype, shape, data_offsets} object');
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') throw bad('has no dtype');
    if (dtype !== 'F32') throw new CheckpointError(`${what}: tensor ${name} has dtype ${dtype}; only F32 is supported`);
    if (!Array.isArray(shape) || !shape.every(isCount)) throw bad(`has no shape of non-negative integers (${JSON.stringify(shape)})`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw bad(`has no data_offsets [begin, end] (${JSON.stringify(offsets)})`);
    }
    const [b, end] = offsets as [number, number];
    if (end > dataLength) throw new CheckpointError(`${what}: tensor ${name} data ends at byte ${end} of a ${dataLength}-byte data section (truncated file)`);
    const n = (shape as number[]).reduce((x, y) => x * y, 1);
    if (end - b !== 4 * n) throw bad(`holds ${end - b} bytes for shape [${shape.join(',')}] of F32 (${4 * n} bytes)`);
    const copy = new Uint8Array(end - b);
    copy.set(buf.subarray(dataStart + b, dataStart + end));
    entries.push([name, { shape: shape as number[], data: new Float32Array(copy.buffer) }]);
  }
  const metadata = header.__metadata__ ?? {};
  if (!isObject(metadata) || !Object.values(metadata).every((v) => typeof v === 'string')) {
    throw new CheckpointError(`${what}: __metadata__ is not an object of strings (corrupt file)`);
  }
  // fromEntries defines own properties, so a tensor named __proto__ stays a tensor.
  return { tensors: Object.fromEntries(entries), metadata: metadata as Record<string, string> };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** Reads and decodes a safetensors file; every error names the path. */
export function readSafetensors(path: string) {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new CheckpointError(`cannot read checkpoint ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return decodeSafetensors(buf, path);
}
