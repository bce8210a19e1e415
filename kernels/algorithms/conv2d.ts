// The conv2d forward family's algorithms, in candidate order (the first applies everywhere).
import { ConfigOf, KernelChoices, KernelPlan, algorithmOf, defaultOf, seedsOf, spaceOf } from '../algorithm.js';
import type { BlockEpilogue, ConvForwardAlgorithm, ConvForwardRequest, ConvGeometry } from '../conv/common.js';
import type { TileSpaceOptions } from '../matmul/sharedTile.js';
import { convForwardRegister } from './convRegister.js';
import { convForwardShared } from './convShared.js';
import { convForwardWinograd } from './convWinograd.js';
import { convForwardMatmul } from './convAsMatmul.js';

export const CONV_FORWARD_ALGORITHMS = [convForwardRegister, convForwardShared, convForwardWinograd, convForwardMatmul] as const;

/** Any conv2d forward config. */
export type ConvForwardConfig = ConfigOf<(typeof CONV_FORWARD_ALGORITHMS)[number]>;

export function convForwardAlgorithm(c: ConvForwardConfig): ConvForwardAlgorithm<ConvForwardConfig> {
  return algorithmOf<ConvGeometry, ConvForwardConfig, ConvForwardRequest>(CONV_FORWARD_ALGORITHMS, c, 'conv2d') as ConvForwardAlgorithm<ConvForwardConfig>;
}

export function convForwardCandidates(g: ConvGeometry, opts: TileSpaceOptions = {}): ConvForwardConfig[] {
  return spaceOf(CONV_FORWARD_ALGORITHMS, g, opts);
}

/** The config the op's default path runs on a backend with these choices. */
export function defaultConvForward(g: ConvGeometry, choices: KernelChoices): ConvForwardConfig {
  return defaultOf(CONV_FORWARD_ALGORITHMS, g, choices)!;
}

export function convForwardSeeds(g: ConvGeometry, choices: KernelChoices): ConvForwardConfig[] {
  return seedsOf(CONV_FORWARD_ALGORITHMS, g, choices);
}

export function convForwardPlan(g: ConvGeometry, c: ConvForwardConfig, req: ConvForwardRequest, maxStorageBytes?: number): KernelPlan {
  return convForwardAlgorithm(c).plan(g, c, req, maxStorageBytes);
}

/**
 * The config a conv block with epilogue `e` runs, given the plain conv2d's tuned config for the
 * same geometry: that one where its algorithm runs the epilogue and accepts it, else the
 * first algorithm's block default; untuned, the block default of the algorithm that claims it
 * (as for the plain op's default: Winograd where preferred, else the register tile).
 */
export function convBlockForwardConfig(g: ConvGeometry, e: BlockEpilogue, tuned: ConvForwardConfig | undefined, choices: KernelChoices): ConvForwardConfig {
  const first = CONV_FORWARD_ALGORITHMS[0];
  if (tuned) {
    const a = convForwardAlgorithm(tuned);
    if (a.traits.epilogue && a.blockAccepts?.(g, e, tuned)) return tuned;
    return first.blockDefaultFor!(g, e, choices)!;
  }
  for (const a of CONV_FORWARD_ALGORITHMS.slice(1) as readonly ConvForwardAlgorithm<ConvForwardConfig>[]) {
    const c = a.traits.epilogue && a.applies(g) ? a.blockDefaultFor?.(g, e, choices) : null;
    if (c) return c;
  }
  return first.blockDefaultFor!(g, e, choices)!;
}
