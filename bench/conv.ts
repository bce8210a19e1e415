// `npm run bench -- conv`: GFLOP/s of the VGG5 and VGG10 conv shapes with the default
// kernel config, the tuned one (from the tune cache, or tuned now within --budget), and
// @tensorflow/tfjs-backend-webgpu's conv2d on the same Dawn adapter, all measured in this
// run, the same way: GPU timestamp queries (tfjs: tf.time's kernelMs, which uses them too),
// median of --reps runs after a warm-up. Where the adapter has shader-f16 (and unless
// --no-f16), also the shape tuned with precision 'f16' (f16 configs compete with the f32
// ones; cached apart): the f16 column.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  ConvGeometry,
  KernelChoices,
  Problem,
  tunableOp,
  TunableOpName,
  Tuner,
  WebGPUBackend,
  applyKernelEnv,
  canonicalConfig,
  configLabel,
  dawnGpu,
  openDevice,
  tunerOptionsFromEnv,
} from '../engine/index.js';
import { modelSpec, parseDuration, trainingShapes } from '../tools/tune.js';
import { printTable, timeOp } from './timing.js';

/** Uniform [-1, 1) floats from xorshift32: VGG10's batch-64 activations hold 2*10^8 values, too many for seedrandom. */
function fastUniform(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = (seed * 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) / 2147483648 - 1;
  }
  return out;
}

const OP_SHORT: Record<string, string> = { conv2d: 'fwd', conv2dBackwardData: 'bwd-data', conv2dBackwardFilter: 'bwd-filter' };

/** Loads tfjs-core and the webgpu backend on our Dawn instance; null (with why) when it cannot. */
async function loadTfjs(): Promise<{ tf: typeof import('@tensorflow/tfjs-core'); why: '' } | { tf: null; why: string }> {
  try {
    const gpu = dawnGpu();
    if (!gpu) return { tf: null, why: 'no Dawn instance' };
    const g = globalThis as unknown as { navigator?: object };
    if (!g.navigator) g.navigator = {};
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) return { tf: null, why: 'tfjs could not start its webgpu backend' };
    await tf.ready();
    return { tf, why: '' };
  } catch (e) {
    return { tf: null, why: (e as Error).message.split('\n')[0] };
  }
}

async function timeTfjsConv(tf: typeof import('@tensorflow/tfjs-core'), g: ConvGeometry, reps: number): Promise<number> {
  type T4 = import('@tensorflow/tfjs-core').Tensor4D;
  const x = tf.randomUniform([g.N, g.H, g.W, g.Ci], -1, 1) as T4;
  const w = tf.randomUniform([g.KH, g.KW, g.Ci, g.Co], -1, 1) as T4;
  const pad = g.pad === 1 ? 'same' : 'valid';
  const stride = g.stride as 1 | 2;
  try {
    for (let i = 0; i < 2; i++) {
      const y = tf.conv2d(x, w, stride, pad);
      await y.data();
      y.dispose();
    }
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      let y: { dispose(): void } | null = null;
      const t = await tf.time(() => {
        y = tf.conv2d(x, w, stride, pad);
      });
      (y as { dispose(): void } | null)?.dispose();
      const k = t.kernelMs as number | { error: string };
      times.push(typeof k === 'number' && k > 0 ? k : t.wallMs);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  } finally {
    x.dispose();
    w.dispose();
  }
}

