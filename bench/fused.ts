// `npm run bench -- fused [--batch 32] [--input 32] [--reps 3] [--layers 1,2,3,4]`
// The conv-block ops on the VGG5 conv layers (pcn/models.ts), fused kernels against their
// composition of separate ops (WebGPUBackend.fuse): convBlock with pool (where the layer
// has one), ReLU, add and residual, as the relaxation runs it; convBlockBackwardData with
// the pool's argmax gate (the residual arrives already masked by the ReLU).
import { parseArgs } from 'node:util';
import { ConvBlockOptions, Tensor, WebGPUBackend, applyKernelEnv, openDevice, scope } from '../engine/index.js';
import { vgg5 } from '../pcn/models.js';
import { ConvLayer } from '../pcn/layers.js';
import { buildLayers } from '../pcn/network.js';
import { printTable, timeOp } from './timing.js';

interface BenchLayer {
  name: string;
  H: number;
  Ci: number;
  Co: number;
  pool: boolean;
}

/** VGG5's conv layers (3x3, stride 1, pad 1) for a square input of `input` pixels. */
function vgg5ConvLayers(input: number): BenchLayer[] {
  return buildLayers(vgg5([input, input, 3], 10))
    .filter((l): l is ConvLayer => l instanceof ConvLayer)
    .map((l, i) => ({ name: `conv${i + 1}`, H: l.inShape[0], Ci: l.inShape[2], Co: l.out, pool: l.pool }));
}

export async function benchFused(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      batch: { type: 'string', default: '32' },
      input: { type: 'string', default: '32' },
      reps: { type: 'string', default: '3' },
      layers: { type: 'string', default: '1,2,3,4' },
      adapter: { type: 'string' },
    },
  });
  const batch = Number(values.batch);
  const input = Number(values.input);
  const reps = Number(values.reps);
  if (!(Number.isInteger(batch) && batch > 0)) throw new Error(`--batch must be a positive integer, got ${values.batch}`);
  if (!(Number.isInteger(input) && input % 8 === 0 && input > 0)) throw new Error(`--input must be a positive multiple of 8, got ${values.input}`);
  if (!(Number.isInteger(reps) && reps > 0)) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
  const all = vgg5ConvLayers(input);
  const picked = String(values.layers)
    .split(',')
    .map((s) => {
      const i = Number(s);
      if (!(Number.isInteger(i) && i >= 1 && i <= all.length)) throw new Error(`--layers: ${s} is not a layer number 1..${all.length}`);
      return all[i - 1];
    });
  const gpu = await openDevice({ adapter: values.adapter });
  const be = applyKernelEnv(new WebGPUBackend(gpu));
  const date = new Date().toISOString().slice(0, 10);
  console.log(
    `# nudge bench fused, ${date}, adapter ${gpu.info.name} (${gpu.info.driver}), VGG5 conv layers, batch ${batch}, ` +
      `${input}x${input} input; ${reps} timed runs after 1 warm-up, median ms; timing: ${gpu.features.has('timestamp-query') ? 'GPU timestamp queries' : 'wall clock to queue completion'}`,
  );
  const rows: (string | number)[][] = [];
  const both = async (run: () => void) => {
    const out: number[] = [];
    // Fused: the kernels themselves, gates in the loads included (a CPU adapter's default
    // would route first: WebGPUBackend.gatedLoads).
    for (const fuse of [true, false]) {
      be.fuse = fuse;
      be.gatedLoads = fuse;
      out.push((await timeOp(be, () => scope(run), { reps })).medianMs);
    }
    be.fuse = true;
    return out;
  };
  for (const l of picked) {
    const made: Tensor[] = [];
    const u = (shape: number[], lim: number, seed: number) => {
      const t = be.uniform(shape, -lim, lim, seed);
      made.push(t);
      return t;
    };
    const Ho = l.pool ? l.H / 2 : l.H;
    const x = u([batch, l.H, l.H, l.Ci], 1, 1);
    const w = u([3, 3, l.Ci, l.Co], 0.1, 2);
    const bias = u([l.Co], 0.1, 3);
    const add = u([batch, Ho, Ho, l.Co], 1, 4);
    const conv = { stride: 1 as const, pad: 1 as const };
    const opts: ConvBlockOptions = { ...conv, pool: l.pool, relu: true, add, residual: true };
    const shape = `${batch}x${l.H}x${l.H}x${l.Ci}->${l.Co}${l.pool ? ' pool' : ''}`;
    const [fwdFused, fwdComp] = await both(() => void be.convBlock(x, w, bias, opts));
    rows.push([`${l.name} convBlock`, shape, fwdFused, fwdComp, fwdComp / fwdFused]);
    if (l.pool) {
      const res = be.convBlock(x, w, bias, opts);
      made.push(...([res.a, res.argmax, res.h, res.r] as Tensor[]));
      const gates = { ...conv, argmax: res.argmax };
      const [bwdFused, bwdComp] = await both(() => void be.convBlockBackwardData(res.r!, w, x.shape, gates));
      rows.push([`${l.name} convBlockBackwardData`, `${shape} (argmax)`, bwdFused, bwdComp, bwdComp / bwdFused]);
    }
    for (const t of made) t.dispose();
  }
  printTable(['op', 'shape', 'fused ms', 'composition ms', 'speedup'], rows);
}
