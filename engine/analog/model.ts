// Device models for the analog backend: what a tile does to the signals through it and to
// the updates written into it, as plain data (JSON), with presets and a strict loader.
import { existsSync, readFileSync } from 'node:fs';
import type { PulsedUpdateOptions } from '../backend.js';

/** One direction of MVMs through a tile (forward: x W; backward: d W^T). */
export interface IOConfig {
  /** DAC resolution of the inputs in bits (0: exact). */
  inBits: number;
  /** Inputs are clipped to [-inBound, inBound] (null: no clipping), in normalized units. */
  inBound: number | null;
  /** Std of Gaussian noise added to each normalized input. */
  inNoise: number;
  /** ADC resolution of the outputs in bits (0: exact). */
  outBits: number;
  /** Outputs are clipped to [-outBound, outBound] (null: no clipping), in normalized units. */
  outBound: number | null;
  /** Std of Gaussian read noise added to each normalized output. */
  outNoise: number;
  /** Scale each row (example) of the input by its max |x| before the DAC, and the output back after. */
  noiseManagement: boolean;
  /** Halve the input of a row whose output would clip, up to maxHalvings times (needs outBound). */
  boundManagement: boolean;
  maxHalvings: number;
}

/** The pulsed update written into a tile, in units of the tile scale omega (see README): the op's options without the per-call keys. */
export type UpdateConfig = Omit<PulsedUpdateOptions, 'deviceKey' | 'updateKey'>;

export interface DeviceModel {
  name: string;
  forward: IOConfig;
  backward: IOConfig;
  /** Std of the programming error of each weight, in units of omega, drawn anew at every programming. */
  programNoise: number;
  /** null: weight updates stay digital (exact SGD). */
  update: UpdateConfig | null;
}

export class DeviceModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceModelError';
  }
}

export const IDEAL_IO: IOConfig = {
  inBits: 0,
  inBound: null,
  inNoise: 0,
  outBits: 0,
  outBound: null,
  outNoise: 0,
  noiseManagement: false,
  boundManagement: false,
  maxHalvings: 0,
};

export const DEFAULT_UPDATE: UpdateConfig = {
  dwMin: 0.001,
  dwMinDtod: 0,
  dwMinCtoc: 0,
  upDown: 0,
  upDownDtod: 0,
  wMax: 1,
  wMin: -1,
  boundsDtod: 0,
  softBounds: false,
  writeNoise: 0,
  maxPulses: 31,
};

/** A typical crossbar periphery: 7-bit DAC, 9-bit ADC, output noise, noise and bound management. */
const NOISY_IO: IOConfig = {
  inBits: 7,
  inBound: 1,
  inNoise: 0,
  outBits: 9,
  outBound: 12,
  outNoise: 0.06,
  noiseManagement: true,
  boundManagement: true,
  maxHalvings: 4,
};

/** The presets, as the JSON a device-model file would hold (missing keys take ideal values). */
export const PRESETS: Record<string, object> = {
  ideal: {},
  'noisy-inference': { forward: NOISY_IO, backward: NOISY_IO, programNoise: 0.02 },
  'reram-softbounds': {
    forward: NOISY_IO,
    backward: NOISY_IO,
    programNoise: 0,
    update: {
      dwMin: 0.004,
      dwMinDtod: 0.3,
      dwMinCtoc: 0.5,
      upDown: 0,
      upDownDtod: 0.05,
      wMax: 1.25,
      wMin: -1.25,
      boundsDtod: 0.2,
      softBounds: true,
      writeNoise: 0,
      maxPulses: 31,
    },
  },
};

function fail(where: string, msg: string): never {
  throw new DeviceModelError(`device model ${where}: ${msg}`);
}

function checkKeys(where: string, obj: unknown, allowed: string[]): Record<string, unknown> {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) fail(where, `must be a JSON object, got ${JSON.stringify(obj)}`);
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) fail(where, `unknown key '${k}' (known: ${allowed.join(', ')})`);
  }
  return obj as Record<string, unknown>;
}

