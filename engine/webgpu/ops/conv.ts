// conv2d forward, backward-data and backward-filter on the webgpu backend. Shapes are
// checked before any GPU work; `config` overrides the default kernel config (for the
// autotuner and the tests).
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
import {
  ConvForwardConfig,
  convAsMatmulShape,
  convBlockConfig,
  convBlockKernel,
  convForwardKernel,
  checkConvForwardConfig,
  defaultConvForwardAlgorithm,
} from '../../../kernels/conv/forward.js';
import { anyMatmulKernel } from '../../../kernels/matmul/matmul.js';
import { sharedMatmulKernel } from '../../../kernels/matmul/sharedTile.js';
import { addBiasKernel } from '../../../kernels/elementwise.js';
import {
  ConvBackwardDataConfig,
  checkConvBackwardDataConfig,
  convBackwardDataKernels,
  convBlockBackwardDataKernels,
  defaultConvBackwardDataAlgorithm,
  defaultConvBackwardDataConfig,
} from '../../../kernels/conv/backwardData.js';
import { ConvTileConfig } from '../../../kernels/conv/common.js';
import {
  AnyConvBackwardFilterConfig,
  anyConvBackwardFilterKernels,
  defaultConvBackwardFilterConfig,
} from '../../../kernels/conv/backwardFilter.js';
import { ConvWinogradConfig, WinogradPlan, WinogradProblem, winogradBackwardData, winogradForward, winogradPlan } from '../../../kernels/conv/winograd.js';
import type { GpuTensor } from '../runtime.js';
import type { WebGPUBackend } from '../backend.js';
import type { TunableOpName } from '../../tune/ops.js';

/** The device's workgroup memory, which the shared-tile configs may use (the tuner's spaces do). */
function storageLimit(be: WebGPUBackend): number | undefined {
  const limit = be.rt.device.limits?.maxComputeWorkgroupStorageSize;
  return typeof limit === 'number' ? limit : undefined;
}

/**
 * The config an op runs: `given` when one is given, the op's default for null (what the
 * tuner measures as the baseline), and for undefined the tuner's cached winner for this
 * geometry (the shapes are checked once, here, not again by the backend method).
 */
function resolve<T>(be: WebGPUBackend, op: TunableOpName, g: ConvGeometry, given: T | null | undefined, fallback: () => T): T {
  if (given) return given;
  if (given === undefined) {
    const tuned = be.tuner?.configFor(op, g) as T | undefined;
    if (tuned) return tuned;
  }
  return fallback();
}

/**
 * A config that computes in f16 (a shared-tile config's `f16`, also inside a conv-as-matmul
 * config) runs only on a backend whose precision is 'f16', as matmul's (linalg.ts).
 */
function checkPrecision(be: WebGPUBackend, op: string, config: unknown): void {
  const c = config as { f16?: unknown; matmul?: { f16?: unknown } } | undefined;
  if ((c?.f16 || c?.matmul?.f16) && be.precision !== 'f16') {
    throw new Error(`${op} config ${JSON.stringify(config)} computes in f16, but the backend's precision is '${be.precision}' (set precision 'f16' to allow it)`);
  }
}

