// What every kernel generator returns: WGSL source plus how to bind and dispatch it.
// Generators are pure functions (no GPU calls) so they can be tested as strings.

export type BindingKind = 'read' | 'rw' | 'uniform';

export interface KernelSpec {
  /** Short op name for profiles and error messages. */
  name: string;
  wgsl: string;
  /** Group 0 bindings, in binding-index order. A 'uniform' binding uses a dynamic offset. */
  bindings: BindingKind[];
  /** Workgroup counts for dispatchWorkgroups. */
  workgroups: [number, number, number];
  /** Bytes of the uniform block (only when a binding is 'uniform'). */
  uniformBytes?: number;
}

/** The largest workgroup count per dimension every WebGPU device supports. */
export const MAX_GROUPS_PER_DIM = 65535;

/**
 * Spreads `groups` workgroups over x and y so neither exceeds the per-dimension limit.
 * The kernel recovers the linear group index with linearGroupIndex(); groups past the
 * end must return early (the grid may hold a few more than asked for).
 */
export function grid(groups: number): [number, number, number] {
  if (groups <= MAX_GROUPS_PER_DIM) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS_PER_DIM);
  const x = Math.ceil(groups / y);
  return [x, y, 1];
}

/** WGSL expression for the linear workgroup index under grid(); needs @builtin(workgroup_id) wg and @builtin(num_workgroups) nwg. */
export const linearGroupIndex = '(wg.x + wg.y * nwg.x)';

/** Formats a number as a WGSL f32 literal. */
export function f32Lit(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`cannot inline non-finite ${v} into WGSL`);
  const s = String(v);
  return s.includes('.') || s.includes('e') ? `f32(${s})` : `${s}.0`;
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}
