// Layers of a predictive coding network, as the paper defines them.
// Each layer k maps the state below, h_{k-1}, to its pre-activation a_k and its
// prediction f_k = ReLU(a_k) (hidden) or a_k (output). From there it gives:
//   - its error e_k = h_k - f_k(h_{k-1}),
//   - the top-down signal for the layer below, D_{k-1} = J_{f_k}(h_{k-1})^T e_k (one VJP),
//   - its parameter gradient dF/dtheta_k = -(df_k/dtheta_k)^T e_k.
import { Backend, Shape, Tensor } from '../engine/index.js';

export type LayerSpec =
  | { kind: 'conv'; out: number; pool: boolean }
  | { kind: 'dense'; out: number };

/** What a_k needs to remember for the VJP and the parameter gradient. */
export interface PreActivation {
  /** a_k: the (pooled) conv output plus bias, or the dense output plus bias. */
  a: Tensor;
  /** Winners of the 2x2 max pool, when the layer pools. */
  argmax: Tensor | null;
  /** Shape of the conv output before pooling. */
  convShape: Shape | null;
}

export interface Params {
  w: Tensor;
  b: Tensor;
  /** The strided 1x1 skip filter [1, 1, C_from, C_out], on a layer a skip enters. */
  s?: Tensor;
}

/** Every tensor of a Params, in a fixed order (w, b, then s where present). */
export function paramTensors(p: Params): Tensor[] {
  return p.s ? [p.w, p.b, p.s] : [p.w, p.b];
}

/** Applies f to matching tensors of one or more Params of the same layer. */
export function mapParams(ps: Params[], f: (ts: Tensor[]) => Tensor): Params {
  const out: Params = { w: f(ps.map((p) => p.w)), b: f(ps.map((p) => p.b)) };
  if (ps[0].s) out.s = f(ps.map((p) => p.s!));
  return out;
}

/**
 * A skip into a conv layer (VGG10Skip): the state h_from enters through a strided 1x1 conv
 * added to the conv output before pooling (our reading of the paper's "strided 1x1 conv skips").
 */
export interface SkipInput {
  from: number;
  /** Shape of h_from without the batch axis. */
  inShape: Shape;
  stride: 1 | 2;
}

/** What a relaxation step of a hidden layer gives (see Layer.block). */
export interface LayerStep {
  pre: PreActivation;
  h: Tensor;
  /** The masked residual, when asked for. */
  r: Tensor | null;
}

/**
 * h = ReLU(a + D) and r = reluMask(h - ReLU(a), a) from a known a, as separate ops: the
 * composition Backend.convBlock fuses, for layers or steps that have no fused pass.
 */
export function hiddenState(be: Backend, a: Tensor, D: Tensor | null, residual: boolean): { h: Tensor; r: Tensor | null } {
  let h: Tensor;
  if (D) {
    const s = be.add(a, D);
    h = be.relu(s);
    s.dispose();
  } else h = be.relu(a);
  if (!residual) return { h, r: null };
  // reluMask(h - ReLU(a), a) = reluMask(h - a, a): the mask keeps only a > 0, where ReLU(a) = a.
  const d = be.sub(h, a);
  const r = be.reluMask(d, a);
  d.dispose();
  return { h, r };
}

export abstract class Layer {
  params!: Params;
  constructor(
    readonly index: number,
    /** Shape of the state below, h_{k-1}, without the batch axis. */
    readonly inShape: Shape,
    /** Shape of this layer's state h_k, without the batch axis. */
    readonly outShape: Shape,
    /** Hidden layers apply ReLU; the output layer is linear. */
    readonly relu: boolean,
  ) {}

  /** a_k from the state below (and, on a layer a skip enters, the skip's source state). */
  abstract pre(be: Backend, below: Tensor, skipIn?: Tensor): PreActivation;

  /** f_k from a_k. */
  predict(be: Backend, p: PreActivation): Tensor {
    return this.relu ? be.relu(p.a) : be.clone(p.a);
  }

