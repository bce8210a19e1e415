// Error paths: user mistakes are caught before any GPU work, with messages that name the
// op, the tensors and the shapes; disposal and scopes behave; the no-adapter diagnosis
// says what to install.
import { afterEach, describe, expect, it } from 'vitest';
import {
  Backend,
  DisposedTensorError,
  ShapeError,
  Tensor,
  WebGPUBackend,
  diagnoseNoAdapter,
  scope,
  sizeOf,
  Shape,
} from '../engine/index.js';
import { gpu, ref } from './helpers.js';

const backends: [string, () => Promise<Backend>][] = [
  ['reference', async () => ref],
  ['webgpu', gpu],
];

function filled(be: Backend, shape: Shape, dtype: 'f32' | 'u32' = 'f32'): Tensor {
  return be.fromArray(new Array<number>(sizeOf(shape)).fill(dtype === 'u32' ? 1 : 0.5), shape, dtype);
}

/** What the GPU has been asked to do so far; unchanged means no work was recorded or allocated. */
function gpuWork(be: Backend): string {
  if (!(be instanceof WebGPUBackend)) return '';
  const { dispatches, submits } = be.rt.counters;
  return JSON.stringify({ dispatches, submits, liveBuffers: be.rt.memory().liveBuffers });
}

// [title, build inputs and return the failing call, fragments the message must contain]
type BadCase = [string, (be: Backend) => () => unknown, string[]];

