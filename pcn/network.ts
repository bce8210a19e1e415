// A predictive coding network: layers built from a model description, the paper's
// initialization, the free phase (a forward pass) and the backprop gradient on the same layers.
import { Backend, Shape, ShapeError, Tensor, shapeStr } from '../engine/index.js';
import { ConvLayer, DenseLayer, Layer, LayerSpec, Params, PreActivation } from './layers.js';

export interface ModelSpec {
  name: string;
  /** Input [H, W, C] (NHWC without the batch axis). */
  input: [number, number, number];
  classes: number;
  /** Hidden layers then the output layer (the last entry must be dense: it is the linear output). */
  layers: LayerSpec[];
  /** Which fan the conv initialization uses; dense layers always use fan_in. */
  convFan: 'in' | 'out';
  /** Gain of the output layer's initialization (1, or 0.2 for VGG5 with MSE). */
  outputGain: number;
}

export function buildLayers(spec: ModelSpec): Layer[] {
  const layers: Layer[] = [];
  let shape: Shape = spec.input;
  spec.layers.forEach((ls, i) => {
    const last = i === spec.layers.length - 1;
    let layer: Layer;
    if (ls.kind === 'conv') {
      if (last) throw new ShapeError('model', `${spec.name}: the output layer must be dense`);
      if (shape.length !== 3) throw new ShapeError('model', `${spec.name}: conv layer ${i + 1} after a dense layer`);
      layer = new ConvLayer(i + 1, shape, ls.out, ls.pool, true);
    } else {
      layer = new DenseLayer(i + 1, shape, last ? spec.classes : ls.out, !last);
      if (last && ls.out !== spec.classes) {
        throw new ShapeError('model', `${spec.name}: output layer has ${ls.out} units for ${spec.classes} classes`);
      }
    }
    if (layer.outShape.some((d) => d <= 0)) throw new ShapeError('model', `${spec.name}: layer ${i + 1} state ${shapeStr(layer.outShape)} is empty`);
    layers.push(layer);
    shape = layer.outShape;
  });
  return layers;
}

export interface FreeState {
  /** h_0 (the input) .. h_L. h[0] is the caller's tensor and is not owned. */
  h: Tensor[];
  /** pre[k] for k = 1..L (pre[0] unused). */
  pre: (PreActivation | null)[];
}

export class Network {
  readonly layers: Layer[];

  constructor(
    readonly be: Backend,
    readonly spec: ModelSpec,
  ) {
    this.layers = buildLayers(spec);
  }

  get depth(): number {
    return this.layers.length;
  }

  /** U(-c, c) with c = gain / sqrt(fan), per the paper; biases U(+-1/sqrt(fan_in)) as PyTorch does (our choice). */
  init(seed: string | number): void {
    const L = this.layers.length;
    this.layers.forEach((layer, i) => {
      const isConv = layer instanceof ConvLayer;
      const fan = layer.fan(isConv ? this.spec.convFan : 'in');
      const gain = i === L - 1 ? this.spec.outputGain : 1;
      const c = gain / Math.sqrt(fan);
      const wShape = isConv ? (layer as ConvLayer).filterShape : [(layer as DenseLayer).features, (layer as DenseLayer).out];
      const outCh = isConv ? (layer as ConvLayer).out : (layer as DenseLayer).out;
      const cb = 1 / Math.sqrt(layer.fan('in'));
      layer.params?.w.dispose();
      layer.params?.b.dispose();
      layer.params = {
        w: this.be.uniform(wShape, -c, c, `${seed}/w${i + 1}`).keep(),
        b: this.be.uniform([outCh], -cb, cb, `${seed}/b${i + 1}`).keep(),
      };
    });
  }

  params(): Params[] {
    return this.layers.map((l) => l.params);
  }

  checkInput(x: Tensor): void {
    const want = this.spec.input;
    if (x.shape.length !== 4 || x.shape[1] !== want[0] || x.shape[2] !== want[1] || x.shape[3] !== want[2]) {
      throw new ShapeError('network', `${this.spec.name} expects input [N,${want.join(',')}], got ${shapeStr(x.shape)}`);
    }
  }

  /** The free phase: h_k = f_k(h_{k-1}). Every e_k is 0 there. */
  forward(x: Tensor): FreeState {
    this.checkInput(x);
    const h: Tensor[] = [x];
    const pre: (PreActivation | null)[] = [null];
    for (const layer of this.layers) {
      const p = layer.pre(this.be, h[h.length - 1]);
      pre.push(p);
      h.push(layer.predict(this.be, p));
    }
    return { h, pre };
  }

  /** Logits for evaluation: the free phase's output state. */
  logits(x: Tensor): Tensor {
    const s = this.forward(x);
    const out = s.h[s.h.length - 1];
    disposeState(s, out);
    return out;
  }

  /**
   * Backprop gradient of the mean cross-entropy on the feedforward net (the free phase):
   * the baseline that EP must match as beta -> 0.
   */
  backprop(x: Tensor, labels: Tensor): { grads: Params[]; loss: Tensor } {
    const s = this.forward(x);
    const L = this.layers.length;
    const { loss, grad } = this.be.softmaxCrossEntropy(s.h[L], labels, 'mean');
    const grads: Params[] = new Array(L);
    let v = grad;
    for (let k = L; k >= 1; k--) {
      const layer = this.layers[k - 1];
      grads[k - 1] = layer.paramVjp(this.be, s.h[k - 1], v, s.pre[k]!);
      if (k > 1) {
        const below = layer.vjp(this.be, v, s.pre[k]!, s.h[k - 1].shape);
        v.dispose();
        v = below;
      }
    }
    v.dispose();
    disposeState(s);
    return { grads, loss };
  }
}

/** Disposes everything a FreeState owns (not the input h[0]), except `except`. */
export function disposeState(s: FreeState, except?: Tensor): void {
  for (let k = 1; k < s.h.length; k++) if (s.h[k] !== except) s.h[k].dispose();
  for (const p of s.pre) {
    if (!p) continue;
    if (p.a !== except) p.a.dispose();
    p.argmax?.dispose();
  }
}