function number(where: string, key: string, v: unknown, lo: number, hi: number, integer = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
    fail(where, `${key} must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function bool(where: string, key: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail(where, `${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function bits(where: string, key: string, v: unknown): number {
  const b = number(where, key, v, 0, 24, true);
  if (b === 1) fail(where, `${key} must be 0 (exact) or 2..24, got 1`);
  return b;
}

function bound(where: string, key: string, v: unknown): number | null {
  if (v === null) return null;
  const b = number(where, key, v, 0, 1e30);
  if (b <= 0) fail(where, `${key} must be positive or null (no clipping), got ${b}`);
  return b;
}

function parseIO(where: string, raw: unknown): IOConfig {
  const o = checkKeys(where, raw, Object.keys(IDEAL_IO));
  const io: IOConfig = {
    inBits: bits(where, 'inBits', o.inBits ?? IDEAL_IO.inBits),
    inBound: bound(where, 'inBound', o.inBound ?? null),
    inNoise: number(where, 'inNoise', o.inNoise ?? 0, 0, 1e6),
    outBits: bits(where, 'outBits', o.outBits ?? IDEAL_IO.outBits),
    outBound: bound(where, 'outBound', o.outBound ?? null),
    outNoise: number(where, 'outNoise', o.outNoise ?? 0, 0, 1e6),
    noiseManagement: bool(where, 'noiseManagement', o.noiseManagement ?? false),
    boundManagement: bool(where, 'boundManagement', o.boundManagement ?? false),
    maxHalvings: number(where, 'maxHalvings', o.maxHalvings ?? (o.boundManagement ? 4 : 0), 0, 64, true),
  };
  if (io.inBits > 0 && io.inBound === null) fail(where, `inBits ${io.inBits} needs a finite inBound (the DAC's range)`);
  if (io.outBits > 0 && io.outBound === null) fail(where, `outBits ${io.outBits} needs a finite outBound (the ADC's range)`);
  if (io.boundManagement && io.outBound === null) fail(where, 'boundManagement needs a finite outBound (it reacts to clipping)');
  if (!io.boundManagement) io.maxHalvings = 0;
  return io;
}

function parseUpdate(where: string, raw: unknown): UpdateConfig {
  const o = checkKeys(where, raw, Object.keys(DEFAULT_UPDATE));
  const d = DEFAULT_UPDATE;
  const u: UpdateConfig = {
    dwMin: number(where, 'dwMin', o.dwMin ?? d.dwMin, 0, 1e6),
    dwMinDtod: number(where, 'dwMinDtod', o.dwMinDtod ?? d.dwMinDtod, 0, 1e6),
    dwMinCtoc: number(where, 'dwMinCtoc', o.dwMinCtoc ?? d.dwMinCtoc, 0, 1e6),
    upDown: number(where, 'upDown', o.upDown ?? d.upDown, -1, 1),
    upDownDtod: number(where, 'upDownDtod', o.upDownDtod ?? d.upDownDtod, 0, 1e6),
    wMax: number(where, 'wMax', o.wMax ?? d.wMax, 0, 1e30),
    wMin: number(where, 'wMin', o.wMin ?? d.wMin, -1e30, 0),
    boundsDtod: number(where, 'boundsDtod', o.boundsDtod ?? d.boundsDtod, 0, 1e6),
    softBounds: bool(where, 'softBounds', o.softBounds ?? d.softBounds),
    writeNoise: number(where, 'writeNoise', o.writeNoise ?? d.writeNoise, 0, 1e6),
    maxPulses: number(where, 'maxPulses', o.maxPulses ?? d.maxPulses, 1, 1e9, true),
  };
  if (u.dwMin <= 0) fail(where, `dwMin must be positive (use "update": null for exact digital updates), got ${u.dwMin}`);
  if (u.wMax <= 0 || u.wMin >= 0) fail(where, `bounds must straddle zero: wMin < 0 < wMax, got [${u.wMin}, ${u.wMax}]`);
  return u;
}

/** Validates a device model given as parsed JSON; `source` names it in error messages. */
export function parseDeviceModel(raw: unknown, source: string): DeviceModel {
  const o = checkKeys(`'${source}'`, raw, ['name', 'forward', 'backward', 'programNoise', 'update']);
  if (o.name !== undefined && typeof o.name !== 'string') fail(`'${source}'`, `name must be a string, got ${JSON.stringify(o.name)}`);
  return {
    name: (o.name as string | undefined) ?? source,
    forward: parseIO(`'${source}' forward`, o.forward ?? {}),
    backward: parseIO(`'${source}' backward`, o.backward ?? {}),
    programNoise: number(`'${source}'`, 'programNoise', o.programNoise ?? 0, 0, 1e6),
    update: o.update === undefined || o.update === null ? null : parseUpdate(`'${source}' update`, o.update),
  };
}

/** A preset by name, or a JSON file by path. */
export function loadDeviceModel(presetOrPath: string): DeviceModel {
  const preset = PRESETS[presetOrPath];
  if (preset) return parseDeviceModel({ name: presetOrPath, ...preset }, presetOrPath);
  if (!existsSync(presetOrPath)) {
    throw new DeviceModelError(
      `unknown device model '${presetOrPath}': not a preset (${Object.keys(PRESETS).join(', ')}) and no such file`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(presetOrPath, 'utf8'));
  } catch (e) {
    throw new DeviceModelError(`device model file ${presetOrPath} is not valid JSON: ${(e as Error).message}`);
  }
  return parseDeviceModel(raw, presetOrPath);
}

/** Whether a direction's IO changes anything (an ideal direction is a plain MVM). */
export function ioIsIdeal(io: IOConfig): boolean {
  return !inputStageActive(io) && !outputStageActive(io);
}

export function inputStageActive(io: IOConfig): boolean {
  return io.noiseManagement || io.inBits > 0 || io.inBound !== null || io.inNoise > 0;
}

export function outputStageActive(io: IOConfig): boolean {
  return io.outBits > 0 || io.outBound !== null || io.outNoise > 0;
}
