// `nudge doctor`: what the adapter is, what it can do, and whether a kernel runs on it.
import { NoAdapterError, WebGPUBackend, applyKernelEnv, openDevice } from '../engine/index.js';

export interface DoctorOptions {
  adapter?: string;
  toggles: string[];
  json: boolean;
}

const KEY_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'minUniformBufferOffsetAlignment',
];

export async function doctor(opts: DoctorOptions): Promise<number> {
  let gpu;
  try {
    gpu = await openDevice({ adapter: opts.adapter, toggles: opts.toggles });
  } catch (e) {
    if (e instanceof NoAdapterError) {
      if (opts.json) console.log(JSON.stringify({ ok: false, error: e.message }, null, 2));
      else console.error(e.message);
      return 1;
    }
    throw e;
  }
  // A real round trip: upload, one kernel, readback.
  const be = applyKernelEnv(new WebGPUBackend(gpu));
  const n = 1001;
  const a = Float32Array.from({ length: n }, (_, i) => i * 0.5);
  const b = Float32Array.from({ length: n }, (_, i) => 1 - i);
  const ta = be.fromArray(a, [n]);
  const tb = be.fromArray(b, [n]);
  const sum = await be.read(be.add(ta, tb));
  let kernelOk = true;
  for (let i = 0; i < n; i++) if (Math.abs(sum[i] - (a[i] + b[i])) > 1e-6) kernelOk = false;
  const info = gpu.info;
  const report = {
    ok: kernelOk,
    adapter: info.name,
    vendor: info.vendor,
    architecture: info.architecture,
    backend: info.backend,
    driver: info.driver,
    software: info.isSoftware,
    deviceFeatures: [...gpu.features].sort(),
    adapterFeatures: info.features,
    subgroupMatrix: info.features.includes('chromium-experimental-subgroup-matrix'),
    subgroupMatrixConfigs: info.subgroupMatrixConfigs,
    matrixTiles: be.subgroupMatrices.length > 0 ? { subgroup: be.matrixSubgroup, shapes: be.subgroupMatrices } : null,
    subgroupSizes: [info.subgroupMinSize, info.subgroupMaxSize],
    subgroupTiles: be.subgroupTiles,
    subgroupDefaults: be.defaultTileSubgroup !== undefined,
    winogradDefaults: be.winogradDefaults,
    limits: Object.fromEntries(KEY_LIMITS.filter((k) => k in info.limits).map((k) => [k, info.limits[k]])),
    toggles: opts.toggles,
    kernelCheck: kernelOk ? 'passed' : 'FAILED: add kernel returned wrong values',
  };
  be.destroy();
  if (opts.json) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    const mib = (v: number) => `${(v / 2 ** 20).toFixed(0)} MiB`;
    console.log(`adapter       ${report.adapter}${report.software ? '  (software rasterizer: CPU speed, not GPU speed)' : ''}`);
    console.log(`vendor        ${report.vendor}`);
    console.log(`architecture  ${report.architecture}`);
    console.log(`backend       ${report.backend}`);
    console.log(`driver        ${report.driver}`);
    console.log(`features      ${report.deviceFeatures.join(', ') || '(none of timestamp-query, shader-f16, subgroups)'}`);
    const shapes = report.subgroupMatrixConfigs.map((c) => `${c.component}->${c.result} ${c.M}x${c.N}x${c.K}`).join(', ');
    console.log(
      `tensor cores  ${
        report.matrixTiles
          ? `subgroup-matrix tiles on subgroups of ${report.matrixTiles.subgroup} (${shapes}): tuner candidates, f16 ones with precision f16`
          : report.subgroupMatrix
            ? `chromium-experimental-subgroup-matrix offered (${shapes || 'no shapes'}) but not usable here`
            : 'no subgroup-matrix feature (Dawn offers it only with --toggle allow_unsafe_apis, where the device has it)'
      }`,
    );
    const [sgMin, sgMax] = report.subgroupSizes;
    const sgTiles = report.subgroupTiles
      ? `conv and matmul tiles share loads over subgroups of ${report.subgroupTiles} (${report.subgroupDefaults ? 'the default' : 'tuner candidates'})`
      : 'no subgroup-shared conv or matmul tiles (they need the subgroups feature and one fixed size; NUDGE_SUBGROUP_TILES=0 turns them off)';
    console.log(`subgroups     ${sgMin === sgMax ? sgMin : `${sgMin}-${sgMax}`} lanes: ${sgTiles}`);
    console.log(
      `winograd      F(2x2,3x3) for 3x3 stride-1 convs: ${report.winogradDefaults ? 'the default from 64 channels and 32 output tiles where its GEMM shares subgroup loads' : 'tuner candidates'} (NUDGE_WINOGRAD=0|1)`,
    );
    for (const [k, v] of Object.entries(report.limits)) {
      console.log(`${k.padEnd(36)} ${/Size$/.test(k) && v > 65536 ? mib(v) : v}`);
    }
    if (opts.toggles.length) console.log(`toggles       ${opts.toggles.join(', ')}`);
    console.log(`kernel check  ${report.kernelCheck}`);
  }
  return kernelOk ? 0 : 1;
}
