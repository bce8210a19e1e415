// The conv2d backward-data family's algorithms, in candidate order (the first applies everywhere).
import { ConfigOf, KernelAlgorithm, KernelChoices, KernelPlan, algorithmOf, defaultOf, seedsOf, spaceOf } from '../algorithm.js';
import type { ConvBackwardDataRequest, ConvGeometry, SourceGates } from '../conv/common.js';
import type { TileSpaceOptions } from '../matmul/sharedTile.js';
import { convBackwardDataRegister } from './convRegister.js';
import { convBackwardDataShared } from './convShared.js';
import { convBackwardDataWinograd } from './convWinograd.js';

export const CONV_BACKWARD_DATA_ALGORITHMS = [convBackwardDataRegister, convBackwardDataShared, convBackwardDataWinograd] as const;

/** Any conv2d backward-data config. */
export type ConvBackwardDataConfig = ConfigOf<(typeof CONV_BACKWARD_DATA_ALGORITHMS)[number]>;

export function convBackwardDataAlgorithm(c: ConvBackwardDataConfig): KernelAlgorithm<ConvGeometry, ConvBackwardDataConfig, ConvBackwardDataRequest> {
  return algorithmOf(CONV_BACKWARD_DATA_ALGORITHMS, c, 'conv2dBackwardData');
}

export function convBackwardDataCandidates(g: ConvGeometry, opts: TileSpaceOptions = {}): ConvBackwardDataConfig[] {
  return spaceOf(CONV_BACKWARD_DATA_ALGORITHMS, g, opts);
}

export function defaultConvBackwardData(g: ConvGeometry, choices: KernelChoices): ConvBackwardDataConfig {
  return defaultOf(CONV_BACKWARD_DATA_ALGORITHMS, g, choices)!;
}

export function convBackwardDataSeeds(g: ConvGeometry, choices: KernelChoices): ConvBackwardDataConfig[] {
  return seedsOf(CONV_BACKWARD_DATA_ALGORITHMS, g, choices);
}

/** With gates, a config whose algorithm cannot apply them is replaced by the first algorithm's default. */
export function gatedBackwardDataConfig(g: ConvGeometry, gates: SourceGates, c: ConvBackwardDataConfig, choices: KernelChoices): ConvBackwardDataConfig {
  if (!(gates.argmax || gates.reluAt) || convBackwardDataAlgorithm(c).traits.gates) return c;
  return CONV_BACKWARD_DATA_ALGORITHMS[0].defaultFor(g, choices)!;
}

export function convBackwardDataPlan(g: ConvGeometry, c: ConvBackwardDataConfig, req: ConvBackwardDataRequest, maxStorageBytes?: number): KernelPlan {
  return convBackwardDataAlgorithm(c).plan(g, c, req, maxStorageBytes);
}
