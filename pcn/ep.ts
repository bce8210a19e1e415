// Equilibrium Propagation on a PCN: the nudged phase by mod-PGD and the gradient estimators.
import seedrandom from 'seedrandom';
import { Backend, Tensor } from '../engine/index.js';
import { Params, PreActivation } from './layers.js';
import { FreeState, Network } from './network.js';

export type Sweep = 'async' | 'sync';
export type Scheme = 'centered' | 'forward' | 'backward' | 'random';

export interface NudgeOptions {
  /** Signed nudging strength (per example; the cost is summed over the batch in the dynamics). */
  beta: number;
  /** Per-example signed strengths f32 [N], used instead of beta (the random scheme). */
  betaRows?: Tensor;
  /** Iterations of the sweep. */
  K: number;
  /** 'async': one parity group, then the other (the group holding L first). 'sync': all layers at once. */
  sweep?: Sweep;
}

/** A nudged state: h_1..h_L and their pre-activations, sharing unchanged tensors with the free state. */
export interface NudgedState {
  h: Tensor[];
  pre: (PreActivation | null)[];
  /** Tensors this phase created (and must dispose); the rest belong to the free state. */
  owned: Set<Tensor>;
}

function disposeOwned(owned: Set<Tensor>, t: Tensor | null | undefined): void {
  if (t && owned.has(t)) {
    owned.delete(t);
    t.dispose();
  }
}

function disposePre(owned: Set<Tensor>, p: PreActivation | null): void {
  if (!p) return;
  disposeOwned(owned, p.a);
  disposeOwned(owned, p.argmax);
}

/** e_k = h_k - f_k(h_{k-1}) from the cached pre-activation. */
export function layerError(net: Network, k: number, h: Tensor[], pre: (PreActivation | null)[]): Tensor {
  const be = net.be;
  const a = pre[k]!.a;
  // The linear output layer predicts a_L itself: no copy on every relaxation step.
  const f = net.layers[k - 1].relu ? be.relu(a) : a;
  const e = be.sub(h[k], f);
  if (f !== a) f.dispose();
  return e;
}

/**
 * The nudged phase by mod-PGD, always starting from the free state:
 *   hidden k:  h_k <- ReLU(a_k(h_{k-1}) + D_k),  D_k = J_{f_{k+1}}(h_k)^T e_{k+1}
 *   output L:  h_L <- a_L - beta * (softmax(h_L) - onehot(y))
 */
export function nudge(net: Network, free: FreeState, labels: Tensor, opts: NudgeOptions): NudgedState {
  const be = net.be;
  const L = net.depth;
  const sweep = opts.sweep ?? 'async';
  const owned = new Set<Tensor>();
  const h = [...free.h];
  const pre = [...free.pre];
  // Layers whose pre-activation no longer matches the state below.
  const stale = new Set<number>();

  const refreshPre = (k: number) => {
    if (!stale.has(k)) return;
    disposePre(owned, pre[k]);
    const p = net.layers[k - 1].pre(be, h[k - 1]);
    owned.add(p.a);
    if (p.argmax) owned.add(p.argmax);
    pre[k] = p;
    stale.delete(k);
  };

  const newState = (k: number): Tensor => {
    refreshPre(k);
    const a = pre[k]!.a;
    if (k === L) {
      const { loss, grad } = be.softmaxCrossEntropy(h[L], labels, 'sum');
      loss.dispose();
      let out: Tensor;
      if (opts.betaRows) {
        const push = be.scaleRows(grad, opts.betaRows);
        out = be.sub(a, push);
        push.dispose();
      } else out = be.axpy(-opts.beta, grad, a);
      grad.dispose();
      return out;
    }
    refreshPre(k + 1);
    const e = layerError(net, k + 1, h, pre);
    const D = net.layers[k].vjp(be, e, pre[k + 1]!, h[k].shape);
    e.dispose();
    const sum = be.add(a, D);
    D.dispose();
    const out = be.relu(sum);
    sum.dispose();
    return out;
  };

  const update = (group: number[]) => {
    // Layers in one group are never adjacent, so all new states come from the old ones.
    const fresh = group.map((k) => newState(k));
    group.forEach((k, i) => {
      disposeOwned(owned, h[k]);
      h[k] = fresh[i];
      owned.add(fresh[i]);
      if (k < L) stale.add(k + 1);
    });
  };

  const all = Array.from({ length: L }, (_, i) => i + 1);
  const first = all.filter((k) => k % 2 === L % 2);
  const second = all.filter((k) => k % 2 !== L % 2);
  for (let it = 0; it < opts.K; it++) {
    if (sweep === 'sync') update(all);
    else {
      update(first);
      update(second);
    }
  }
  for (let k = 1; k <= L; k++) refreshPre(k);
  return { h, pre, owned };
}

