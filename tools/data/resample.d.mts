// Types of resample.mjs (plain JavaScript so the image workers can load it unbundled).
export function resampleCrop(
  src: Uint8Array,
  width: number,
  box: { left: number; top: number; width: number; height: number },
  out: number,
  flip: boolean,
  dst: Uint8Array,
  offset?: number,
): void;
