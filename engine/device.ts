// The Dawn instance and the GPU device.
//
// The object returned by webgpu's create() must stay reachable while any device lives:
// if V8 collects it, Dawn tears the instance down under running work and the process dies
// at random (futex errors, pthread assertions, segfaults). So it lives in a module-level
// singleton and is never dropped. A live instance also keeps Node from exiting, so commands
// and test workers call closeDevice() and exit explicitly.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

export interface DeviceOptions {
  /** Substring of the adapter name to pick (also NUDGE_ADAPTER). Default: a real GPU first, software otherwise. */
  adapter?: string;
  /** Dawn toggles to enable, e.g. ['disable_robustness'] (also NUDGE_DAWN_TOGGLES, comma separated). */
  toggles?: string[];
  /**
   * Features to request when the adapter has them. Default: timestamp-query, shader-f16,
   * subgroups, and chromium-experimental-subgroup-matrix (offered only with the Dawn toggle
   * allow_unsafe_apis).
   */
  features?: GPUFeatureName[];
}

export interface AdapterDescription {
  name: string;
  vendor: string;
  architecture: string;
  description: string;
  backend: string;
  driver: string;
  isSoftware: boolean;
  /** The adapter's subgroup sizes (Dawn's subgroupMinSize / subgroupMaxSize; 0 when not reported). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /**
   * The subgroup-matrix shapes (adapter.info.subgroupMatrixConfigs, read field by field):
   * component and result types, left M x K, right K x N. Empty without the feature.
   */
  subgroupMatrixConfigs: { component: string; result: string; M: number; N: number; K: number }[];
  features: string[];
  limits: Record<string, number>;
}

export interface Gpu {
  device: GPUDevice;
  adapter: GPUAdapter;
  info: AdapterDescription;
  /** Features the device was created with. */
  features: Set<string>;
}

/** No usable adapter: the message says what is missing and the command that fixes it. */
export class NoAdapterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoAdapterError';
  }
}

export class DeviceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceError';
  }
}

interface DawnModule {
  create(options: string[]): GPU;
  globals: object;
}

// The instance, kept for the life of the process (see the note at the top).
let dawnInstance: GPU | null = null;
let dawnInstanceKey = '';
let current: Gpu | null = null;
let opening: Promise<Gpu> | null = null;
let lastUncapturedError: string | null = null;
let lostReason: string | null = null;

/** The process's Dawn GPU object (null before the first openDevice): for code that wants navigator.gpu, e.g. the tfjs comparison bench. */
export function dawnGpu(): GPU | null {
  return dawnInstance;
}

async function importDawn(): Promise<DawnModule> {
  try {
    return (await import('webgpu')) as unknown as DawnModule;
  } catch (e) {
    throw new NoAdapterError(
      `the npm package 'webgpu' (Dawn for Node) could not be loaded: ${(e as Error).message}\n` +
        `fix: run 'bash tools/setup.sh' (or 'npm ci') in the nudge checkout`,
    );
  }
}

function envToggles(): string[] {
  const v = process.env.NUDGE_DAWN_TOGGLES;
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : [];
}

async function instance(toggles: string[]): Promise<GPU> {
  const key = toggles.join(',');
  if (dawnInstance) {
    if (key !== dawnInstanceKey) {
      throw new DeviceError(
        `the Dawn instance was already created with toggles [${dawnInstanceKey}]; one instance per process, so toggles [${key}] cannot apply`,
      );
    }
    return dawnInstance;
  }
  const dawn = await importDawn();
  // Dawn's globals (GPUBufferUsage, GPUMapMode, ...) are needed by code written against the spec.
  Object.assign(globalThis, dawn.globals);
  const opts = toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : [];
  dawnInstance = dawn.create(opts);
  dawnInstanceKey = key;
  return dawnInstance;
}

