// Streaming reads of tar archives (plain or gzipped), nested tars included, without
// extracting anything to disk. Every way an archive can break (cut short, corrupt gzip,
// a bad header) ends in one DataError naming the archive and, where known, the entry.
import { createReadStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { DataError } from './idx.js';

export interface TarFile {
  /** The entry's path inside its archive. */
  name: string;
  size: number;
  /**
   * The entry's bytes, as a stream; read it (or call read) before asking for the next entry.
   * Its errors are raw: read it only as the input of another tarFiles, which names them.
   */
  stream: Readable;
  /** All of the entry's bytes; a DataError naming the archive and the entry if they cannot be read. */
  read(): Promise<Buffer>;
}

/** A name from an archive, fit for a one-line message or report: control characters escaped, cut at 200. */
export function shownName(name: string): string {
  const t = name.length > 200 ? `${name.slice(0, 200)}...` : name;
  return t.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Longer entry names are refused (tar-stream accepts pax names of megabytes). */
export const MAX_ENTRY_NAME = 1024;

/**
 * Why a tar entry name is not to be trusted, or undefined: absolute, with a '..' segment, with
 * control characters, or very long. Nothing is written to disk under these names, but a name is
 * also a label source and goes into reports, so a hostile one is refused.
 */
export function entryNameProblem(name: string): string | undefined {
  if (name.startsWith('/') || /^[A-Za-z]:[\\/]/.test(name) || name.startsWith('\\')) return 'unsafe path (absolute or ..)';
  if (name.split(/[\\/]/).includes('..')) return 'unsafe path (absolute or ..)';
  if (/[\x00-\x1f\x7f]/.test(name)) return 'control characters in the name';
  if (name.length > MAX_ENTRY_NAME) return `name longer than ${MAX_ENTRY_NAME} characters`;
  return undefined;
}

export function unsafeEntryName(name: string): boolean {
  return entryNameProblem(name) !== undefined;
}

/** The one-line message for an archive that broke, inside `entry` if known. */
function archiveError(what: string, e: unknown, entry: string | undefined): DataError {
  if (e instanceof DataError) return e;
  const err = e as NodeJS.ErrnoException;
  const inside = entry === undefined ? '' : `, inside entry ${shownName(entry)}`;
  if (err.code?.startsWith('Z_')) return new DataError(`${what}: corrupt or truncated gzip data (${err.message})${inside}`);
  if (err.syscall) return new DataError(`cannot read ${what}: ${err.code ?? err.message}`);
  if (err.message === 'Unexpected end of data') return new DataError(`${what}: truncated tar archive: it ends inside ${entry === undefined ? 'a header or padding block' : `entry ${shownName(entry)}`}`);
  return new DataError(`${what}: corrupt or truncated tar archive (${err.message})${inside}`);
}

/**
 * The regular files of a tar stream, in archive order. The archive must end with its
 * end-of-archive marker (a zero block after the last entry): an archive cut exactly at an entry
 * boundary is otherwise a valid-looking shorter one.
 */
export async function* tarFiles(input: Readable, what: string): AsyncGenerator<TarFile> {
  const extract = tar.extract();
  // The first error wins: once the input fails, the extractor and the entry see only
  // "destroyed" errors, which say nothing.
  let cause: unknown;
  input.on('error', (e) => {
    cause ??= e;
    extract.destroy(e);
  });
  extract.on('error', (e) => {
    cause ??= e;
  });
  input.pipe(extract);
  let total = 0;
  input.on('data', (c: Uint8Array) => {
    total += c.length;
  });
  /** The entry whose body is being read, until it has all arrived. */
  let current: string | undefined;
  // The end of the last entry's data, padded to the 512-byte block.
  let lastEnd = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const start = (h as { byteOffset?: number }).byteOffset ?? 0;
      lastEnd = start + Math.ceil((h.size ?? 0) / 512) * 512;
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      const name = h.name;
      current = name;
      entry.on('end', () => {
        if (current === name) current = undefined;
      });
      const stream = entry as unknown as Readable;
      yield {
        name,
        size: h.size ?? 0,
        stream,
        async read() {
          try {
            return await readAll(stream);
          } catch (e) {
            // Let the extractor's or the input's own error arrive: it says what happened.
            await new Promise((r) => setImmediate(r));
            throw archiveError(what, cause ?? e, name);
          }
        },
      };
      // If the consumer did not read the body, drain it so the archive can go on.
      entry.resume();
    }
  } catch (e) {
    throw archiveError(what, cause ?? e, current);
  }
  if (total < lastEnd + 512) {
    throw new DataError(total === 0 ? `${what}: empty file, not a tar archive` : `${what}: truncated tar archive: no end-of-archive marker after the last entry (cut at an entry boundary?)`);
  }
}

export interface ArchiveOptions {
  /** Refuse a gzipped archive that inflates to more than this many bytes (a gzip bomb). */
  maxBytes?: number;
}

export function openArchive(path: string, opts: ArchiveOptions = {}): Readable {
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (/\.(tar\.gz|tgz)$/.test(path)) {
    const gunzip = createGunzip();
    file.on('error', (e) => gunzip.destroy(e));
    const max = opts.maxBytes;
    if (max === undefined) return file.pipe(gunzip);
    let n = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        n += chunk.length;
        if (n > max) cb(new DataError(`${path}: inflates to more than ${max} bytes; not the archive expected here`));
        else cb(null, chunk);
      },
    });
    gunzip.on('error', (e) => limit.destroy(e));
    return file.pipe(gunzip).pipe(limit);
  }
  return file;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
