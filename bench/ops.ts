// `npm run bench -- ops [--input 224] [--batch 1] [--reps 3] [--only matmul,conv,elementwise]`
// GFLOP/s of matmul and of the VGG10 conv shapes (forward, backward-data, backward-filter),
// GB/s of an elementwise add, on the webgpu backend.
import { parseArgs } from 'node:util';
import { Backend, Tensor, WebGPUBackend, applyKernelEnv, openDevice, scope } from '../engine/index.js';
import { printTable, timeOp } from './timing.js';

/** The distinct conv shapes of VGG10 (3x3, stride 1, pad 1) at a given input size. */
export function vgg10ConvShapes(input: number): { layer: string; H: number; Ci: number; Co: number }[] {
  const s = input;
  return [
    { layer: 'conv1', H: s, Ci: 3, Co: 64 },
    { layer: 'conv2', H: s / 2, Ci: 64, Co: 128 },
    { layer: 'conv3', H: s / 4, Ci: 128, Co: 256 },
    { layer: 'conv4', H: s / 4, Ci: 256, Co: 256 },
    { layer: 'conv5', H: s / 8, Ci: 256, Co: 512 },
    { layer: 'conv6', H: s / 8, Ci: 512, Co: 512 },
    { layer: 'conv7,8', H: s / 16, Ci: 512, Co: 512 },
  ];
}

export async function benchOps(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      input: { type: 'string', default: '224' },
      batch: { type: 'string', default: '1' },
      reps: { type: 'string', default: '3' },
      only: { type: 'string', default: 'elementwise,matmul,conv' },
      adapter: { type: 'string' },
    },
  });
  const input = Number(values.input);
  const batch = Number(values.batch);
  const reps = Number(values.reps);
  const only = new Set(String(values.only).split(','));
  if (!(input % 16 === 0 && input > 0)) throw new Error(`--input must be a positive multiple of 16, got ${values.input}`);
  const gpu = await openDevice({ adapter: values.adapter });
  const be: Backend = applyKernelEnv(new WebGPUBackend(gpu));
  const date = new Date().toISOString().slice(0, 10);
  console.log(`# nudge bench ops, ${date}, adapter ${gpu.info.name} (${gpu.info.driver}), ${reps} timed runs after 1 warm-up, median; timing: ${gpu.features.has('timestamp-query') ? 'GPU timestamp queries' : 'wall clock to queue completion'}`);

  const rows: (string | number)[][] = [];
  const flopRow = (name: string, shape: string, flops: number, ms: number) =>
    rows.push([name, shape, ms, flops / (ms * 1e6), '']);

  if (only.has('elementwise')) {
    const n = 1 << 22;
    const a = be.uniform([n], -1, 1, 1);
    const b = be.uniform([n], -1, 1, 2);
    const t = await timeOp(be, () => scope(() => void be.add(a, b)), { reps });
    rows.push(['add', `${n}`, t.medianMs, '', (3 * 4 * n) / (t.medianMs * 1e6)]);
    a.dispose();
    b.dispose();
  }
  if (only.has('matmul')) {
    for (const n of [512, 1024]) {
      const a = be.uniform([n, n], -1, 1, 3);
      const b = be.uniform([n, n], -1, 1, 4);
      const t = await timeOp(be, () => scope(() => void be.matmul(a, b)), { reps });
      flopRow('matmul', `${n}^3`, 2 * n ** 3, t.medianMs);
      a.dispose();
      b.dispose();
    }
  }
  if (only.has('conv')) {
    for (const { layer, H, Ci, Co } of vgg10ConvShapes(input)) {
      const tensors: Tensor[] = [];
      const x = be.uniform([batch, H, H, Ci], -1, 1, 5);
      const w = be.uniform([3, 3, Ci, Co], -0.1, 0.1, 6);
      const bias = be.uniform([Co], -0.1, 0.1, 7);
      const dy = be.uniform([batch, H, H, Co], -1, 1, 8);
      tensors.push(x, w, bias, dy);
      const flops = 2 * batch * H * H * Co * 9 * Ci;
      const shape = `${batch}x${H}x${H}x${Ci}->${Co}`;
      const opts = { stride: 1 as const, pad: 1 as const };
      const fwd = await timeOp(be, () => scope(() => void be.conv2d(x, w, bias, opts)), { reps });
      flopRow(`${layer} fwd`, shape, flops, fwd.medianMs);
      const bwdD = await timeOp(be, () => scope(() => void be.conv2dBackwardData(dy, w, x.shape, opts)), { reps });
      flopRow(`${layer} bwd-data`, shape, flops, bwdD.medianMs);
      const bwdF = await timeOp(be, () => scope(() => void be.conv2dBackwardFilter(x, dy, w.shape, opts)), { reps });
      flopRow(`${layer} bwd-filter`, shape, flops, bwdF.medianMs);
      for (const t of tensors) t.dispose();
    }
  }
  printTable(['op', 'shape', 'ms', 'GFLOP/s', 'GB/s'], rows);
}
