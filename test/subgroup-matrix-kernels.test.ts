// Subgroup-matrix tiles (tensor cores through Dawn's chromium-experimental-subgroup-matrix,
// kernels/matmul/sharedTile.ts): the generator as strings for the real builtins, the config
// space, the backend's refusals; then the same kernels with the builtins emulated in plain
// WGSL (every invocation holds whole fragments) against the float64 reference, for matmul
// and the conv GEMMs, so the tiling, the fragment offsets and the epilogue are checked on an
// adapter without the feature. The real builtins can only run on a device that offers them
// (bench/gpu/run.sh tunes with them there, each candidate checked against the reference).
import { describe, expect, it } from 'vitest';
import { Tensor, WebGPUBackend, convGeometry } from '../engine/index.js';
import * as convOps from '../engine/webgpu/ops/conv.js';
import { matmul as matmulWithConfig } from '../engine/webgpu/ops/linalg.js';
import {
  SharedTileConfig,
  SubgroupMatrixShape,
  sharedMatmulKernel,
  sharedTileProblem,
  sharedTileStorageBytes,
  subgroupMatrixTileConfigs,
} from '../kernels/matmul/sharedTile.js';
import { convBackwardDataCandidates, convForwardCandidates, matmulCandidates } from '../kernels/candidates.js';
import { freshSeed, gpu, pair, randomValues, ref, relErr, rng } from './helpers.js';

const NVIDIA_LIKE: SubgroupMatrixShape[] = [
  { component: 'f16', result: 'f32', M: 16, N: 16, K: 16 },
  { component: 'f16', result: 'f16', M: 16, N: 16, K: 16 },
];

function tile(BM: number, BN: number, BK: number, TM: number, TN: number, M: number, N: number, K: number, subgroup: number, f16?: 'mul' | 'acc', emulated = false): SharedTileConfig {
  const c: SharedTileConfig = { algo: 'shared', BM, BN, BK, TM, TN, vec4: false, unroll: true, matrix: { M, N, K, subgroup, ...(emulated ? { emulated } : {}) } };
  if (f16) c.f16 = f16;
  return c;
}

