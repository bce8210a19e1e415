// The contract every kernel algorithm of a tunable op family meets (kernels/README.md, "Adding
// an algorithm"). An algorithm is one file under kernels/algorithms/ exporting one value of
// this type per op family it serves; each family's registry (kernels/algorithms/<op>.ts) lists
// them, and everything else (the tuner's candidates and seeds, the default, the backend's
// dispatch, what a config needs of the device) loops over the registries.
import type { KernelSpec } from './spec.js';
import type { KernelPrecision, SubgroupMatrixTile, TileSpaceOptions } from './matmul/sharedTile.js';

/** What a backend decides about its kernels, which defaults and seeds depend on (WebGPUBackend has them). */
export interface KernelChoices {
  precision: KernelPrecision;
  /** The device's fixed subgroup size, where subgroup-shared tiles may run. */
  subgroupTiles: number | null;
  /** The subgroup size the untuned tiles share loads over, if they do. */
  defaultTileSubgroup: number | undefined;
  /** Invocations the untuned kernels aim to keep busy. */
  parallelism: number;
  /** Whether untuned 3x3 stride-1 convs may default to Winograd. */
  winogradDefaults: boolean;
}

/** What a config needs of the device and the backend's precision. */
export interface KernelUses {
  /** Computes in f16 ('mul': f16 products, 'acc': f16 sums too); needs precision 'f16'. */
  f16?: 'mul' | 'acc';
  /** Shares loads over subgroups of this size; needs the device's one fixed subgroup size. */
  subgroup?: number;
  /** Multiplies on subgroup matrices of this shape. */
  matrix?: SubgroupMatrixTile;
}

/** A buffer a plan step binds: the op's inputs and outputs (in the family's order), or a scratch buffer of the plan. */
export type BufferRef = { in: number } | { out: number } | { tmp: number };

export interface PlanStep {
  kernel: KernelSpec;
  /** One per binding of the kernel except a 'uniform' one. */
  args: BufferRef[];
  /** The uniform block's contents, for a kernel with a 'uniform' binding. */
  uniform?: Uint32Array;
}

/** What an op dispatches for one (geometry, config): scratch buffers (f32 counts), then the steps in order. */
export interface KernelPlan {
  tmp: number[];
  steps: PlanStep[];
}

export interface AlgorithmTraits {
  /** Stages operands in workgroup memory (the layout GPUs want): its seeds are measured after the register-file algorithms'. */
  workgroupMemory: boolean;
  /** Forward: runs a conv block's epilogue (bias, pool, add, ReLU, residual) in its own kernels. */
  epilogue: boolean;
  /** Backward-data: applies a conv block's gates (ReLU mask, pool routing) in its loads. */
  gates: boolean;
}

/**
 * One algorithm of an op family: G the geometry it is generated for, C its config (tagged
 * with `algo`, unique within the family), R what the op asks for beyond the geometry (bias,
 * a block's epilogue or gates, the op's name).
 */
export interface KernelAlgorithm<G, C extends { algo: string }, R> {
  readonly algo: C['algo'];
  readonly traits: AlgorithmTraits;
  /** Whether the algorithm can compute this geometry at all. */
  applies(g: G): boolean;
  /** Every config the tuner may try (each correct for g); `opts` says what the device allows. */
  space(g: G, opts: TileSpaceOptions): C[];
  /**
   * The config the op's default path runs, or null where this algorithm is not the default. It
   * may be fitted to the shape outside the space (the register matmul's for M = 1): the tuner
   * times the default path as itself.
   */
  defaultFor(g: G, choices: KernelChoices): C | null;
  /** Starting points the tuner measures whatever its budget; it drops any outside the space (a shape-fitted default). */
  seeds(g: G, choices: KernelChoices): C[];
  /** A stable name (tune caches and reports keep it). */
  key(c: C): string;
  uses(c: C): KernelUses;
  /** The kernels and scratch for (g, c); throws for a config that cannot run g, before anything is dispatched. */
  plan(g: G, c: C, req: R, maxStorageBytes?: number): KernelPlan;
}

type AnyAlgorithm = KernelAlgorithm<any, any, any>;

/** The config union of a registry. */
export type ConfigOf<A> = A extends KernelAlgorithm<unknown, infer C, unknown> ? C : never;

/**
 * The algorithm of `registry` that a config names, typed for that config (tags are unique
 * within a family); throws for a tag the family does not have.
 */
export function algorithmOf<G, C extends { algo: string }, R>(registry: readonly AnyAlgorithm[], c: C, family: string): KernelAlgorithm<G, C, R> {
  const a = registry.find((x) => x.algo === c.algo);
  if (!a) throw new Error(`${family}: unknown algorithm '${String(c.algo)}' (this family has ${registry.map((x) => x.algo).join(', ')})`);
  return a;
}

/** Every algorithm's space where it applies, in registry order. */
export function spaceOf<G, A extends KernelAlgorithm<G, { algo: string }, unknown>>(registry: readonly A[], g: G, opts: TileSpaceOptions): ConfigOf<A>[] {
  return registry.flatMap((a) => (a.applies(g) ? (a.space(g, opts) as ConfigOf<A>[]) : []));
}

/**
 * The family's default: the first algorithm after the registry's first (the general one,
 * which applies everywhere) that claims g, else the first one's.
 */
export function defaultOf<G, A extends KernelAlgorithm<G, { algo: string }, unknown>>(registry: readonly A[], g: G, choices: KernelChoices): ConfigOf<A> | null {
  for (const a of registry.slice(1)) {
    const c = a.applies(g) ? a.defaultFor(g, choices) : null;
    if (c) return c as ConfigOf<A>;
  }
  return registry[0].defaultFor(g, choices) as ConfigOf<A> | null;
}

/** Every algorithm's seeds: the register-file algorithms' first, then the workgroup-memory ones', each in registry order. */
export function seedsOf<G, A extends KernelAlgorithm<G, { algo: string }, unknown>>(registry: readonly A[], g: G, choices: KernelChoices): ConfigOf<A>[] {
  const ordered = [...registry.filter((a) => !a.traits.workgroupMemory), ...registry.filter((a) => a.traits.workgroupMemory)];
  return ordered.flatMap((a) => (a.applies(g) ? (a.seeds(g, choices) as ConfigOf<A>[]) : []));
}

/** What a register tile uses: the subgroup it shares loads over, if any (conv, backward-filter and matmul tiles alike). */
export function registerUses(c: { subgroup?: number }): KernelUses {
  return c.subgroup === undefined ? {} : { subgroup: c.subgroup };
}

/** The register seeds of a tile default: without and, where the device has fixed-size subgroups, with the subgroup-shared form. */
export function registerSeeds<T>(choices: KernelChoices, tile: (subgroup?: number) => T): T[] {
  return choices.subgroupTiles ? [tile(), tile(choices.subgroupTiles)] : [tile()];
}

/** A workgroup-memory tile default, and with precision 'f16' its f16 variants. */
export function sharedSeeds<T>(choices: KernelChoices, tile: (f16?: 'mul' | 'acc') => T): T[] {
  return choices.precision === 'f16' ? [tile(), tile('mul'), tile('acc')] : [tile()];
}