export async function benchConv(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      models: { type: 'string', default: 'vgg5,vgg10' },
      'batch-vgg5': { type: 'string', default: '16' },
      'batch-vgg10': { type: 'string', default: '1' },
      'input-vgg10': { type: 'string', default: '224' },
      ops: { type: 'string', default: 'conv2d' },
      budget: { type: 'string', default: '20s' },
      reps: { type: 'string', default: '3' },
      tfjs: { type: 'boolean', default: true },
      'no-tfjs': { type: 'boolean', default: false },
      'no-f16': { type: 'boolean', default: false },
      cache: { type: 'string' },
      adapter: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const reps = Number(values.reps);
  const budgetMs = parseDuration(values.budget!);
  const ops = new Set(values.ops!.split(',')) as Set<TunableOpName>;
  const gpu = await openDevice({ adapter: values.adapter });
  const be = applyKernelEnv(new WebGPUBackend(gpu));
  const tuner = new Tuner(be, tunerOptionsFromEnv({ budgetMs, reps, ...(values.cache ? { cacheFile: values.cache } : {}) }));
  const tfjs = values.tfjs && !values['no-tfjs'] ? await loadTfjs() : { tf: null, why: 'disabled (--no-tfjs)' };
  const f16 = !values['no-f16'] && gpu.features.has('shader-f16');
  // Where the defaults may run Winograd, the register default is timed too (the previous default, for the ratio).
  const showRegister = be.winogradDefaults;
  const kernelChoices: KernelChoices = {
    precision: be.precision,
    subgroupTiles: be.subgroupTiles,
    defaultTileSubgroup: be.defaultTileSubgroup,
    parallelism: be.parallelism,
    winogradDefaults: be.winogradDefaults,
  };
  const date = new Date().toISOString().slice(0, 10);
  console.log(
    `# nudge bench conv, ${date}, adapter ${gpu.info.name} (${gpu.info.driver}); median of ${reps} after warm-up, ` +
      `${gpu.features.has('timestamp-query') ? 'GPU timestamp queries' : 'wall clock'}; tuning budget ${budgetMs / 1000} s/shape; ` +
      `tfjs-webgpu: ${tfjs.tf ? `${tfjs.tf.version_core}` : `not measured (${tfjs.why})`}; ` +
      `f16: ${f16 ? 'tuned with precision f16 (f16 operands, tensors f32)' : values['no-f16'] ? 'disabled (--no-f16)' : 'not measured (no shader-f16)'}`,
  );

  const rows: (string | number)[][] = [];
  const records: Record<string, unknown>[] = [];
  for (const model of values.models!.split(',')) {
    const batch = Number(model === 'vgg10' ? values['batch-vgg10'] : values['batch-vgg5']);
    const input = model === 'vgg10' ? Number(values['input-vgg10']) : undefined;
    const spec = modelSpec(model, input, undefined);
    for (const job of trainingShapes(spec, batch)) {
      if (!ops.has(job.op)) continue;
      const g = job.problem as ConvGeometry;
      const top = tunableOp(job.op);
      const tuned = await tuner.tune(job.op, job.problem as Problem);
      const inputs = top.inputShapes(g).map((s, i) => be.fromArray(fastUniform(s.reduce((a, b) => a * b, 1), i + 1), s));
      const flops = top.flops(g);
      try {
        const def = await timeOp(be, () => top.run(be, g, inputs, null).dispose(), { reps });
        const registerConfig = showRegister ? top.defaultConfig(g, { ...kernelChoices, winogradDefaults: false }) : null;
        const plainConfig = registerConfig && canonicalConfig(registerConfig) !== canonicalConfig(top.defaultConfig(g, kernelChoices)) ? registerConfig : null;
        const plain = plainConfig ? await timeOp(be, () => top.run(be, g, inputs, plainConfig).dispose(), { reps }) : null;
        const tun = tuned.config === null ? def : await timeOp(be, () => top.run(be, g, inputs, tuned.config).dispose(), { reps });
        let tfMs = NaN;
        if (tfjs.tf && job.op === 'conv2d') tfMs = await timeTfjsConv(tfjs.tf, g, reps);
        // The same shape tuned in f16 mode: a separate cache entry; the winner may still be an f32 config.
        let half: { ms: number; config: unknown; label: string } | null = null;
        if (f16) {
          be.precision = 'f16';
          try {
            const t = await tuner.tune(job.op, job.problem as Problem);
            const ms = t.config === null ? def.medianMs : (await timeOp(be, () => top.run(be, g, inputs, t.config).dispose(), { reps })).medianMs;
            half = { ms, config: t.config, label: configLabel(t.config) + (t.fromCache ? ' (cached)' : '') };
          } finally {
            be.precision = 'f32';
          }
        }
        const gf = (ms: number) => flops / (ms * 1e6);
        rows.push([
          `${spec.name} ${job.where}`,
          `${OP_SHORT[job.op] ?? job.op} ${top.key(g)}`,
          ...(showRegister ? [plain ? gf(plain.medianMs) : ''] : []),
          gf(def.medianMs),
          gf(tun.medianMs),
          Number.isFinite(tfMs) ? gf(tfMs) : '',
          Number.isFinite(tfMs) ? `${(tfMs / tun.medianMs).toFixed(2)}x` : '',
          configLabel(tuned.config) + (tuned.fromCache ? ' (cached)' : ''),
          half ? gf(half.ms) : '',
          half ? half.label : '',
        ]);
        records.push({
          model: spec.name, layers: job.where, op: job.op, geometry: g, shape: top.key(g), flops,
          defaultMs: def.medianMs, registerDefaultMs: plain ? plain.medianMs : null, defaultConfig: top.defaultConfig(g, kernelChoices), tunedMs: tun.medianMs, tfjsMs: Number.isFinite(tfMs) ? tfMs : null, tunedConfig: tuned.config, timing: def.method,
          f16Ms: half ? half.ms : null, f16Config: half ? half.config : null,
        });
        console.error(`${spec.name} ${job.where} ${job.op}: ${plain ? `register default ${gf(plain.medianMs).toFixed(2)}, ` : ''}default ${gf(def.medianMs).toFixed(2)}, tuned ${gf(tun.medianMs).toFixed(2)}${Number.isFinite(tfMs) ? `, tfjs ${gf(tfMs).toFixed(2)}` : ''}${half ? `, f16 ${gf(half.ms).toFixed(2)}` : ''} GFLOP/s`);
      } finally {
        for (const t of inputs) t.dispose();
      }
    }
  }
  if (values.json) writeFileSync(values.json, JSON.stringify({ date, adapter: gpu.info, reps, budgetMs, tfjs: tfjs.tf ? tfjs.tf.version_core : null, results: records }, null, 1) + '\n');
  printTable(['layer', 'op shape (NxHxWxCi->Co)', ...(showRegister ? ['register default GFLOP/s'] : []), 'default GFLOP/s', 'tuned GFLOP/s', 'tfjs GFLOP/s', 'tuned/tfjs', 'tuned config', 'f16 GFLOP/s', 'f16 config'], rows);
}
