// The fused conv-block ops as compositions of the primitive ops. This is their definition:
// the reference backend runs it (in float64), the analog backend runs it on its own noisy
// primitives, and the webgpu fused kernels are tested against it.
import { Backend, ConvBlockGates, ConvBlockOptions, ConvBlockResult, convBlockBackwardDataShapes, convBlockShapes } from './backend.js';
import { Shape, Tensor } from './tensor.js';

export function composeConvBlock(be: Backend, x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvBlockOptions): ConvBlockResult {
  convBlockShapes(x, w, bias, opts);
  const conv = { stride: opts.stride, pad: opts.pad };
  let a = be.conv2d(x, w, bias, conv);
  let argmax: Tensor | null = null;
  if (opts.pool) {
    const p = be.maxPool2x2(a);
    a.dispose();
    a = p.y;
    argmax = p.argmax;
  }
  let h: Tensor | null = null;
  let r: Tensor | null = null;
  if (opts.relu) {
    if (opts.add) {
      const s = be.add(a, opts.add);
      h = be.relu(s);
      s.dispose();
    } else h = be.relu(a);
    if (opts.residual) {
      // reluMask(h - ReLU(a), a) = reluMask(h - a, a): the mask keeps only a > 0, where ReLU(a) = a.
      const d = be.sub(h, a);
      r = be.reluMask(d, a);
      d.dispose();
    }
  }
  return { a, argmax, h, r };
}

export function composeConvBlockBackwardData(be: Backend, dy: Tensor, w: Tensor, inputShape: Shape, gates: ConvBlockGates = {}): Tensor {
  const { g } = convBlockBackwardDataShapes(dy, w, inputShape, gates);
  const conv = { stride: gates.stride, pad: gates.pad };
  let v = dy;
  if (gates.reluAt) v = be.reluMask(dy, gates.reluAt);
  if (gates.argmax) {
    const up = be.maxPool2x2Backward(v, gates.argmax, [g.N, g.Ho, g.Wo, g.Co]);
    if (v !== dy) v.dispose();
    v = up;
  }
  const dx = be.conv2dBackwardData(v, w, inputShape, conv);
  if (v !== dy) v.dispose();
  return dx;
}
