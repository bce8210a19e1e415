// `npm run bench -- wgsl`: the WGSL every tunable op and conv block dispatches, for a covering
// sample of every config space, every seed and every default, under several sets of kernel
// choices (CPU adapter, GPU, f16, subgroup matrices). Nothing runs: the backend's dispatches
// are captured, not submitted. Each line is op, problem, choices, config and a hash of the
// kernels (WGSL, workgroups, bindings, the buffers bound and the uniforms) the op dispatched for it, or the error it refused it
// with. `--out FILE` writes the lines, `--compare FILE` lists every line that differs: run it
// before and after a change meant to keep the generated code, and the two agree line for line.
//
// The sample does not depend on the order in which a space lists its configs (a refactor may
// reorder them): a config is kept when the hash of its canonical form falls in a residue class
// sized to keep about --per-space of each space, plus every algorithm's first config in key order.
// Configs are named in the form they had before the register tiles carried `algo: 'register'`
// (see legacyCanonical), so snapshots from either side of that change compare line for line.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Conv2dOptions, ConvGeometry, Tensor, WebGPUBackend, openDevice } from '../engine/index.js';
import { TunableOpName, canonicalConfig, Problem, tunableOp } from '../engine/tune/ops.js';
import type { MatmulShape } from '../kernels/matmul/matmul.js';
import { configKey } from '../kernels/candidates.js';
import type { KernelSpec } from '../kernels/spec.js';
import type { TileSpaceOptions } from '../kernels/candidates.js';
import type { SubgroupMatrixShape } from '../kernels/matmul/sharedTile.js';
import type { Tuner } from '../engine/tune/tuner.js';

export const WGSL_USAGE = `usage: npm run bench -- wgsl [--out FILE] [--compare FILE] [--per-space N]
  --out FILE       write one line per (op, problem, choices, config): the hash of the kernels it dispatches
  --compare FILE   compare with such a file; exit 1 listing every line that differs
  --per-space N    about N configs sampled from each config space (default 24)`;

/** The kernel choices a backend may make, as set on WebGPUBackend (adapter-derived there). */
interface Choices {
  name: string;
  precision: 'f32' | 'f16';
  subgroupTiles: number | null;
  subgroupDefaults: boolean;
  parallelism: number;
  winogradDefaults: boolean;
  gatedLoads: boolean;
  subgroupMatrices: SubgroupMatrixShape[];
  matrixSubgroup: number | null;
}

const MATRICES: SubgroupMatrixShape[] = [
  { component: 'f16', result: 'f32', M: 8, N: 8, K: 16 },
  { component: 'f16', result: 'f16', M: 8, N: 8, K: 16 },
  { component: 'f32', result: 'f32', M: 8, N: 8, K: 8 },
];

const CHOICES: Choices[] = [
  { name: 'cpu', precision: 'f32', subgroupTiles: 8, subgroupDefaults: true, parallelism: 256, winogradDefaults: true, gatedLoads: false, subgroupMatrices: [], matrixSubgroup: null },
  { name: 'cpu-plain', precision: 'f32', subgroupTiles: null, subgroupDefaults: false, parallelism: 256, winogradDefaults: false, gatedLoads: false, subgroupMatrices: [], matrixSubgroup: null },
  { name: 'gpu', precision: 'f32', subgroupTiles: 32, subgroupDefaults: false, parallelism: 65536, winogradDefaults: false, gatedLoads: true, subgroupMatrices: MATRICES, matrixSubgroup: 32 },
  { name: 'gpu-f16', precision: 'f16', subgroupTiles: 32, subgroupDefaults: false, parallelism: 65536, winogradDefaults: false, gatedLoads: true, subgroupMatrices: MATRICES, matrixSubgroup: 32 },
];

/** conv geometries: the VGG5 (batch 2, 32x32) and VGG10 (batch 1, 64x64) layers, and awkward ones. */
function convProblems(): ConvGeometry[] {
  const g = (N: number, H: number, W: number, Ci: number, Co: number, K: number, stride: number, pad: number): ConvGeometry => {
    const Ho = Math.floor((H + 2 * pad - K) / stride) + 1;
    const Wo = Math.floor((W + 2 * pad - K) / stride) + 1;
    return { N, H, W, Ci, Co, KH: K, KW: K, stride, pad, Ho, Wo };
  };
  return [
    g(2, 32, 32, 3, 128, 3, 1, 1),
    g(2, 16, 16, 128, 256, 3, 1, 1),
    g(2, 8, 8, 256, 512, 3, 1, 1),
    g(2, 4, 4, 512, 512, 3, 1, 1),
    g(1, 64, 64, 3, 64, 3, 1, 1),
    g(1, 32, 32, 64, 128, 3, 1, 1),
    g(1, 16, 16, 128, 256, 3, 1, 1),
    g(1, 8, 8, 256, 512, 3, 1, 1),
    g(1, 16, 16, 64, 128, 1, 2, 0),
    g(2, 7, 5, 3, 7, 3, 2, 1),
    g(1, 9, 9, 16, 16, 3, 1, 1),
    g(1, 5, 7, 8, 4, 1, 2, 0),
    g(2, 6, 6, 24, 40, 1, 1, 0),
    g(1, 14, 14, 64, 64, 3, 1, 1),
    g(3, 11, 13, 5, 9, 3, 2, 0),
  ];
}

