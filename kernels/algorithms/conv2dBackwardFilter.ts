// The conv2d backward-filter family's algorithms, in candidate order (the first applies everywhere).
import { ConfigOf, KernelAlgorithm, KernelChoices, KernelPlan, algorithmOf, defaultOf, seedsOf, spaceOf } from '../algorithm.js';
import type { ConvBackwardFilterRequest, ConvGeometry } from '../conv/common.js';
import type { TileSpaceOptions } from '../matmul/sharedTile.js';
import { filterRegister } from './filterRegister.js';
import { filterShared } from './filterShared.js';

export const CONV_BACKWARD_FILTER_ALGORITHMS = [filterRegister, filterShared] as const;

/** Any conv2d backward-filter config. */
export type AnyConvBackwardFilterConfig = ConfigOf<(typeof CONV_BACKWARD_FILTER_ALGORITHMS)[number]>;

export function convBackwardFilterAlgorithm(c: AnyConvBackwardFilterConfig): KernelAlgorithm<ConvGeometry, AnyConvBackwardFilterConfig, ConvBackwardFilterRequest> {
  return algorithmOf(CONV_BACKWARD_FILTER_ALGORITHMS, c, 'conv2dBackwardFilter');
}

export function convBackwardFilterCandidates(g: ConvGeometry, opts: TileSpaceOptions = {}): AnyConvBackwardFilterConfig[] {
  return spaceOf(CONV_BACKWARD_FILTER_ALGORITHMS, g, opts);
}

export function defaultConvBackwardFilter(g: ConvGeometry, choices: KernelChoices): AnyConvBackwardFilterConfig {
  return defaultOf(CONV_BACKWARD_FILTER_ALGORITHMS, g, choices)!;
}

export function convBackwardFilterSeeds(g: ConvGeometry, choices: KernelChoices): AnyConvBackwardFilterConfig[] {
  return seedsOf(CONV_BACKWARD_FILTER_ALGORITHMS, g, choices);
}

export function convBackwardFilterPlan(g: ConvGeometry, c: AnyConvBackwardFilterConfig, maxStorageBytes?: number): KernelPlan {
  return convBackwardFilterAlgorithm(c).plan(g, c, {}, maxStorageBytes);
}
