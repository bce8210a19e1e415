// The fused relaxation (pcn/ep.ts: cached masked residuals, Layer.block, Layer.vjpMasked, the
// fused conv-block ops) against a textbook mod-PGD written here from primitive ops only: every
// update recomputes a_k, a_{k+1}, e_{k+1} = h_{k+1} - f_{k+1}(h_k) and its VJP from scratch.
// Same states after K iterations, for every sweep, with and without lazy skipping, on a net
// with pooling, odd sizes, dense hidden layers and skips.
import { describe, expect, it } from 'vitest';
import { Backend, Shape, Tensor } from '../engine/index.js';
import { disposeNudged, nudge, Sweep } from '../pcn/ep.js';
import { ConvLayer, DenseLayer, Layer } from '../pcn/layers.js';
import { ModelSpec, Network, disposeState } from '../pcn/network.js';
import { freshSeed, gpu, randomValues, ref, relErr, rng, skipTinySpec } from './helpers.js';

/** Pools, odd spatial sizes (7 -> 3 drops a row and column), a dense hidden layer. */
const chainSpec: ModelSpec = {
  name: 'relax-chain',
  input: [7, 7, 3],
  classes: 5,
  layers: [
    { kind: 'conv', out: 6, pool: true }, // 3x3x6
    { kind: 'conv', out: 5, pool: false }, // 3x3x5
    { kind: 'conv', out: 8, pool: true }, // 1x1x8
    { kind: 'dense', out: 7 },
    { kind: 'dense', out: 5 },
  ],
  convFan: 'in',
  outputGain: 1,
};

/** a_k from primitive ops: conv (+ skip conv) + bias, pool; dense: matmul + bias. */
function textbookPre(be: Backend, layer: Layer, below: Tensor, skipIn: Tensor | undefined): { a: Tensor; argmax: Tensor | null; conv: Shape | null } {
  const p = layer.params;
  if (layer instanceof DenseLayer) {
    const x = be.reshape(below, [below.shape[0], layer.features]);
    const y = be.matmul(x, p.w);
    return { a: be.addBias(y, p.b), argmax: null, conv: null };
  }
  const c = layer as ConvLayer;
  let y = be.conv2d(below, p.w, p.b, { stride: 1, pad: 1 });
  if (c.skip) y = be.add(y, be.conv2d(skipIn!, p.s!, null, { stride: c.skip.stride, pad: 0 }));
  if (!c.pool) return { a: y, argmax: null, conv: null };
  const { y: a, argmax } = be.maxPool2x2(y);
  return { a, argmax, conv: y.shape };
}

/** J^T e of layer `layer` with respect to its input (or its skip source), from primitive ops. */
function textbookVjp(be: Backend, layer: Layer, e: Tensor, pre: ReturnType<typeof textbookPre>, belowShape: Shape, viaSkip: boolean): Tensor {
  let g = layer.relu ? be.reluMask(e, pre.a) : e;
  if (layer instanceof DenseLayer) return be.reshape(be.matmul(g, layer.params.w, { transB: true }), belowShape);
  const c = layer as ConvLayer;
  if (pre.argmax) g = be.maxPool2x2Backward(g, pre.argmax, pre.conv!);
  return viaSkip
    ? be.conv2dBackwardData(g, c.params.s!, belowShape, { stride: c.skip!.stride, pad: 0 })
    : be.conv2dBackwardData(g, c.params.w, belowShape, { stride: 1, pad: 1 });
}

/** K iterations of mod-PGD from the free state, every quantity recomputed when used (no skipping). */
function textbookNudge(be: Backend, net: Network, x: Tensor, labels: Tensor, beta: number, K: number, sweep: Sweep): Tensor[] {
  const L = net.depth;
  const free = net.forward(x);
  let h = [...free.h];
  const skipFrom = (k: number) => net.skipFrom(k);
  const preAt = (k: number, hs: Tensor[]) => {
    const from = skipFrom(k);
    return textbookPre(be, net.layers[k - 1], hs[k - 1], from === undefined ? undefined : hs[from]);
  };
  const f = (k: number, a: Tensor) => (net.layers[k - 1].relu ? be.relu(a) : a);
  const newState = (k: number, hs: Tensor[]): Tensor => {
    const pk = preAt(k, hs);
    if (k === L) return be.axpy(-beta, be.softmaxCrossEntropyGrad(hs[L], labels, 1), pk.a);
    const p1 = preAt(k + 1, hs);
    let D = textbookVjp(be, net.layers[k], be.sub(hs[k + 1], f(k + 1, p1.a)), p1, hs[k].shape, false);
    for (const t of net.skipsFrom(k)) {
      const pt = preAt(t, hs);
      D = be.add(D, textbookVjp(be, net.layers[t - 1], be.sub(hs[t], f(t, pt.a)), pt, hs[k].shape, true));
    }
    return be.relu(be.add(pk.a, D));
  };
  const all = Array.from({ length: L }, (_, i) => i + 1);
  const groups =
    sweep === 'sync' ? [all] : sweep === 'topdown' ? [...all].reverse().map((k) => [k]) : [all.filter((k) => k % 2 === L % 2), all.filter((k) => k % 2 !== L % 2)];
  for (let t = 0; t < K; t++) {
    for (const g of groups) {
      const fresh = g.map((k) => newState(k, h));
      h = [...h];
      g.forEach((k, i) => (h[k] = fresh[i]));
    }
  }
  return h;
}

async function compare(be: Backend, spec: ModelSpec, tol: number): Promise<void> {
  const seed = freshSeed();
  const r = rng(seed);
  const net = new Network(be, spec);
  net.init(seed);
  const N = 3;
  const [H, W, C] = spec.input;
  const x = be.fromArray(randomValues(N * H * W * C, r), [N, H, W, C]);
  const labels = be.fromArray(Array.from({ length: N }, () => Math.floor(r() * spec.classes)), [N], 'u32');
  // A large beta so the nudge reaches every layer well above rounding within K iterations.
  const beta = 0.5;
  const K = 6; // the synchronous sweep moves the nudge down one layer per iteration
  for (const sweep of ['async', 'sync', 'topdown'] as Sweep[]) {
    const want = await Promise.all(textbookNudge(be, net, x, labels, beta, K, sweep).slice(1).map((t) => be.read(t)));
    for (const lazy of [true, false]) {
      const free = net.forward(x);
      const s = await nudge(net, free, labels, { beta, K, sweep, lazy });
      const got = await Promise.all(s.h.slice(1).map((t) => be.read(t)));
      got.forEach((g, i) => {
        const err = relErr(g, want[i]);
        expect(err, `${spec.name} ${sweep} lazy ${lazy} layer ${i + 1}: relative error ${err} (seed ${seed})`).toBeLessThan(tol);
      });
      // The nudge moved every layer (else the comparison says little).
      const freeVals = await Promise.all(free.h.slice(1).map((t) => be.read(t)));
      freeVals.forEach((fv, i) => expect(relErr(fv, want[i]), `${sweep} layer ${i + 1} did not move`).toBeGreaterThan(1e-6));
      disposeNudged(s);
      disposeState(free);
    }
  }
}

describe('fused relaxation against textbook mod-PGD', () => {
  it('reference backend (float64): the same states for every sweep, lazy or not', async () => {
    await compare(ref, chainSpec, 1e-12);
    await compare(ref, skipTinySpec(), 1e-12);
  });

  it('webgpu (the fused conv-block kernels): the same states to f32 rounding', async () => {
    const be = await gpu();
    await compare(be, chainSpec, 2e-5);
  });
});
