// Streaming reads of tar archives (plain or gzipped), nested tars included, without
// extracting anything to disk.
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { DataError } from './idx.js';

export interface TarFile {
  /** The entry's path inside its archive. */
  name: string;
  size: number;
  /** The entry's bytes, as a stream; read it (or call skip) before asking for the next entry. */
  stream: Readable;
}

/**
 * A tar entry name we refuse to trust: absolute, or with a '..' segment. Nothing is written to
 * disk under these names, but a name is also a label source, so a hostile one is refused.
 */
export function unsafeEntryName(name: string): boolean {
  if (name.startsWith('/') || /^[A-Za-z]:[\\/]/.test(name) || name.startsWith('\\')) return true;
  return name.split(/[\\/]/).includes('..');
}

/** The regular files of a tar stream, in archive order. */
export async function* tarFiles(input: Readable, what: string): AsyncGenerator<TarFile> {
  const extract = tar.extract();
  input.on('error', (e) => extract.destroy(e));
  input.pipe(extract);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      yield { name: h.name, size: h.size ?? 0, stream: entry as unknown as Readable };
      // If the consumer did not read the body, drain it so the archive can go on.
      entry.resume();
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`${what}: corrupt or truncated tar archive (${(e as Error).message})`);
  }
}

export function openArchive(path: string): Readable {
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
  if (/\.(tar\.gz|tgz)$/.test(path)) {
    const gunzip = createGunzip();
    file.on('error', (e) => gunzip.destroy(e));
    return file.pipe(gunzip);
  }
  return file;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
