// Seeded random streams. Every backend draws initial values from here, so the same seed
// gives the same tensor on every backend.
import seedrandom from 'seedrandom';

/** Values uniform in [low, high), rounded to float32 (the precision every backend stores). */
export function uniformValues(count: number, low: number, high: number, seed: string | number): Float32Array {
  const rng = seedrandom(String(seed));
  const out = new Float32Array(count);
  const span = high - low;
  for (let i = 0; i < count; i++) out[i] = low + span * rng();
  return out;
}
