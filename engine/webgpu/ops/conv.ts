// conv2d forward, backward-data and backward-filter on the webgpu backend. Shapes are
// checked before any GPU work; `config` overrides the default kernel config (for the
// autotuner and the tests).
import { Conv2dOptions, conv2dBackwardDataShapes, conv2dBackwardFilterShapes, conv2dShapes } from '../../backend.js';
import { Shape, Tensor } from '../../tensor.js';
import {
  ConvForwardConfig,
  convAsMatmulShape,
  convForwardKernel,
  checkConvForwardConfig,
  defaultConvForwardConfig,
} from '../../../kernels/conv/forward.js';
import { anyMatmulKernel } from '../../../kernels/matmul/matmul.js';
import { sharedMatmulKernel } from '../../../kernels/matmul/sharedTile.js';
import { addBiasKernel } from '../../../kernels/elementwise.js';
import { ConvBackwardDataConfig, convBackwardDataKernels, defaultConvBackwardDataConfig } from '../../../kernels/conv/backwardData.js';
import {
  AnyConvBackwardFilterConfig,
  anyConvBackwardFilterKernels,
  defaultConvBackwardFilterConfig,
} from '../../../kernels/conv/backwardFilter.js';
import type { WebGPUBackend } from '../backend.js';

export function conv2d(
  be: WebGPUBackend,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  opts?: Conv2dOptions,
  config?: ConvForwardConfig,
): Tensor {
  const g = conv2dShapes(x, w, bias, opts);
  const inputs = be.buffers('conv2d', ...(bias ? [x, w, bias] : [x, w]));
  const cfg = config ?? defaultConvForwardConfig(g);
  if (cfg.algo === 'matmul') {
    checkConvForwardConfig(g, cfg);
    const shape = convAsMatmulShape(g);
    const mm = cfg.matmul;
    // Build every kernel before allocating, so a bad config records nothing.
    const fused = bias !== null && mm.algo === 'shared';
    const spec = fused ? sharedMatmulKernel(shape, mm, true) : anyMatmulKernel(shape, mm);
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
  const spec = convForwardKernel(g, bias !== null, cfg);
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
  config?: ConvBackwardDataConfig,
): Tensor {
  const op = 'conv2dBackwardData';
  const g = conv2dBackwardDataShapes(dy, w, inputShape, opts);
  const [bdy, bw] = be.buffers(op, dy, w);
  const plan = convBackwardDataKernels(g, config ?? defaultConvBackwardDataConfig(g));
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
  config?: AnyConvBackwardFilterConfig,
): Tensor {
  const op = 'conv2dBackwardFilter';
  const g = conv2dBackwardFilterShapes(x, dy, filterShape, opts);
  const [bx, bdy] = be.buffers(op, x, dy);
  const plan = anyConvBackwardFilterKernels(g, config ?? defaultConvBackwardFilterConfig(g));
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
