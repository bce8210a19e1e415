// conv2d forward, backward-data and backward-filter (and the fused conv blocks) on the webgpu
// backend. Shapes are checked before any GPU work; `config` overrides the default kernel
// config (for the autotuner and the tests). Which kernels run is the config's algorithm's
// plan (kernels/algorithms/): this file only picks the config, allocates and dispatches.
import {
  ConvBlockGates,
  ConvBlockOptions,
  ConvBlockResult,
  Conv2dOptions,
  ConvGeometry,
  conv2dBackwardDataShapes,
  conv2dBackwardFilterShapes,
  conv2dShapes,
  convBlockBackwardDataShapes,
  convBlockShapes,
} from '../../backend.js';
import { Shape, Tensor } from '../../tensor.js';
import { ConvForwardConfig, convBlockForwardConfig, convForwardPlan, defaultConvForward } from '../../../kernels/algorithms/conv2d.js';
import { ConvBackwardDataConfig, convBackwardDataPlan, defaultConvBackwardData, gatedBackwardDataConfig } from '../../../kernels/algorithms/conv2dBackwardData.js';
import { AnyConvBackwardFilterConfig, convBackwardFilterPlan, defaultConvBackwardFilter } from '../../../kernels/algorithms/conv2dBackwardFilter.js';
import type { FamilyConfig } from '../../../kernels/candidates.js';
import type { GpuTensor } from '../runtime.js';
import type { WebGPUBackend } from '../backend.js';
import { runPlan, storageLimit } from './plan.js';

/**
 * The config an op runs: `given` when one is given, the op's default for null (what the
 * tuner measures as the baseline), and for undefined the tuner's cached winner for this
 * geometry (the shapes are checked once, here, not again by the backend method).
 */
function resolve<F extends 'conv2d' | 'conv2dBackwardData' | 'conv2dBackwardFilter'>(
  be: WebGPUBackend,
  family: F,
  g: ConvGeometry,
  given: FamilyConfig[F] | null | undefined,
  fallback: () => FamilyConfig[F],
): FamilyConfig[F] {
  if (given) return given;
  if (given === undefined) {
    const tuned = be.tuner?.configFor(family, g);
    if (tuned) return tuned;
  }
  return fallback();
}

/** Records `plan` on the inputs into new tensors of `outShapes`, which it returns. */
function run(be: WebGPUBackend, op: string, plan: Parameters<typeof runPlan>[2], inputs: Tensor[], outShapes: Shape[]): GpuTensor[] {
  const bufs = be.buffers(op, ...inputs);
  const outs = outShapes.map((s) => be.newTensor(s));
  runPlan(be, op, plan, bufs, outs.map((t) => t.storage(op).buffer));
  return outs;
}

export function conv2d(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts?: Conv2dOptions,
  config?: ConvForwardConfig | null,
): Tensor {
  const op = 'conv2d';
  const g = conv2dShapes(x, w, bias, opts);
  const cfg = resolve(be, op, g, config, () => defaultConvForward(g, be));
  be.checkKernelConfig(op, op, cfg);
  // The plan first: a bad config throws before anything is allocated or recorded.
  const plan = convForwardPlan(g, cfg, { op, bias: bias !== null }, storageLimit(be));
  return run(be, op, plan, bias ? [x, w, bias] : [x, w], [[g.N, g.Ho, g.Wo, g.Co]])[0];
}

export function conv2dBackwardData(
  be: WebGPUBackend,
  dy: Tensor,
  w: Tensor,
  inputShape: Shape,
  opts?: Conv2dOptions,
  config?: ConvBackwardDataConfig | null,
): Tensor {
  const op = 'conv2dBackwardData';
  const g = conv2dBackwardDataShapes(dy, w, inputShape, opts);
  const cfg = resolve(be, op, g, config, () => defaultConvBackwardData(g, be));
  be.checkKernelConfig(op, op, cfg);
  const plan = convBackwardDataPlan(g, cfg, { op, gates: { argmax: false, reluAt: false } }, storageLimit(be));
  return run(be, op, plan, [dy, w], [[g.N, g.H, g.W, g.Ci]])[0];
}