describe('subgroup-matrix tiles as strings', () => {
  it('use the builtins with the layouts of the staged tiles, on whole subgroups', () => {
    const s = { M: 100, K: 70, N: 90, transA: false, transB: false };
    const c = tile(64, 64, 32, 2, 2, 16, 16, 16, 32, 'mul');
    const k = sharedMatmulKernel(s, c, false, 48 * 1024);
    expect(k.wgsl).toContain('enable chromium_experimental_subgroup_matrix;');
    expect(k.wgsl).toContain('enable f16;');
    // (64/32) * (64/32) subgroups of 32.
    expect(k.wgsl).toContain('@workgroup_size(128)');
    // A is staged k-major (a column-major BM x BK matrix), B row-major.
    expect(k.wgsl).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, col_major>(&As, kk * 64u + wm0 + 16u, 64u)');
    expect(k.wgsl).toContain('subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&Bs, kk * 64u + wn0 + 0u, 64u)');
    expect(k.wgsl).toContain('subgroupMatrixMultiplyAccumulate(l1, r0, acc1_0)');
    expect(k.wgsl).toContain('subgroupMatrixStore<row_major>(&Cs, (wm0 + 16u) * 64u + wn0 + 16u, acc1_1, 64u);');
    expect(k.wgsl).toContain('var acc0_0 = subgroup_matrix_result<f32, 16, 16>();');
    expect(k.wgsl).not.toContain('smLoadLeft');
    const acc = sharedMatmulKernel(s, { ...c, f16: 'acc' }, false, 48 * 1024);
    expect(acc.wgsl).toContain('subgroup_matrix_result<f16, 16, 16>');
    const emu = sharedMatmulKernel(s, tile(32, 32, 16, 1, 2, 8, 8, 8, 8, 'mul', true));
    expect(emu.wgsl).not.toContain('chromium_experimental_subgroup_matrix');
    expect(emu.wgsl).toContain('smMultiplyAccumulate(l0, r1, acc0_1)');
  });

  it('refuses malformed tiles, and counts the result tile in the workgroup memory', () => {
    const ok = tile(64, 64, 32, 2, 2, 16, 16, 16, 32, 'mul');
    expect(sharedTileProblem(ok, 48 * 1024)).toBeNull();
    expect(sharedTileStorageBytes(ok)).toBe(2 * 32 * 128 + 4 * 64 * 64);
    expect(sharedTileProblem(ok)).toMatch(/bytes of workgroup memory/);
    expect(sharedTileProblem({ ...ok, vec4: true }, 48 * 1024)).toMatch(/vec4 off/);
    expect(sharedTileProblem({ ...ok, BM: 48 }, 48 * 1024)).toMatch(/BM must be a multiple of TM \* M = 32/);
    expect(sharedTileProblem({ ...ok, BK: 24 }, 48 * 1024)).toMatch(/BK must be a multiple of K/);
    expect(sharedTileProblem(tile(128, 128, 16, 1, 1, 16, 16, 16, 32, 'mul'), 1 << 20)).toMatch(/invocations/);
  });

  it('the space: only the device’s shapes, f16 ones only with precision f16, every tile well formed', () => {
    const opts = { matrices: NVIDIA_LIKE, matrixSubgroup: 32, maxStorageBytes: 48 * 1024 };
    expect(subgroupMatrixTileConfigs(512, 512, opts)).toEqual([]);
    const space = subgroupMatrixTileConfigs(512, 512, { ...opts, precision: 'f16' });
    expect(space.length).toBeGreaterThan(20);
    for (const c of space) {
      expect(sharedTileProblem(c, 48 * 1024)).toBeNull();
      expect(c.matrix!.emulated).toBeUndefined();
      expect(c.matrix!.subgroup).toBe(32);
    }
    expect(new Set(space.map((c) => c.f16))).toEqual(new Set(['mul', 'acc']));
    // The candidates of matmul and both conv GEMMs include them with the options, never without.
    const g = convGeometry('t', [8, 16, 16, 64], [3, 3, 64, 64], { pad: 1 });
    const has = (cs: unknown[]) => cs.some((c) => (c as SharedTileConfig).matrix !== undefined);
    const p = { ...opts, precision: 'f16' as const };
    expect(has(matmulCandidates({ M: 256, K: 256, N: 256, transA: false, transB: false }, p))).toBe(true);
    expect(has(convForwardCandidates(g, p))).toBe(true);
    expect(has(convBackwardDataCandidates(g, p))).toBe(true);
    expect(has(convForwardCandidates(g, { precision: 'f16' }))).toBe(false);
    // An adapter offering f32 matrices (e.g. Apple): candidates in f32 too.
    expect(subgroupMatrixTileConfigs(256, 256, { matrices: [{ component: 'f32', result: 'f32', M: 8, N: 8, K: 8 }], matrixSubgroup: 32 }).length).toBeGreaterThan(0);
  });
});

