// `nudge data fetch`: resumable downloads. Bytes go to NAME.part, continued with HTTP Range
// requests after a dropped connection (with retries and exponential backoff), checked
// (size, md5/sha256 where known) and only then renamed to NAME. Tokens (HF_TOKEN) go in a
// header only over https to the scheme, host and port they were given for (see tokenMayGo),
// never to a redirect target or listing page elsewhere, never to a log.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { UserError } from '../errors.js';

/** Published checksums of the official ILSVRC2012 archives (as torchvision checks them). */
export const KNOWN_MD5: Record<string, string> = {
  'ILSVRC2012_img_train.tar': '1d675b47d978889d74fa0da5fadfb00e',
  'ILSVRC2012_img_val.tar': '29b22e2961454d5413ddabcf34fc5622',
  'ILSVRC2012_devkit_t12.tar.gz': 'fa75699e90414af021442c21a62c3abf',
};

/** A download problem the user must act on (printed without a stack trace). */
export class FetchError extends UserError {}

export interface DownloadOptions {
  url: string;
  /** Final path; bytes go to `${out}.part` first. */
  out: string;
  md5?: string;
  sha256?: string;
  size?: number;
  /** Bearer token for the URL's own host. */
  token?: string;
  retries?: number;
  /** First backoff in ms (doubles per failure, capped at 60 s). */
  backoffMs?: number;
  /** A connection silent this long is dropped and resumed. */
  idleTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  md5: string;
  sha256: string;
  /** Connections that failed and were resumed or restarted. */
  retries: number;
  /** True when the file was already there (and verified, if `verified`). */
  cached: boolean;
  /** False when no size or checksum was known to check the bytes against. */
  verified: boolean;
}

/** A URL fit for a log line: no query string (signed URLs carry credentials there). */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?...' : ''}`;
  } catch {
    return '<bad url>';
  }
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u ? 1 : 0)} ${units[u]}`;
}

async function hashFile(path: string): Promise<{ md5: string; sha256: string }> {
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) {
    md5.update(chunk as Buffer);
    sha.update(chunk as Buffer);
  }
  return { md5: md5.digest('hex'), sha256: sha.digest('hex') };
}

/** A failure worth retrying (network, 5xx, short body) as opposed to one that needs the user. */
class Transient extends Error {}


/**
 * Whether a request to `target` may carry the token given with the URL `origin`: only to the
 * same scheme, host and port, and only over https (a loopback mirror too: plain http is never trusted).
 */
export function tokenMayGo(origin: string, target: string): boolean {
  const [o, t] = [new URL(origin), new URL(target)];
  return o.origin === t.origin && t.protocol === 'https:';
}

/** Why the token was not sent to `target` (for 401/403 messages), or undefined when it was (or there is none). */
function tokenWithheld(origin: string, target: string, token: string | undefined): string | undefined {
  if (!token || tokenMayGo(origin, target)) return undefined;
  return new URL(origin).origin === new URL(target).origin ? 'HF_TOKEN is sent only over https' : `HF_TOKEN is sent only to ${new URL(origin).origin}`;
}

/** The URL a redirect or a next-page link names, resolved against `from`; a step from https down to plain http is refused. */
export function nextUrl(from: string, location: string): string {
  let to: URL;
  try {
    to = new URL(location, from);
  } catch {
    throw new FetchError(`${redact(from)}: points to an invalid URL`);
  }
  if (new URL(from).protocol === 'https:' && to.protocol === 'http:') throw new FetchError(`${redact(from)}: refusing to follow https down to plain http (${redact(to.toString())})`);
  return to.toString();
}

/** The file name a --url is saved under: its last path segment, decoded; one that could leave --out or is not a file name is refused. */
export function fileNameFromUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`not a URL: ${redact(url)}`);
  }
  const raw = u.pathname.slice(u.pathname.lastIndexOf('/') + 1);
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    throw new UserError(`cannot name a file after ${redact(url)}: its last path segment is not valid percent-encoding`);
  }
  if (!name || name === '.' || name === '..') throw new UserError(`cannot name a file after ${redact(url)}: its path does not end in a file name`);
  if (!safeSegment(name)) throw new UserError(`cannot name a file after ${redact(url)}: the decoded name ${JSON.stringify(name)} holds a path separator or control character, or is too long`);
  return name;
}

/** One path segment fit for a file name: no separator, NUL or other control character, not '.'/'..', at most 255 bytes. */
function safeSegment(s: string): boolean {
  return s !== '' && s !== '.' && s !== '..' && !/[\/\\\x00-\x1f\x7f]/.test(s) && Buffer.byteLength(s) <= 255;
}

/** `Content-Range: bytes START-END/TOTAL` (TOTAL may be *), or undefined when absent or inconsistent. */
function parseContentRange(header: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec((header ?? '').trim());
  if (!m) return undefined;
  const [start, end] = [Number(m[1]), Number(m[2])];
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(end) || end < start || (total !== undefined && (!Number.isSafeInteger(total) || end >= total))) return undefined;
  return { start, end, total };
}

/** A byte count from a header: a plain non-negative safe integer, else undefined. */
function parseLength(header: string | undefined): number | undefined {
  if (header === undefined || !/^\d+$/.test(header.trim())) return undefined;
  const n = Number(header.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  url: string;
}

function request(url: string, headers: Record<string, string>, idleTimeoutMs: number): Promise<Response> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
    if (!mod) return reject(new FetchError(`unsupported URL scheme in ${redact(url)}`));
    const req = mod.get(u, { headers }, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url }));
    req.setTimeout(idleTimeoutMs, () => req.destroy(new Transient(`no data for ${idleTimeoutMs / 1000} s`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      // Malformed HTTP (a bad Content-Length, garbage headers) will be malformed again: not worth retrying.
      if (e.code?.startsWith('HPE_')) reject(new FetchError(`${redact(url)}: the server's answer is not valid HTTP (${e.message})`));
      else reject(e instanceof FetchError ? e : new Transient(e.message));
    });
  });
}

