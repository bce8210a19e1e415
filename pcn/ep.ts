// Equilibrium Propagation on a PCN: the nudged phase by mod-PGD and the gradient estimators.
import seedrandom from 'seedrandom';
import { Backend, Tensor } from '../engine/index.js';
import { ConvLayer, LayerStep, Params, PreActivation, hiddenState, mapParams, paramTensors } from './layers.js';
import { FreeState, Network } from './network.js';
import { Cost, costGrad, costWithGrad } from './loss.js';

/**
 * 'async': the paper's parity sweep, one group then the other (the group holding L first).
 * 'sync': all layers at once (worse; for comparison). 'topdown': L, L-1, ..., 1 in turn, each
 * from the freshest states (our option: the nudge crosses the whole net in one sweep, so fewer
 * sweeps are needed; the fixed point, and so the beta -> 0 limit, is the same).
 */
export type Sweep = 'async' | 'sync' | 'topdown';
export type Scheme = 'centered' | 'forward' | 'backward' | 'random';

export interface NudgeOptions {
  /** Signed nudging strength (per example; the cost is summed over the batch in the dynamics). */
  beta: number;
  /** Per-example signed strengths f32 [N], used instead of beta (the random scheme). */
  betaRows?: Tensor;
  /** Iterations of the sweep (the most, with a convergence stop). */
  K: number;
  /** The update order (see Sweep); default 'async'. */
  sweep?: Sweep;
  /**
   * Skip the updates of layers the nudge has not reached (default true). Exact: a layer whose
   * state, input and upper neighbour all still hold the free state gets e_{k+1} = 0, D_k = 0,
   * so its update would give back ReLU(a_k) = h_k bit for bit.
   */
  lazy?: boolean;
  /**
   * Convergence stop (default off): stop after the first iteration in which no state moved
   * by more than tol * |beta| (max over layers and elements of |h_new - h_old|). Relative to
   * beta because the gradient estimate is e / beta: a state error of tol * beta is a gradient
   * error of about tol. Checking it reads the device after every iteration.
   */
  tol?: number;
  /** The cost the output layer is nudged with (default 'ce', cross-entropy). */
  cost?: Cost;
  /**
   * The clamping alternative of traditional PCNs (instead of nudging): h_L is set once to
   * (1 - beta) h_L^0 + beta onehot(y), h_L^0 the free output, and held while the hidden layers
   * relax. Its beta -> 0 limit is not BP's MSE gradient (the relaxed hidden layers take up part
   * of the clamped output error; test/pcn-cost.test.ts: cosine > 0.95 with it, shorter).
   */
  clamp?: boolean;
  /** Counts of the work done, added to (for the FLOP model and the bench). */
  stats?: NudgeStats;
  /** Collects the energy after every iteration (iteration 0 is the free state). */
  trace?: EnergyTrace;
}

/** What a nudged phase did. Arrays are indexed by layer k = 1..L (index 0 unused). */
export interface NudgeStats {
  iterations: number;
  /** Layer updates done, and skipped by the lazy rule. */
  updates: number;
  skipped: number;
  /** Pre-activations computed (one conv or matmul through layer k each). */
  pre: number[];
  /** Top-down signals through layer k (one transposed conv or W^T product each), k >= 2. */
  vjp: number[];
}

export function newNudgeStats(L: number): NudgeStats {
  return { iterations: 0, updates: 0, skipped: 0, pre: new Array(L + 1).fill(0), vjp: new Array(L + 1).fill(0) };
}

/**
 * Energy per iteration, kept as device tensors until read (reading inside the relaxation
 * would stall the queue every iteration): layers[t][k-1] = ||e_k||^2 summed over the batch
 * (not yet halved), cost[t] = C summed over the batch.
 */
export interface EnergyTrace {
  layers: Tensor[][];
  cost: Tensor[];
}

