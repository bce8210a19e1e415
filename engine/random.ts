// Seeded random streams. Every backend draws initial values from here, so the same seed
// gives the same tensor on every backend; training data is shuffled from here too.
import seedrandom from 'seedrandom';

/** Values uniform in [low, high), rounded to float32 (the precision every backend stores). */
export function uniformValues(count: number, low: number, high: number, seed: string | number): Float32Array {
  const rng = seedrandom(String(seed));
  const out = new Float32Array(count);
  const span = high - low;
  for (let i = 0; i < count; i++) out[i] = low + span * rng();
  return out;
}

/** A permutation of 0..n-1 (Fisher-Yates) drawn from a seedrandom stream named `key`. */
export function seededPermutation(n: number, key: string): Uint32Array {
  const rng = seedrandom(key);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