export function conv2dBackwardFilter(
  be: WebGPUBackend,
  x: Tensor,
  dy: Tensor,
  filterShape: Shape,
  opts?: Conv2dOptions,
  config?: AnyConvBackwardFilterConfig | null,
): Tensor {
  const op = 'conv2dBackwardFilter';
  const g = conv2dBackwardFilterShapes(x, dy, filterShape, opts);
  const cfg = resolve(be, op, g, config, () => defaultConvBackwardFilter(g, be));
  be.checkKernelConfig(op, op, cfg);
  const plan = convBackwardFilterPlan(g, cfg, storageLimit(be));
  return run(be, op, plan, [x, dy], [[g.KH, g.KW, g.Ci, g.Co]])[0];
}

/**
 * A conv block with its epilogue in the conv's own kernels (kernels/conv/forward.ts
 * convBlockKernel, or Winograd's output transform). Without `config` (tests force one), the
 * plain conv2d's tuned config for the same geometry (the tuner key the composition records)
 * is used when its algorithm runs the epilogue and accepts it (convBlockForwardConfig).
 */
export function convBlock(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts: ConvBlockOptions,
  config?: ConvForwardConfig,
): ConvBlockResult {
  const op = 'convBlock';
  const { g, aShape } = convBlockShapes(x, w, bias, opts);
  const add = opts.relu && opts.add ? opts.add : null;
  const e = { pool: !!opts.pool, add: add !== null, relu: !!opts.relu, residual: !!opts.relu && !!opts.residual };
  const cfg = config ?? convBlockForwardConfig(g, e, be.tuner?.configFor('conv2d', g), be);
  be.checkKernelConfig(op, 'conv2d', cfg);
  const plan = convForwardPlan(g, cfg, { op, bias: bias !== null, epilogue: e }, storageLimit(be));
  const inputs = [x, w, ...(bias ? [bias] : []), ...(add ? [add] : [])];
  const bufs = be.buffers(op, ...inputs);
  const { list, result } = blockOutputs(be, aShape, e);
  runPlan(be, op, plan, bufs, list.map((t) => t.storage(op).buffer));
  return result;
}

/** A conv block's outputs: a, [argmax], [h], [r] (the kernels' binding order) and as a result. */
function blockOutputs(be: WebGPUBackend, aShape: Shape, e: { pool: boolean; relu: boolean; residual: boolean }): { list: GpuTensor[]; result: ConvBlockResult } {
  const a = be.newTensor(aShape);
  const argmax = e.pool ? be.newTensor(aShape, 'u32') : null;
  const h = e.relu ? be.newTensor(aShape) : null;
  const r = e.residual ? be.newTensor(aShape) : null;
  const list = [a, argmax, h, r].filter((t): t is NonNullable<typeof t> => t !== null);
  return { list, result: { a, argmax, h, r } };
}

/**
 * A conv block's backward-data: the transposed conv with the ReLU mask and the pool's routing
 * applied as it loads dy. The config is the plain conv2dBackwardData's for the same geometry
 * (the composition's tuner key), or its default; with gates, one whose algorithm cannot apply
 * them (Winograd: its input transform mixes 16 dy pixels) gives way to the register default.
 */
export function convBlockBackwardData(
  be: WebGPUBackend,
  dy: Tensor,
  w: Tensor,
  inputShape: Shape,
  gates: ConvBlockGates = {},
  config?: ConvBackwardDataConfig | null,
): Tensor {
  const op = 'convBlockBackwardData';
  const { g } = convBlockBackwardDataShapes(dy, w, inputShape, gates);
  const argmax = gates.argmax ?? null;
  const reluAt = gates.reluAt ?? null;
  const on = { argmax: argmax !== null, reluAt: reluAt !== null };
  const plain = resolve(be, 'conv2dBackwardData', g, config, () => defaultConvBackwardData(g, be));
  const cfg = gatedBackwardDataConfig(g, on, plain, be);
  be.checkKernelConfig(op, 'conv2dBackwardData', cfg);
  const plan = convBackwardDataPlan(g, cfg, { op, gates: on }, storageLimit(be));
  return run(be, op, plan, [dy, w, ...(argmax ? [argmax] : []), ...(reluAt ? [reluAt] : [])], [[g.N, g.H, g.W, g.Ci]])[0];
}