/** A nudged state: h_1..h_L and their pre-activations, sharing unchanged tensors with the free state. */
export interface NudgedState {
  h: Tensor[];
  pre: (PreActivation | null)[];
  /** Tensors this phase created (and must dispose); the rest belong to the free state. */
  owned: Set<Tensor>;
  /** Layers whose state was replaced; every other layer still holds its free state. */
  moved: Set<number>;
  /**
   * Masked residuals reluMask(e_k, a_k) still valid for the final h_k and a_k (owned, like
   * every tensor of the phase), where the relaxation has them; the weight gradient uses them
   * instead of recomputing e_k (it masks e_k anyway).
   */
  resid?: (Tensor | 'zero' | undefined)[];
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
 * One nudged phase by mod-PGD, always starting from the free state:
 *   hidden k:  h_k <- ReLU(a_k(h_{k-1}) + D_k),  D_k = J_{f_{k+1}}(h_k)^T e_{k+1}
 *              (+ J_{f_t}(h_k)^T e_t for each layer t a skip from k enters)
 *   output L:  h_L <- a_L - beta * (softmax(h_L) - onehot(y))
 * iterate() records one iteration; finish() hands over the state. nudge() drives it.
 *
 * How the work is laid out (the fused relaxation): a hidden layer's update is one
 * transposed conv for D_k (Layer.vjpMasked, the pool routing fused into its loads) and one
 * fused conv pass (Layer.block: conv + bias + pool + D + ReLU) that also writes the masked
 * residual r_k = reluMask(e_k, a_k). r_k stays valid until h_{k-1} moves, which in the
 * parity sweep is after layer k-1 has used it, so e_k is never recomputed on its own.
 */
export class Relaxation {
  readonly h: Tensor[];
  readonly pre: (PreActivation | null)[];
  readonly owned = new Set<Tensor>();
  readonly moved = new Set<number>();
  iterations = 0;
  /** Per updated layer, max |h_new - h_old| per example ([N]) of the last iteration (with tol). */
  private changes: Tensor[] = [];
  /** Layers whose pre-activation is out of date (a state it reads has moved). */
  private readonly stale = new Set<number>();
  /**
   * The masked residual r_k for the current h_k and a_k; 'zero' where it is exactly zero
   * (the free state: h_k = f_k(h_{k-1})); undefined where it must be computed.
   */
  private readonly resid: (Tensor | 'zero' | undefined)[];
  private readonly L: number;
  private readonly lazy: boolean;
  private readonly cost: Cost;
  /** onehot(labels), made when the cost or the clamp needs it. */
  private onehot: Tensor | null = null;
  private readonly stats: NudgeStats;
  private readonly first: number[];
  private readonly second: number[];
  private readonly all: number[];

  constructor(
    readonly net: Network,
    free: FreeState,
    readonly labels: Tensor,
    readonly opts: NudgeOptions,
  ) {
    this.L = net.depth;
    this.h = [...free.h];
    this.pre = [...free.pre];
    this.resid = new Array(this.L + 1).fill('zero');
    this.lazy = opts.lazy ?? true;
    this.cost = opts.cost ?? 'ce';
    this.stats = opts.stats ?? newNudgeStats(this.L);
    this.all = Array.from({ length: this.L }, (_, i) => i + 1);
    this.first = this.all.filter((k) => k % 2 === this.L % 2);
    this.second = this.all.filter((k) => k % 2 !== this.L % 2);
    if (opts.trace) this.traceEnergy();
  }

  private refreshPre(k: number): void {
    if (!this.stale.has(k)) return;
    this.setPre(k, this.net.preAt(k, this.h));
    this.stats.pre[k]++;
  }

  private setPre(k: number, p: PreActivation): void {
    if (p === this.pre[k]) return;
    disposePre(this.owned, this.pre[k]);
    this.owned.add(p.a);
    if (p.argmax) this.owned.add(p.argmax);
    this.pre[k] = p;
    this.stale.delete(k);
  }