export function conv2d(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts?: Conv2dOptions,
  config?: ConvForwardConfig | null,
): Tensor {
  const g = conv2dShapes(x, w, bias, opts);
  const cfg = resolve<ConvForwardConfig>(be, 'conv2d', g, config, () => defaultConvForwardAlgorithm(g, be.defaultTileSubgroup, be.winogradDefaults));
  checkPrecision(be, 'conv2d', cfg);
  be.checkSubgroupConfig('conv2d', cfg);
  if (cfg.algo === 'winograd') {
    checkConvForwardConfig(g, cfg);
    return winograd(be, 'conv2d', winogradForward(g), cfg, x, w, bias, [g.N, g.Ho, g.Wo, g.Co]);
  }
  const inputs = be.buffers('conv2d', ...(bias ? [x, w, bias] : [x, w]));
  if (cfg.algo === 'matmul') {
    checkConvForwardConfig(g, cfg);
    const shape = convAsMatmulShape(g);
    const mm = cfg.matmul;
    // Build every kernel before allocating, so a bad config records nothing.
    const fused = bias !== null && mm.algo === 'shared';
    const spec = fused ? sharedMatmulKernel(shape, mm, true, storageLimit(be)) : anyMatmulKernel(shape, mm, storageLimit(be));
    const biasSpec = bias !== null && !fused ? addBiasKernel(shape.M * shape.N, shape.N) : null;
    const y = be.newTensor([g.N, g.Ho, g.Wo, g.Co]);
    const yb = y.storage('conv2d').buffer;
    if (!biasSpec) {
      be.rt.dispatch(spec, [...inputs, yb]);
      return y;
    }
    // The register-blocked matmul has no bias epilogue: matmul into a temporary, then add.
    const tmp = be.newTensor([shape.M, shape.N]);
    try {
      const tb = tmp.storage('conv2d').buffer;
      be.rt.dispatch(spec, [inputs[0], inputs[1], tb]);
      be.rt.dispatch(biasSpec, [tb, inputs[2], yb]);
    } finally {
      tmp.dispose();
    }
    return y;
  }
  const spec = convForwardKernel(g, bias !== null, cfg, storageLimit(be));
  const y = be.newTensor([g.N, g.Ho, g.Wo, g.Co]);
  be.rt.dispatch(spec, [...inputs, y.storage('conv2d').buffer]);
  return y;
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
  const cfg = resolve<ConvBackwardDataConfig>(be, op, g, config, () => defaultConvBackwardDataAlgorithm(g, be.defaultTileSubgroup, be.winogradDefaults));
  checkPrecision(be, op, cfg);
  be.checkSubgroupConfig(op, cfg);
  if (cfg.algo === 'winograd') {
    checkConvBackwardDataConfig(g, cfg);
    return winograd(be, op, winogradBackwardData(g), cfg, dy, w, null, [g.N, g.H, g.W, g.Ci]);
  }
  const [bdy, bw] = be.buffers(op, dy, w);
  const plan = convBackwardDataKernels(g, cfg, storageLimit(be));
  const dx = be.newTensor([g.N, g.H, g.W, g.Ci]);
  const wT = be.newTensor([g.KH, g.KW, g.Co, g.Ci]);
  try {
    const bwT = wT.storage(op).buffer;
    be.rt.dispatch(plan.transpose, [bw, bwT]);
    be.rt.dispatch(plan.gemm, [bdy, bwT, dx.storage(op).buffer]);
  } finally {
    // Safe before the GPU ran: any later write to the pooled buffer is queue-ordered after these reads.
    wT.dispose();
  }
  return dx;
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
  const cfg = resolve<AnyConvBackwardFilterConfig>(be, op, g, config, () => defaultConvBackwardFilterConfig(g, be.defaultTileSubgroup, be.parallelism));
  be.checkSubgroupConfig(op, cfg);
  checkPrecision(be, op, cfg);
  const [bx, bdy] = be.buffers(op, x, dy);
  const plan = anyConvBackwardFilterKernels(g, cfg, storageLimit(be));
  const dw = be.newTensor([g.KH, g.KW, g.Ci, g.Co]);
  if (!plan.reduce) {
    be.rt.dispatch(plan.main, [bx, bdy, dw.storage(op).buffer]);
    return dw;
  }
  const scratch = be.newTensor([plan.scratchFloats]);
  try {
    const bs = scratch.storage(op).buffer;
    be.rt.dispatch(plan.main, [bx, bdy, bs]);
    be.rt.dispatch(plan.reduce, [bs, dw.storage(op).buffer]);
  } finally {
    scratch.dispose();
  }
  return dw;
}

/**
 * A conv block as one kernel (kernels/conv/forward.ts convBlockKernel). Without `config`
 * (tests force a register config), the plain conv2d's tuned config for the same geometry
 * (the tuner key the composition records) is used when the fused kernel can run it.
 */