export function disposeNudged(s: NudgedState): void {
  for (const t of s.owned) t.dispose();
  s.owned.clear();
}

/** (df_k/dtheta)^T e_k for every layer at a nudged state: -dF/dtheta. */
function errorParamVjps(net: Network, s: NudgedState, rowScale?: Tensor): Params[] {
  const be = net.be;
  return net.layers.map((layer, i) => {
    const k = i + 1;
    let e = layerError(net, k, s.h, s.pre);
    if (rowScale) {
      // paramVjp is linear in e, so a per-example factor can be applied to e first.
      const scaled = be.scaleRows(e, rowScale);
      e.dispose();
      e = scaled;
    }
    const g = layer.paramVjp(be, s.h[k - 1], e, s.pre[k]!);
    e.dispose();
    return g;
  });
}

export interface EpOptions {
  beta: number;
  K: number;
  scheme: Scheme;
  sweep?: Sweep;
  /** For the random scheme: seed of the per-example signs. */
  signSeed?: string;
}

/** The random scheme's per-example signs: +1 or -1, drawn from a seed. */
export function exampleSigns(seed: string, n: number): number[] {
  const rng = seedrandom(seed);
  return Array.from({ length: n }, () => (rng() < 0.5 ? 1 : -1));
}

/**
 * The EP estimate of the gradient of the mean cost, per parameter tensor.
 * centered: (dF/dtheta(h+, +b) - dF/dtheta(h-, -b)) / 2b; one-phase: dF/dtheta(h^b, b) / b,
 * with dF/dtheta = -(df/dtheta)^T e. Averaged over the batch.
 */
export function epGradient(net: Network, free: FreeState, labels: Tensor, opts: EpOptions): Params[] {
  const be = net.be;
  const N = free.h[0].shape[0];
  const phase = (beta: number): Params[] => {
    const s = nudge(net, free, labels, { beta, K: opts.K, sweep: opts.sweep });
    const g = errorParamVjps(net, s);
    disposeNudged(s);
    return g;
  };
  const scaleAll = (ps: Params[], c: number): Params[] =>
    ps.map((p) => {
      const out = { w: be.scale(p.w, c), b: be.scale(p.b, c) };
      p.w.dispose();
      p.b.dispose();
      return out;
    });
  const beta = opts.beta;
  switch (opts.scheme) {
    case 'centered': {
      const plus = phase(beta);
      const minus = phase(-beta);
      // (-plus - (-minus)) / 2b / N = (minus - plus) / (2bN)
      return plus.map((p, i) => {
        const m = minus[i];
        const dw = be.sub(m.w, p.w);
        const db = be.sub(m.b, p.b);
        for (const t of [p.w, p.b, m.w, m.b]) t.dispose();
        const out = { w: be.scale(dw, 1 / (2 * beta * N)), b: be.scale(db, 1 / (2 * beta * N)) };
        dw.dispose();
        db.dispose();
        return out;
      });
    }
    case 'forward':
      return scaleAll(phase(beta), -1 / (beta * N));
    case 'backward':
      return scaleAll(phase(-beta), 1 / (beta * N));
    case 'random': {
      // A sign per example: b_n = +-beta; g = sum_n dF_n/dtheta(h^b, b_n) / (b_n N).
      const signs = exampleSigns(opts.signSeed ?? 'random', N);
      const betaRows = be.fromArray(signs.map((s) => s * beta), [N]);
      const inv = be.fromArray(signs.map((s) => -1 / (s * beta * N)), [N]);
      const st = nudge(net, free, labels, { beta, K: opts.K, sweep: opts.sweep, betaRows });
      const g = errorParamVjps(net, st, inv);
      disposeNudged(st);
      betaRows.dispose();
      inv.dispose();
      return g;
    }
  }
}

/** E = 1/2 sum_k ||e_k||^2 per layer (host values), for traces and tests. */
export async function layerEnergies(net: Network, s: { h: Tensor[]; pre: (PreActivation | null)[] }): Promise<number[]> {
  const out: number[] = [];
  for (let k = 1; k <= net.depth; k++) {
    const e = layerError(net, k, s.h, s.pre);
    const v = await net.be.read(e);
    e.dispose();
    let sum = 0;
    for (const x of v) sum += x * x;
    out.push(sum / 2);
  }
  return out;
}

export type { Backend };
