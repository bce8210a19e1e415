// `nudge data fetch` against a local server on 127.0.0.1 (plain HTTP and TLS on one port) that
// cuts connections, refuses access, fails, ignores Range, redirects to another host or down to
// plain http, serves wrong bytes, and against a raw socket server that answers malformed HTTP.
import { createHash, generateKeyPairSync, randomBytes, randomInt, sign } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../tools/errors.js';
import { download, FetchError, fetchCommand, fetchHf, fileNameFromUrl, nextUrl, redact, tokenMayGo } from '../tools/data/fetch.js';

const BODY = randomBytes(300_000 + randomInt(5000));
const MD5 = createHash('md5').update(BODY).digest('hex');
const SHA = createHash('sha256').update(BODY).digest('hex');
const TOKEN = 'hf_secret_token_value_123';
const SMALL = randomBytes(777);

let server: net.Server;
let secure: https.Server;
let port: number;
let raw: net.Server;
let rawPort: number;
let dir: string;
let seen: { path: string; host: string; range?: string; auth?: string; tls: boolean }[] = [];
let count: Record<string, number> = {};
const sockets = new Set<net.Socket>();

/** DER: tag, length, contents. */
function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

/** A self-signed P-256 certificate (X.509 v1, built here so the test needs no openssl). */
function selfSigned(): { key: string; cert: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaSha256 = der(0x30, der(0x06, Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])));
  const name = der(0x30, der(0x31, der(0x30, der(0x06, Buffer.from([0x55, 0x04, 0x03])), der(0x0c, Buffer.from('nudge test')))));
  const validity = der(0x30, der(0x17, Buffer.from('200101000000Z')), der(0x17, Buffer.from('491231000000Z')));
  const tbs = der(0x30, der(0x02, Buffer.from([1])), ecdsaSha256, name, validity, name, publicKey.export({ type: 'spki', format: 'der' }));
  const cert = der(0x30, tbs, ecdsaSha256, der(0x03, Buffer.from([0]), sign('sha256', tbs, privateKey)));
  const pem = `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: pem };
}

function serveRange(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, cutAt?: number): void {
  const m = /bytes=(\d+)-/.exec(req.headers.range ?? '');
  const start = m ? Number(m[1]) : 0;
  if (start >= body.length) {
    res.writeHead(416, { 'content-range': `bytes */${body.length}` });
    res.end();
    return;
  }
  const headers: http.OutgoingHttpHeaders = { 'content-length': body.length - start, 'accept-ranges': 'bytes' };
  if (m) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
  res.writeHead(m ? 206 : 200, headers);
  if (cutAt !== undefined && cutAt > start) {
    // Send part of the body, then drop the connection.
    res.write(body.subarray(start, cutAt), () => setTimeout(() => res.socket?.destroy(), 20));
    return;
  }
  res.end(body.subarray(start));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nudge-fetch-'));
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = req.url ?? '';
    const tls = 'encrypted' in req.socket;
    // The same server under another host name, in the scheme this request came in.
    const elsewhere = `${tls ? 'https' : 'http'}://localhost:${port}`;
    const self = `${tls ? 'https' : 'http'}://${req.headers.host}`;
    seen.push({ path, host: String(req.headers.host), range: req.headers.range, auth: req.headers.authorization, tls });
    const n = (count[path] = (count[path] ?? 0) + 1);
    if (path.startsWith('/ok/')) return serveRange(req, res, BODY);
    // Cut twice, at 100 kB and 200 kB; the third connection finishes.
    if (path.startsWith('/cut/')) return serveRange(req, res, BODY, n <= 2 ? n * 100_000 : undefined);
    if (path.startsWith('/norange/')) {
      // Ignores Range: always 200 with the whole body; the first answer is cut.
      res.writeHead(200, { 'content-length': BODY.length });
      if (n === 1) {
        res.write(BODY.subarray(0, 120_000), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      return void res.end(BODY);
    }
    if (path.startsWith('/forbidden/')) {
      res.writeHead(req.headers.authorization ? 403 : 401);
      return void res.end('no');
    }
    if (path.startsWith('/flaky/')) {
      if (n <= 2) {
        res.writeHead(503);
        return void res.end();
      }
      return serveRange(req, res, BODY);
    }
    if (path.startsWith('/wrong/')) {
      const bad = Buffer.from(BODY);
      bad[12345] ^= 0xff;
      return serveRange(req, res, bad);
    }
    if (path.startsWith('/linked/')) {
      res.writeHead(302, { location: `${elsewhere}/ok/file.bin`, 'x-linked-etag': `"${'0'.repeat(64)}"` });
      return void res.end();
    }
    if (path.startsWith('/api/datasets/ILSVRC/imagenet-1k/tree/main')) {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401);
        return void res.end();
      }
      const file = (p: string, body: Buffer) => ({ type: 'file', path: p, size: body.length, oid: 'x', lfs: { oid: createHash('sha256').update(body).digest('hex'), size: body.length } });
      // Two pages, as the hub paginates long listings.
      if (!path.includes('cursor=')) {
        res.writeHead(200, { 'content-type': 'application/json', link: `<${self}/api/datasets/ILSVRC/imagenet-1k/tree/main?recursive=true&cursor=2>; rel="next"` });
        return void res.end(JSON.stringify([{ type: 'directory', path: 'data' }, file('README.md', SMALL), file('data/train-00001-of-00002.parquet', SMALL)]));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify([file('data/train-00000-of-00002.parquet', BODY), file('data/validation-00000-of-00001.parquet', SMALL), file('data/test-00000-of-00001.parquet', SMALL)]));
    }
    if (path.startsWith('/datasets/ILSVRC/imagenet-1k/resolve/main/')) {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(403);
        return void res.end();
      }
      // The hub redirects to storage on another host, with the file named in the path.
      res.writeHead(302, { location: `${elsewhere}/cdn/${path.split('/').pop()}` });
      return void res.end();
    }
    if (path.startsWith('/cdn/')) {
      if (req.headers.authorization) {
        res.writeHead(400);
        return void res.end('token leaked');
      }
      return serveRange(req, res, path.includes('train-00000') ? BODY : SMALL);
    }
    if (path.startsWith('/redirect/')) {
      // To another host name (same server): the token must not follow.
      res.writeHead(302, { location: `${elsewhere}/ok/file.bin` });
      return void res.end();
    }
    if (path.startsWith('/redirect-gated/')) {
      res.writeHead(302, { location: `${elsewhere}/forbidden/file.bin` });
      return void res.end();
    }
    if (path.startsWith('/downgrade/')) {
      // Same host and port, down to plain http.
      res.writeHead(302, { location: `http://${req.headers.host}/ok/file.bin` });
      return void res.end();
    }
    if (path.startsWith('/loop/')) {
      res.writeHead(302, { location: path });
      return void res.end();
    }
    if (path.startsWith('/capped/')) {
      // Answers a range with at most 100 kB; the first, whole-file answer is cut.
      const m = /bytes=(\d+)-/.exec(req.headers.range ?? '');
      if (!m) {
        res.writeHead(200, { 'content-length': BODY.length });
        res.write(BODY.subarray(0, 100_000), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      const start = Number(m[1]);
      const end = Math.min(start + 100_000, BODY.length) - 1;
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${BODY.length}` });
      return void res.end(BODY.subarray(start, end + 1));
    }
    const hostile = /^\/api\/datasets\/hostile\/([\w-]+)\/tree\/main/.exec(path)?.[1];
    if (hostile) {
      // Hub listings that a hub does not send; every page needs the token.
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401);
        return void res.end();
      }
      const entry = (p: string, size: unknown = SMALL.length) => ({ type: 'file', path: p, size });
      const page2 = `/api/datasets/hostile/${hostile}/tree/main?recursive=true&cursor=2`;
      const answers: Record<string, [http.OutgoingHttpHeaders, unknown]> = {
        'next-host': [{ link: `<${elsewhere}${page2}>; rel="next"` }, [entry('data/a.bin')]],
        'next-http': [{ link: `<http://${req.headers.host}${page2}>; rel="next"` }, [entry('data/a.bin')]],
        'next-self': [{ link: `<${path}>; rel="next"` }, [entry('data/a.bin')]],
        'not-a-list': [{}, { error: 'this is not a list' }],
        'nul-path': [{}, [entry('data/a.bin'), entry('data/b\u0000.bin')]],
        'bad-size': [{}, [entry('data/a.bin', -5)]],
      };
      const [headers, body] = answers[hostile] ?? [{}, []];
      res.writeHead(200, { 'content-type': 'application/json', ...(path.includes('cursor=') ? {} : headers) });
      return void res.end(JSON.stringify(body));
    }
    res.writeHead(404);
    res.end();
  };
  // Plain HTTP and TLS on one port, told apart by the first byte (a TLS handshake record is 0x16),
  // so that https://127.0.0.1:P and http://127.0.0.1:P differ only in the scheme. TLS goes through
  // to a second, internal listener (a TLS server cannot take over a socket that was read from).
  const plain = http.createServer(handler);
  secure = https.createServer(selfSigned(), handler);
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  server = net.createServer((sock) => {
    sockets.add(sock.on('close', () => sockets.delete(sock)));
    sock.once('data', (first) => {
      if (first[0] !== 0x16) {
        sock.pause();
        sock.unshift(first);
        plain.emit('connection', sock);
        return void sock.resume();
      }
      const up = net.connect((secure.address() as AddressInfo).port, '127.0.0.1');
      up.on('error', () => sock.destroy()).on('close', () => sock.destroy());
      sock.on('error', () => up.destroy()).on('close', () => up.destroy());
      up.write(first);
      sock.pipe(up).pipe(sock);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  // The certificate is self-signed: this test process accepts it (the code under test has no say in that).
  https.globalAgent.options.rejectUnauthorized = false;

  // Answers that no HTTP library would write, chosen by the request path.
  raw = net.createServer((sock) => {
    sock.on('error', () => {});
    let head = '';
    sock.on('data', (d) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const path = head.split(' ')[1];
      const range = /\r\nrange: bytes=(\d+)-/i.exec(head)?.[1];
      seen.push({ path, host: 'raw', range, tls: false });
      const send = (lines: string[], body: Buffer | string = '') => sock.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), Buffer.from(body)]));
      const rest = SMALL.subarray(Number(range ?? 0));
      if (path.startsWith('/206-no-range/')) return send(['HTTP/1.1 206 Partial Content', 'content-length: 5', 'connection: close'], 'hello');
      if (path.startsWith('/206-from-50/')) return send(['HTTP/1.1 206 Partial Content', 'content-length: 5', `content-range: bytes 50-54/${SMALL.length}`, 'connection: close'], SMALL.subarray(50, 55));
      if (path.startsWith('/206-backwards/')) return send(['HTTP/1.1 206 Partial Content', 'content-length: 5', `content-range: bytes ${range}-${Number(range) - 5}/${SMALL.length}`, 'connection: close'], 'hello');
      if (path.startsWith('/206-short-length/')) return send(['HTTP/1.1 206 Partial Content', 'content-length: 10', `content-range: bytes ${range}-${SMALL.length - 1}/${SMALL.length}`, 'connection: close'], rest.subarray(0, 10));
      if (path.startsWith('/206-extra/')) {
        // Chunked, so nothing caps the body at the announced range.
        const body = Buffer.concat([rest, Buffer.from('EXTRA')]);
        return send(['HTTP/1.1 206 Partial Content', 'transfer-encoding: chunked', `content-range: bytes ${range}-${SMALL.length - 1}/${SMALL.length}`, 'connection: close'], Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]));
      }
      if (path.startsWith('/neg-length/')) return send(['HTTP/1.1 200 OK', 'content-length: -5', 'connection: close'], 'hello');
      if (path.startsWith('/huge-length/')) return send(['HTTP/1.1 200 OK', 'content-length: 1152921504606846976', 'connection: close'], 'hello');
      if (path.startsWith('/long-body/')) return send(['HTTP/1.1 200 OK', 'content-length: 5'], 'helloEXTRA BYTES AFTER THE BODY');
      if (path.startsWith('/no-length/')) return send(['HTTP/1.1 200 OK', 'connection: close'], SMALL.subarray(0, 500));
      if (path.startsWith('/chunked-cut/')) {
        sock.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n12c\r\n`);
        return void sock.write(SMALL.subarray(0, 300), () => setTimeout(() => sock.destroy(), 20));
      }
      if (path.startsWith('/bad-location/')) return send(['HTTP/1.1 302 Found', 'location: http://[::1', 'content-length: 0', 'connection: close']);
      send(['HTTP/1.1 404 Not Found', 'content-length: 0', 'connection: close']);
    });
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  rawPort = (raw.address() as AddressInfo).port;
});

afterAll(async () => {
  delete https.globalAgent.options.rejectUnauthorized;
  // Kept-alive connections would hold the server open until they time out.
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
  secure.closeAllConnections();
  await new Promise((r) => secure.close(r));
  await new Promise((r) => raw.close(r));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen = [];
  count = {};
});

const url = (p: string) => `http://127.0.0.1:${port}${p}`;
const tlsUrl = (p: string) => `https://127.0.0.1:${port}${p}`;
const rawUrl = (p: string) => `http://127.0.0.1:${rawPort}${p}`;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const fast = { backoffMs: 5, idleTimeoutMs: 5000 };

describe('nudge data fetch', () => {
  it('downloads, verifies md5 and sha256, renames from .part; a second call finds it verified', async () => {
    const out = join(dir, 'ok.bin');
    const log: string[] = [];
    const r = await download({ url: url('/ok/file.bin'), out, md5: MD5, sha256: SHA, ...fast, log: (l) => log.push(l) });
    expect(r).toMatchObject({ bytes: BODY.length, md5: MD5, sha256: SHA, retries: 0, cached: false });
    expect(readFileSync(out).equals(BODY)).toBe(true);
    expect(existsSync(`${out}.part`)).toBe(false);
    const again = await download({ url: url('/ok/file.bin'), out, md5: MD5, ...fast });
    expect(again.cached).toBe(true);
    expect(count['/ok/file.bin']).toBe(1);
  });

  it('resumes cut connections with Range requests from where the .part file ends', async () => {
    const out = join(dir, 'cut.bin');
    const log: string[] = [];
    const r = await download({ url: url('/cut/file.bin'), out, md5: MD5, ...fast, log: (l) => log.push(l) });
    expect(r.retries).toBe(2);
    expect(readFileSync(out).equals(BODY)).toBe(true);
    // Each retry asks for the bytes after what arrived (how much arrived before the cut is up to the network).
    const starts = seen.map((s) => Number(/bytes=(\d+)-/.exec(s.range ?? '')?.[1] ?? 0));
    expect(seen[0].range).toBeUndefined();
    expect(starts.length).toBe(3);
    expect(starts[1]).toBeGreaterThan(0);
    expect(starts[1]).toBeLessThanOrEqual(100_000);
    expect(starts[2]).toBeGreaterThan(starts[1]);
    expect(starts[2]).toBeLessThanOrEqual(200_000);
    expect(log.join('\n')).toMatch(new RegExp(`connection cut.*retry 1/8 .* from byte ${starts[1]}`));
  });

  it('restarts from zero, saying so, when the server ignores Range', async () => {
    const out = join(dir, 'norange.bin');
    const log: string[] = [];
    await download({ url: url('/norange/file.bin'), out, sha256: SHA, ...fast, log: (l) => log.push(l) });
    expect(readFileSync(out).equals(BODY)).toBe(true);
    expect(seen[1].range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(log.join('\n')).toMatch(/does not support range requests.*restarting from zero/);
  });

  it('retries 5xx answers with backoff, and gives up after --retries', async () => {
    const r = await download({ url: url('/flaky/file.bin'), out: join(dir, 'flaky.bin'), md5: MD5, ...fast });
    expect(r.retries).toBe(2);
    count = {};
    await expect(download({ url: url('/flaky/file.bin'), out: join(dir, 'flaky2.bin'), retries: 1, ...fast })).rejects.toThrow(/giving up after 1 retries \(HTTP 503\); rerun to continue/);
  });

  it('explains 401/403: token missing, or token refused; the token is never in a message', async () => {
    const log: string[] = [];
    await expect(download({ url: url('/forbidden/file.bin'), out: join(dir, 'f1.bin'), ...fast })).rejects.toThrow(/HTTP 401: access denied.*gated.*HF_TOKEN/);
    const err = await download({ url: tlsUrl('/forbidden/file.bin'), out: join(dir, 'f2.bin'), token: TOKEN, ...fast, log: (l) => log.push(l) }).catch((e: Error) => e);
    expect(String(err)).toMatch(/HTTP 403: the server refused the token.*accept its terms/);
    expect(String(err)).not.toContain(TOKEN);
    expect(log.join('\n')).not.toContain(TOKEN);
    expect(seen.filter((s) => s.auth).map((s) => s.auth)).toEqual([`Bearer ${TOKEN}`]);
    expect(existsSync(join(dir, 'f2.bin'))).toBe(false);
  });

  it('sends the token to its own host only, not to a redirect target elsewhere', async () => {
    await download({ url: tlsUrl('/redirect/file.bin'), out: join(dir, 'redir.bin'), token: TOKEN, md5: MD5, ...fast });
    expect(seen.map((s) => [s.host.split(':')[0], s.auth])).toEqual([
      ['127.0.0.1', `Bearer ${TOKEN}`],
      ['localhost', undefined],
    ]);
  });

  it('rejects wrong bytes (md5, or the hub-announced sha256) and leaves neither the file nor the .part', async () => {
    const out = join(dir, 'wrong.bin');
    await expect(download({ url: url('/wrong/file.bin'), out, md5: MD5, ...fast })).rejects.toThrow(/does not verify \(md5 [0-9a-f]{32}, expected [0-9a-f]{32}\).*removed/);
    expect(existsSync(out) || existsSync(`${out}.part`)).toBe(false);
    await expect(download({ url: url('/linked/file.bin'), out: join(dir, 'linked.bin'), ...fast })).rejects.toThrow(/sha256 [0-9a-f]{64}, expected 0{64}/);
    // An existing file that does not verify is not overwritten.
    writeFileSync(join(dir, 'ILSVRC2012_devkit_t12.tar.gz'), 'not the devkit');
    await expect(download({ url: url('/ok/file.bin'), out: join(dir, 'ILSVRC2012_devkit_t12.tar.gz'), ...fast })).rejects.toThrow(/exists but does not verify \(md5 .*expected fa75699e90414af021442c21a62c3abf/);
  });

  it('keeps query strings (signed URLs) out of log lines', () => {
    expect(redact('https://cdn.example/x/file.parquet?X-Amz-Signature=abc&token=t')).toBe('https://cdn.example/x/file.parquet?...');
  });
});

describe('nudge data fetch --hf', () => {
  it('lists a gated data set over pages, downloads the matching parquet files sha256-verified, token kept to the hub', async () => {
    const out = join(dir, 'hf');
    const log: string[] = [];
    const endpoint = `https://127.0.0.1:${port}`;
    await expect(fetchHf({ repo: 'ILSVRC/imagenet-1k', out, endpoint, include: /^data\/(train|validation)-/, ...fast })).rejects.toThrow(/HTTP 401: the data set is gated.*HF_TOKEN/);
    const rs = await fetchHf({ repo: 'ILSVRC/imagenet-1k', out, endpoint, include: /^data\/(train|validation)-.*\.parquet$/, token: TOKEN, ...fast, log: (l) => log.push(l) });
    expect(rs.map((r) => r.path)).toEqual(['train-00000-of-00002', 'train-00001-of-00002', 'validation-00000-of-00001'].map((f) => join(out, 'data', `${f}.parquet`)));
    expect(readFileSync(join(out, 'data', 'train-00000-of-00002.parquet')).equals(BODY)).toBe(true);
    expect(existsSync(join(out, 'data', 'test-00000-of-00001.parquet')) || existsSync(join(out, 'README.md'))).toBe(false);
    expect(seen.filter((s) => s.path.startsWith('/cdn/')).every((s) => s.auth === undefined)).toBe(true);
    expect(log.join('\n')).toMatch(/3 file\(s\)/);
    expect(log.join('\n')).not.toContain(TOKEN);
  });
});

describe('nudge data fetch: where the token goes', () => {
  it('tokenMayGo: only over https to the same scheme, host and port (plain http never, loopback included)', () => {
    const hub = 'https://huggingface.co/datasets/x/resolve/main/a.parquet';
    expect(tokenMayGo(hub, 'https://huggingface.co/api/datasets/x/tree/main?cursor=2')).toBe(true);
    expect(tokenMayGo(hub, 'https://huggingface.co:443/other')).toBe(true);
    expect(tokenMayGo(hub, 'http://huggingface.co/datasets/x/resolve/main/a.parquet')).toBe(false);
    expect(tokenMayGo(hub, 'https://cdn-lfs.huggingface.co/a.parquet')).toBe(false);
    expect(tokenMayGo(hub, 'https://huggingface.co:8443/a.parquet')).toBe(false);
    expect(tokenMayGo(hub, 'https://evil.example/a.parquet')).toBe(false);
    expect(tokenMayGo('http://mirror.example/a', 'http://mirror.example/a')).toBe(false);
    for (const local of ['http://127.0.0.1:8080/a', 'http://localhost:8080/a', 'http://[::1]:8080/a']) expect(tokenMayGo(local, local)).toBe(false);
    expect(tokenMayGo('https://127.0.0.1:8080/a', 'https://127.0.0.1:8080/b')).toBe(true);
    expect(tokenMayGo('https://127.0.0.1:8080/a', 'https://127.0.0.1:8081/a')).toBe(false);
  });

  it('nextUrl: resolves redirects and links, refuses https down to plain http and invalid URLs', () => {
    expect(nextUrl('https://a.example/x/y', '/z?q=1')).toBe('https://a.example/z?q=1');
    expect(nextUrl('http://a.example/x', 'https://b.example/y')).toBe('https://b.example/y');
    expect(() => nextUrl('https://a.example/x', 'http://a.example/x')).toThrow(/refusing to follow https down to plain http \(http:\/\/a\.example\/x\)/);
    expect(() => nextUrl('https://a.example/x', 'http://[::1')).toThrow(FetchError);
  });

  it('sends the token over https to its own host', async () => {
    const out = join(dir, 'tls.bin');
    await download({ url: tlsUrl('/ok/file.bin'), out, token: TOKEN, md5: MD5, ...fast });
    expect(readFileSync(out).equals(BODY)).toBe(true);
    expect(seen.map((s) => [s.tls, s.auth])).toEqual([[true, `Bearer ${TOKEN}`]]);
  });

  it('refuses a redirect from https down to plain http on the same host and port', async () => {
    const down = join(dir, 'downgrade.bin');
    await expect(download({ url: tlsUrl('/downgrade/file.bin'), out: down, token: TOKEN, ...fast })).rejects.toThrow(/refusing to follow https down to plain http/);
    expect(seen.map((s) => [s.tls, s.path])).toEqual([[true, '/downgrade/file.bin']]);
    expect(existsSync(down) || existsSync(`${down}.part`)).toBe(false);
  });

  it('says the token was not sent when a redirect elsewhere is refused access', async () => {
    await expect(download({ url: tlsUrl('/redirect-gated/file.bin'), out: join(dir, 'rg.bin'), token: TOKEN, ...fast })).rejects.toThrow(
      new RegExp(`HTTP 401: access denied; the token was not sent here \\(HF_TOKEN is sent only to https://127\\.0\\.0\\.1:${port}\\)`),
    );
    expect(seen.map((s) => [s.host.split(':')[0], s.auth])).toEqual([
      ['127.0.0.1', `Bearer ${TOKEN}`],
      ['localhost', undefined],
    ]);
  });

  it('--hf over https: the token goes to the hub for every page and file, not to the storage host', async () => {
    const out = join(dir, 'hf-tls');
    const rs = await fetchHf({ repo: 'ILSVRC/imagenet-1k', out, endpoint: `https://127.0.0.1:${port}`, include: /^data\/validation-/, token: TOKEN, ...fast });
    expect(rs.map((r) => r.bytes)).toEqual([SMALL.length]);
    expect(seen.every((s) => s.tls)).toBe(true);
    expect(seen.filter((s) => s.auth).map((s) => s.host.split(':')[0])).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
    expect(seen.filter((s) => s.host.startsWith('localhost')).map((s) => [s.path, s.auth])).toEqual([['/cdn/validation-00000-of-00001.parquet', undefined]]);
  });

  it('--hf: a next-page link to another host gets no token; one down to plain http is refused', async () => {
    const endpoint = `https://127.0.0.1:${port}`;
    const out = join(dir, 'hf-hostile');
    await expect(fetchHf({ repo: 'hostile/next-host', out, endpoint, include: /./, token: TOKEN, ...fast })).rejects.toThrow(
      new RegExp(`HTTP 401 from https://localhost:${port}/api/.*: the token was not sent there \\(HF_TOKEN is sent only to https://127\\.0\\.0\\.1:${port}\\)`),
    );
    expect(seen.map((s) => [s.host.split(':')[0], s.auth])).toEqual([
      ['127.0.0.1', `Bearer ${TOKEN}`],
      ['localhost', undefined],
    ]);
    seen = [];
    await expect(fetchHf({ repo: 'hostile/next-http', out, endpoint, include: /./, token: TOKEN, ...fast })).rejects.toThrow(/refusing to follow https down to plain http/);
    expect(seen.map((s) => s.tls)).toEqual([true]);
    expect(existsSync(out)).toBe(false);
  });
});

describe('nudge data fetch: hostile answers end in a clear error or a correct file', () => {
  const part = (name: string, bytes: Buffer) => {
    const out = join(dir, name);
    writeFileSync(`${out}.part`, bytes);
    return out;
  };

  it('a 206 without a Content-Range, or with one that starts elsewhere, to a request for the whole file', async () => {
    await expect(download({ url: rawUrl('/206-no-range/f.bin'), out: join(dir, 'r1.bin'), ...fast })).rejects.toThrow(/HTTP 206 without a valid Content-Range \("none"\)/);
    await expect(download({ url: rawUrl('/206-from-50/f.bin'), out: join(dir, 'r2.bin'), ...fast })).rejects.toThrow(/asked for the whole file, the server sent bytes from 50/);
    expect(readdirSync(dir).filter((f) => /^r[12]\.bin/.test(f))).toEqual([]);
  });

  it('a Content-Range that runs backwards, a Content-Length that contradicts it, a body longer than the range', async () => {
    const head = SMALL.subarray(0, 100);
    await expect(download({ url: rawUrl('/206-backwards/f.bin'), out: part('r3.bin', head), ...fast })).rejects.toThrow(/HTTP 206 without a valid Content-Range \("bytes 100-95\/777"\)/);
    await expect(download({ url: rawUrl('/206-short-length/f.bin'), out: part('r4.bin', head), ...fast })).rejects.toThrow(/Content-Length 10 does not match Content-Range 100-776/);
    const out = part('r5.bin', head);
    await expect(download({ url: rawUrl('/206-extra/f.bin'), out, retries: 0, ...fast })).rejects.toThrow(/the server sent 682 bytes where it announced 677; the partial file was removed/);
    expect(existsSync(out) || existsSync(`${out}.part`)).toBe(false);
  });

  it('a negative or oversized Content-Length fails at once, without retries', async () => {
    await expect(download({ url: rawUrl('/neg-length/f.bin'), out: join(dir, 'r6.bin'), retries: 3, ...fast })).rejects.toThrow(/the server's answer is not valid HTTP \(.*Content-Length/);
    await expect(download({ url: rawUrl('/huge-length/f.bin'), out: join(dir, 'r7.bin'), retries: 3, ...fast })).rejects.toThrow(/impossible Content-Length \("1152921504606846976"\)/);
    expect(seen.length).toBe(2);
  });

  it('a body longer than its Content-Length: the announced bytes are the file', async () => {
    const r = await download({ url: rawUrl('/long-body/f.bin'), out: join(dir, 'r8.bin'), md5: md5(Buffer.from('hello')), ...fast });
    expect(r.bytes).toBe(5);
    expect(readFileSync(join(dir, 'r8.bin'), 'utf8')).toBe('hello');
  });

  it('a redirect loop and a redirect to an invalid URL', async () => {
    await expect(download({ url: url('/loop/f.bin'), out: join(dir, 'r9.bin'), ...fast })).rejects.toThrow(/too many redirects/);
    await expect(download({ url: rawUrl('/bad-location/f.bin'), out: join(dir, 'r10.bin'), ...fast })).rejects.toThrow(/bad-location\/f\.bin: points to an invalid URL/);
  });

  it('a body of unknown length is not called verified; one cut mid-chunk leaves only the .part', async () => {
    const log: string[] = [];
    const out = join(dir, 'r11.bin');
    const r = await download({ url: rawUrl('/no-length/f.bin'), out, ...fast, log: (l) => log.push(l) });
    expect(log.join('\n')).toMatch(/500 B, NOT verified: the server sent no length and no checksum is known/);
    expect(log.join('\n')).not.toMatch(/ verified( \(|$)/m);
    expect(r).toMatchObject({ bytes: 500, verified: false });
    const again = await download({ url: rawUrl('/no-length/f.bin'), out, ...fast, log: (l) => log.push(l) });
    expect(again).toMatchObject({ cached: true, verified: false });
    expect(log.at(-1)).toMatch(/already here, not verified/);
    const cut = join(dir, 'r12.bin');
    await expect(download({ url: rawUrl('/chunked-cut/f.bin'), out: cut, retries: 0, ...fast })).rejects.toThrow(/giving up after 0 retries \(connection cut.*rerun to continue from .*r12\.bin\.part/);
    expect(existsSync(cut)).toBe(false);
    expect(readFileSync(`${cut}.part`).equals(SMALL.subarray(0, 300))).toBe(true);
  });

  it('a server that answers a range with less than the rest is asked for the rest, without counting failures', async () => {
    const r = await download({ url: url('/capped/file.bin'), out: join(dir, 'capped.bin'), sha256: SHA, retries: 1, ...fast });
    expect(r.retries).toBe(1);
    expect(readFileSync(join(dir, 'capped.bin')).equals(BODY)).toBe(true);
    // After the cut, range requests of at most 100 kB each, every one from where the last ended.
    const starts = seen.slice(1).map((s) => Number(/bytes=(\d+)-/.exec(s.range ?? '')?.[1]));
    expect(starts.length).toBeGreaterThanOrEqual(Math.ceil((BODY.length - 100_000) / 100_000));
    for (const [i, st] of starts.entries()) {
      expect(st - (i ? starts[i - 1] : 0), `range ${i}`).toBeGreaterThan(0);
      expect(st - (i ? starts[i - 1] : 0), `range ${i}`).toBeLessThanOrEqual(100_000);
    }
    expect(starts.at(-1)! + 100_000).toBeGreaterThanOrEqual(BODY.length);
  });

  it('--url names: %2F, %00 and other names that could leave --out are refused before anything is fetched', async () => {
    const out = join(dir, 'names');
    mkdirSync(out);
    for (const name of ['sub%2Fname.bin', 'nul%00.bin']) {
      await expect(fetchCommand(['--url', url('/ok/file.bin'), '--url', url(`/ok/${name}`), '--out', out])).rejects.toThrow(UserError);
    }
    expect(readdirSync(out)).toEqual([]);
    expect(seen).toEqual([]);
    expect(fileNameFromUrl('https://h.example/a/ILSVRC2012_img_val.tar?sig=1')).toBe('ILSVRC2012_img_val.tar');
    expect(fileNameFromUrl('https://h.example/a/file%20name..tar')).toBe('file name..tar');
    for (const [u, why] of [
      ['https://h.example/a/..%2F..%2Fescape.bin', /decoded name "\.\.\/\.\.\/escape\.bin" holds a path separator/],
      ['https://h.example/a/sub%2Fname.bin', /holds a path separator/],
      ['https://h.example/a/nul%00.bin', /decoded name "nul\\u0000\.bin" holds a path separator or control character/],
      ['https://h.example/a/back%5Cslash.bin', /holds a path separator/],
      ['https://h.example/a/%2E%2E', /does not end in a file name/],
      ['https://h.example/a/dir/', /does not end in a file name/],
      ['https://h.example/a/bad%E0%A4', /not valid percent-encoding/],
      ['not a url', /not a URL/],
    ] as const) {
      expect(() => fileNameFromUrl(u), u).toThrow(UserError);
      expect(() => fileNameFromUrl(u), u).toThrow(why);
    }
  });

  it('--hf: a file list that is not a JSON list, has a NUL in a path, a negative size, or pages that loop', async () => {
    const endpoint = `https://127.0.0.1:${port}`;
    const out = join(dir, 'hf-bad');
    const hf = (repo: string) => fetchHf({ repo, out, endpoint, include: /./, token: TOKEN, ...fast });
    await expect(hf('hostile/not-a-list')).rejects.toThrow(/the hub's file list is not a JSON list/);
    await expect(hf('hostile/nul-path')).rejects.toThrow(/refusing the unsafe path "data\/b\\u0000\.bin" in the hub's file list/);
    await expect(hf('hostile/bad-size')).rejects.toThrow(/gives "data\/a\.bin" the size -5/);
    await expect(hf('hostile/next-self')).rejects.toThrow(/the hub's file list pages link back to this page/);
    // Nothing was downloaded: every check comes before the first file.
    expect(seen.filter((s) => !s.path.startsWith('/api/'))).toEqual([]);
    expect(existsSync(out)).toBe(false);
  });
});