/** GET with redirects; the token goes only where tokenMayGo allows (`origin`: the URL it was given with). */
async function get(opts: DownloadOptions, range: number, origin = opts.url): Promise<Response & { linkedSha256?: string; withheld?: string }> {
  let url = opts.url;
  let linkedSha256: string | undefined;
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'nudge-data-fetch', 'accept-encoding': 'identity' };
    if (range > 0) headers.range = `bytes=${range}-`;
    if (opts.token && tokenMayGo(origin, url)) headers.authorization = `Bearer ${opts.token}`;
    const res = await request(url, headers, opts.idleTimeoutMs ?? 60_000);
    // The Hugging Face hub names an LFS file's sha256 before redirecting to its storage.
    const linked = String(res.headers['x-linked-etag'] ?? '').replace(/"/g, '');
    if (/^[0-9a-f]{64}$/.test(linked)) linkedSha256 = linked;
    if (res.status >= 300 && res.status < 400 && res.headers.location) {
      res.body.resume();
      url = nextUrl(url, res.headers.location);
      continue;
    }
    return { ...res, linkedSha256, withheld: tokenWithheld(origin, url, opts.token) };
  }
  throw new FetchError(`${redact(opts.url)}: too many redirects`);
}

/** The message for a 401/403: token missing, withheld from this URL, or refused. */
function deniedMessage(where: string, status: number, token: string | undefined, withheld: string | undefined): string {
  if (withheld) return `${where}: HTTP ${status}: access denied; the token was not sent here (${withheld})`;
  return token
    ? `${where}: HTTP ${status}: the server refused the token (for a gated Hugging Face data set, accept its terms on the data set's page with the account the token belongs to)`
    : `${where}: HTTP ${status}: access denied; this download is gated or needs a login. For Hugging Face, create a read token and set HF_TOKEN in the environment`;
}

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const log = opts.log ?? (() => {});
  const name = basename(opts.out);
  const part = `${opts.out}.part`;
  const md5Want = (opts.md5 ?? KNOWN_MD5[name])?.toLowerCase();
  let shaWant = opts.sha256?.toLowerCase();
  const verify = async (path: string, linkedSha?: string) => {
    const h = await hashFile(path);
    const bytes = statSync(path).size;
    shaWant ??= linkedSha;
    const problems: string[] = [];
    if (opts.size !== undefined && bytes !== opts.size) problems.push(`size ${bytes}, expected ${opts.size}`);
    if (md5Want && h.md5 !== md5Want) problems.push(`md5 ${h.md5}, expected ${md5Want}`);
    if (shaWant && h.sha256 !== shaWant) problems.push(`sha256 ${h.sha256}, expected ${shaWant}`);
    const checks = [...(opts.size !== undefined ? ['size'] : []), ...(md5Want ? ['md5'] : []), ...(shaWant ? ['sha256'] : [])];
    return { ...h, bytes, problems, checks };
  };
  if (existsSync(opts.out)) {
    const v = await verify(opts.out);
    if (v.problems.length === 0) {
      log(`${name}: already here, ${v.checks.length ? `verified (${v.checks.join(', ')})` : 'not verified (no size or checksum known)'}, ${human(v.bytes)}`);
      return { path: opts.out, bytes: v.bytes, md5: v.md5, sha256: v.sha256, retries: 0, cached: true, verified: v.checks.length > 0 };
    }
    throw new FetchError(`${opts.out} exists but does not verify (${v.problems.join('; ')}); move it away and fetch again`);
  }
  const withheld = tokenWithheld(opts.url, opts.url, opts.token);
  if (withheld) log(`${name}: not sending HF_TOKEN to ${redact(opts.url)} (${withheld})`);
  const retries = opts.retries ?? 8;
  let failures = 0;
  let linkedSha: string | undefined;
  // The total size the server announced, when it did (undefined: it ended the body without saying).
  let announced: number | undefined;
  for (;;) {
    let have = existsSync(part) ? statSync(part).size : 0;
    try {
      const res = await get(opts, have);
      linkedSha ??= res.linkedSha256;
      const where = redact(res.url);
      // Every answer that is not written to the part file must be drained, so its connection is freed.
      const refuse = (e: Error): never => {
        res.body.resume();
        throw e;
      };
      if (res.status === 401 || res.status === 403) refuse(new FetchError(deniedMessage(where, res.status, opts.token, res.withheld)));
      if (res.status === 404) refuse(new FetchError(`${where}: HTTP 404 not found`));
      if (res.status === 416 && have > 0) {
        // Asked for bytes past the end: the part file is complete (or longer than the file).
        res.body.resume();
        const total = Number(/^bytes \*\/(\d+)$/.exec(String(res.headers['content-range'] ?? '').trim())?.[1]);
        if (total === have) {
          announced = total;
          break;
        }
        log(`${name}: the partial file does not fit the server's (${have} bytes vs ${Number.isNaN(total) ? 'unknown' : total}); restarting from zero`);
        rmSync(part, { force: true });
        continue;
      }
      if (res.status >= 500 || res.status === 429 || res.status === 408) refuse(new Transient(`HTTP ${res.status}`));
      if (res.status !== 200 && res.status !== 206) refuse(new FetchError(`${where}: unexpected HTTP ${res.status}`));
      const length = res.headers['content-length'];
      if (length !== undefined && parseLength(length) === undefined) refuse(new FetchError(`${where}: the server announced an impossible Content-Length (${JSON.stringify(length.slice(0, 40))})`));
      let start = 0;
      let total: number | undefined;
      // The byte (exclusive) at which this answer's body ends, when the server said.
      let end: number | undefined;
      if (res.status === 206) {
        const r = parseContentRange(res.headers['content-range']) ?? refuse(new FetchError(`${where}: HTTP 206 without a valid Content-Range (${JSON.stringify(String(res.headers['content-range'] ?? 'none').slice(0, 60))})`));
        if (length !== undefined && parseLength(length) !== r.end - r.start + 1) refuse(new FetchError(`${where}: Content-Length ${length} does not match Content-Range ${r.start}-${r.end}`));
        if (r.start !== have && r.start !== 0) {
          // Only a request from byte 0 can follow a mismatch, so this cannot repeat.
          if (have === 0) refuse(new FetchError(`${where}: asked for the whole file, the server sent bytes from ${r.start}`));
          log(`${name}: the server answered the range request from byte ${r.start}, not ${have}; restarting from zero`);
          res.body.resume();
          rmSync(part, { force: true });
          continue;
        }
        if (r.start !== have) log(`${name}: the server answered the range request from byte 0; restarting from zero`);
        [start, total, end] = [r.start, r.total, r.end + 1];
        have = start;
      } else {
        if (have > 0) log(`${name}: the server does not support range requests (HTTP 200 to a Range request); restarting from zero`);
        have = 0;
        total = end = parseLength(length);
      }
      if (opts.size !== undefined && total !== undefined && total !== opts.size) refuse(new FetchError(`${where}: the server offers ${total} bytes, expected ${opts.size}`));
      announced = total;
      const file = createWriteStream(part, { flags: start > 0 ? 'a' : 'w' });
      let got = have;
      const t0 = performance.now();
      let lastLog = t0;
      await new Promise<void>((resolve, reject) => {
        res.body.on('data', (chunk: Buffer) => {
          got += chunk.length;
          const now = performance.now();
          if (now - lastLog > 1000) {
            lastLog = now;
            const rate = (got - have) / ((now - t0) / 1000);
            const pct = total ? ` ${((100 * got) / total).toFixed(1)}% of ${human(total)},` : '';
            const eta = total && rate > 0 ? `, ETA ${Math.round((total - got) / rate)} s` : '';
            log(`${name}: ${human(got)}${pct} ${human(rate)}/s${eta}`);
          }
        });
        let settled = false;
        // On a cut connection, close the part file before retrying so no late write lands after the next stat.
        const fail = (e: Error) => {
          if (settled) return;
          settled = true;
          res.body.unpipe(file);
          file.end(() => reject(e));
        };
        res.body.on('error', (e) => fail(new Transient(`connection cut (${e.message})`)));
        res.body.on('aborted', () => fail(new Transient('connection cut')));
        file.on('error', (e) => {
          settled = true;
          reject(e);
        });
        file.on('finish', () => {
          if (settled) return;
          settled = true;
          resolve();
        });
        res.body.pipe(file);
      });
      if (end !== undefined && got < end) throw new Transient(`connection ended at ${got} of ${end} bytes`);
      if (end !== undefined && got > end) {
        rmSync(part, { force: true });
        throw new FetchError(`${where}: the server sent ${got - have} bytes where it announced ${end - have}; the partial file was removed`);
      }
      // A server may answer a range with less than the rest (each such answer brings at least one byte).
      if (total !== undefined && got < total) continue;
      break;
    } catch (e) {
      if (!(e instanceof Transient)) throw e;
      failures++;
      if (failures > retries) throw new FetchError(`${redact(opts.url)}: giving up after ${retries} retries (${e.message}); rerun to continue from ${part}`);
      const wait = Math.min(60_000, (opts.backoffMs ?? 1000) * 2 ** (failures - 1));
      const now = existsSync(part) ? statSync(part).size : 0;
      log(`${name}: ${e.message}; retry ${failures}/${retries} in ${(wait / 1000).toFixed(1)} s from byte ${now}`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  const v = await verify(part, linkedSha);
  if (v.problems.length) {
    rmSync(part, { force: true });
    throw new FetchError(`${name}: downloaded file does not verify (${v.problems.join('; ')}); the partial file was removed, rerun to download it again`);
  }
  renameSync(part, opts.out);
  if (v.checks.length) log(`${name}: ${human(v.bytes)} verified (${v.checks.join(', ')})`);
  else if (announced !== undefined) log(`${name}: ${human(v.bytes)}, as long as the server announced; not verified (no checksum known; pass --md5 or --sha256 to check it)`);
  else log(`${name}: ${human(v.bytes)}, NOT verified: the server sent no length and no checksum is known, so the file may be incomplete (pass --md5 or --sha256 to check it)`);
  return { path: opts.out, bytes: v.bytes, md5: v.md5, sha256: v.sha256, retries: failures, cached: false, verified: v.checks.length > 0 };
}

export interface HfFile {
  path: string;
  size: number;
  sha256?: string;
}

/** A listing page larger than this is not the hub's (a page holds at most a few thousand entries). */
const MAX_LIST_PAGE = 64 << 20;

/** Files of a Hugging Face data set repository (the hub's tree API, following its pages). */
export async function listHfFiles(repo: string, opts: { endpoint: string; revision?: string; token?: string; dir?: string }): Promise<HfFile[]> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new FetchError(`'${repo}' is not a Hugging Face repository name (owner/name)`);
  const first = `${opts.endpoint}/api/datasets/${repo}/tree/${opts.revision ?? 'main'}${opts.dir ? `/${opts.dir}` : ''}?recursive=true`;
  const files: HfFile[] = [];
  const pages = new Set<string>();
  for (let url: string | undefined = first; url; ) {
    if (pages.has(url)) throw new FetchError(`${redact(url)}: the hub's file list pages link back to this page`);
    pages.add(url);
    // Every page is fetched with the token rules of the first: a next-page link elsewhere gets no token.
    const res = await get({ url, out: '', token: opts.token }, 0, first).catch((e) => {
      throw e instanceof Transient ? new FetchError(`${redact(url!)}: ${e.message}`) : e;
    });
    const where = redact(res.url);
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const c of res.body) {
      bytes += (c as Buffer).length;
      if (bytes > MAX_LIST_PAGE) {
        res.body.destroy();
        throw new FetchError(`${where}: the hub's file list page is over ${human(MAX_LIST_PAGE)}`);
      }
      chunks.push(c as Buffer);
    }
    if (res.status === 401 || res.status === 403) {
      throw new FetchError(
        res.withheld
          ? `${repo}: HTTP ${res.status} from ${where}: the token was not sent there (${res.withheld})`
          : opts.token
            ? `${repo}: HTTP ${res.status}: the hub refused the token (accept the data set's terms on its page with the token's account)`
            : `${repo}: HTTP ${res.status}: the data set is gated; create a read token and set HF_TOKEN in the environment`,
      );
    }
    if (res.status !== 200) throw new FetchError(`${where}: HTTP ${res.status} listing ${repo}`);
    let entries: unknown;
    try {
      entries = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new FetchError(`${where}: the hub's file list is not JSON`);
    }
    if (!Array.isArray(entries)) throw new FetchError(`${where}: the hub's file list is not a JSON list`);
    for (const e of entries as { type?: unknown; path?: unknown; size?: unknown; lfs?: { oid?: unknown; sha256?: unknown } }[]) {
      if (!e || typeof e !== 'object' || typeof e.type !== 'string' || typeof e.path !== 'string') throw new FetchError(`${where}: the hub's file list has an entry without a type and a path`);
      if (e.type !== 'file') continue;
      if (!e.path.split('/').every(safeSegment)) throw new FetchError(`${where}: refusing the unsafe path ${JSON.stringify(e.path)} in the hub's file list`);
      if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0) throw new FetchError(`${where}: the hub's file list gives ${JSON.stringify(e.path)} the size ${JSON.stringify(e.size)}`);
      const sha = e.lfs?.oid ?? e.lfs?.sha256;
      files.push({ path: e.path, size: e.size, sha256: typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) ? sha : undefined });
    }
    // The next page, if any, is in the Link header.
    const next = /<([^>]+)>;\s*rel="next"/.exec(String(res.headers.link ?? ''));
    url = next ? nextUrl(url, next[1]) : undefined;
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Downloads the files of a Hugging Face data set whose paths match `include`, verified by their sha256. */
export async function fetchHf(opts: { repo: string; out: string; endpoint: string; include: RegExp; token?: string; retries?: number; backoffMs?: number; log?: (l: string) => void }): Promise<DownloadResult[]> {
  const files = (await listHfFiles(opts.repo, { endpoint: opts.endpoint, token: opts.token })).filter((f) => opts.include.test(f.path));
  if (files.length === 0) throw new FetchError(`${opts.repo}: no files match ${opts.include}`);
  const total = files.reduce((a, f) => a + f.size, 0);
  opts.log?.(`${opts.repo}: ${files.length} file(s), ${human(total)}`);
  const results: DownloadResult[] = [];
  for (const [i, f] of files.entries()) {
    const out = join(opts.out, f.path);
    mkdirSync(dirname(out), { recursive: true });
    opts.log?.(`[${i + 1}/${files.length}] ${f.path}`);
    results.push(
      await download({
        url: `${opts.endpoint}/datasets/${opts.repo}/resolve/main/${f.path.split('/').map(encodeURIComponent).join('/')}`,
        out,
        size: f.size,
        sha256: f.sha256,
        token: opts.token,
        retries: opts.retries,
        backoffMs: opts.backoffMs,
        log: opts.log,
      }),
    );
  }
  return results;
}

