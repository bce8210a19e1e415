// Backend.imagesFromU8: byte images uploaded packed and normalized on the device, against
// the float64 reference on fresh random bytes; awkward sizes leave a partial last word.
import { describe, expect, it } from 'vitest';
import { AnalogBackend, ShapeError, Shape, loadDeviceModel, sizeOf } from '../engine/index.js';
import { imagesFromU8Kernel } from '../kernels/image.js';
import { LabelledImages, imagesTensor, loadBatch } from '../pcn/train.js';
import { freshSeed, gpu, ref, relErr, rng } from './helpers.js';

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

function bytes(n: number, r: () => number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(256 * r());
  // Both ends of the range, where a lost bit or sign would show most.
  if (n > 0) b[0] = 0;
  if (n > 1) b[n - 1] = 255;
  return b;
}

describe('imagesFromU8', () => {
  const cases: { shape: Shape; mean: number[]; std: number[] }[] = [
    { shape: [3, 5, 7, 3], mean: IMAGENET_MEAN, std: IMAGENET_STD }, // 315 bytes: 3 left in the last word
    { shape: [2, 3, 3, 1], mean: [0.5], std: [0.25] }, // 18: 2 left
    { shape: [1, 1, 1, 1], mean: [0], std: [1] }, // one byte
    { shape: [2, 4, 4, 4], mean: [0.1, 0.2, 0.3, 0.4], std: [0.5, 1, 2, 0.05] }, // whole words, C = 4
    { shape: [5, 9, 11, 3], mean: IMAGENET_MEAN, std: IMAGENET_STD }, // 1485: 1 left
  ];
  for (const c of cases) {
    it(`matches the reference for ${c.shape.join('x')} (C=${c.shape[3]})`, async () => {
      const g = await gpu();
      const seed = freshSeed();
      const r = rng(seed);
      const data = bytes(sizeOf(c.shape), r);
      const want = await ref.read(ref.imagesFromU8(data, c.shape, c.mean, c.std));
      // The formula itself, written out once more so that the reference is checked too.
      expect(want[0]).toBeCloseTo((0 - c.mean[0]) / c.std[0], 12);
      if (want.length > 1) expect(want[want.length - 1]).toBeCloseTo((1 - c.mean[c.shape[3] - 1]) / c.std[c.shape[3] - 1], 12);
      const t = g.imagesFromU8(data, c.shape, c.mean, c.std);
      expect(t.shape).toEqual(c.shape);
      const got = await g.read(t);
      t.dispose();
      expect(relErr(got, want), `seed ${seed}`).toBeLessThan(1e-6);
    });
  }

  it('reads an unaligned view of a larger buffer', async () => {
    const g = await gpu();
    const seed = freshSeed();
    const all = bytes(64, rng(seed));
    // byteOffset 3: not a whole word, so the op must copy rather than reinterpret.
    const view = all.subarray(3, 3 + 2 * 2 * 3 * 3);
    const shape: Shape = [2, 2, 3, 3];
    const want = await ref.read(ref.imagesFromU8(view, shape, IMAGENET_MEAN, IMAGENET_STD));
    const got = await g.read(g.imagesFromU8(view, shape, IMAGENET_MEAN, IMAGENET_STD));
    expect(relErr(got, want), `seed ${seed}`).toBeLessThan(1e-6);
  });

  it('the analog backend passes it to its inner backend', async () => {
    const model = loadDeviceModel('ideal');
    const be = new AnalogBackend(ref, model, { seed: 1 });
    const data = bytes(2 * 2 * 2 * 3, rng(freshSeed()));
    const shape: Shape = [2, 2, 2, 3];
    expect(await be.read(be.imagesFromU8(data, shape, IMAGENET_MEAN, IMAGENET_STD))).toEqual(await ref.read(ref.imagesFromU8(data, shape, IMAGENET_MEAN, IMAGENET_STD)));
  });

  it('refuses bad input with a ShapeError that says what is wrong', async () => {
    const g = await gpu();
    for (const be of [ref, g]) {
      const d = new Uint8Array(12);
      expect(() => be.imagesFromU8(d, [1, 2, 2, 4], IMAGENET_MEAN, IMAGENET_STD)).toThrow(/12 bytes given for shape \[1,2,2,4\]|16 elements/);
      expect(() => be.imagesFromU8(d, [1, 2, 2, 3], [0.5], [0.5])).toThrow(/one value per channel \(3\)/);
      expect(() => be.imagesFromU8(d, [1, 2, 2, 3], IMAGENET_MEAN, [0.2, 0, 0.2])).toThrow(/std\[1\] must be positive/);
      expect(() => be.imagesFromU8(d, [1, 2, 2, 3], IMAGENET_MEAN, [0.2, -1, 0.2])).toThrow(ShapeError);
      expect(() => be.imagesFromU8(d, [4, 3], IMAGENET_MEAN, IMAGENET_STD)).toThrow(/rank 4/);
      expect(() => be.imagesFromU8(Float32Array.from(d) as unknown as Uint8Array, [1, 2, 2, 3], IMAGENET_MEAN, IMAGENET_STD)).toThrow(/Uint8Array/);
    }
  });

  it('kernel: one invocation per packed word, constants inlined', () => {
    const spec = imagesFromU8Kernel(315, IMAGENET_MEAN, IMAGENET_STD);
    expect(spec.bindings).toEqual(['read', 'rw']);
    expect(spec.workgroups[0]).toBe(Math.ceil(Math.ceil(315 / 4) / 64));
    expect(spec.wgsl).toContain('array<f32, 3>');
  });
});

describe('pcn/train: byte batches go through imagesFromU8', () => {
  it('loadBatch prefers loadBatchU8 (with the epoch, also for the prefetch); imagesTensor normalizes on the backend', async () => {
    const calls: string[] = [];
    const mean = [0.25, 0.5, 0.75];
    const std = [0.5, 0.25, 2];
    const bytesOf = (idx: ArrayLike<number>) => Uint8Array.from({ length: idx.length * 2 * 2 * 3 }, (_, i) => (i * 37 + idx[0]) % 256);
    const set: LabelledImages = {
      shape: [2, 2, 3],
      classes: 3,
      count: 10,
      normalization: { mean, std },
      batch: () => {
        throw new Error('not synchronous');
      },
      loadBatch: async () => {
        throw new Error('the byte form should be used');
      },
      loadBatchU8: async (idx, epoch) => {
        calls.push(`u8 ${Array.from(idx)} e${epoch}`);
        return { x: bytesOf(idx), y: Uint32Array.from(idx, (i) => i % 3) };
      },
      prefetch: (idx, epoch) => void calls.push(`prefetch ${Array.from(idx)} e${epoch}`),
    };
    const b = await loadBatch(set, [4, 1], [7, 2], 3);
    expect(calls).toEqual(['u8 4,1 e3', 'prefetch 7,2 e3']);
    expect(b.x).toBeInstanceOf(Uint8Array);
    const t = imagesTensor(ref, set, b.x, 2);
    expect(t.shape).toEqual([2, 2, 2, 3]);
    const got = await ref.read(t);
    got.forEach((v, i) => expect(v).toBeCloseTo((b.x[i] / 255 - mean[i % 3]) / std[i % 3], 12));
    // Float32 batches (Fashion-MNIST, synthetic sets) are uploaded as they are.
    const f = Float32Array.from({ length: 12 }, (_, i) => i / 7);
    expect(Array.from(await ref.read(imagesTensor(ref, { ...set, normalization: undefined }, f, 1)))).toEqual(Array.from(f));
  });
});
