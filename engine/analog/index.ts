// The analog backend and its device models.
export { AnalogBackend } from './backend.js';
export type { AnalogBackendOptions } from './backend.js';
export { DEFAULT_UPDATE, DeviceModelError, PRESETS, loadDeviceModel, parseDeviceModel, ioIsIdeal } from './model.js';
export type { DeviceModel, IOConfig, UpdateConfig } from './model.js';
