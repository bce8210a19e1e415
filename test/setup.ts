// Every test file that opened the GPU device closes it at the end, so its worker can exit;
// every failure names the base seed and the command that replays the test (test/seed.ts).
import { relative } from 'node:path';
import { afterAll, beforeEach } from 'vitest';
import { closeDevice } from '../engine/index.js';
import { BASE_SEED, replayCommand } from './seed.js';

function fullName(task: { name: string; suite?: { name: string; suite?: unknown } }): string {
  const names: string[] = [];
  for (let t: { name: string; suite?: unknown } | undefined = task; t; t = t.suite as typeof t) if (t.name) names.unshift(t.name);
  return names.join(' ');
}

beforeEach(({ onTestFailed }) => {
  onTestFailed(({ task: t }) => {
    const file = relative(process.cwd(), t.file.filepath);
    const line = `test seed ${BASE_SEED}; replay: ${replayCommand(file, fullName(t))}`;
    for (const e of t.result?.errors ?? []) e.message = `${e.message}\n${line}`;
  });
});

afterAll(() => {
  closeDevice();
});
