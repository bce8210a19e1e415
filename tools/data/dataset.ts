// An in-memory labelled image set (uint8 NHWC) and batching into normalized float32.
import { DataError, readIdx } from './idx.js';

export interface ImageSet {
  name: string;
  /** [H, W, C] */
  shape: [number, number, number];
  classes: number;
  count: number;
  /** count * H * W * C bytes, NHWC. */
  images: Uint8Array;
  labels: Uint8Array;
  /** Per-channel mean and std of pixel/255, for normalization. */
  mean: number[];
  std: number[];
}

export interface Batch {
  x: Float32Array;
  y: Uint32Array;
  n: number;
}

/** Normalized float32 NHWC images and labels for the given example indices. */
export function gather(set: ImageSet, indices: ArrayLike<number>): Batch {
  const [H, W, C] = set.shape;
  const per = H * W * C;
  const n = indices.length;
  const x = new Float32Array(n * per);
  const y = new Uint32Array(n);
  const scale = set.std.map((s) => 1 / (255 * s));
  const shift = set.mean.map((m, c) => m / set.std[c]);
  for (let i = 0; i < n; i++) {
    const j = indices[i];
    const src = j * per;
    const dst = i * per;
    for (let p = 0; p < per; p++) {
      const c = p % C;
      x[dst + p] = set.images[src + p] * scale[c] - shift[c];
    }
    y[i] = set.labels[j];
  }
  return { x, y, n };
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** MNIST-format IDX files (Fashion-MNIST from Debian's dataset-fashion-mnist by default). */
export function loadIdxImageSet(dir: string, split: 'train' | 'test', name = 'fashion-mnist'): ImageSet {
  const prefix = split === 'train' ? 'train' : 't10k';
  const find = (kind: string) => {
    const base = `${dir}/${prefix}-${kind}-idx${kind === 'images' ? 3 : 1}-ubyte`;
    return [base, `${base}.gz`];
  };
  const pick = (cands: string[]) => {
    for (const c of cands) {
      try {
        return readIdx(c);
      } catch (e) {
        if (!(e as Error).message.includes('ENOENT')) throw e;
      }
    }
    throw new DataError(
      `${name}: ${cands[1]} not found. Fashion-MNIST comes from the Debian package dataset-fashion-mnist: run 'bash tools/setup.sh'`,
    );
  };
  const images = pick(find('images'));
  const labels = pick(find('labels'));
  if (images.dims.length !== 3) throw new DataError(`${name}: images have dims [${images.dims.join(',')}], expected [N,H,W]`);
  if (labels.dims.length !== 1 || labels.dims[0] !== images.dims[0]) {
    throw new DataError(`${name}: ${labels.dims[0]} labels for ${images.dims[0]} images`);
  }
  const [count, H, W] = images.dims;
  let max = 0;
  for (const l of labels.data) max = Math.max(max, l);
  const classes = 10;
  if (max >= classes) throw new DataError(`${name}: label ${max} out of range 0..${classes - 1}`);
  // Fashion-MNIST train statistics (mean 0.2860, std 0.3530), used for both splits.
  return { name, shape: [H, W, 1], classes, count, images: images.data, labels: labels.data, mean: [0.286], std: [0.353] };
}
