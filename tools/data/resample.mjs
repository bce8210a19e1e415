// RandomResizedCrop's resample in one pass over decoded pixels: cut a box out of an RGB
// image, scale it to out x out with a triangle (bilinear) filter that widens when shrinking
// (antialiased, like PIL's and torchvision's bilinear), mirror it, and round to bytes (as
// PIL's uint8 output does; normalization happens on the GPU, Backend.imagesFromU8).
// Plain JavaScript: it runs inside the image workers (tools/data/data-worker.mjs). Sample
// positions use pixel centres ((o + 0.5) * scale), as torchvision does; libvips' upsampling
// puts them elsewhere (a few grey levels apart on smooth images), and its extract + resize +
// flop took 2-3x as long as this on the shared 2-core machine (bench -- data, 2026-11-27).
// Keep `src` a plain Uint8Array (not a Buffer): a second array type here makes V8's code
// polymorphic, measured ~30% slower.

/**
 * Per output pixel along one axis: the first contributing source pixel (times `stride`, the
 * distance between neighbours in the source), the tap count and the normalized weights (row
 * `o` of `w` starts at o * taps). Mirrored: output o takes the taps of out - 1 - o, which is
 * cheaper than flipping afterwards.
 */
function axisWeights(boxStart, boxSize, out, stride, mirror) {
  const scale = boxSize / out;
  const support = Math.max(1, scale);
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(out);
  const count = new Int32Array(out);
  const w = new Float32Array(out * taps);
  const row = new Float64Array(taps);
  for (let k = 0; k < out; k++) {
    const o = mirror ? out - 1 - k : k;
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(boxSize, Math.ceil(center + support));
    let sum = 0;
    let n = 0;
    for (let i = lo; i < hi && n < taps; i++) {
      const v = Math.max(0, 1 - Math.abs(i + 0.5 - center) / support);
      row[n++] = v;
      sum += v;
    }
    // Leading and trailing zero weights cost a multiply-add each: drop them.
    let skip = 0;
    while (skip < n - 1 && row[skip] === 0) skip++;
    while (n - 1 > skip && row[n - 1] === 0) n--;
    for (let j = 0; j < n - skip; j++) w[k * taps + j] = row[j + skip] / sum;
    first[k] = (boxStart + lo + skip) * stride;
    count[k] = n - skip;
  }
  return { first, count, w, taps };
}

/**
 * src: RGB bytes of a width x height image; box: {left, top, width, height} inside it.
 * Writes out*out*3 bytes (NHWC, rounded, clamped) into dst from byte `offset`, mirrored
 * left-right when `flip`. dst: a Uint8Array (a batch buffer; one image per call).
 */
export function resampleCrop(src, width, box, out, flip, dst, offset = 0) {
  const xs = axisWeights(box.left, box.width, out, 3, flip);
  const ys = axisWeights(box.top, box.height, out, 1, false);
  // Horizontal pass over just the rows the vertical pass will read.
  const rowLo = ys.first[0];
  const rowHi = ys.first[out - 1] + ys.count[out - 1];
  const rows = rowHi - rowLo;
  const line = out * 3;
  const tmp = new Float32Array(rows * line);
  const xFirst = xs.first;
  const xCount = xs.count;
  const xw = xs.w;
  const xTaps = xs.taps;
  // The common two-tap case (enlarging) runs without an inner loop.
  for (let r = 0; r < rows; r++) {
    const srcRow = (rowLo + r) * width * 3;
    let d = r * line;
    for (let o = 0, base = 0; o < out; o++, base += xTaps, d += 3) {
      let p = srcRow + xFirst[o];
      const n = xCount[o];
      const w0 = xw[base];
      if (n === 2) {
        const w1 = xw[base + 1];
        tmp[d] = src[p] * w0 + src[p + 3] * w1;
        tmp[d + 1] = src[p + 1] * w0 + src[p + 4] * w1;
        tmp[d + 2] = src[p + 2] * w0 + src[p + 5] * w1;
        continue;
      }
      let a = src[p] * w0;
      let b = src[p + 1] * w0;
      let c = src[p + 2] * w0;
      for (let k = 1; k < n; k++) {
        p += 3;
        const wk = xw[base + k];
        a += src[p] * wk;
        b += src[p + 1] * wk;
        c += src[p + 2] * wk;
      }
      tmp[d] = a;
      tmp[d + 1] = b;
      tmp[d + 2] = c;
    }
  }
  // The clamped view rounds half to even and clamps to 0..255 on store.
  const res = new Uint8ClampedArray(dst.buffer, dst.byteOffset + offset, out * line);
  // Vertical pass, a whole output row at a time (contiguous reads), unrolled by tap count.
  for (let oy = 0; oy < out; oy++) {
    const base = oy * ys.taps;
    const n = ys.count[oy];
    const p0 = (ys.first[oy] - rowLo) * line;
    const d0 = oy * line;
    const w0 = ys.w[base];
    if (n === 1) {
      for (let j = 0; j < line; j++) res[d0 + j] = tmp[p0 + j] * w0;
    } else if (n === 2) {
      const w1 = ys.w[base + 1];
      const p1 = p0 + line;
      for (let j = 0; j < line; j++) res[d0 + j] = tmp[p0 + j] * w0 + tmp[p1 + j] * w1;
    } else if (n === 3) {
      const w1 = ys.w[base + 1];
      const w2 = ys.w[base + 2];
      const p1 = p0 + line;
      const p2 = p1 + line;
      for (let j = 0; j < line; j++) res[d0 + j] = tmp[p0 + j] * w0 + tmp[p1 + j] * w1 + tmp[p2 + j] * w2;
    } else {
      for (let j = 0; j < line; j++) {
        let v = 0;
        for (let k = 0, p = p0 + j; k < n; k++, p += line) v += tmp[p] * ys.w[base + k];
        res[d0 + j] = v;
      }
    }
  }
}
