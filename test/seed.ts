// Replayable test seeds. Tests draw fresh random inputs on every run; each test file has one
// base seed (fresh, or NUDGE_TEST_SEED to replay), and freshSeed() derives every seed from it,
// the current test's name and a per-test counter. So the same base seed gives every test the
// same inputs whether the whole file runs or only that test (-t), and a failure prints the
// command that replays it (test/setup.ts).
import { expect } from 'vitest';

export const BASE_SEED = process.env.NUDGE_TEST_SEED || `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

const drawn = new Map<string, number>();

/** FNV-1a of a string, as 8 hex digits: keeps derived seeds short. */
function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** The next seed of the current test (or of the file's collection, outside a test). */
export function freshSeed(): string {
  const scope = expect.getState().currentTestName ?? '';
  const n = drawn.get(scope) ?? 0;
  drawn.set(scope, n + 1);
  return `${BASE_SEED}-${fnv(scope)}-${n}`;
}

/** A shell command that reruns one test of a file with this run's base seed. */
export function replayCommand(file: string, fullName: string): string {
  const pattern = `^${fullName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
  return `NUDGE_TEST_SEED=${BASE_SEED} npx vitest run ${file} -t '${pattern.replace(/'/g, `'\\''`)}'`;
}
