// Checkpoints: the safetensors format, atomic writes, and a killed run that resumes exactly.
import { execFile, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '../engine/index.js';
import { Network } from '../pcn/network.js';
import { skipTinySpec } from './helpers.js';
import { loadParams, paramArrays } from '../tools/train.js';
import { CheckpointError, decodeSafetensors, encodeSafetensors, readSafetensors, writeFileAtomic } from '../tools/safetensors.js';

const run = promisify(execFile);

describe('safetensors', () => {
  it('round-trips tensors and metadata, with an 8-byte aligned data section', () => {
    const a = Float32Array.from({ length: 7 }, () => Math.random());
    const b = Float32Array.from([1.5, -2]);
    const buf = encodeSafetensors({ 'layer1.weight': { shape: [7, 1], data: a }, 'layer1.bias': { shape: [2], data: b } }, { k: 'v' });
    const hlen = Number(buf.readBigUInt64LE(0));
    expect((8 + hlen) % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString());
    expect(header['layer1.weight'].dtype).toBe('F32');
    const back = decodeSafetensors(buf, 'mem');
    expect([...back.tensors['layer1.weight'].data]).toEqual([...a]);
    expect(back.tensors['layer1.bias'].shape).toEqual([2]);
    expect(back.metadata.k).toBe('v');
  });

  it('rejects truncated and corrupt files with a clear error', () => {
    const buf = encodeSafetensors({ w: { shape: [100], data: new Float32Array(100) } });
    expect(() => decodeSafetensors(buf.subarray(0, buf.length - 10), 'f')).toThrow(/truncated/);
    expect(() => decodeSafetensors(buf.subarray(0, 5), 'f')).toThrow(CheckpointError);
    const bad = Buffer.from(buf);
    bad.write('{{{{', 8);
    expect(() => decodeSafetensors(bad, 'f')).toThrow(/not valid JSON/);
    expect(() => readSafetensors('/nonexistent/x.safetensors')).toThrow(/ENOENT/);
  });

  it('rejects headers that lie about their tensors or length with a CheckpointError naming the file', () => {
    // A file with the given header (JSON text) and `data` bytes of data.
    const file = (header: string, data = 8, hlen = Buffer.byteLength(header)) => {
      const h = Buffer.from(header);
      const out = Buffer.alloc(8 + h.length + data);
      out.writeBigUInt64LE(BigInt(hlen), 0);
      h.copy(out, 8);
      return out;
    };
    const cases: [string, Buffer, RegExp][] = [
      ['header length past the end', file('{}', 0, 1000), /header length 1000 does not fit/],
      ['header length of 2^64-1', (() => { const b = file('{}'); b.writeBigUInt64LE(2n ** 64n - 1n, 0); return b; })(), /header length 18446744073709551615 does not fit/],
      ['header not an object', file('[1,2]'), /header is not a JSON object/],
      ['header null', file('null'), /header is not a JSON object/],
      ['tensor not an object', file('{"w":5}'), /tensor w is not/],
      ['no dtype', file('{"w":{"shape":[2],"data_offsets":[0,8]}}'), /tensor w has no dtype/],
      ['no shape', file('{"w":{"dtype":"F32","data_offsets":[0,8]}}'), /tensor w has no shape/],
      ['shape not integers', file('{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}'), /tensor w has no shape/],
      ['negative shape', file('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}'), /tensor w has no shape/],
      ['no offsets', file('{"w":{"dtype":"F32","shape":[2]}}'), /tensor w has no data_offsets/],
      ['offsets reversed', file('{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}'), /tensor w has no data_offsets/],
      ['offsets past the data', file('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'), /tensor w data ends at byte 16 of a 8-byte data section/],
      ['offsets disagree with the shape', file('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'), /tensor w holds 8 bytes for shape \[3\]/],
      ['other dtype', file('{"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}'), /dtype F16; only F32/],
      ['metadata not strings', file('{"__metadata__":{"a":1}}'), /__metadata__ is not an object of strings/],
    ];
    for (const [what, buf, re] of cases) {
      let err: unknown;
      try {
        decodeSafetensors(buf, 'bad.safetensors');
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(CheckpointError);
      expect((err as Error).message, what).toMatch(/^bad\.safetensors: /);
      expect((err as Error).message, what).toMatch(re);
    }
    // A tensor named __proto__ is a tensor like any other.
    const proto = decodeSafetensors(file('{"__proto__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), 'f');
    expect(Object.keys(proto.tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(proto.tensors)).toBe(Object.prototype);
  });

  it('writes atomically: the target is either the old or the new file, no temp left', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nudge-ck-'));
    const path = join(dir, 'a.safetensors');
    writeFileSync(path, 'old');
    writeFileAtomic(path, Buffer.from('new contents'));
    expect(readFileSync(path, 'utf8')).toBe('new contents');
    expect(existsSync(`${path}.tmp-${process.pid}`)).toBe(false);
  });
});

describe('nudge train --resume after a kill', () => {
  it('continues and matches the uninterrupted run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nudge-resume-'));
    const args = ['dist/nudge.mjs', 'train', '--train-limit', '640', '--test-limit', '256', '--K', '3', '--checkpoint-every', '3'];
    await run('node', [...args, '--log', join(dir, 'full.jsonl')], { timeout: 300_000 });
    const ck = join(dir, 'ck.safetensors');
    const part = join(dir, 'part.jsonl');
    // Start, wait for the first mid-epoch checkpoint, kill -9.
    const child = spawn('node', [...args, '--log', part, '--checkpoint', ck], { stdio: 'ignore' });
    const deadline = Date.now() + 240_000;
    while (!existsSync(ck) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    expect(existsSync(ck), 'no checkpoint was written').toBe(true);
    const pos = JSON.parse(readSafetensors(ck).metadata.position);
    if (pos.step === 0 && pos.epoch === 1) throw new Error('the run finished before it could be killed; the test needs a slower run');
    const records = (file: string) => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // As if the killed run had got further than its checkpoint: its records past it, then a line cut short.
    const logged = readFileSync(part, 'utf8');
    if (logged.endsWith('\n')) {
      const at = pos.epoch * (640 / 64) + pos.step;
      const past = records(join(dir, 'full.jsonl')).filter((r) => (r.event === 'step' && r.step >= at) || (r.event === 'epoch' && r.epoch >= pos.epoch));
      appendFileSync(part, past.map((r) => `${JSON.stringify(r)}\n`).join('') + '{"event":"step","epo');
    }
    await run('node', [...args, '--log', part, '--checkpoint', ck, '--resume'], { timeout: 300_000 });
    // The log reads as the uninterrupted run's, record for record, but for the timings.
    const untimed = (file: string) => records(file).map(({ imagesPerSec: _i, seconds: _s, ...rest }) => rest);
    expect(untimed(part)).toEqual(untimed(join(dir, 'full.jsonl')));
    const lastEpoch = (file: string) => untimed(file).filter((r) => r.event === 'epoch').pop();
    // nudge eval on the final checkpoint reproduces the last epoch's test numbers.
    const ev = await run('node', ['dist/nudge.mjs', 'eval', '--checkpoint', ck, '--test-limit', '256']);
    const top1 = (100 * lastEpoch(part).top1).toFixed(2);
    expect(ev.stdout).toContain(`test top-1 ${top1}%`);
    // A different run refuses the checkpoint.
    const other = await run('node', [...args, '--seed', '2', '--checkpoint', ck, '--resume']).catch((e) => e);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/different run/);
    // Resuming the finished run says so and prints its final metrics; the log stays as it was.
    const before = readFileSync(part, 'utf8');
    const again = await run('node', [...args, '--log', part, '--checkpoint', ck, '--resume']);
    const last = lastEpoch(part);
    expect(again.stdout).toMatch(/holds the finished run \(1 epoch\(s\)\); nothing to resume/);
    expect(again.stdout).toContain(`epoch 1: train loss ${last.trainLoss.toFixed(4)}, test top-1 ${(100 * last.top1).toFixed(2)}% top-5 ${(100 * last.top5).toFixed(2)}% (256 images)`);
    expect(readFileSync(part, 'utf8')).toBe(before);
    // A finished run's checkpoint from before they kept the final metrics: measured again.
    const done = readSafetensors(ck);
    const older = join(dir, 'older.safetensors');
    writeFileSync(older, encodeSafetensors(done.tensors, { ...done.metadata, position: JSON.stringify({ epoch: 1, step: 0 }) }));
    const measured = await run('node', [...args, '--checkpoint', older, '--resume']);
    expect(measured.stdout).toMatch(/holds the finished run/);
    expect(measured.stdout).toContain(`test top-1 ${(100 * last.top1).toFixed(2)}% top-5 ${(100 * last.top5).toFixed(2)}% (256 images)`);
    // A position past the run's end is refused by name.
    const past = join(dir, 'past.safetensors');
    writeFileSync(past, encodeSafetensors(done.tensors, { ...done.metadata, position: JSON.stringify({ epoch: 1, step: 4 }) }));
    const bad = await run('node', [...args, '--checkpoint', past, '--resume']).catch((e) => e);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/past\.safetensors: its position \(epoch 2, step 4\) is past the run's 1 epoch\(s\) of 10 steps/);
  });
});

describe('checkpoints of skip models', () => {
  it('save and load the strided 1x1 skip filters as layerK.skip.weight', async () => {
    const spec = skipTinySpec();
    const be = new ReferenceBackend();
    const a = new Network(be, spec);
    a.init(`a-${Math.random()}`);
    const saved = await paramArrays(a);
    expect(Object.keys(saved).filter((k) => k.includes('skip'))).toEqual(['layer4.skip.weight', 'layer5.skip.weight']);
    expect(saved['layer4.skip.weight'].shape).toEqual([1, 1, 4, 6]);
    const b = new Network(be, spec);
    b.init(`b-${Math.random()}`);
    loadParams(b, saved);
    const again = await paramArrays(b);
    for (const [k, v] of Object.entries(saved)) expect(Array.from(again[k].data), k).toEqual(Array.from(v.data));
    // A checkpoint without the skip filter is refused by name.
    const { ['layer4.skip.weight']: _dropped, ...partial } = saved;
    expect(() => loadParams(b, partial)).toThrow(/layer4\.skip\.weight/);
  });
});