function describe(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const architecture = info.architecture ?? '';
  const rec = info as unknown as Record<string, unknown>;
  // Dawn's Vulkan backend puts "<driver name>: <driver info>" in description and a
  // slug or marketing name in device.
  const description = info.description ?? '';
  const driverName = description.split(':')[0].trim();
  const slug = /^[a-z0-9-]*$/.test(info.device ?? '');
  const name = (slug ? driverName || info.device : info.device) || '(unnamed adapter)';
  const isSoftware =
    rec.isFallbackAdapter === true ||
    /software|cpu/i.test(architecture) ||
    /llvmpipe|lavapipe|swiftshader/i.test(`${name} ${description}`);
  return {
    name,
    vendor: info.vendor ?? '',
    architecture,
    description,
    backend: String(rec.backendType ?? (process.platform === 'darwin' ? 'metal' : process.platform === 'win32' ? 'd3d12' : 'vulkan')),
    driver: description,
    isSoftware,
    subgroupMinSize: typeof rec.subgroupMinSize === 'number' ? rec.subgroupMinSize : 0,
    subgroupMaxSize: typeof rec.subgroupMaxSize === 'number' ? rec.subgroupMaxSize : 0,
    subgroupMatrixConfigs: matrixConfigs(rec.subgroupMatrixConfigs),
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

/** Dawn's GPUSubgroupMatrixConfig objects as plain records (their fields are getters). */
function matrixConfigs(list: unknown): AdapterDescription['subgroupMatrixConfigs'] {
  if (!list || typeof (list as Iterable<unknown>)[Symbol.iterator] !== 'function') return [];
  const out: AdapterDescription['subgroupMatrixConfigs'] = [];
  for (const c of list as Iterable<Record<string, unknown>>) {
    const M = Number(c.M);
    const N = Number(c.N);
    const K = Number(c.K);
    if (![M, N, K].every((v) => Number.isInteger(v) && v > 0)) continue;
    out.push({ component: String(c.componentType), result: String(c.resultComponentType), M, N, K });
  }
  return out;
}

/** What is missing when Dawn finds no adapter, and the command that fixes it. */
export function diagnoseNoAdapter(): string {
  const lines: string[] = ['no WebGPU adapter: Dawn found no usable Vulkan device.'];
  const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu'];
  const hasLoader = libDirs.some((d) => existsSync(`${d}/libvulkan.so.1`));
  const icdDirs = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];
  const icds: string[] = [];
  for (const d of icdDirs) {
    try {
      for (const f of readdirSync(d)) if (f.endsWith('.json')) icds.push(`${d}/${f}`);
    } catch {
      /* absent */
    }
  }
  const envIcd = process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES;
  if (!hasLoader) lines.push('  missing: the Vulkan loader libvulkan.so.1 (Debian package libvulkan1)');
  else lines.push('  found:   the Vulkan loader libvulkan.so.1');
  if (envIcd) {
    const missing = envIcd.split(':').filter((f) => f && !existsSync(f));
    lines.push(`  note:    VK_ICD_FILENAMES/VK_DRIVER_FILES=${envIcd} restricts the drivers the loader sees`);
    if (missing.length) lines.push(`  missing: ${missing.join(', ')} (named by that variable; unset it or point it at an existing ICD)`);
  }
  if (icds.length === 0) {
    lines.push('  missing: a Vulkan driver (ICD manifest in /usr/share/vulkan/icd.d): no GPU driver and no lavapipe');
  } else {
    lines.push(`  found:   ICD manifests ${icds.join(', ')}`);
    const mesa = mesaVersion();
    if (icds.some((f) => f.includes('lvp')) && mesa && parseInt(mesa, 10) < 24) {
      lines.push(`  likely:  lavapipe is too old (Mesa ${mesa}; Dawn rejects bookworm's Mesa 22, Mesa 24+ from bookworm-backports works)`);
    }
  }
  lines.push('fix: run as root   bash tools/setup.sh');
  lines.push('     (it installs libvulkan1 and mesa-vulkan-drivers from bookworm-backports; on a GPU server install the vendor driver with its Vulkan ICD, e.g. nvidia_icd.json)');
  return lines.join('\n');
}

function mesaVersion(): string | null {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'mesa-vulkan-drivers'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || null;
  } catch {
    return null;
  }
}

async function pickAdapter(gpu: GPU, wanted: string | undefined): Promise<GPUAdapter> {
  const highPerf = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  const fallback = await gpu.requestAdapter({ forceFallbackAdapter: true }).catch(() => null);
  const candidates = [highPerf, fallback].filter((a): a is GPUAdapter => a !== null);
  if (candidates.length === 0) throw new NoAdapterError(diagnoseNoAdapter());
  if (wanted) {
    const hit = candidates.find((a) => describe(a).name.toLowerCase().includes(wanted.toLowerCase()));
    if (!hit) {
      throw new NoAdapterError(
        `no adapter matches '${wanted}'; available: ${[...new Set(candidates.map((a) => describe(a).name))].join(', ')}`,
      );
    }
    return hit;
  }
  // A real GPU first; lavapipe otherwise.
  return candidates.find((a) => !describe(a).isSoftware) ?? candidates[0];
}

/**
 * Opens the process-wide device (once; later calls return it). Uncaptured errors and
 * device loss are turned into thrown errors by checkDeviceHealthy(), called by the
 * runtime after every submit and readback.
 */
export async function openDevice(options: DeviceOptions = {}): Promise<Gpu> {
  if (current) return current;
  if (opening) return opening;
  opening = (async () => {
    const toggles = [...(options.toggles ?? []), ...envToggles()];
    const gpu = await instance(toggles);
    const adapter = await pickAdapter(gpu, options.adapter ?? process.env.NUDGE_ADAPTER);
    const wantedFeatures = options.features ?? (['timestamp-query', 'shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[]);
    const requiredFeatures = wantedFeatures.filter((f) => adapter.features.has(f));
    // Ask for the adapter's maximum limits: large storage buffers and workgroups matter here.
    const requiredLimits: Record<string, number> = {};
    for (const k in adapter.limits) {
      const v = (adapter.limits as unknown as Record<string, unknown>)[k];
      if (typeof v === 'number') requiredLimits[k] = v;
    }
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    } catch (e) {
      throw new DeviceError(`requestDevice failed on ${describe(adapter).name}: ${(e as Error).message}`);
    }
    lastUncapturedError = null;
    lostReason = null;
    device.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      if (lastUncapturedError === null) lastUncapturedError = msg;
    });
    device.lost.then((info) => {
      if (info.reason !== 'destroyed') lostReason = `${info.reason}: ${info.message}`;
    });
    const g: Gpu = { device, adapter, info: describe(adapter), features: new Set(requiredFeatures.map(String)) };
    current = g;
    return g;
  })();
  try {
    return await opening;
  } finally {
    opening = null;
  }
}

/** Throws if the device reported an uncaptured error or was lost since the last check. */
export function checkDeviceHealthy(): void {
  if (lostReason) throw new DeviceError(`the GPU device was lost (${lostReason}); reopen the device and resume from the last checkpoint`);
  if (lastUncapturedError) {
    const msg = lastUncapturedError;
    lastUncapturedError = null;
    throw new DeviceError(`WebGPU error: ${msg}`);
  }
}

/** The open device, or null. */
export function currentDevice(): Gpu | null {
  return current;
}

/** Destroys the device. The Dawn instance itself stays reachable until the process exits. */
export function closeDevice(): void {
  if (!current) return;
  const d = current.device;
  current = null;
  d.destroy();
}