  private setResid(k: number, r: Tensor | 'zero' | undefined): void {
    const old = this.resid[k];
    if (old !== undefined && old !== 'zero') disposeOwned(this.owned, old);
    if (r !== undefined && r !== 'zero') this.owned.add(r);
    this.resid[k] = r;
  }

  /** A state layer k reads has moved: its a_k and r_k are out of date. */
  private invalidate(k: number): void {
    this.stale.add(k);
    this.setResid(k, undefined);
  }

  /** r_k for the current states, computed if out of date. */
  private residAt(k: number): Tensor | 'zero' {
    const r = this.resid[k];
    if (r !== undefined) return r;
    this.refreshPre(k);
    const be = this.net.be;
    const a = this.pre[k]!.a;
    let out: Tensor;
    // Hidden: reluMask(h - ReLU(a), a) = reluMask(h - a, a), as the mask keeps only a > 0.
    const d = be.sub(this.h[k], a);
    if (this.net.layers[k - 1].relu) {
      out = be.reluMask(d, a);
      d.dispose();
    } else out = d;
    this.setResid(k, out);
    return out;
  }

  /** D_k: the top-down signal into hidden layer k (null where it is exactly zero). */
  private topDown(k: number): Tensor | null {
    const be = this.net.be;
    const { h, pre } = this;
    let D: Tensor | null = null;
    const accumulate = (t: Tensor) => {
      if (!D) D = t;
      else {
        const sum = be.add(D, t);
        D.dispose();
        t.dispose();
        D = sum;
      }
    };
    const r = this.residAt(k + 1);
    if (r !== 'zero') {
      accumulate(this.net.layers[k].vjpMasked(be, r, pre[k + 1]!, h[k].shape));
      this.stats.vjp[k + 1]++;
    }
    // A skip from k: its target's error reaches h_k through the skip conv too.
    for (const t of this.net.skipsFrom(k)) {
      const rt = this.residAt(t);
      if (rt !== 'zero') accumulate((this.net.layers[t - 1] as ConvLayer).skipVjpMasked(be, rt, pre[t]!, h[k].shape));
    }
    return D;
  }

  private targets(): Tensor {
    if (!this.onehot) {
      this.onehot = this.net.be.oneHot(this.labels, this.h[this.L].shape[1]);
      this.owned.add(this.onehot);
    }
    return this.onehot;
  }

  /** The output layer's new state (its residual is left to residAt). */
  private outputState(): Tensor {
    const be = this.net.be;
    const { h, L } = this;
    if (this.opts.clamp) {
      // h_L^0 + beta (y - h_L^0), once (update() never comes back to a clamped layer).
      const d = be.sub(this.targets(), h[L]);
      const push = this.opts.betaRows ? be.scaleRows(d, this.opts.betaRows) : be.scale(d, this.opts.beta);
      d.dispose();
      const out = be.add(h[L], push);
      push.dispose();
      return out;
    }
    this.refreshPre(L);
    const a = this.pre[L]!.a;
    // Only the gradient of the cost drives the dynamics: no loss reduction here.
    const grad = costGrad(be, h[L], this.labels, this.cost, this.cost === 'mse' ? this.targets() : undefined);
    let out: Tensor;
    if (this.opts.betaRows) {
      const push = be.scaleRows(grad, this.opts.betaRows);
      out = be.sub(a, push);
      push.dispose();
    } else out = be.axpy(-this.opts.beta, grad, a);
    grad.dispose();
    return out;
  }

  /** Whether layer k's update can differ from its current (free) state. */
  private reached(k: number): boolean {
    // A clamped output is set once and then held.
    if (k === this.L) return !(this.opts.clamp && this.moved.has(k));
    if (!this.lazy) return true;
    const from = this.net.skipFrom(k);
    return (
      this.moved.has(k - 1) ||
      this.moved.has(k) ||
      this.moved.has(k + 1) ||
      (from !== undefined && this.moved.has(from)) ||
      this.net.skipsFrom(k).some((t) => this.moved.has(t))
    );
  }

