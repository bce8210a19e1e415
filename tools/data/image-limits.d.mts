// Types of image-limits.mjs (plain JavaScript so the image workers can load it unbundled).
export const PIXEL_LIMIT: number;
export const MAX_SIDE: number;
export function outputSize(width: number, height: number, size: number, squash?: number | null): { width: number; height: number };
export function sizeProblem(width: number, height: number, opts: { size: number; squash?: number | null; encoded: boolean }): string | undefined;