const badShapes: BadCase[] = [
  ['add of different shapes', (be) => { const a = filled(be, [2, 3]); const b = filled(be, [3, 2]); return () => be.add(a, b); }, ['add:', '[2,3]', '[3,2]']],
  ['sub of different ranks', (be) => { const a = filled(be, [6]); const b = filled(be, [2, 3]); return () => be.sub(a, b); }, ['sub:', '[6]', '[2,3]']],
  ['mul of different shapes', (be) => { const a = filled(be, [5, 1]); const b = filled(be, [5]); return () => be.mul(a, b); }, ['mul:', '[5,1]', '[5]']],
  ['axpy of different shapes', (be) => { const a = filled(be, [4]); const b = filled(be, [5]); return () => be.axpy(2, a, b); }, ['axpy:', '[4]', '[5]']],
  ['reluMask of different shapes', (be) => { const a = filled(be, [3, 3]); const b = filled(be, [9]); return () => be.reluMask(a, b); }, ['reluMask:', '[3,3]', '[9]']],
  ['scale of a u32 tensor', (be) => { const a = filled(be, [4], 'u32'); return () => be.scale(a, 2); }, ['scale:', 'f32', 'u32', '[4]']],
  ['relu of a u32 tensor', (be) => { const a = filled(be, [2, 2], 'u32'); return () => be.relu(a); }, ['relu:', 'u32', '[2,2]']],
  ['sum over an axis out of range', (be) => { const a = filled(be, [2, 3]); return () => be.sum(a, [2]); }, ['sum:', 'axis 2', '[2,3]']],
  ['sum over a repeated axis', (be) => { const a = filled(be, [2, 3]); return () => be.sum(a, [1, -1]); }, ['sum:', 'repeated']],
  ['biasGrad of a scalar', (be) => { const a = filled(be, []); return () => be.biasGrad(a); }, ['biasGrad:', '[]']],
  ['matmul inner dims', (be) => { const a = filled(be, [2, 3]); const b = filled(be, [2, 3]); return () => be.matmul(a, b); }, ['matmul:', '[2,3]', '3 vs 2']],
  ['matmul transA inner dims', (be) => { const a = filled(be, [2, 3]); const b = filled(be, [3, 4]); return () => be.matmul(a, b, { transA: true }); }, ['matmul:', 'A^T [2,3]', 'B [3,4]']],
  ['matmul of a rank-3 tensor', (be) => { const a = filled(be, [2, 3, 1]); const b = filled(be, [3, 4]); return () => be.matmul(a, b); }, ['matmul:', 'rank 2', '[2,3,1]']],
  ['conv2d channel mismatch', (be) => { const x = filled(be, [1, 5, 5, 3]); const w = filled(be, [3, 3, 4, 8]); return () => be.conv2d(x, w, null); }, ['conv2d:', '3 channels', '[3,3,4,8]', '[1,5,5,3]']],
  ['conv2d 5x5 filter', (be) => { const x = filled(be, [1, 7, 7, 2]); const w = filled(be, [5, 5, 2, 4]); return () => be.conv2d(x, w, null); }, ['conv2d:', '5x5', '[5,5,2,4]']],
  ['conv2d bias length', (be) => { const x = filled(be, [1, 5, 5, 3]); const w = filled(be, [3, 3, 3, 8]); const b = filled(be, [7]); return () => be.conv2d(x, w, b); }, ['conv2d:', 'bias', '[8]', '[7]']],
  ['conv2d stride 3', (be) => { const x = filled(be, [1, 5, 5, 3]); const w = filled(be, [3, 3, 3, 8]); return () => be.conv2d(x, w, null, { stride: 3 as 2 }); }, ['conv2d:', 'stride', '3']],
  ['conv2d input smaller than the filter', (be) => { const x = filled(be, [1, 2, 2, 3]); const w = filled(be, [3, 3, 3, 8]); return () => be.conv2d(x, w, null); }, ['conv2d:', 'empty output', '[1,2,2,3]', '[3,3,3,8]']],
  ['conv2d of an NHW tensor', (be) => { const x = filled(be, [5, 5, 3]); const w = filled(be, [3, 3, 3, 8]); return () => be.conv2d(x, w, null); }, ['conv2d:', 'NHWC', '[5,5,3]']],
  ['conv2dBackwardData dy shape', (be) => { const dy = filled(be, [1, 4, 4, 8]); const w = filled(be, [3, 3, 3, 8]); return () => be.conv2dBackwardData(dy, w, [1, 5, 5, 3], { pad: 1 }); }, ['conv2dBackwardData:', '[1,5,5,8]', '[1,4,4,8]', '[1,5,5,3]']],
  ['conv2dBackwardData filter channels', (be) => { const dy = filled(be, [1, 5, 5, 8]); const w = filled(be, [3, 3, 2, 8]); return () => be.conv2dBackwardData(dy, w, [1, 5, 5, 3], { pad: 1 }); }, ['conv2dBackwardData:', '[3,3,2,8]', '[1,5,5,3]']],
  ['conv2dBackwardFilter dy shape', (be) => { const x = filled(be, [2, 7, 7, 3]); const dy = filled(be, [2, 7, 7, 8]); return () => be.conv2dBackwardFilter(x, dy, [3, 3, 3, 8], { stride: 2, pad: 1 }); }, ['conv2dBackwardFilter:', '[2,4,4,8]', '[2,7,7,8]']],
  ['conv2dBackwardFilter filter channels', (be) => { const x = filled(be, [1, 5, 5, 3]); const dy = filled(be, [1, 5, 5, 8]); return () => be.conv2dBackwardFilter(x, dy, [1, 1, 4, 8]); }, ['conv2dBackwardFilter:', '[1,1,4,8]', '[1,5,5,3]']],
  ['maxPool2x2 of a one-pixel-high input', (be) => { const x = filled(be, [1, 1, 4, 3]); return () => be.maxPool2x2(x); }, ['maxPool2x2:', '[1,1,4,3]']],
  ['maxPool2x2 of a rank-2 tensor', (be) => { const x = filled(be, [4, 4]); return () => be.maxPool2x2(x); }, ['maxPool2x2:', '[4,4]']],
  ['maxPool2x2Backward f32 argmax', (be) => { const dy = filled(be, [1, 2, 3, 5]); const am = filled(be, [1, 2, 3, 5]); return () => be.maxPool2x2Backward(dy, am, [1, 5, 7, 5]); }, ['maxPool2x2Backward:', 'argmax', 'u32']],
  ['maxPool2x2Backward dy shape', (be) => { const dy = filled(be, [1, 3, 3, 5]); const am = filled(be, [1, 2, 3, 5], 'u32'); return () => be.maxPool2x2Backward(dy, am, [1, 5, 7, 5]); }, ['maxPool2x2Backward:', '[1,2,3,5]', '[1,3,3,5]', '[1,5,7,5]']],
  ['softmaxCrossEntropy label count', (be) => { const z = filled(be, [4, 10]); const l = filled(be, [3], 'u32'); return () => be.softmaxCrossEntropy(z, l); }, ['softmaxCrossEntropy:', '[4]', '[4,10]', '[3]']],
  ['softmaxCrossEntropy f32 labels', (be) => { const z = filled(be, [4, 10]); const l = filled(be, [4]); return () => be.softmaxCrossEntropy(z, l); }, ['softmaxCrossEntropy:', 'labels', 'u32']],
  ['softmaxCrossEntropy rank-1 logits', (be) => { const z = filled(be, [10]); const l = filled(be, [1], 'u32'); return () => be.softmaxCrossEntropy(z, l); }, ['softmaxCrossEntropy:', 'rank 2', '[10]']],
  ['topkCorrect label count', (be) => { const z = filled(be, [4, 10]); const l = filled(be, [5], 'u32'); return () => be.topkCorrect(z, l, 1); }, ['topkCorrect:', '[4,10]', '[5]']],
  ['topkCorrect k = 0', (be) => { const z = filled(be, [4, 10]); const l = filled(be, [4], 'u32'); return () => be.topkCorrect(z, l, 0); }, ['topkCorrect:', 'k', '0']],
  ['sgdNesterov grad shape', (be) => { const p = filled(be, [5]); const g = filled(be, [4]); const v = filled(be, [5]); return () => be.sgdNesterov(p, g, v, { lr: 0.1, momentum: 0.9, weightDecay: 0 }); }, ['sgdNesterov:', '[5]', '[4]']],
  ['sgdNesterov velocity shape', (be) => { const p = filled(be, [2, 3]); const g = filled(be, [2, 3]); const v = filled(be, [3, 2]); return () => be.sgdNesterov(p, g, v, { lr: 0.1, momentum: 0.9, weightDecay: 0 }); }, ['sgdNesterov:', '[2,3]', '[3,2]']],
  ['reshape to another size', (be) => { const a = filled(be, [2, 3]); return () => be.reshape(a, [4]); }, ['reshape:', '[2,3]', '[4]']],
  ['fromArray with too few values', (be) => () => be.fromArray([1, 2, 3], [2, 2]), ['fromArray:', '3 values', '[2,2]']],
];