  private update(group: number[]): void {
    const active = group.filter((k) => this.reached(k));
    this.stats.updates += active.length;
    this.stats.skipped += group.length - active.length;
    // Every new state of a group comes from the old states. In a chain net the layers of one
    // parity group never read each other's state, D or residual, so each layer can be stepped
    // and replaced in turn (one layer's temporaries alive at a time). The synchronous sweep,
    // and a skip (whose target's residual a same-group layer reads), need the whole group's
    // D_k first, then every step, and only then the states replaced.
    if (this.opts.sweep !== 'sync' && !this.net.spec.skips?.length) {
      for (const k of active) this.replace([k], [this.step(k, k < this.L ? this.topDown(k) : null)]);
      return;
    }
    const Ds = active.map((k) => (k < this.L ? this.topDown(k) : null));
    this.replace(
      active,
      active.map((k, i) => this.step(k, Ds[i])),
    );
  }

  /** Layer k's new state (and pre-activation and residual) given D_k; consumes D. */
  private step(k: number, D: Tensor | null): { pre: PreActivation | null; h: Tensor; r: Tensor | null } {
    if (k === this.L) return { pre: null, h: this.outputState(), r: null };
    let st: LayerStep;
    if (this.stale.has(k)) {
      st = this.net.blockAt(k, this.h, D, true);
      this.stats.pre[k]++;
    } else {
      // a_k is current (h_{k-1} has not moved since): only the elementwise part is left.
      st = { pre: this.pre[k]!, ...hiddenState(this.net.be, this.pre[k]!.a, D, true) };
    }
    D?.dispose();
    return st;
  }

  /** Installs new states of layers `ks`, then marks what read the old ones as out of date. */
  private replace(ks: number[], steps: { pre: PreActivation | null; h: Tensor; r: Tensor | null }[]): void {
    ks.forEach((k, i) => {
      const st = steps[i];
      if (st.pre) this.setPre(k, st.pre);
      if (this.opts.tol !== undefined) {
        const d = this.net.be.sub(st.h, this.h[k]);
        this.changes.push(this.net.be.rowAbsMax(d));
        d.dispose();
      }
      disposeOwned(this.owned, this.h[k]);
      this.h[k] = st.h;
      this.owned.add(st.h);
      this.moved.add(k);
      this.setResid(k, st.r ?? undefined);
    });
    for (const k of ks) {
      if (k < this.L) this.invalidate(k + 1);
      for (const t of this.net.skipsFrom(k)) this.invalidate(t);
    }
  }

  /** Records one iteration of the sweep. */
  iterate(): void {
    this.disposeChanges();
    if (this.opts.sweep === 'sync') this.update(this.all);
    else if (this.opts.sweep === 'topdown') for (let k = this.L; k >= 1; k--) this.update([k]);
    else {
      this.update(this.first);
      this.update(this.second);
    }
    this.iterations++;
    this.stats.iterations++;
    if (this.opts.trace) this.traceEnergy();
  }

  /** Largest |h_new - h_old| of the last iteration (needs tol set); reads from the device. */
  async lastChange(): Promise<number> {
    let m = 0;
    const vals = await Promise.all(this.changes.map((t) => this.net.be.read(t)));
    for (const v of vals) for (const x of v) m = Math.max(m, Math.abs(x));
    return m;
  }

  private disposeChanges(): void {
    for (const t of this.changes) t.dispose();
    this.changes = [];
  }

  private traceEnergy(): void {
    const be = this.net.be;
    const trace = this.opts.trace!;
    const row: Tensor[] = [];
    for (let k = 1; k <= this.L; k++) {
      this.refreshPre(k);
      const e = layerError(this.net, k, this.h, this.pre);
      const sq = be.mul(e, e);
      e.dispose();
      row.push(be.sum(sq, sq.shape.map((_, i) => i)).keep());
      sq.dispose();
    }
    trace.layers.push(row);
    const c = costWithGrad(be, this.h[this.L], this.labels, this.cost, 'sum');
    c.grad.dispose();
    trace.cost.push(c.loss.keep());
  }

