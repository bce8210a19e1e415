// The cost C(h_L, y) that the output layer is nudged with and BP descends: cross-entropy on
// softmax(h_L) (the paper's headline) or the squared error to the one-hot label (its MSE
// variant, C = 1/2 ||h_L - onehot(y)||^2).
import { Backend, Tensor } from '../engine/index.js';

export type Cost = 'ce' | 'mse';
export const COSTS: Cost[] = ['ce', 'mse'];

/** C averaged ('mean') or summed over the batch (a [1] tensor), and dC/dh_L scaled the same way. */
export function costWithGrad(be: Backend, out: Tensor, labels: Tensor, cost: Cost, reduction: 'mean' | 'sum'): { loss: Tensor; grad: Tensor } {
  if (cost === 'ce') return be.softmaxCrossEntropy(out, labels, reduction);
  const [N, C] = out.shape;
  const y = be.oneHot(labels, C);
  const d = be.sub(out, y);
  y.dispose();
  const sq = be.mul(d, d);
  const total = be.sum(sq, [0, 1]);
  sq.dispose();
  const flat = be.reshape(total, [1]);
  total.dispose();
  const per = reduction === 'mean' ? 1 / N : 1;
  const loss = be.scale(flat, per / 2);
  flat.dispose();
  const grad = be.scale(d, per);
  d.dispose();
  return { loss, grad };
}

/**
 * dC/dh_L of every example at scale 1 (what drives the nudged output layer); `onehot` is the
 * labels' one-hot matrix where the caller keeps one (MSE), else it is made here.
 */
export function costGrad(be: Backend, out: Tensor, labels: Tensor, cost: Cost, onehot?: Tensor): Tensor {
  if (cost === 'ce') return be.softmaxCrossEntropyGrad(out, labels, 1);
  if (onehot) return be.sub(out, onehot);
  const y = be.oneHot(labels, out.shape[1]);
  const g = be.sub(out, y);
  y.dispose();
  return g;
}
