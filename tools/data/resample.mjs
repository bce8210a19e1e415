// RandomResizedCrop's resample in one pass over decoded pixels: cut a box out of an RGB
// image, scale it to out x out with a triangle (bilinear) filter that widens when shrinking
// (antialiased, like PIL's and torchvision's bilinear), mirror it, and normalize to float32.
// Plain JavaScript: it runs inside the image workers (tools/data/data-worker.mjs). Sample
// positions use pixel centres ((o + 0.5) * scale), as torchvision does; libvips' upsampling
// puts them elsewhere (a few grey levels apart on smooth images). Speed against libvips'
// extract + resize + flop was within noise on the shared 2-core machine (75-101 vs 82-92
// img/s, one worker, normalization included only here): not yet measured on a quiet one.

/** Per output pixel along one axis: first source index, tap count, weights (rows of `taps`). */
function axisWeights(boxStart, boxSize, out) {
  const scale = boxSize / out;
  const support = Math.max(1, scale);
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(out);
  const count = new Int32Array(out);
  const w = new Float32Array(out * taps);
  for (let o = 0; o < out; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(boxSize, Math.ceil(center + support));
    let sum = 0;
    let n = 0;
    for (let i = lo; i < hi && n < taps; i++) {
      const v = Math.max(0, 1 - Math.abs(i + 0.5 - center) / support);
      w[o * taps + n] = v;
      sum += v;
      n++;
    }
    // Trim leading zero weights so `first` is the first contributing pixel.
    let skip = 0;
    while (skip < n - 1 && w[o * taps + skip] === 0) skip++;
    for (let k = 0; k < n - skip; k++) w[o * taps + k] = w[o * taps + k + skip] / sum;
    first[o] = boxStart + lo + skip;
    count[o] = n - skip;
  }
  return { first, count, w, taps };
}

/**
 * src: RGB bytes of a width x height image. box: {left, top, width, height} inside it.
 * Returns Float32Array out*out*3, NHWC, ((v / 255) - mean[c]) / std[c].
 */
export function resampleCrop(src, width, box, out, flip, mean, std) {
  const xs = axisWeights(box.left, box.width, out);
  const ys = axisWeights(box.top, box.height, out);
  // Horizontal pass over the rows the vertical pass will read.
  const rowLo = ys.first[0];
  const rowHi = ys.first[out - 1] + ys.count[out - 1];
  const rows = rowHi - rowLo;
  const tmp = new Float32Array(rows * out * 3);
  for (let r = 0; r < rows; r++) {
    const srcRow = (rowLo + r) * width * 3;
    const dstRow = r * out * 3;
    for (let o = 0; o < out; o++) {
      let a = 0;
      let b = 0;
      let c = 0;
      const base = o * xs.taps;
      let p = srcRow + xs.first[o] * 3;
      for (let k = 0; k < xs.count[o]; k++, p += 3) {
        const wk = xs.w[base + k];
        a += src[p] * wk;
        b += src[p + 1] * wk;
        c += src[p + 2] * wk;
      }
      const d = dstRow + o * 3;
      tmp[d] = a;
      tmp[d + 1] = b;
      tmp[d + 2] = c;
    }
  }
  const res = new Float32Array(out * out * 3);
  const scale = [1 / (255 * std[0]), 1 / (255 * std[1]), 1 / (255 * std[2])];
  const shift = [mean[0] / std[0], mean[1] / std[1], mean[2] / std[2]];
  for (let oy = 0; oy < out; oy++) {
    const base = oy * ys.taps;
    const r0 = ys.first[oy] - rowLo;
    for (let ox = 0; ox < out; ox++) {
      let a = 0;
      let b = 0;
      let c = 0;
      let p = (r0 * out + ox) * 3;
      for (let k = 0; k < ys.count[oy]; k++, p += out * 3) {
        const wk = ys.w[base + k];
        a += tmp[p] * wk;
        b += tmp[p + 1] * wk;
        c += tmp[p + 2] * wk;
      }
      const d = (oy * out + (flip ? out - 1 - ox : ox)) * 3;
      res[d] = a * scale[0] - shift[0];
      res[d + 1] = b * scale[1] - shift[1];
      res[d + 2] = c * scale[2] - shift[2];
    }
  }
  return res;
}