function matmulProblems(): MatmulShape[] {
  const out: MatmulShape[] = [];
  for (const [M, K, N] of [[64, 512, 10], [37, 129, 65], [128, 256, 128], [1, 64, 33]])
    for (const transA of [false, true]) for (const transB of [false, true]) out.push({ M, K, N, transA, transB });
  return out;
}

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A config without the register tiles' `algo` tag (nested GEMM configs too). */
function untagged(c: unknown): unknown {
  if (c === null || typeof c !== 'object') return c;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c as Record<string, unknown>)) if (!(k === 'algo' && v === 'register')) out[k] = untagged(v);
  return out;
}

/** The canonical JSON of a config as it was before the register tiles were tagged. */
function legacyCanonical(c: unknown): string {
  return canonicalConfig(untagged(c));
}

/** About n of `space`, chosen independently of its order (see the header). */
function sample(space: unknown[], n: number): unknown[] {
  const byKey = new Map<string, unknown>();
  for (const c of space) byKey.set(legacyCanonical(c), c);
  const keys = [...byKey.keys()].sort();
  const mod = Math.max(1, Math.round(keys.length / n));
  const firstOfAlgo = new Map<string, string>();
  for (const k of keys) {
    const algo = String((byKey.get(k) as { algo?: unknown }).algo ?? 'register');
    if (!firstOfAlgo.has(algo)) firstOfAlgo.set(algo, k);
  }
  const keep = new Set(firstOfAlgo.values());
  return keys.filter((k) => keep.has(k) || fnv(k) % mod === 0).map((k) => byKey.get(k));
}

/** One captured dispatch: the kernel, its buffers and its uniform block's words. */
interface Dispatch {
  spec: KernelSpec;
  buffers: GPUBuffer[];
  uniforms: number[];
}

/**
 * The kernels of an op's dispatches with what they bind: each buffer is named by the order in
 * which the op's dispatches first use it, so a binding moved to another buffer changes the hash.
 */
function hashKernels(ds: Dispatch[]): string {
  const h = createHash('sha256');
  const names = new Map<GPUBuffer, number>();
  const name = (b: GPUBuffer) => names.get(b) ?? (names.set(b, names.size), names.size - 1);
  for (const { spec: s, buffers, uniforms } of ds) {
    h.update(JSON.stringify([s.name, s.workgroups, s.bindings, s.uniformBytes ?? 0, buffers.map(name), uniforms])).update('\0').update(s.wgsl).update('\0');
  }
  return `${ds.length}:${h.digest('hex').slice(0, 16)}`;
}

function apply(be: WebGPUBackend, c: Choices): void {
  be.precision = c.precision;
  be.subgroupTiles = c.subgroupTiles;
  be.subgroupDefaults = c.subgroupDefaults;
  be.parallelism = c.parallelism;
  be.winogradDefaults = c.winogradDefaults;
  be.gatedLoads = c.gatedLoads;
  be.subgroupMatrices = c.subgroupMatrices;
  be.matrixSubgroup = c.matrixSubgroup;
}

function spaceOptions(be: WebGPUBackend): TileSpaceOptions {
  const limit = be.rt.device.limits?.maxComputeWorkgroupStorageSize;
  return {
    precision: be.precision,
    maxStorageBytes: typeof limit === 'number' ? limit : undefined,
    subgroupSize: be.subgroupTiles ?? undefined,
    matrices: be.subgroupMatrices,
    matrixSubgroup: be.matrixSubgroup ?? undefined,
  };
}