export function convBlock(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts: ConvBlockOptions,
  config?: ConvTileConfig | ConvWinogradConfig,
): ConvBlockResult {
  const op = 'convBlock';
  const { g, aShape } = convBlockShapes(x, w, bias, opts);
  const tuned = config ? undefined : (be.tuner?.configFor('conv2d', g) as ConvForwardConfig | undefined);
  const add = opts.relu && opts.add ? opts.add : null;
  const e = { pool: !!opts.pool, add: add !== null, relu: !!opts.relu, residual: !!opts.relu && !!opts.residual };
  // Winograd where the plain conv2d would run it (given, tuned, or its default): the block's
  // epilogue then runs in the output transform.
  const plain = config ?? tuned ?? defaultConvForwardAlgorithm(g, be.defaultTileSubgroup, be.winogradDefaults);
  if (plain.algo === 'winograd') {
    be.checkSubgroupConfig(op, plain);
    checkConvForwardConfig(g, plain);
    const plan = winogradPlan(winogradForward(g), bias !== null, plain, op, e, storageLimit(be));
    const outs = blockOutputs(be, aShape, e);
    runWinograd(be, op, plan, x, w, [...(bias ? [bias] : []), ...(add ? [add] : [])], outs.list);
    return outs.result;
  }
  // Built before allocating, so a bad config records nothing.
  const cfg = config && config.algo !== 'winograd' ? config : convBlockConfig(g, e, tuned, be.defaultTileSubgroup);
  be.checkSubgroupConfig(op, cfg);
  const spec = convBlockKernel(g, bias !== null, e, cfg);
  const inputs = be.buffers(op, x, w, ...(bias ? [bias] : []), ...(add ? [add] : []));
  const { list, result } = blockOutputs(be, aShape, e);
  if (result.a.size > 0) be.rt.dispatch(spec, [...inputs, ...list.map((t) => t.storage(op).buffer)]);
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
 * A conv block's backward-data: the filter transpose, then the transposed conv with the
 * ReLU mask and the pool's routing applied as it loads dy. `tuned` is the plain
 * conv2dBackwardData's config for the same geometry (both algorithms take the gates).
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
  // The plain backward-data's tuned config for the same geometry (the composition's tuner key);
  // Winograd cannot gate its loads (its input transform mixes 16 dy pixels), so a gated
  // block then runs the register default.
  let cfg = resolve<ConvBackwardDataConfig>(be, 'conv2dBackwardData', g, config, () => defaultConvBackwardDataAlgorithm(g, be.defaultTileSubgroup, be.winogradDefaults));
  if (cfg.algo === 'winograd' && (argmax || reluAt)) cfg = defaultConvBackwardDataConfig(g, be.defaultTileSubgroup);
  checkPrecision(be, op, cfg);
  be.checkSubgroupConfig(op, cfg);
  if (cfg.algo === 'winograd') {
    checkConvBackwardDataConfig(g, cfg);
    return winograd(be, op, winogradBackwardData(g), cfg, dy, w, null, [g.N, g.H, g.W, g.Ci]);
  }
  const plan = convBlockBackwardDataKernels(g, { argmax: argmax !== null, reluAt: reluAt !== null }, cfg, storageLimit(be));
  const inputs = be.buffers(op, dy, w, ...(argmax ? [argmax] : []), ...(reluAt ? [reluAt] : []));
  const [bdy, bw, ...bgates] = inputs;
  const dx = be.newTensor([g.N, g.H, g.W, g.Ci]);
  const wT = be.newTensor([g.KH, g.KW, g.Co, g.Ci]);
  try {
    const bwT = wT.storage(op).buffer;
    be.rt.dispatch(plan.transpose, [bw, bwT]);
    be.rt.dispatch(plan.gemm, [bdy, bwT, ...bgates, dx.storage(op).buffer]);
  } finally {
    // Safe before the GPU ran: any later write to the pooled buffer is queue-ordered after these reads.
    wT.dispose();
  }
  return dx;
}

/**
 * A conv (forward or backward-data) by Winograd F(2x2, 3x3) (kernels/conv/winograd.ts). The
 * kernels are built before anything is allocated.
 */
function winograd(
  be: WebGPUBackend,
  op: string,
  p: WinogradProblem,
  cfg: ConvWinogradConfig,
  src: Tensor,
  w: Tensor,
  bias: Tensor | null,
  outShape: Shape,
): Tensor {
  const plan = winogradPlan(p, bias !== null, cfg, op, undefined, storageLimit(be));
  const out = be.newTensor(outShape);
  runWinograd(be, op, plan, src, w, bias ? [bias] : [], [out]);
  return out;
}

/**
 * Records a Winograd plan: the filter transform once, then per chunk of tiles the input
 * transform, the 16 batched GEMMs and the output transform, which reads `reads` (bias, a
 * block's addend) and writes `outs` (its bindings, in order).
 */
function runWinograd(be: WebGPUBackend, op: string, plan: WinogradPlan, src: Tensor, w: Tensor, reads: Tensor[], outs: GpuTensor[]): void {
  const [bsrc, bw, ...breads] = be.buffers(op, src, w, ...reads);
  if (outs[0].size === 0) return;
  const bouts = outs.map((t) => t.storage(op).buffer);
  const u = be.newTensor([plan.uFloats]);
  const v = be.newTensor([plan.vFloats]);
  const m = be.newTensor([plan.mFloats]);
  try {
    const [bu, bv, bm] = [u, v, m].map((t) => t.storage(op).buffer);
    be.rt.dispatch(plan.filter, [bw, bu]);
    for (let c = 0; c < plan.chunks; c++) {
      const t0 = new Uint32Array([c * plan.chunk, 0, 0, 0]);
      be.rt.dispatch(plan.input, [bsrc, bv], t0);
      be.rt.dispatch(plan.gemm, [bv, bu, bm]);
      be.rt.dispatch(plan.output, [bm, ...breads, ...bouts], t0);
    }
  } finally {
    // Safe before the GPU ran: later writes to the pooled buffers are queue-ordered after these reads.
    for (const t of [u, v, m]) t.dispose();
  }
}
