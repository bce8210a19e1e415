// The algorithm registries (kernels/algorithms/): tags unique per family, a family's
// candidates are its algorithms' spaces in registry order, every default and seed belongs to
// an algorithm that applies and lies in the space, and configUses says what a config needs,
// nested GEMMs included. Pure: no device.
import { describe, expect, it } from 'vitest';
import { canonicalConfig, convGeometry } from '../engine/index.js';
import type { KernelAlgorithm, KernelChoices } from '../kernels/algorithm.js';
import { CONV_FORWARD_ALGORITHMS, convForwardCandidates, convForwardSeeds, defaultConvForward } from '../kernels/algorithms/conv2d.js';
import { CONV_BACKWARD_DATA_ALGORITHMS, convBackwardDataCandidates, convBackwardDataSeeds, defaultConvBackwardData } from '../kernels/algorithms/conv2dBackwardData.js';
import { CONV_BACKWARD_FILTER_ALGORITHMS, convBackwardFilterCandidates, convBackwardFilterSeeds, defaultConvBackwardFilter } from '../kernels/algorithms/conv2dBackwardFilter.js';
import { MATMUL_ALGORITHMS, defaultMatmulAlgorithm, matmulCandidates, matmulSeeds } from '../kernels/algorithms/matmul.js';
import { KernelFamily, configKey, configUses, withAlgoTag } from '../kernels/candidates.js';
import { defaultWinogradConfig, winogradForward } from '../kernels/conv/winograd.js';
import { defaultSharedTileConfig } from '../kernels/matmul/sharedTile.js';
import { freshSeed, pick, rng } from './helpers.js';

const choices = (over: Partial<KernelChoices> = {}): KernelChoices => ({ precision: 'f16', subgroupTiles: 8, defaultTileSubgroup: 8, parallelism: 256, winogradDefaults: true, ...over });
const opts = { precision: 'f16' as const, subgroupSize: 8 };

type Algo = KernelAlgorithm<unknown, { algo: string }, unknown>;

/**
 * `req`: what the family's plans take. A default or seed may lie outside the space only as a
 * shape-fitted tile (the register matmul's for M = 1), which must still plan.
 */
function checkFamily(family: KernelFamily, registry: readonly object[], g: unknown, candidates: unknown[], def: unknown, seeds: unknown[], req: unknown): void {
  const algos = registry as Algo[];
  expect(new Set(algos.map((a) => a.algo)).size, family).toBe(algos.length);
  const spaces = algos.flatMap((a) => (a.applies(g) ? a.space(g, opts) : []));
  expect(candidates.map(canonicalConfig), family).toEqual(spaces.map(canonicalConfig));
  const keys = candidates.map((c) => configKey(family, c as never));
  expect(new Set(keys).size, family).toBe(keys.length);
  const inSpace = new Set(candidates.map(canonicalConfig));
  for (const c of [...(def ? [def] : []), ...seeds]) {
    const a = algos.find((x) => x.algo === (c as { algo: string }).algo);
    expect(a?.applies(g), `${family} ${canonicalConfig(c)}`).toBe(true);
    if (!inSpace.has(canonicalConfig(c))) expect(() => a!.plan(g, c as { algo: string }, req), `${family} ${canonicalConfig(c)}: outside the space and cannot plan`).not.toThrow();
  }
  // Where the space holds them, as it does but for shape-fitted tiles, the seeds are candidates.
  expect(seeds.filter((c) => inSpace.has(canonicalConfig(c))).length, `${family}: seeds in the space`).toBeGreaterThan(0);
}

describe('kernel algorithm registries', () => {
  it('each family: unique tags, candidates in registry order, defaults and seeds in the space', () => {
    const r = rng(freshSeed());
    const ch = choices({ winogradDefaults: r() < 0.5 });
    for (const K of [1, 3]) {
      const Ci = pick(r, [8, 64]);
      const g = convGeometry('conv2d', [pick(r, [1, 2]), pick(r, [6, 9]), pick(r, [5, 8]), Ci], [K, K, Ci, pick(r, [4, 12])], { stride: 1, pad: K === 3 ? 1 : 0 });
      checkFamily('conv2d', CONV_FORWARD_ALGORITHMS, g, convForwardCandidates(g, opts), defaultConvForward(g, ch), convForwardSeeds(g, ch), { op: 'conv2d', bias: false });
      checkFamily('conv2dBackwardData', CONV_BACKWARD_DATA_ALGORITHMS, g, convBackwardDataCandidates(g, opts), defaultConvBackwardData(g, ch), convBackwardDataSeeds(g, ch), { op: 'conv2dBackwardData', gates: { argmax: false, reluAt: false } });
      checkFamily('conv2dBackwardFilter', CONV_BACKWARD_FILTER_ALGORITHMS, g, convBackwardFilterCandidates(g, opts), defaultConvBackwardFilter(g, ch), convBackwardFilterSeeds(g, ch), {});
      // The 1x1 stride-1 conv is a matmul: that algorithm applies there only.
      expect(convForwardCandidates(g, opts).some((c) => c.algo === 'matmul')).toBe(K === 1);
    }
    const s = { M: pick(r, [1, 37, 128]), K: pick(r, [4, 129]), N: pick(r, [10, 64]), transA: r() < 0.5, transB: r() < 0.5 };
    checkFamily('matmul', MATMUL_ALGORITHMS, s, matmulCandidates(s, opts), defaultMatmulAlgorithm(s, ch), matmulSeeds(s, ch), { bias: false });
  });

  it('configUses says what a config needs, also of a nested GEMM; a legacy register config gets its tag', () => {
    const g = convGeometry('conv2d', [2, 8, 8, 64], [3, 3, 64, 64], { pad: 1 });
    const sh = defaultSharedTileConfig(128, 64, 'acc');
    expect(configUses('conv2d', sh)).toEqual({ f16: 'acc' });
    expect(configUses('matmul', { ...sh, f16: undefined, matrix: { M: 8, N: 8, K: 8, subgroup: 32 } })).toEqual({ matrix: { M: 8, N: 8, K: 8, subgroup: 32 } });
    const wino = defaultWinogradConfig(winogradForward(g), 8);
    expect(wino.matmul.algo).toBe('register');
    expect(configUses('conv2d', wino)).toEqual({ subgroup: 8 });
    expect(configUses('conv2d', { algo: 'winograd', matmul: sh })).toEqual({ f16: 'acc' });
    expect(configUses('conv2d', { algo: 'matmul', matmul: sh })).toEqual({ f16: 'acc' });
    expect(configUses('conv2dBackwardFilter', defaultConvBackwardFilter(g, choices()))).toEqual({ subgroup: 8 });
    expect(configUses('conv2dBackwardData', defaultConvBackwardData(g, choices({ defaultTileSubgroup: undefined, winogradDefaults: false })))).toEqual({});
    expect(() => configKey('conv2d', { algo: 'nope' } as never)).toThrow(/unknown algorithm 'nope'/);
    const { algo: _, ...untagged } = wino.matmul;
    expect(withAlgoTag({ algo: 'winograd', matmul: untagged })).toEqual(wino);
    expect(withAlgoTag(sh)).toEqual(sh);
    expect(withAlgoTag(null)).toBe(null);
  });
});
