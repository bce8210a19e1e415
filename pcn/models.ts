// Model descriptions: the paper's VGG5 and VGG10, and small conv nets for CPU-sized runs.
import { ModelSpec } from './network.js';
import { LayerSpec } from './layers.js';

export function vgg5(input: [number, number, number], classes: number): ModelSpec {
  return {
    name: 'vgg5',
    input,
    classes,
    layers: [
      { kind: 'conv', out: 128, pool: false },
      { kind: 'conv', out: 256, pool: true },
      { kind: 'conv', out: 512, pool: true },
      { kind: 'conv', out: 512, pool: true },
      { kind: 'dense', out: classes },
    ],
    convFan: 'in',
    outputGain: 1,
  };
}

export function vgg10(input: [number, number, number], classes: number): ModelSpec {
  const conv = (out: number, pool: boolean): LayerSpec => ({ kind: 'conv', out, pool });
  return {
    name: 'vgg10',
    input,
    classes,
    layers: [
      conv(64, true),
      conv(128, true),
      conv(256, false),
      conv(256, true),
      conv(512, false),
      conv(512, true),
      conv(512, false),
      conv(512, true),
      { kind: 'dense', out: 2048 },
      { kind: 'dense', out: classes },
    ],
    convFan: 'out',
    outputGain: 1,
  };
}

/**
 * VGG10 with strided 1x1 conv skips from layer 2 to 5 and from 5 to 8 (PAPER.md). At 224:
 * h_2 (56x56) enters layer 5's conv output (28x28) with stride 2, h_5 (28x28) enters layer 8's
 * conv output (14x14, before its pool) with stride 2.
 */
export function vgg10Skip(input: [number, number, number], classes: number): ModelSpec {
  return { ...vgg10(input, classes), name: 'vgg10skip', skips: [{ from: 2, to: 5 }, { from: 5, to: 8 }] };
}

/**
 * A small conv net from a compact description: comma-separated layers, `c16p` = conv to 16
 * channels then max-pool, `c16` = conv without pool, `d64` = dense with ReLU; the linear
 * output layer to `classes` is appended.
 */
export function smallNet(desc: string, input: [number, number, number], classes: number): ModelSpec {
  const layers: LayerSpec[] = desc.split(',').map((tok) => {
    const m = /^(c|d)(\d+)(p?)$/.exec(tok.trim());
    if (!m) throw new Error(`model description '${desc}': cannot read '${tok}' (use c16p, c32, d64)`);
    const out = Number(m[2]);
    return m[1] === 'c' ? { kind: 'conv', out, pool: m[3] === 'p' } : { kind: 'dense', out };
  });
  layers.push({ kind: 'dense', out: classes });
  return { name: `small(${desc})`, input, classes, layers, convFan: 'in', outputGain: 1 };
}

/** The paper's hyperparameters per model (VGG5 with cross-entropy; VGG10 on ImageNet). */
export const PAPER_DEFAULTS = {
  vgg5: { beta: 0.02, K: 5, lr: 0.01, momentum: 0.9, weightDecay: 3e-4, batch: 64, epochs: 100, lrMin: 1e-6 },
  /** VGG5 trained on the MSE cost (output gain 0.2 as well, set with the model). */
  vgg5Mse: { beta: 0.02, K: 5, lr: 0.04, momentum: 0.9, weightDecay: 3e-4, batch: 16, epochs: 100, lrMin: 1e-6 },
  vgg10: { beta: 0.05, K: 10, lr: 0.02, momentum: 0.9, weightDecay: 2e-4, batch: 256, epochs: 50, lrMin: 2e-6 },
} as const;