/** Every line of the snapshot, sorted. */
export async function wgslSnapshot(perSpace: number): Promise<string[]> {
  const be = new WebGPUBackend(await openDevice());
  const captured: Dispatch[] = [];
  be.rt.dispatch = (spec: KernelSpec, buffers: GPUBuffer[], uniforms?: ArrayBufferView) =>
    void captured.push({ spec, buffers, uniforms: uniforms ? Array.from(new Uint32Array(uniforms.buffer, uniforms.byteOffset, uniforms.byteLength >> 2)) : [] });
  const lines: string[] = [];
  const record = (family: TunableOpName, what: string, config: unknown, run: () => Tensor | Tensor[] | void) => {
    captured.length = 0;
    let result: string;
    try {
      const out = run();
      for (const t of Array.isArray(out) ? out : out ? [out] : []) t.dispose();
      result = hashKernels(captured);
    } catch (e) {
      result = `error: ${(e as Error).message.split('\n')[0]}`;
    }
    const key = config === null ? 'default' : `${safeKey(family, config)} ${legacyCanonical(config)}`;
    lines.push(`${what}\t${key}\t${result}`);
  };
  const tunerFor = (config: unknown) => ({ configFor: () => config }) as unknown as Tuner;
  const problems: [TunableOpName, Problem][] = [];
  for (const g of convProblems()) for (const op of ['conv2d', 'conv2dBackwardData', 'conv2dBackwardFilter'] as const) problems.push([op, g]);
  for (const p of matmulProblems()) problems.push(['matmul', p]);

  for (const choices of CHOICES) {
    apply(be, choices);
    for (const [name, p] of problems) {
      const op = tunableOp(name);
      const inputs = op.inputShapes(p).map((s) => be.zeros(s));
      const what = `${name}\t${op.key(p)}\t${choices.name}`;
      const configs = [null, ...op.seeds(p, be), ...sample(op.candidates(p, spaceOptions(be)), perSpace)];
      const seen = new Set<string>();
      for (const c of configs) {
        const k = legacyCanonical(c);
        if (seen.has(k)) continue;
        seen.add(k);
        record(name, what, c, () => op.run(be, p, inputs, c));
      }
      // The conv blocks run the plain op's tuned config (or its default) with their epilogue.
      if (name === 'conv2d' || name === 'conv2dBackwardData') {
        const g = p as ConvGeometry;
        const [first, w] = inputs;
        const blockConfigs = [undefined, ...sample(op.candidates(p, spaceOptions(be)), Math.max(2, perSpace >> 2))];
        for (const c of blockConfigs) {
          be.tuner = c === undefined ? null : tunerFor(c);
          if (name === 'conv2d') {
            const bias = be.zeros([g.Co]);
            const pooled = g.Ho >= 2 && g.Wo >= 2;
            for (const e of [{ pool: false, relu: false }, { pool: pooled, relu: true, add: true, residual: true }, { pool: pooled, relu: true }]) {
              const add = e.add ? be.zeros(pooled && e.pool ? [g.N, g.Ho >> 1, g.Wo >> 1, g.Co] : [g.N, g.Ho, g.Wo, g.Co]) : null;
              record('conv2d', `convBlock ${JSON.stringify(e)}\t${op.key(p)}\t${choices.name}`, c ?? null, () => {
                const r = be.convBlock(first, w, bias, { ...convOptions(g), pool: e.pool, relu: e.relu, add, residual: e.residual });
                return [r.a, r.argmax, r.h, r.r].filter((t): t is Tensor => t !== null);
              });
              add?.dispose();
            }
            bias.dispose();
          } else {
            const reluAt = be.zeros([g.N, g.Ho, g.Wo, g.Co]);
            for (const gate of ['none', 'relu']) {
              record('conv2dBackwardData', `convBlockBackwardData ${gate}\t${op.key(p)}\t${choices.name}`, c ?? null, () =>
                be.convBlockBackwardData(first, w, [g.N, g.H, g.W, g.Ci], { ...convOptions(g), reluAt: gate === 'relu' ? reluAt : null }),
              );
            }
            reluAt.dispose();
          }
        }
        be.tuner = null;
      }
      for (const t of inputs) t.dispose();
    }
  }
  return lines.sort();
}

function convOptions(g: ConvGeometry): Conv2dOptions {
  return { stride: g.stride as Conv2dOptions['stride'], pad: g.pad as Conv2dOptions['pad'] };
}

function safeKey(family: TunableOpName, c: unknown): string {
  try {
    return configKey(family, c as never);
  } catch {
    return '?';
  }
}

export async function benchWgsl(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { out: { type: 'string' }, compare: { type: 'string' }, 'per-space': { type: 'string', default: '24' }, help: { type: 'boolean', default: false } } });
  if (values.help) {
    console.log(WGSL_USAGE);
    return 0;
  }
  const perSpace = Number(values['per-space']);
  if (!Number.isInteger(perSpace) || perSpace < 1) throw new Error(`--per-space must be a positive integer, got '${values['per-space']}'`);
  const t0 = performance.now();
  const lines = await wgslSnapshot(perSpace);
  const errors = lines.filter((l) => l.includes('\terror: ')).length;
  console.log(`${lines.length} (op, problem, choices, config) lines, ${errors} of them refusals, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (values.out) writeFileSync(values.out, lines.join('\n') + '\n');
  if (!values.compare) return 0;
  const before = readFileSync(values.compare, 'utf8').split('\n').filter(Boolean);
  const a = new Set(before);
  const b = new Set(lines);
  const gone = before.filter((l) => !b.has(l));
  const added = lines.filter((l) => !a.has(l));
  for (const l of gone) console.log(`- ${l}`);
  for (const l of added) console.log(`+ ${l}`);
  console.log(gone.length + added.length === 0 ? `identical to ${values.compare}` : `${gone.length} line(s) only in ${values.compare}, ${added.length} only now`);
  return gone.length + added.length === 0 ? 0 : 1;
}