describe('subgroup-matrix tiles on webgpu (emulated builtins) against the reference', () => {
  async function device(): Promise<{ be: WebGPUBackend; S: number }> {
    const be = await gpu();
    const S = be.subgroupTiles;
    if (S === null) expect.fail(`the emulated subgroup-matrix kernels need subgroups of one fixed size; ${be.gpu.info.name} has none`);
    if (!be.gpu.features.has('shader-f16')) expect.fail(`the f16 subgroup-matrix kernels need shader-f16; ${be.gpu.info.name} has none`);
    return { be, S };
  }

  it('matmul, every transpose, f16 (mul and acc) and f32 components, edge tiles and several fragments per subgroup', async () => {
    const { be, S } = await device();
    const seed = freshSeed();
    const r = rng(seed);
    // One per transpose variant (an emulated kernel compiles for 4-14 s on lavapipe).
    const cfgs: SharedTileConfig[] = [
      tile(32, 32, 16, 1, 2, 8, 8, 8, S, 'mul', true),
      tile(32, 16, 8, 2, 1, 8, 8, 8, S, 'mul', true),
      tile(16, 32, 16, 1, 1, 16, 8, 16, S, undefined, true),
      tile(32, 32, 16, 1, 2, 8, 8, 8, S, 'acc', true),
    ];
    const saved = be.precision;
    be.precision = 'f16';
    try {
      let k = 0;
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          const M = 37 + Math.floor(r() * 20);
          const K = 19 + Math.floor(r() * 20);
          const N = 29 + Math.floor(r() * 20);
          const [ga, ra] = pair(be, randomValues(M * K, r), transA ? [K, M] : [M, K]);
          const [gb, rb] = pair(be, randomValues(K * N, r), transB ? [N, K] : [K, N]);
          const want = ref.matmul(ra, rb, { transA, transB });
          const made: Tensor[] = [ga, ra, gb, rb, want];
          try {
            for (const cfg of [cfgs[k]]) {
              const got = matmulWithConfig(be, ga, gb, { transA, transB }, cfg);
              made.push(got);
              const e = relErr(await be.read(got), await ref.read(want));
              // f16 operands: ~2^-11 relative per operand; f16 accumulation adds its own rounding.
              const tol = cfg.f16 === 'acc' ? 2e-2 : cfg.f16 ? 4e-3 : 1e-5;
              if (!(e < tol)) expect.fail(`matmul ${M}x${K}x${N} transA ${transA} transB ${transB} config ${JSON.stringify(cfg)}: relative error ${e} (seed ${seed})`);
            }
          } finally {
            for (const t of made) t.dispose();
          }
          k++;
        }
    } finally {
      be.precision = saved;
    }
  }, 120_000);

  it('conv forward and backward-data (the gathered GEMMs) on odd shapes', async () => {
    const { be, S } = await device();
    const seed = freshSeed();
    const r = rng(seed);
    const saved = be.precision;
    be.precision = 'f16';
    try {
      // Stride 2 (backward-data's phases), odd sizes, channels not multiples of the fragments.
      for (const [xShape, wShape, opts] of [[[2, 9, 8, 5], [3, 3, 5, 12], { stride: 2 as const, pad: 1 as const }]] as const) {
        const g = convGeometry('t', xShape, wShape, opts);
        const [gx, rx] = pair(be, randomValues((xShape as readonly number[]).reduce((a, b) => a * b, 1), r), [...xShape]);
        const [gw, rw] = pair(be, randomValues((wShape as readonly number[]).reduce((a, b) => a * b, 1), r), [...wShape]);
        const [gdy, rdy] = pair(be, randomValues(g.N * g.Ho * g.Wo * g.Co, r), [g.N, g.Ho, g.Wo, g.Co]);
        const cfg = tile(32, 16, 16, 2, 1, 8, 8, 8, S, 'mul', true);
        const y = convOps.conv2d(be, gx, gw, null, opts, cfg);
        const dx = convOps.conv2dBackwardData(be, gdy, gw, [...xShape], opts, tile(16, 32, 8, 1, 2, 8, 8, 8, S, 'mul', true));
        const wantY = ref.conv2d(rx, rw, null, opts);
        const wantDx = ref.conv2dBackwardData(rdy, rw, [...xShape], opts);
        try {
          const ey = relErr(await be.read(y), await ref.read(wantY));
          const ed = relErr(await be.read(dx), await ref.read(wantDx));
          if (!(ey < 4e-3 && ed < 4e-3)) expect.fail(`conv ${JSON.stringify({ xShape, wShape, opts })}: forward ${ey}, backward-data ${ed} (seed ${seed})`);
        } finally {
          for (const t of [gx, rx, gw, rw, gdy, rdy, y, dx, wantY, wantDx]) t.dispose();
        }
      }
    } finally {
      be.precision = saved;
    }
  }, 120_000);

  it('the backend refuses real subgroup-matrix tiles without the feature, and emulated ones on another subgroup size', async () => {
    const { be, S } = await device();
    const a = be.zeros([8, 8]);
    const b = be.zeros([8, 8]);
    const saved = be.precision;
    be.precision = 'f16';
    try {
      if (be.subgroupMatrices.length === 0) {
        expect(() => matmulWithConfig(be, a, b, {}, tile(16, 16, 16, 1, 1, 16, 16, 16, 32, 'mul'))).toThrow(/offers no subgroup matrices/);
      }
      expect(() => matmulWithConfig(be, a, b, {}, tile(16, 16, 8, 1, 1, 8, 8, 8, 2 * S, 'mul', true))).toThrow(new RegExp(`subgroups of ${2 * S}`));
      be.precision = 'f32';
      expect(() => matmulWithConfig(be, a, b, {}, tile(16, 16, 8, 1, 1, 8, 8, 8, S, 'mul', true))).toThrow(/computes in f16/);
    } finally {
      be.precision = saved;
      a.dispose();
      b.dispose();
    }
  });
});