  /** The nudged state; pre-activations made current. The relaxation is spent afterwards. */
  finish(): NudgedState {
    this.disposeChanges();
    for (let k = 1; k <= this.L; k++) this.refreshPre(k);
    return { h: this.h, pre: this.pre, owned: this.owned, moved: this.moved, resid: [...this.resid] };
  }
}

/** The nudged phase: K iterations of the sweep, fewer with a convergence stop (tol). */
export async function nudge(net: Network, free: FreeState, labels: Tensor, opts: NudgeOptions): Promise<NudgedState> {
  const r = new Relaxation(net, free, labels, opts);
  const limit = opts.tol === undefined ? undefined : opts.tol * Math.abs(opts.beta);
  for (let it = 0; it < opts.K; it++) {
    r.iterate();
    if (limit !== undefined && (await r.lastChange()) <= limit) break;
  }
  return r.finish();
}

export function disposeNudged(s: NudgedState): void {
  for (const t of s.owned) t.dispose();
  s.owned.clear();
}

/**
 * (df_k/dtheta)^T e_k for every layer at a nudged state, -dF/dtheta, one layer at a time:
 * `take(i, g)` gets layer i+1's and owns it. A layer whose state and input both still hold
 * the free state has e_k = 0 exactly, so its gradient is zero without a weight-gradient pass.
 */
export function eachErrorParamVjp(net: Network, s: NudgedState, rowScale: Tensor | undefined, take: (i: number, g: Params) => void): void {
  for (let k = 1; k <= net.depth; k++) take(k - 1, layerErrorParamVjp(net, s, rowScale, k));
}

/** (df_k/dtheta)^T e_k of layer k at a nudged state, each example's e scaled by rowScale. */
function layerErrorParamVjp(net: Network, s: NudgedState, rowScale: Tensor | undefined, k: number): Params {
  const be = net.be;
  const from = net.skipFrom(k);
  if (!s.moved.has(k) && !s.moved.has(k - 1) && (from === undefined || !s.moved.has(from))) {
    return mapParams([net.layers[k - 1].params], ([t]) => be.zeros(t.shape));
  }
  const cached = s.resid?.[k];
  let e = cached !== undefined && cached !== 'zero' ? cached : layerError(net, k, s.h, s.pre);
  const own = (t: Tensor) => t !== cached && t.dispose();
  if (rowScale) {
    // paramVjp is linear in e, so a per-example factor can be applied to e first.
    const scaled = be.scaleRows(e, rowScale);
    own(e);
    e = scaled;
  }
  const g = net.paramVjpAt(k, s.h, e, s.pre[k]!);
  own(e);
  return g;
}

export interface EpOptions {
  beta: number;
  K: number;
  scheme: Scheme;
  sweep?: Sweep;
  /** For the random scheme: seed of the per-example signs. */
  signSeed?: string;
  /** See NudgeOptions. */
  lazy?: boolean;
  tol?: number;
  stats?: NudgeStats;
  /** One trace per phase run (centered: +beta then -beta). */
  traces?: EnergyTrace[];
  /** See NudgeOptions (default 'ce' and no clamping). */
  cost?: Cost;
  clamp?: boolean;
  /**
   * Centered only: run the +beta and -beta phases as one relaxation of a double batch (the
   * free state stacked twice, beta per example), one weight gradient per layer over 2N rows.
   * The same arithmetic per example, in half the dispatches on twice the rows.
   */
  doubleBatch?: boolean;
}

/** The random scheme's per-example signs: +1 or -1, drawn from a seed. */
export function exampleSigns(seed: string, n: number): number[] {
  const rng = seedrandom(seed);
  return Array.from({ length: n }, () => (rng() < 0.5 ? 1 : -1));
}

/** The nudged phases an estimator needs, and how their -dF/dtheta combine into the gradient. */
export interface PhasePlan {
  /** Each nudged phase; `free` and `labels` replace the step's own where given (double batch). */
  phases: { opts: NudgeOptions; rowScale?: Tensor; free?: FreeState; labels?: Tensor }[];
  /**
   * Takes phase p's -dF/dtheta of layer index i as soon as it is made, and owns it. The
   * centered plan folds the -beta phase's layer into the gradient at once, so only the +beta
   * phase's gradients wait, never two full sets.
   */
  take(p: number, i: number, g: Params): void;
  /** The gradient, once every phase's layers were taken. */
  result(): Params[];
  dispose(): void;
}

/** A plan's take/result from how its last phase's layer gradients become the gradient. */
function folding(last: number, fold: (earlier: Params[], g: Params) => Params): Pick<PhasePlan, 'take' | 'result'> {
  const kept: Params[][] = [];
  const out: Params[] = [];
  return {
    take: (p, i, g) => {
      if (p < last) {
        (kept[p] ??= [])[i] = g;
        return;
      }
      out[i] = fold(
        kept.map((ps) => ps[i]),
        g,
      );
    },
    result: () => out,
  };
}

/** The free state stacked twice along the batch (pre-activations too), and the labels. */
function doubled(net: Network, free: FreeState, labels: Tensor): { free: FreeState; labels: Tensor; dispose(): void } {
  const be = net.be;
  const made: Tensor[] = [];
  const twice = (t: Tensor) => {
    const d = be.concat([t, t]);
    made.push(d);
    return d;
  };
  const h = free.h.map(twice);
  const pre = free.pre.map((p) =>
    p ? { a: twice(p.a), argmax: p.argmax ? twice(p.argmax) : null, convShape: p.convShape ? [2 * p.convShape[0], ...p.convShape.slice(1)] : null } : null,
  );
  return { free: { h, pre }, labels: twice(labels), dispose: () => made.forEach((t) => t.dispose()) };
}

export function planPhases(net: Network, free: FreeState, opts: EpOptions, labels?: Tensor): PhasePlan {
  const be = net.be;
  const N = free.h[0].shape[0];
  const beta = opts.beta;
  const base = (b: number): NudgeOptions => {
    const trace = opts.traces ? { layers: [], cost: [] } : undefined;
    if (trace) opts.traces!.push(trace);
    return { beta: b, K: opts.K, sweep: opts.sweep, lazy: opts.lazy, tol: opts.tol, stats: opts.stats, trace, cost: opts.cost, clamp: opts.clamp };
  };
  const scaled = (c: number) => (_: Params[], p: Params): Params => {
    const out = mapParams([p], ([t]) => be.scale(t, c));
    for (const t of paramTensors(p)) t.dispose();
    return out;
  };
  const asIs = (_: Params[], g: Params) => g;
  const none = () => {};
  if (opts.doubleBatch && opts.scheme !== 'centered') throw new Error(`doubleBatch applies to the centered scheme, not ${opts.scheme}`);
  if (opts.doubleBatch) {
    if (!labels) throw new Error('planPhases: the double batch needs the labels');
    // Rows 0..N-1 nudged with +beta, N..2N-1 with -beta; scaling row n's -dF/dtheta by
    // -1/(2 b_n N) sums to (dF/dtheta(+) - dF/dtheta(-)) / (2 beta N), the centered estimate.
    const d = doubled(net, free, labels);
    const betaRows = be.fromArray([...new Array(N).fill(beta), ...new Array(N).fill(-beta)], [2 * N]);
    const inv = be.fromArray([...new Array(N).fill(-1 / (2 * beta * N)), ...new Array(N).fill(1 / (2 * beta * N))], [2 * N]);
    return {
      phases: [{ opts: { ...base(beta), betaRows }, rowScale: inv, free: d.free, labels: d.labels }],
      ...folding(0, asIs),
      dispose: () => {
        d.dispose();
        betaRows.dispose();
        inv.dispose();
      },
    };
  }
  switch (opts.scheme) {
    case 'centered': {
      // (dF(+) - dF(-)) / (2bN) = (-dF(-)) c - (-dF(+)) c with c = 1/(2bN): scaling each
      // phase's e by its sign times c (paramVjp is linear in e) leaves one add per tensor.
      const c = 1 / (2 * beta * N);
      const plusScale = be.fromArray(new Array(N).fill(-c), [N]);
      const minusScale = be.fromArray(new Array(N).fill(c), [N]);
      return {
        phases: [
          { opts: base(beta), rowScale: plusScale },
          { opts: base(-beta), rowScale: minusScale },
        ],
        ...folding(1, ([p], m) => {
          // In place: the sum needs no third layer-sized tensor.
          paramTensors(p).forEach((tp, j) => be.accumulate(tp, paramTensors(m)[j]));
          for (const t of paramTensors(m)) t.dispose();
          return p;
        }),
        dispose: () => {
          plusScale.dispose();
          minusScale.dispose();
        },
      };
    }
    case 'forward':
      return { phases: [{ opts: base(beta) }], ...folding(0, scaled(-1 / (beta * N))), dispose: none };
    case 'backward':
      return { phases: [{ opts: base(-beta) }], ...folding(0, scaled(1 / (beta * N))), dispose: none };
    case 'random': {
      // A sign per example: b_n = +-beta; g = sum_n dF_n/dtheta(h^b, b_n) / (b_n N).
      const signs = exampleSigns(opts.signSeed ?? 'random', N);
      const betaRows = be.fromArray(signs.map((s) => s * beta), [N]);
      const inv = be.fromArray(signs.map((s) => -1 / (s * beta * N)), [N]);
      return {
        phases: [{ opts: { ...base(beta), betaRows }, rowScale: inv }],
        ...folding(0, asIs),
        dispose: () => {
          betaRows.dispose();
          inv.dispose();
        },
      };
    }
  }
}

/**
 * The EP estimate of the gradient of the mean cost, per parameter tensor.
 * centered: (dF/dtheta(h+, +b) - dF/dtheta(h-, -b)) / 2b; one-phase: dF/dtheta(h^b, b) / b,
 * with dF/dtheta = -(df/dtheta)^T e. Averaged over the batch.
 */
export async function epGradient(net: Network, free: FreeState, labels: Tensor, opts: EpOptions): Promise<Params[]> {
  const plan = planPhases(net, free, opts, labels);
  try {
    for (const [p, ph] of plan.phases.entries()) {
      const s = await nudge(net, ph.free ?? free, ph.labels ?? labels, ph.opts);
      eachErrorParamVjp(net, s, ph.rowScale, (i, g) => plan.take(p, i, g));
      disposeNudged(s);
    }
    return plan.result();
  } finally {
    plan.dispose();
  }
}

/** One iteration of an energy trace, in host numbers (sums over the batch). */
export interface EnergyPoint {
  iteration: number;
  /** E_k = 1/2 ||e_k||^2 for k = 1..L. */
  layers: number[];
  /** E = sum_k E_k, the cost C and F = E + beta C. */
  E: number;
  C: number;
  F: number;
}

/** Reads a trace and frees its tensors. */
export async function readEnergyTrace(be: Backend, trace: EnergyTrace, beta: number): Promise<EnergyPoint[]> {
  const out: EnergyPoint[] = [];
  for (let t = 0; t < trace.layers.length; t++) {
    const layers = (await Promise.all(trace.layers[t].map((x) => be.read(x)))).map((v) => v[0] / 2);
    const C = (await be.read(trace.cost[t]))[0];
    const E = layers.reduce((a, b) => a + b, 0);
    out.push({ iteration: t, layers, E, C, F: E + beta * C });
  }
  for (const row of trace.layers) for (const x of row) x.dispose();
  for (const x of trace.cost) x.dispose();
  trace.layers.length = 0;
  trace.cost.length = 0;
  return out;
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
