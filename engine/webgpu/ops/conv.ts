// conv2d forward, backward-data and backward-filter on the webgpu backend. Shapes are
// checked before any GPU work; `config` overrides the default kernel config (for the
// autotuner and the tests).
import { Conv2dOptions, conv2dBackwardDataShapes, conv2dBackwardFilterShapes, conv2dShapes } from '../../backend.js';
import { Shape, Tensor } from '../../tensor.js';
import { ConvForwardConfig, convForwardKernel, defaultConvForwardConfig } from '../../../kernels/conv/forward.js';
import { ConvBackwardDataConfig, convBackwardDataKernels, defaultConvBackwardDataConfig } from '../../../kernels/conv/backwardData.js';
import {
  ConvBackwardFilterConfig,
  convBackwardFilterKernels,
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
  const spec = convForwardKernel(g, bias !== null, config ?? defaultConvForwardConfig(g));
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
  config?: ConvBackwardFilterConfig,
): Tensor {
  const op = 'conv2dBackwardFilter';
  const g = conv2dBackwardFilterShapes(x, dy, filterShape, opts);
  const [bx, bdy] = be.buffers(op, x, dy);
  const plan = convBackwardFilterKernels(g, config ?? defaultConvBackwardFilterConfig(g));
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
