// The engine's public API. pcn/, tools/, test/ and bench/ import from here only.
export * from './tensor.js';
export * from './backend.js';
export { uniformValues } from './random.js';
export {
  openDevice,
  closeDevice,
  currentDevice,
  diagnoseNoAdapter,
  checkDeviceHealthy,
  NoAdapterError,
  DeviceError,
} from './device.js';
export type { DeviceOptions, AdapterDescription, Gpu } from './device.js';
export { WebGPUBackend } from './webgpu/backend.js';
export type { RuntimeOptions, MemoryStats } from './webgpu/runtime.js';
export { ReferenceBackend } from './reference/backend.js';

import { Backend } from './backend.js';
import { DeviceOptions, openDevice } from './device.js';
import { ReferenceBackend } from './reference/backend.js';
import { WebGPUBackend } from './webgpu/backend.js';
import { RuntimeOptions } from './webgpu/runtime.js';

export type BackendName = 'webgpu' | 'reference';

/** Creates a backend by name; 'webgpu' opens the process-wide device first. */
export async function createBackend(name: BackendName, opts: DeviceOptions & RuntimeOptions = {}): Promise<Backend> {
  switch (name) {
    case 'reference':
      return new ReferenceBackend();
    case 'webgpu':
      return new WebGPUBackend(await openDevice(opts), opts);
    default:
      throw new Error(`unknown backend '${name as string}' (choose webgpu or reference)`);
  }
}
