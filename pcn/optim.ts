// The paper's optimizer: SGD with Nesterov momentum and weight decay, cosine-annealed.
import { Backend, Tensor } from '../engine/index.js';
import { Params, paramTensors } from './layers.js';

export interface SgdConfig {
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Final learning rate of the cosine schedule. */
  lrMin: number;
}

/** Cosine annealing from lr to lrMin over totalSteps (PyTorch's CosineAnnealingLR, stepped per update). */
export function cosineLr(cfg: SgdConfig, step: number, totalSteps: number): number {
  const t = Math.min(step, totalSteps) / Math.max(1, totalSteps);
  return cfg.lrMin + 0.5 * (cfg.lr - cfg.lrMin) * (1 + Math.cos(Math.PI * t));
}

export class Sgd {
  /** One velocity per parameter tensor, in params order (w, b, then s where a skip enters, per layer). */
  readonly velocity: Tensor[];

  constructor(
    readonly be: Backend,
    readonly cfg: SgdConfig,
    params: Params[],
  ) {
    this.velocity = params.flatMap((p) => paramTensors(p).map((t) => be.zeros(t.shape).keep()));
  }

  /** Applies one update in place; the gradients are consumed (disposed). */
  step(params: Params[], grads: Params[], lr: number): void {
    const flatP = params.flatMap(paramTensors);
    const flatG = grads.flatMap(paramTensors);
    flatP.forEach((p, i) => {
      this.be.sgdNesterov(p, flatG[i], this.velocity[i], {
        lr,
        momentum: this.cfg.momentum,
        weightDecay: this.cfg.weightDecay,
        nesterov: true,
      });
      flatG[i].dispose();
    });
  }

  dispose(): void {
    for (const v of this.velocity) v.dispose();
  }
}
