// The FLOP model of a training step (PAPER.md, "Cost in the paper"): what an EP step costs
// relative to a BP step when only the convolutions and matmuls count. Every conv/matmul
// through layer k (forward, transposed, or weight gradient) costs the same F_k per image.
import { Scheme, Sweep } from './ep.js';
import { ConvLayer, DenseLayer } from './layers.js';
import { ModelSpec, buildLayers } from './network.js';

/** Forward FLOPs per image of each layer (index k-1 for layer k): 2 * MACs of its conv or matmul. */
export function layerFlops(spec: ModelSpec): number[] {
  return buildLayers(spec).map((layer) => {
    if (layer instanceof ConvLayer) {
      const [H, W, Ci] = layer.inShape; // stride 1, pad 1: the conv output is H x W before pooling
      return 2 * H * W * layer.out * 9 * Ci;
    }
    const d = layer as DenseLayer;
    return 2 * d.features * d.out;
  });
}

/** Per-layer operation counts of one nudged phase (arrays indexed by k = 1..L, 0 unused). */
export interface PhaseCounts {
  /** Pre-activations recomputed (forward conv/matmul through layer k). */
  pre: number[];
  /** Top-down signals through layer k (transposed conv / W^T product). */
  vjp: number[];
  /** Weight gradients through layer k at the end of the phase (zero error: none needed). */
  grad: number[];
  /** Layer updates done and skipped. */
  updates: number;
  skipped: number;
}

/**
 * The schedule of one nudged phase, simulated on versions instead of tensors: h_k gets a new
 * version each time it is updated; a pre-activation is recomputed when needed and computed
 * from an older version of its input; with `lazy`, a hidden layer is updated only once it or a
 * neighbour holds a non-free version. A top-down signal D_k is computed only once e_{k+1} can
 * be non-zero (h_k or h_{k+1} has moved), whether or not the updates are lazy.
 */
export function phaseCounts(L: number, K: number, opts: { sweep?: Sweep; lazy?: boolean } = {}): PhaseCounts {
  const lazy = opts.lazy ?? true;
  const version = new Array(L + 1).fill(0); // version[k] of h_k; 0 = free state
  const preOf = new Array(L + 1).fill(0); // version of h_{k-1} that a_k was computed from
  const c: PhaseCounts = { pre: new Array(L + 1).fill(0), vjp: new Array(L + 1).fill(0), grad: new Array(L + 1).fill(0), updates: 0, skipped: 0 };
  const need = (k: number) => {
    if (preOf[k] !== version[k - 1]) {
      c.pre[k]++;
      preOf[k] = version[k - 1];
    }
  };
  const groupsOf = (): number[][] => {
    const all = Array.from({ length: L }, (_, i) => i + 1);
    if (opts.sweep === 'sync') return [all];
    if (opts.sweep === 'topdown') return all.reverse().map((k) => [k]);
    return [all.filter((k) => k % 2 === L % 2), all.filter((k) => k % 2 !== L % 2)];
  };
  for (let t = 0; t < K; t++) {
    for (const group of groupsOf()) {
      const active = group.filter((k) => !lazy || k === L || [k - 1, k, k + 1].some((j) => j >= 1 && j <= L && version[j] > 0));
      c.updates += active.length;
      c.skipped += group.length - active.length;
      for (const k of active) {
        need(k);
        // e_{k+1} is exactly zero until h_k or h_{k+1} leaves the free state: no D_k to compute.
        if (k < L && (version[k] > 0 || version[k + 1] > 0)) {
          need(k + 1);
          c.vjp[k + 1]++;
        }
      }
      for (const k of active) version[k]++;
    }
  }
  for (let k = 1; k <= L; k++) {
    need(k);
    if (!lazy || version[k] > 0 || version[k - 1] > 0) c.grad[k]++;
  }
  return c;
}

export interface StepFlops {
  /** FLOPs per image of one BP step and one EP step of the given schedule. */
  bp: number;
  ep: number;
  /** ep / bp: the floor of the measured time ratio if every FLOP ran at the same speed. */
  ratio: number;
  phases: number;
  counts: PhaseCounts;
}

/** The FLOP model of one training step per image: EP (free phase + nudged phases + weight gradients) against BP. */
export function stepFlops(spec: ModelSpec, K: number, scheme: Scheme, opts: { sweep?: Sweep; lazy?: boolean } = {}): StepFlops {
  // Skips change which layers the nudge reaches when; the schedule below is the chain's.
  if (spec.skips?.length) throw new Error(`FLOP model: ${spec.name} has skip connections; the model covers chain nets only`);
  const F = layerFlops(spec);
  const fwd = F.reduce((a, b) => a + b, 0);
  // BP: forward, weight gradient of every layer, input gradient of every layer but the first.
  const bp = fwd + fwd + (fwd - F[0]);
  const counts = phaseCounts(F.length, K, opts);
  let phase = 0;
  for (let k = 1; k <= F.length; k++) phase += (counts.pre[k] + counts.vjp[k] + counts.grad[k]) * F[k - 1];
  const phases = scheme === 'centered' ? 2 : 1;
  const ep = fwd + phases * phase;
  return { bp, ep, ratio: ep / bp, phases, counts };
}

/** Closed form of the lazy rule's skipped updates per async phase: at iteration t only the top 2t layers can move. */
export function lazySkippedUpdates(L: number, K: number): number {
  let n = 0;
  for (let t = 1; t <= K; t++) n += Math.max(0, L - 2 * t);
  return n;
}
