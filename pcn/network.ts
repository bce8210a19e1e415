// A predictive coding network: layers built from a model description, the paper's
// initialization, the free phase (a forward pass) and the backprop gradient on the same layers.
import { Backend, Shape, ShapeError, Tensor, shapeStr } from '../engine/index.js';
import { Cost, costWithGrad } from './loss.js';
import { ConvLayer, DenseLayer, Layer, LayerSpec, LayerStep, Params, PreActivation } from './layers.js';

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
  /**
   * Skip connections (VGG10Skip): h_from enters conv layer `to` through a strided 1x1 conv
   * added to its conv output before pooling, so it is part of f_to and of e_to.
   */
  skips?: { from: number; to: number }[];
}

/** The skip entering each layer (index k), checked against the layers' shapes. */
function skipInputs(spec: ModelSpec): Map<number, { from: number }> {
  const m = new Map<number, { from: number }>();
  const L = spec.layers.length;
  for (const { from, to } of spec.skips ?? []) {
    if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 1 && to <= L && to > from + 1)) {
      throw new ShapeError('model', `${spec.name}: skip ${from}->${to} must join layers 1..${L} at least two apart`);
    }
    if (spec.layers[to - 1].kind !== 'conv' || spec.layers[from - 1].kind !== 'conv') throw new ShapeError('model', `${spec.name}: skip ${from}->${to} must join conv layers`);
    // The asynchronous sweep updates one parity group at a time; a skip inside a group would
    // couple two layers updated at once, as the synchronous sweep does, and the relaxation
    // oscillates (measured: EP no longer approaches BP as beta -> 0).
    if ((to - from) % 2 === 0) throw new ShapeError('model', `${spec.name}: skip ${from}->${to} joins layers of the same parity; the asynchronous sweep needs an odd distance (VGG10Skip: 2->5, 5->8)`);
    if (m.has(to)) throw new ShapeError('model', `${spec.name}: two skips enter layer ${to}`);
    m.set(to, { from });
  }
  return m;
}