describe.each(backends)('%s: bad shapes are ShapeErrors naming the op and the shapes, before any GPU work', (_name, getBackend) => {
  it.each(badShapes)('%s', async (_title, build, fragments) => {
    const be = await getBackend();
    const call = build(be);
    const before = gpuWork(be);
    let caught: unknown;
    try {
      call();
    } catch (e) {
      caught = e;
    }
    expect(caught, 'no error thrown').toBeInstanceOf(ShapeError);
    const msg = (caught as Error).message;
    for (const f of fragments) expect(msg, `message ${JSON.stringify(msg)} should mention ${f}`).toContain(f);
    expect(gpuWork(be), `GPU work recorded or allocated before the error: ${msg}`).toBe(before);
  });

});

describe('reference and webgpu word every shape mistake identically', () => {
  it.each(badShapes)('%s', async (_title, build) => {
    const messageOn = (be: Backend): string => {
      try {
        build(be)();
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(messageOn(await gpu())).toBe(messageOn(ref));
  });
});

describe.each(backends)('%s: disposed tensors', (_name, getBackend) => {
  it('every op refuses a disposed tensor with a DisposedTensorError naming it', async () => {
    const be = await getBackend();
    const calls: [string, (t: Tensor, ok: Tensor, ok2: Tensor) => unknown][] = [
      ['add', (t, ok) => be.add(ok, t)],
      ['relu', (t) => be.relu(t)],
      ['clone', (t) => be.clone(t)],
      ['reshape', (t) => be.reshape(t, [3, 2])],
      ['sum', (t) => be.sum(t, [0])],
      ['matmul', (t, ok) => be.matmul(ok, t, { transB: true })],
      ['sgdNesterov', (t, ok, ok2) => be.sgdNesterov(ok, ok2, t, { lr: 1, momentum: 0, weightDecay: 0 })],
    ];
    for (const [op, call] of calls) {
      const t = filled(be, [2, 3]);
      const ok = filled(be, [2, 3]);
      const ok2 = filled(be, [2, 3]);
      t.dispose();
      t.dispose(); // twice is harmless
      const before = gpuWork(be);
      expect(() => call(t, ok, ok2), op).toThrow(DisposedTensorError);
      expect(() => call(t, ok, ok2), op).toThrow(new RegExp(`^${op}: tensor #${t.id} \\[2,3\\] was already disposed`));
      expect(gpuWork(be), op).toBe(before);
    }
    const t = filled(be, [4]);
    t.dispose();
    await expect(be.read(t)).rejects.toThrow(`read: tensor #${t.id} [4] was already disposed`);
    // conv2d names the disposed filter, not the live input.
    const x = filled(be, [1, 3, 3, 2]);
    const w = filled(be, [1, 1, 2, 2]);
    w.dispose();
    expect(() => be.conv2d(x, w, null)).toThrow(`tensor #${w.id} `);
  });
});

describe('mixing backends', () => {
  it('tensors of the reference and webgpu backends cannot be combined, in either direction', async () => {
    const g = await gpu();
    const a = filled(g, [2, 3]);
    const b = filled(ref, [2, 3]);
    expect(() => g.add(a, b)).toThrow(ShapeError);
    expect(() => g.add(a, b)).toThrow(`add: tensor #${b.id} lives on backend 'reference', not 'webgpu'`);
    expect(() => ref.add(b, a)).toThrow(`add: tensor #${a.id} lives on backend 'webgpu', not 'reference'`);
    const w = filled(ref, [1, 1, 3, 4]);
    const x = filled(g, [1, 2, 2, 3]);
    const before = gpuWork(g);
    expect(() => g.conv2d(x, w, null)).toThrow(`conv2d: tensor #${w.id} lives on backend 'reference'`);
    expect(() => g.matmul(a, filled(ref, [3, 2]))).toThrow(/^matmul: .* lives on backend 'reference'/);
    expect(gpuWork(g)).toBe(before);
    await expect(ref.read(a)).rejects.toThrow(`read: tensor #${a.id} lives on backend 'webgpu'`);
  });
});

describe.each(backends)('%s: scope()', (_name, getBackend) => {
  it('disposes temporaries and keeps the returned tensors (single, array, object) and kept ones', async () => {
    const be = await getBackend();
    const outside = filled(be, [3]);
    let temps: Tensor[] = [];
    let kept: Tensor | undefined;
    const result = scope(() => {
      const a = be.add(outside, outside);
      const b = be.mul(a, a);
      const c = be.relu(b);
      kept = be.scale(c, 2).keep();
      temps = [a, b];
      return { c, list: [be.sub(c, a)] };
    });
    expect(temps.every((t) => t.disposed)).toBe(true);
    expect(outside.disposed).toBe(false);
    expect(result.c.disposed).toBe(false);
    expect(result.list[0].disposed).toBe(false);
    expect(kept!.disposed).toBe(false);
    expect(Array.from(await be.read(result.list[0]))).toEqual([0, 0, 0]);
  });

  it('a nested scope hands its result to the outer one, which disposes it unless returned', async () => {
    const be = await getBackend();
    const x = filled(be, [2]);
    let inner: Tensor | undefined;
    const out = scope(() => {
      inner = scope(() => be.add(x, x));
      expect(inner.disposed).toBe(false);
      return be.mul(inner, inner);
    });
    expect(inner!.disposed).toBe(true);
    expect(Array.from(await be.read(out))).toEqual([1, 1]);
  });

  it('disposes everything created when fn throws, and rethrows', async () => {
    const be = await getBackend();
    const x = filled(be, [2, 2]);
    const made: Tensor[] = [];
    const live = be instanceof WebGPUBackend ? be.rt.memory().liveBuffers : 0;
    expect(() =>
      scope(() => {
        made.push(be.add(x, x), be.relu(x));
        made.push(be.matmul(x, made[1]));
        be.matmul(x, filled(be, [3, 3])); // a ShapeError midway through a step
      }),
    ).toThrow(ShapeError);
    expect(made.length).toBe(3);
    expect(made.every((t) => t.disposed)).toBe(true);
    expect(x.disposed).toBe(false);
    if (be instanceof WebGPUBackend) expect(be.rt.memory().liveBuffers).toBe(live);
  });

  it('refuses an async fn (the tensors would outlive the scope) and disposes what it made', async () => {
    const be = await getBackend();
    const x = filled(be, [2]);
    let made: Tensor | undefined;
    expect(() =>
      scope(() => {
        made = be.add(x, x);
        return Promise.resolve(made);
      }),
    ).toThrow(/synchronous/);
    expect(made!.disposed).toBe(true);
  });
});

describe('no-adapter diagnosis', () => {
  const saved = { icd: process.env.VK_ICD_FILENAMES, driver: process.env.VK_DRIVER_FILES };
  afterEach(() => {
    for (const [k, v] of [['VK_ICD_FILENAMES', saved.icd], ['VK_DRIVER_FILES', saved.driver]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('names the Vulkan loader, the ICD and the setup script', () => {
    const msg = diagnoseNoAdapter();
    expect(msg).toMatch(/^no WebGPU adapter/);
    expect(msg).toContain('libvulkan.so.1');
    expect(msg).toMatch(/(found|missing):\s+the Vulkan loader libvulkan\.so\.1/);
    expect(msg).toMatch(/ICD/);
    expect(msg).toContain('bash tools/setup.sh');
  });

  it('points at a VK_ICD_FILENAMES entry that does not exist', () => {
    delete process.env.VK_DRIVER_FILES;
    process.env.VK_ICD_FILENAMES = '/nonexistent/nudge_test_icd.json';
    const msg = diagnoseNoAdapter();
    expect(msg).toContain('VK_ICD_FILENAMES');
    expect(msg).toMatch(/missing: \/nonexistent\/nudge_test_icd\.json/);
    expect(msg).toContain('tools/setup.sh');
  });

  it('is a pure function of the filesystem and environment: the same answer twice', () => {
    expect(diagnoseNoAdapter()).toBe(diagnoseNoAdapter());
  });
});

describe('u32 uploads are validated on both backends', () => {
  it.each(['webgpu', 'reference'])('%s rejects negative, fractional and too-large labels', async (name) => {
    const { gpu: getGpu, ref: refBe } = await import('./helpers.js');
    const be = name === 'webgpu' ? await getGpu() : refBe;
    for (const bad of [-1, 1.5, 2 ** 32, NaN]) {
      expect(() => be.fromArray([0, bad], [2], 'u32')).toThrow(/u32 values must be integers/);
    }
    const ok = be.fromArray([0, 7, 2 ** 32 - 1], [3], 'u32');
    expect([...(await be.read(ok))]).toEqual([0, 7, 2 ** 32 - 1]);
  });
});

describe('scaleRows shape errors', () => {
  it.each(['webgpu', 'reference'])('%s names the op and the shapes', async (name) => {
    const { gpu: getGpu, ref: refBe } = await import('./helpers.js');
    const be = name === 'webgpu' ? await getGpu() : refBe;
    const x = be.zeros([4, 3]);
    const s = be.zeros([3]);
    expect(() => be.scaleRows(x, s)).toThrow(/scaleRows: scales must be \[4\] for input \[4,3\], got \[3\]/);
  });
});