const DEFAULT_HF_INCLUDE = '^data/(train|validation)-.*\\.parquet$';

export const FETCH_USAGE = `  data fetch    resumable download with retries, checked (size, md5/sha256 where known) before it is renamed into place
             --url URL          repeatable; saved as --out DIR/<file name> (official tar names get their published md5)
             --hf OWNER/NAME    a Hugging Face data set (e.g. ILSVRC/imagenet-1k): its files matching --include
                                (default ${DEFAULT_HF_INCLUDE}), sha256-verified, under --out DIR
             --out DIR          --md5 HEX / --sha256 HEX (with one --url)   --retries N (default 8)
             a token for gated downloads (Hugging Face) is read from HF_TOKEN; it is sent only over https to the
             URL's own scheme, host and port (redirects elsewhere, e.g. to a CDN, go without it), never printed.
             HF_ENDPOINT overrides https://huggingface.co`;

export async function fetchCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      url: { type: 'string', multiple: true },
      hf: { type: 'string' },
      include: { type: 'string', default: DEFAULT_HF_INCLUDE },
      out: { type: 'string' },
      md5: { type: 'string' },
      sha256: { type: 'string' },
      retries: { type: 'string' },
      'backoff-ms': { type: 'string' },
    },
  });
  const urls = values.url ?? [];
  if ((urls.length === 0 && !values.hf) || !values.out) throw new UserError('data fetch needs --url URL (repeatable) or --hf OWNER/NAME, and --out DIR');
  if (urls.length > 1 && (values.md5 || values.sha256)) throw new UserError('--md5/--sha256 apply to a single --url');
  const retries = values.retries !== undefined ? Number(values.retries) : undefined;
  if (retries !== undefined && !(Number.isInteger(retries) && retries >= 0)) throw new UserError(`--retries must be a non-negative integer`);
  const backoffMs = values['backoff-ms'] !== undefined ? Number(values['backoff-ms']) : undefined;
  if (backoffMs !== undefined && !(Number.isFinite(backoffMs) && backoffMs >= 0)) throw new UserError(`--backoff-ms must be a non-negative number`);
  // Every name is checked before the first byte is fetched.
  const files = urls.map(fileNameFromUrl);
  mkdirSync(values.out, { recursive: true });
  const token = process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || undefined;
  if (values.hf) {
    let include: RegExp;
    try {
      include = new RegExp(values.include!);
    } catch {
      throw new UserError(`--include is not a regular expression: ${values.include}`);
    }
    const endpoint = (process.env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/$/, '');
    if (!/^https?:\/\//.test(endpoint) || !URL.canParse(endpoint)) throw new UserError(`HF_ENDPOINT is not an http(s) URL: ${redact(endpoint)}`);
    const rs = await fetchHf({ repo: values.hf, out: values.out, endpoint, include, token, retries, backoffMs, log: (l) => console.error(l) });
    for (const r of rs) console.log(`${r.path} ${r.bytes} bytes sha256 ${r.sha256}${r.verified ? '' : ' (not verified)'}${r.cached ? ' (already present)' : ''}`);
  }
  for (const [i, url] of urls.entries()) {
    const r = await download({ url, out: join(values.out, files[i]), md5: values.md5, sha256: values.sha256, token, retries, backoffMs, log: (l) => console.error(l) });
    console.log(`${r.path} ${r.bytes} bytes md5 ${r.md5} sha256 ${r.sha256}${r.verified ? '' : ' (not verified)'}${r.cached ? ' (already present)' : ''}`);
  }
  return 0;
}
