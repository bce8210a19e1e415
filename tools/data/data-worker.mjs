// Image work for the data tools, run in worker threads (node:worker_threads). Plain JavaScript
// so that the same file runs from the TypeScript sources (tests) and, copied by
// tools/build.mjs, next to the bundle (dist/data-worker.mjs).
// Messages: { id, op: 'prepare', bytes: Uint8Array, ...options } or { id, op: 'crops', out, items }.
import { parentPort } from 'node:worker_threads';
import sharp from 'sharp';
import { PIXEL_LIMIT, sizeProblem } from './image-limits.mjs';
import { resampleCrop } from './resample.mjs';

// One libvips thread per worker: the pool's size is the parallelism, and a measured
// per-worker rate means one core.
sharp.concurrency(1);
sharp.cache(false);

/** Decodes any input (JPEG incl. CMYK, PNG under a .JPEG name, grayscale) to 3-channel sRGB. */
function open(bytes, raw) {
  const img = raw ? sharp(bytes, { raw: { width: raw.width, height: raw.height, channels: raw.channels ?? 3 } }) : sharp(bytes, { failOn: 'truncated', limitInputPixels: PIXEL_LIMIT });
  return img.removeAlpha().toColourspace('srgb');
}

async function prepare(m) {
  // From the header alone: an image too large to decode or resize is refused before any
  // pixel is touched (an extreme aspect ratio would otherwise ask for gigabytes).
  // (sharp's own pixel limit is lifted for the header read: sizeProblem applies ours.)
  const dims = m.raw ?? (await sharp(m.bytes, { limitInputPixels: false }).metadata());
  const problem = sizeProblem(dims.width, dims.height, { size: m.size, squash: m.squash, encoded: !m.raw });
  if (problem) throw new Error(problem);
  let img = open(m.bytes, m.raw);
  img = m.squash ? img.resize(m.squash, m.squash, { fit: 'fill' }) : img.resize({ width: m.size, height: m.size, fit: 'outside' });
  img = m.format === 'raw' ? img.raw() : img.jpeg({ quality: m.quality, chromaSubsampling: '4:2:0' });
  const { data, info } = await img.toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
  return { data, width: info.width, height: info.height };
}

/**
 * One batch slice of crops, all out x out x 3 bytes, into one buffer (one message each way
 * for several images). Items: { bytes, raw?, box?, flip?, resize? }. Shard images are
 * 3-channel sRGB already (prepare made them so): no colour conversions needed.
 */
async function crops(m) {
  const per = m.out * m.out * 3;
  const data = new Uint8Array(m.items.length * per);
  for (let k = 0; k < m.items.length; k++) {
    try {
      await cropInto(m.items[k], m.out, data, k * per);
    } catch (e) {
      // The item's place in this message, so the loader can name its shard.
      throw new Error(`item ${k}: ${e && e.message ? e.message : e}`);
    }
  }
  return { data };
}

async function cropInto(it, out, dst, offset) {
  if (it.box) {
    // RandomResizedCrop: decode only, then cut, scale (antialiased bilinear, torchvision's
    // pixel-centre convention) and mirror in one JavaScript pass (resample.mjs).
    let px = it.bytes;
    let width = it.raw?.width;
    let height = it.raw?.height;
    if (!it.raw) {
      const { data, info } = await sharp(it.bytes).raw().toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw new Error(`shard image has ${info.channels} channels`);
      // A plain Uint8Array view, so resampleCrop only ever sees one array type (see there).
      px = new Uint8Array(data.buffer, data.byteOffset, data.length);
      width = info.width;
      height = info.height;
    }
    // The box was drawn from the index's width and height: reading outside the decoded
    // pixels would give garbage crops rather than an error.
    const b = it.box;
    if (px.length < width * height * 3 || b.left < 0 || b.top < 0 || b.left + b.width > width || b.top + b.height > height) {
      throw new Error(`the shard image is ${width}x${height} (${px.length} bytes) but its crop box ${b.width}x${b.height} at ${b.left},${b.top} does not fit: the index's size for it is wrong`);
    }
    resampleCrop(px, width, it.box, out, !!it.flip, dst, offset);
    return;
  }
  // Evaluation: shorter side to it.resize, centre out x out (cover + centred extract is the same cut).
  const img = it.raw ? sharp(it.bytes, { raw: { width: it.raw.width, height: it.raw.height, channels: it.raw.channels ?? 3 } }) : sharp(it.bytes);
  const off = (it.resize - out) >> 1;
  const { data, info } = await img
    .resize(it.resize, it.resize, { fit: 'cover', position: 'centre', kernel: 'linear' })
    .extract({ left: off, top: off, width: out, height: out })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== out || info.height !== out) throw new Error(`crop gave ${info.width}x${info.height}x${info.channels}`);
  dst.set(data, offset);
}

parentPort.on('message', async (m) => {
  try {
    const r = m.op === 'prepare' ? await prepare(m) : await crops(m);
    // sharp's buffers are external memory that cannot be transferred: copy into our own
    // (crops are ours already).
    const data = m.op === 'prepare' ? new Uint8Array(r.data) : r.data;
    parentPort.postMessage({ id: m.id, ok: true, ...r, data }, [data.buffer]);
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, error: String(e && e.message ? e.message : e) });
  }
});
