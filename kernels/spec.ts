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

/**
 * Why a subgroup-shared register tile (conv or matmul `subgroup`) is malformed, or null: the
 * whole workgroup owns one row block (wgY 1), so every subgroup shares its rows however the
 * adapter maps invocations to subgroups, and the width is whole subgroups.
 */
export function subgroupTileProblem(c: { subgroup?: number; wgX: number; wgY: number }): string | null {
  if (c.subgroup === undefined) return null;
  const S = c.subgroup;
  if (!Number.isInteger(S) || S < 1 || (S & (S - 1)) !== 0) return 'subgroup must be a power of two';
  if (c.wgY !== 1) return 'a subgroup-shared tile needs wgY 1';
  if (c.wgX % S !== 0) return `the workgroup width must be a multiple of the subgroup size ${S}`;
  return null;
}

/**
 * The default subgroup-shared tile for `units` output column units and `rowsTotal` rows, or
 * null where the columns do not fill a subgroup (extra lanes would repeat a neighbour's
 * work): 16 rows x 2 units (1 unit below 2S units), one subgroup to 32 lanes wide.
 */
export function defaultSubgroupTile(units: number, rowsTotal: number, subgroup: number): { rows: number; cols: number; wgX: number } | null {
  if (units < subgroup || subgroup > 64) return null;
  const cols = units >= 2 * subgroup ? 2 : 1;
  let rows = 1;
  while (rows * 2 <= Math.min(rowsTotal, 16)) rows *= 2;
  let width = 1;
  while (width * 2 <= Math.min(Math.floor(units / cols), 32)) width *= 2;
  return { rows, cols, wgX: Math.max(subgroup, width) };
}