  /**
   * A hidden layer's relaxation step from scratch: a_k from the state below, then
   * h_k = ReLU(a_k + D) (D null: ReLU(a_k), the free phase) and, with `residual`, the masked
   * residual r_k = reluMask(h_k - ReLU(a_k), a_k), i.e. e_k already through the ReLU backward.
   * A conv layer without a skip does all of it in one fused pass (Backend.convBlock).
   */
  block(be: Backend, below: Tensor, D: Tensor | null, residual: boolean, skipIn?: Tensor): LayerStep {
    const pre = this.pre(be, below, skipIn);
    return { pre, ...hiddenState(be, pre.a, D, residual) };
  }

  /**
   * D for the layer below from this layer's masked residual r (see block): the VJP with the
   * ReLU mask already applied. r is zero where a_k <= 0, so masking again would change nothing.
   */
  abstract vjpMasked(be: Backend, r: Tensor, p: PreActivation, belowShape: Shape): Tensor;

  /**
   * The error routed back to the pre-pool conv (or dense) output: ReLU mask at a_k, then
   * the max-pool backward. Shared by the VJP and the parameter gradient.
   */
  protected backToLinear(be: Backend, e: Tensor, p: PreActivation): Tensor {
    let g = this.relu ? be.reluMask(e, p.a) : e;
    if (p.argmax && p.convShape) {
      const up = be.maxPool2x2Backward(g, p.argmax, p.convShape);
      if (g !== e) g.dispose();
      g = up;
    }
    return g;
  }

  /** J_{f_k}(h_{k-1})^T v, shaped like h_{k-1} (with batch). */
  abstract vjp(be: Backend, v: Tensor, p: PreActivation, belowShape: Shape): Tensor;

  /**
   * Gradient of sum_n <v_n, f_k(h_{k-1,n})> with respect to (w, b), i.e. (df_k/dtheta)^T v.
   * dF/dtheta_k is this with v = -e_k.
   */
  abstract paramVjp(be: Backend, below: Tensor, v: Tensor, p: PreActivation, skipIn?: Tensor): Params;

  /** Fan for initialization. */
  abstract fan(mode: 'in' | 'out'): number;
}

export class ConvLayer extends Layer {
  readonly opts = { stride: 1 as const, pad: 1 as const };
  constructor(
    index: number,
    inShape: Shape,
    readonly out: number,
    readonly pool: boolean,
    relu: boolean,
    readonly skip: SkipInput | null = null,
  ) {
    const [H, W] = inShape;
    super(index, inShape, pool ? [Math.floor(H / 2), Math.floor(W / 2), out] : [H, W, out], relu);
  }

  get skipFilterShape(): Shape {
    return [1, 1, this.skip!.inShape[2], this.out];
  }

  private get skipOpts() {
    return { stride: this.skip!.stride, pad: 0 as const };
  }

  private needSkip(skipIn: Tensor | undefined): Tensor {
    if (!skipIn || !this.params.s) throw new Error(`layer ${this.index}: a skip from layer ${this.skip!.from} enters here; pass its state`);
    return skipIn;
  }

  /** J^T v with respect to the skip's source state h_from: the error through the 1x1 skip conv. */
  skipVjp(be: Backend, v: Tensor, p: PreActivation, fromShape: Shape): Tensor {
    return be.convBlockBackwardData(v, this.params.s!, fromShape, { ...this.skipOpts, argmax: p.argmax, reluAt: this.relu ? p.a : null });
  }

  /** skipVjp from the masked residual (see Layer.block). */
  skipVjpMasked(be: Backend, r: Tensor, p: PreActivation, fromShape: Shape): Tensor {
    return be.convBlockBackwardData(r, this.params.s!, fromShape, { ...this.skipOpts, argmax: p.argmax });
  }

  get filterShape(): Shape {
    return [3, 3, this.inShape[2], this.out];
  }

  fan(mode: 'in' | 'out'): number {
    return 9 * (mode === 'in' ? this.inShape[2] : this.out);
  }