export function buildLayers(spec: ModelSpec): Layer[] {
  const layers: Layer[] = [];
  const skips = skipInputs(spec);
  let shape: Shape = spec.input;
  spec.layers.forEach((ls, i) => {
    const last = i === spec.layers.length - 1;
    let layer: Layer;
    if (ls.kind === 'conv') {
      if (last) throw new ShapeError('model', `${spec.name}: the output layer must be dense`);
      if (shape.length !== 3) throw new ShapeError('model', `${spec.name}: conv layer ${i + 1} after a dense layer`);
      const sk = skips.get(i + 1);
      let skip = null;
      if (sk) {
        const fromShape = layers[sk.from - 1].outShape;
        // The 1x1 conv (pad 0) maps the source's H to floor((H - 1) / stride) + 1 = this layer's conv output H.
        const stride = ([1, 2] as const).find((s) => Math.floor((fromShape[0] - 1) / s) + 1 === shape[0] && Math.floor((fromShape[1] - 1) / s) + 1 === shape[1]);
        if (!stride) throw new ShapeError('model', `${spec.name}: skip ${sk.from}->${i + 1} cannot map ${shapeStr(fromShape)} to ${shape[0]}x${shape[1]} with stride 1 or 2`);
        skip = { from: sk.from, inShape: fromShape, stride };
      }
      layer = new ConvLayer(i + 1, shape, ls.out, ls.pool, true, skip);
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
  /** skipTargets[j]: the layers a skip from layer j enters. */
  private readonly skipTargets: number[][] = [];

  constructor(
    readonly be: Backend,
    readonly spec: ModelSpec,
  ) {
    this.layers = buildLayers(spec);
    this.layers.forEach((l, i) => {
      if (l instanceof ConvLayer && l.skip) (this.skipTargets[l.skip.from] ??= []).push(i + 1);
    });
  }

  get depth(): number {
    return this.layers.length;
  }

  /** The layer whose state enters layer k through a skip, if any. */
  skipFrom(k: number): number | undefined {
    const l = this.layers[k - 1];
    return l instanceof ConvLayer && l.skip ? l.skip.from : undefined;
  }

  /** Layers that a skip from layer j enters (asked per layer and relaxation step: computed once). */
  skipsFrom(j: number): number[] {
    return this.skipTargets[j] ?? [];
  }

  /** a_k from the states h (h[0] the input), with the skip input where one enters. */
  preAt(k: number, h: Tensor[]): PreActivation {
    const from = this.skipFrom(k);
    return this.layers[k - 1].pre(this.be, h[k - 1], from === undefined ? undefined : h[from]);
  }

  /** A hidden layer's relaxation step (Layer.block) at states h. */
  blockAt(k: number, h: Tensor[], D: Tensor | null, residual: boolean): LayerStep {
    const from = this.skipFrom(k);
    return this.layers[k - 1].block(this.be, h[k - 1], D, residual, from === undefined ? undefined : h[from]);
  }

  /** Parameter VJP of layer k at states h. */
  paramVjpAt(k: number, h: Tensor[], v: Tensor, p: PreActivation): Params {
    const from = this.skipFrom(k);
    return this.layers[k - 1].paramVjp(this.be, h[k - 1], v, p, from === undefined ? undefined : h[from]);
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
      layer.params?.s?.dispose();
      layer.params = {
        w: this.be.uniform(wShape, -c, c, `${seed}/w${i + 1}`).keep(),
        b: this.be.uniform([outCh], -cb, cb, `${seed}/b${i + 1}`).keep(),
      };
      if (layer instanceof ConvLayer && layer.skip) {
        // The skip's 1x1 filter: the same rule with its own fan (our choice).
        const fanS = this.spec.convFan === 'in' ? layer.skip.inShape[2] : layer.out;
        layer.params.s = this.be.uniform(layer.skipFilterShape, -1 / Math.sqrt(fanS), 1 / Math.sqrt(fanS), `${seed}/s${i + 1}`).keep();
      }
    });
  }

  /** One Params per layer (w, b, and the skip filter s on a layer a skip enters). */
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
      if (layer.relu) {
        // Hidden layers: a_k and h_k = ReLU(a_k) in one fused pass where the layer has one.
        const st = this.blockAt(layer.index, h, null, false);
        pre.push(st.pre);
        h.push(st.h);
        continue;
      }
      const p = this.preAt(layer.index, h);
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
   * Backprop gradient of the mean cost (cross-entropy by default) on the feedforward net (the free phase):
   * the baseline that EP must match as beta -> 0.
   */
  backprop(x: Tensor, labels: Tensor, cost: Cost = 'ce'): { grads: Params[]; loss: Tensor } {
    const s = this.forward(x);
    const r = this.backward(s, labels, cost);
    disposeState(s);
    return r;
  }

  /** The backward pass of backprop from a free state (which the caller still owns). */
  backward(s: FreeState, labels: Tensor, cost: Cost = 'ce'): { grads: Params[]; loss: Tensor } {
    const L = this.layers.length;
    const { loss, grad } = costWithGrad(this.be, s.h[L], labels, cost, 'mean');
    const grads: Params[] = new Array(L);
    // Gradients reaching a state through skips, added when the sweep gets there.
    const viaSkip = new Map<number, Tensor>();
    let v = grad;
    for (let k = L; k >= 1; k--) {
      const layer = this.layers[k - 1];
      grads[k - 1] = this.paramVjpAt(k, s.h, v, s.pre[k]!);
      const from = this.skipFrom(k);
      if (from !== undefined) viaSkip.set(from, (layer as ConvLayer).skipVjp(this.be, v, s.pre[k]!, s.h[from].shape));
      if (k > 1) {
        let below = layer.vjp(this.be, v, s.pre[k]!, s.h[k - 1].shape);
        const extra = viaSkip.get(k - 1);
        if (extra) {
          const sum = this.be.add(below, extra);
          below.dispose();
          extra.dispose();
          below = sum;
        }
        v.dispose();
        v = below;
      }
    }
    v.dispose();
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
