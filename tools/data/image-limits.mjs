// What prepare can make of an image, from its dimensions alone: shared by the image workers
// (which refuse before decoding) and the main thread (which words the report line), so
// both decide the same way. Plain JavaScript so the workers load it unbundled.

/** Largest input sharp is allowed to decode (width x height). */
export const PIXEL_LIMIT = 2 ** 28;
/** Largest side a shard image may have: JPEG's limit, and the index's 16-bit fields. */
export const MAX_SIDE = 65535;

/** The size prepare resizes a width x height image to (sharp's fit 'outside' rounding, or the squash square). */
export function outputSize(width, height, size, squash) {
  if (squash) return { width: squash, height: squash };
  const xf = width / size;
  const yf = height / size;
  return xf < yf ? { width: size, height: Math.round(height / xf) } : { width: Math.round(width / yf), height: size };
}

/** Why an image of these dimensions cannot become a shard image, or undefined when it can. */
export function sizeProblem(width, height, opts) {
  if (!(width >= 1 && height >= 1)) return `image has no pixels (${width}x${height})`;
  if (opts.encoded && width * height > PIXEL_LIMIT) return `image too large to decode: ${width}x${height} pixels, over the limit of ${PIXEL_LIMIT}`;
  const o = outputSize(width, height, opts.size, opts.squash);
  if (o.width > MAX_SIDE || o.height > MAX_SIDE) return `image too elongated: ${width}x${height} would be resized to ${o.width}x${o.height}, over the ${MAX_SIDE}-pixel side a shard image can have`;
  return undefined;
}