  pre(be: Backend, below: Tensor, skipIn?: Tensor): PreActivation {
    if (!this.skip) {
      // conv + bias + pool in one pass: the unpooled conv output is never stored.
      const { a, argmax } = be.convBlock(below, this.params.w, this.params.b, { ...this.opts, pool: this.pool });
      return { a, argmax, convShape: this.pool ? this.convShape(below) : null };
    }
    // A skip adds its 1x1 conv before the pool, which the fused pass has no input for.
    const y0 = be.conv2d(below, this.params.w, this.params.b, this.opts);
    const sk = be.conv2d(this.needSkip(skipIn), this.params.s!, null, this.skipOpts);
    const y = be.add(y0, sk);
    y0.dispose();
    sk.dispose();
    if (!this.pool) return { a: y, argmax: null, convShape: null };
    const { y: pooled, argmax } = be.maxPool2x2(y);
    const convShape = y.shape;
    y.dispose();
    return { a: pooled, argmax, convShape };
  }

  /** The conv output's shape (before pooling) for a batch of `below`. */
  private convShape(below: Tensor): Shape {
    const [H, W] = this.inShape;
    return [below.shape[0], H, W, this.out];
  }

  override block(be: Backend, below: Tensor, D: Tensor | null, residual: boolean, skipIn?: Tensor): LayerStep {
    if (this.skip || !this.relu) return super.block(be, below, D, residual, skipIn);
    const { a, argmax, h, r } = be.convBlock(below, this.params.w, this.params.b, { ...this.opts, pool: this.pool, relu: true, add: D, residual });
    return { pre: { a, argmax, convShape: this.pool ? this.convShape(below) : null }, h: h!, r };
  }

  vjp(be: Backend, v: Tensor, p: PreActivation, belowShape: Shape): Tensor {
    return be.convBlockBackwardData(v, this.params.w, belowShape, { ...this.opts, argmax: p.argmax, reluAt: this.relu ? p.a : null });
  }

  vjpMasked(be: Backend, r: Tensor, p: PreActivation, belowShape: Shape): Tensor {
    return be.convBlockBackwardData(r, this.params.w, belowShape, { ...this.opts, argmax: p.argmax });
  }

  paramVjp(be: Backend, below: Tensor, v: Tensor, p: PreActivation, skipIn?: Tensor): Params {
    const g = this.backToLinear(be, v, p);
    const w = be.conv2dBackwardFilter(below, g, this.filterShape, this.opts);
    const b = be.biasGrad(g);
    const out: Params = { w, b };
    if (this.skip) out.s = be.conv2dBackwardFilter(this.needSkip(skipIn), g, this.skipFilterShape, this.skipOpts);
    if (g !== v) g.dispose();
    return out;
  }
}

export class DenseLayer extends Layer {
  constructor(index: number, inShape: Shape, readonly out: number, relu: boolean) {
    super(index, inShape, [out], relu);
  }

  get features(): number {
    return this.inShape.reduce((a, b) => a * b, 1);
  }

  fan(mode: 'in' | 'out'): number {
    return mode === 'in' ? this.features : this.out;
  }

  private flat(be: Backend, below: Tensor): { x: Tensor; owned: boolean } {
    if (below.shape.length === 2) return { x: below, owned: false };
    return { x: be.reshape(below, [below.shape[0], this.features]), owned: true };
  }

  pre(be: Backend, below: Tensor): PreActivation {
    const { x, owned } = this.flat(be, below);
    const y = be.matmul(x, this.params.w);
    if (owned) x.dispose();
    const a = be.addBias(y, this.params.b);
    y.dispose();
    return { a, argmax: null, convShape: null };
  }

  vjp(be: Backend, v: Tensor, p: PreActivation, belowShape: Shape): Tensor {
    const g = this.backToLinear(be, v, p);
    const out = this.vjpMasked(be, g, p, belowShape);
    if (g !== v) g.dispose();
    return out;
  }

  vjpMasked(be: Backend, r: Tensor, _p: PreActivation, belowShape: Shape): Tensor {
    const flat = be.matmul(r, this.params.w, { transB: true });
    if (belowShape.length === 2) return flat;
    const out = be.reshape(flat, belowShape);
    flat.dispose();
    return out;
  }

  paramVjp(be: Backend, below: Tensor, v: Tensor, p: PreActivation): Params {
    const g = this.backToLinear(be, v, p);
    const { x, owned } = this.flat(be, below);
    const w = be.matmul(x, g, { transA: true });
    if (owned) x.dispose();
    const b = be.biasGrad(g);
    if (g !== v) g.dispose();
    return { w, b };
  }
}
