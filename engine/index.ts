// The engine's public API. pcn/, tools/, test/ and bench/ import from here only.
export * from './tensor.js';
export * from './backend.js';
export { uniformValues } from './random.js';
export { writeFileAtomic } from './files.js';
export { composeConvBlock, composeConvBlockBackwardData } from './fused.js';
export {
  openDevice,
  closeDevice,
  currentDevice,
  diagnoseNoAdapter,
  checkDeviceHealthy,
  dawnGpu,
  NoAdapterError,
  DeviceError,
} from './device.js';
export type { DeviceOptions, AdapterDescription, Gpu } from './device.js';
export { WebGPUBackend } from './webgpu/backend.js';
export type { RuntimeOptions, MemoryStats } from './webgpu/runtime.js';
export { ReferenceBackend } from './reference/backend.js';
export * from './analog/index.js';
export { streamKey, seedFromString } from '../kernels/analog.js';
export { Tuner, adapterIdentity } from './tune/tuner.js';
export type { TunerOptions, TuneResult, TuneProgress } from './tune/tuner.js';
export { TUNABLE_OPS, tunableOp, convKey, matmulKey, configLabel, canonicalConfig, kernelSetHash } from './tune/ops.js';
export type { TunableOpName, Problem, KernelChoices } from './tune/ops.js';
export type { MatmulShape } from '../kernels/matmul/matmul.js';
export { cacheDir, cachePath, isTime, loadCache, saveEntries, CACHE_FORMAT } from './tune/cache.js';
export type { CacheEntry, CacheFile, AdapterIdentity } from './tune/cache.js';

import { Backend } from './backend.js';
import { DeviceOptions, openDevice } from './device.js';
import { ReferenceBackend } from './reference/backend.js';
import { WebGPUBackend } from './webgpu/backend.js';
import { RuntimeOptions } from './webgpu/runtime.js';
import { Tuner, TunerOptions } from './tune/tuner.js';

export type BackendName = 'webgpu' | 'reference';

export interface BackendOptions extends DeviceOptions, RuntimeOptions {
  /**
   * Kernel tuning on webgpu: by default cached winners from the per-adapter tune cache are
   * used (NUDGE_TUNE_CACHE=FILE picks another file, NUDGE_TUNE_CACHE=off none) and untuned
   * shapes run the default kernels; `autotune: true` (or NUDGE_AUTOTUNE=1) tunes them on
   * first use. `false` turns the tuner off.
   */
  tune?: TunerOptions | false;
  /** webgpu: fused conv-block kernels (default true; NUDGE_FUSE=0 turns them off). */
  fuse?: boolean;
  /**
   * webgpu: 'f16' lets tuned conv/matmul kernels compute in f16 (opt-in, changes results;
   * needs shader-f16). Default 'f32', or NUDGE_PRECISION.
   */
  precision?: 'f32' | 'f16';
}

/** The tuner options the environment asks for, merged under explicit ones. */
export function tunerOptionsFromEnv(opts: TunerOptions = {}, env: NodeJS.ProcessEnv = process.env): TunerOptions {
  const out: TunerOptions = { ...opts };
  const file = env.NUDGE_TUNE_CACHE;
  if (out.cacheFile === undefined && file) out.cacheFile = file === 'off' ? null : file;
  if (out.autotune === undefined && env.NUDGE_AUTOTUNE) out.autotune = env.NUDGE_AUTOTUNE !== '0';
  return out;
}

/**
 * The environment's kernel choices on a webgpu backend: NUDGE_GATED_LOADS=0|1,
 * NUDGE_SUBGROUP_TILES=0|1 and NUDGE_WINOGRAD=0|1 (createBackend applies them; so do the
 * commands and benches that build a WebGPUBackend themselves).
 */
export function applyKernelEnv(be: WebGPUBackend, env: NodeJS.ProcessEnv = process.env): WebGPUBackend {
  if (env.NUDGE_GATED_LOADS) be.gatedLoads = env.NUDGE_GATED_LOADS !== '0';
  if (env.NUDGE_SUBGROUP_TILES === '0') be.subgroupTiles = null;
  if (env.NUDGE_SUBGROUP_TILES === '1') be.subgroupDefaults = true;
  if (env.NUDGE_WINOGRAD) be.winogradDefaults = env.NUDGE_WINOGRAD !== '0';
  return be;
}

/** Creates a backend by name; 'webgpu' opens the process-wide device first. */
export async function createBackend(name: BackendName, opts: BackendOptions = {}): Promise<Backend> {
  switch (name) {
    case 'reference':
      return new ReferenceBackend();
    case 'webgpu': {
      const precision = opts.precision ?? (process.env.NUDGE_PRECISION as 'f32' | 'f16' | undefined) ?? 'f32';
      const be = new WebGPUBackend(await openDevice(opts), { ...opts, precision });
      if (opts.tune !== false) be.tuner = new Tuner(be, tunerOptionsFromEnv(opts.tune ?? {}));
      be.fuse = opts.fuse ?? process.env.NUDGE_FUSE !== '0';
      return applyKernelEnv(be);
    }
    default:
      throw new Error(`unknown backend '${name as string}' (choose webgpu or reference)`);
  }
}
