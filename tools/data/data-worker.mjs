// Image work for the data tools, run in worker threads (node:worker_threads). Plain JavaScript
// so that the same file runs from the TypeScript sources (tests) and, copied by
// tools/build.mjs, next to the bundle (dist/data-worker.mjs).
// Messages: { id, op: 'prepare' | 'crop', bytes: Uint8Array, ...options }.
import { parentPort } from 'node:worker_threads';
import sharp from 'sharp';
import { resampleCrop } from './resample.mjs';

// One libvips thread per worker: the pool's size is the parallelism, and a measured
// per-worker rate means one core.
sharp.concurrency(1);
sharp.cache(false);

/** Decodes any input (JPEG incl. CMYK, PNG under a .JPEG name, grayscale) to 3-channel sRGB. */
function open(bytes, raw) {
  const img = raw ? sharp(bytes, { raw: { width: raw.width, height: raw.height, channels: raw.channels ?? 3 } }) : sharp(bytes, { failOn: 'truncated', limitInputPixels: 1 << 28 });
  return img.removeAlpha().toColourspace('srgb');
}

async function prepare(m) {
  let img = open(m.bytes, m.raw);
  img = m.squash ? img.resize(m.squash, m.squash, { fit: 'fill' }) : img.resize({ width: m.size, height: m.size, fit: 'outside' });
  img = m.format === 'raw' ? img.raw() : img.jpeg({ quality: m.quality, chromaSubsampling: '4:2:0' });
  const { data, info } = await img.toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
  return { data, width: info.width, height: info.height };
}

async function crop(m) {
  if (m.box && m.mean) {
    // RandomResizedCrop: decode only, then cut, scale (antialiased bilinear, torchvision's
    // pixel-centre convention), mirror and normalize in one JavaScript pass (resample.mjs).
    // Shard images are 3-channel sRGB already (prepare made them so).
    let px = m.bytes;
    let width = m.raw?.width;
    if (!m.raw) {
      const { data, info } = await sharp(m.bytes).raw().toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw new Error(`shard image has ${info.channels} channels`);
      px = data;
      width = info.width;
    }
    return { data: resampleCrop(px, width, m.box, m.out, !!m.flip, m.mean, m.std) };
  }
  // Shard images are 3-channel sRGB already (prepare made them so): no conversions needed.
  let img = m.raw ? sharp(m.bytes, { raw: { width: m.raw.width, height: m.raw.height, channels: m.raw.channels ?? 3 } }) : sharp(m.bytes);
  if (m.box) {
    // RandomResizedCrop to uint8 (no normalization asked for): the same cut through libvips.
    img = img.extract(m.box).resize(m.out, m.out, { fit: 'fill', kernel: 'linear' });
    if (m.flip) img = img.flop();
  } else {
    // Evaluation: shorter side to m.resize, centre out x out (cover + centred extract is the same cut).
    const off = (m.resize - m.out) >> 1;
    img = img.resize(m.resize, m.resize, { fit: 'cover', position: 'centre', kernel: 'linear' }).extract({ left: off, top: off, width: m.out, height: m.out });
  }
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== m.out || info.height !== m.out) throw new Error(`crop gave ${info.width}x${info.height}x${info.channels}`);
  if (!m.mean) return { data };
  const x = new Float32Array(data.length);
  const scale = m.std.map((s) => 1 / (255 * s));
  const shift = m.mean.map((v, c) => v / m.std[c]);
  for (let p = 0; p < data.length; p += 3) {
    x[p] = data[p] * scale[0] - shift[0];
    x[p + 1] = data[p + 1] * scale[1] - shift[1];
    x[p + 2] = data[p + 2] * scale[2] - shift[2];
  }
  return { data: x };
}

parentPort.on('message', async (m) => {
  try {
    const r = m.op === 'prepare' ? await prepare(m) : await crop(m);
    // sharp's buffers are external memory that cannot be transferred: copy into our own.
    const data = r.data instanceof Float32Array ? r.data : new Uint8Array(r.data);
    parentPort.postMessage({ id: m.id, ok: true, ...r, data }, [data.buffer]);
  } catch (e) {
    parentPort.postMessage({ id: m.id, ok: false, error: String(e && e.message ? e.message : e) });
  }
});
