// The webgpu runtime: pool, recorder, caches, uniform arena, upload ordering.
import { describe, expect, it } from 'vitest';
import { scope } from '../engine/index.js';
import { sizeClass } from '../engine/webgpu/runtime.js';
import { freshSeed, gpu, rng } from './helpers.js';

describe('buffer pool size classes', () => {
  it('rounds up to a power of two split in quarters, never more than 25% waste', () => {
    expect(sizeClass(1)).toBe(256);
    expect(sizeClass(256)).toBe(256);
    expect(sizeClass(257)).toBe(320);
    expect(sizeClass(1024)).toBe(1024);
    expect(sizeClass(1025)).toBe(1280);
    const r = rng(freshSeed());
    for (let i = 0; i < 2000; i++) {
      const b = 256 + Math.floor(r() * 1e8);
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c / b).toBeLessThanOrEqual(1.25 + 1e-9);
      expect(c % 16).toBe(0);
    }
  });
});

describe('webgpu runtime', () => {
  it('reuses freed buffers and tracks memory in use and its peak', async () => {
    const be = await gpu();
    const before = be.rt.memory();
    const a = be.zeros([1000]);
    const afterA = be.rt.memory();
    expect(afterA.inUseBytes - before.inUseBytes).toBe(sizeClass(4000));
    a.dispose();
    expect(be.rt.memory().inUseBytes).toBe(before.inUseBytes);
    const allocated = be.rt.memory().allocatedBytes;
    const b = be.zeros([999]); // same size class: must come from the pool
    expect(be.rt.memory().allocatedBytes).toBe(allocated);
    b.dispose();
    be.rt.resetPeak();
    scope(() => {
      be.zeros([5000]);
      be.zeros([5000]);
    });
    expect(be.rt.memory().peakInUseBytes - be.rt.memory().inUseBytes).toBe(2 * sizeClass(20000));
  });

  it('caches pipelines by WGSL and reuses bind groups across steps', async () => {
    const be = await gpu();
    const x = be.uniform([333], -1, 1, 'x');
    const y = be.uniform([333], -1, 1, 'y');
    scope(() => void be.add(x, y)); // warm: creates pipeline and bind groups
    await be.sync();
    const c0 = { ...be.rt.counters };
    for (let i = 0; i < 5; i++) scope(() => void be.add(x, y));
    await be.sync();
    const c1 = be.rt.counters;
    expect(c1.pipelinesCreated - c0.pipelinesCreated).toBe(0);
    // With the pool, each step gets the same output buffer back, so the bind group repeats.
    expect(c1.bindGroupsCreated - c0.bindGroupsCreated).toBe(0);
    x.dispose();
    y.dispose();
  });

  it('batches many dispatches per submit and stays correct past the submit and uniform-arena limits', async () => {
    const be = await gpu();
    let acc = be.zeros([17]);
    const one = be.fromArray(new Array(17).fill(1), [17]);
    const s0 = be.rt.counters.submits;
    // 1500 uniform-carrying dispatches: more than fit one arena and one submit.
    for (let i = 0; i < 1500; i++) {
      const next = be.axpy(i % 2 === 0 ? 1 : 2, one, acc);
      acc.dispose();
      acc = next;
    }
    const got = await be.read(acc);
    const submits = be.rt.counters.submits - s0;
    expect(submits).toBeGreaterThan(1);
    expect(submits).toBeLessThan(1500 / 50);
    for (const v of got) expect(v).toBe(750 * 1 + 750 * 2);
    acc.dispose();
    one.dispose();
  });

  it('an upload cannot overtake recorded work that read the recycled buffer', async () => {
    const be = await gpu();
    const a = be.fromArray([1, 2, 3], [3]);
    const b = be.fromArray([10, 20, 30], [3]);
    const sum = be.add(a, b); // recorded, not yet submitted
    a.dispose(); // a's buffer returns to the pool while the add still needs it
    const c = be.fromArray([100, 200, 300], [3]); // likely gets a's buffer back
    expect([...(await be.read(sum))]).toEqual([11, 22, 33]);
    expect([...(await be.read(c))]).toEqual([100, 200, 300]);
    for (const t of [b, sum, c]) t.dispose();
  });

  it('u32 tensors round-trip exactly', async () => {
    const be = await gpu();
    const vals = [0, 1, 999, 4294967295, 123456789];
    const t = be.fromArray(vals, [5], 'u32');
    expect([...(await be.read(t))]).toEqual(vals);
    t.dispose();
  });

  it('turns a WebGPU validation error into a thrown DeviceError at the next sync', async () => {
    const be = await gpu();
    // A shader that does not compile: the error is reported asynchronously by Dawn.
    be.rt.dispatch({ name: 'broken', wgsl: '@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }', bindings: [], workgroups: [1, 1, 1] }, []);
    await expect(be.sync()).rejects.toThrow(/WebGPU error/);
    // The device is still usable afterwards.
    const t = be.fromArray([1, 2], [2]);
    expect([...(await be.read(be.scale(t, 3)))]).toEqual([3, 6]);
  });
});

describe('GPU timing', () => {
  it('timeGpu measures a pass with timestamp queries when the adapter has them', async () => {
    const be = await gpu();
    const x = be.uniform([1 << 16], -1, 1, 't');
    let out: ReturnType<typeof be.relu> | null = null;
    const ms = await be.rt.timeGpu(() => {
      out = be.relu(x);
    });
    if (be.rt.hasTimestamps) {
      // One small relu may be shorter than the clock's step (65.536 us on some hosts): 0 is a fair reading.
      expect(ms).not.toBeNull();
      expect(ms!).toBeGreaterThanOrEqual(0);
      expect(ms!).toBeLessThan(10_000);
      // 16 relus over 4 MB each span many steps of any timer.
      const big = be.uniform([1 << 20], -1, 1, 't2');
      const long = await be.rt.timeGpu(() => {
        for (let i = 0; i < 16; i++) be.relu(big).dispose();
      });
      expect(long!).toBeGreaterThan(0);
      expect(long!).toBeLessThan(10_000);
      big.dispose();
    } else {
      expect(ms).toBeNull();
    }
    const got = await be.read(out!);
    const want = await be.read(x);
    for (let i = 0; i < got.length; i++) if (got[i] !== Math.max(0, want[i])) expect.fail(`relu[${i}]`);
  });
});
