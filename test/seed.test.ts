// The replayable test seed: a failing test prints its base seed and a command, and that
// command reruns the test with the same seeds.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'nudge-seed-'));
const config = join(dir, 'vitest.config.mjs');
const fixture = 'test/fixtures/seed-replay.fixture.ts';
writeFileSync(config, `export default { test: { root: ${JSON.stringify(resolve('.'))}, include: [${JSON.stringify(fixture)}], setupFiles: ['test/setup.ts'], pool: 'forks' } };\n`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vitest(cmd: string, env: Record<string, string | undefined>): string {
  const r = spawnSync('bash', ['-c', `${cmd} --config ${config} --reporter default`], { encoding: 'utf8', env: { ...process.env, ...env, FORCE_COLOR: '0', NO_COLOR: '1' } });
  expect(r.status, r.stdout + r.stderr).toBe(1);
  return r.stdout + r.stderr;
}

describe('test seeds', () => {
  it('a failure prints the seed and a command that replays the test with the same draws', () => {
    const first = vitest(`npx vitest run ${fixture}`, { NUDGE_TEST_SEED: undefined });
    const drew = first.match(/Received: "drew (\S+) (\S+) ([^"\s]+)"/);
    const replay = first.match(/test seed (\S+); replay: (NUDGE_TEST_SEED=\S+ npx vitest run .+)$/m);
    expect(drew, first).not.toBeNull();
    expect(replay, first).not.toBeNull();
    expect(drew![1].startsWith(replay![1]) && drew![2].startsWith(replay![1]), first).toBe(true);
    expect(new Set(drew!.slice(1)).size, 'distinct seeds per draw').toBe(3);
    // The printed command alone (only that test, -t) draws the same seeds.
    const again = vitest(replay![2], {});
    expect(again.match(/Received: "drew (\S+) (\S+) ([^"\s]+)"/)?.slice(1), again).toEqual(drew!.slice(1));
    expect(again, 'only the failing test ran').toMatch(/1 failed \| 1 skipped|1 skipped \| 1 failed|1 failed.*1 skipped/);
    // Another run without the variable draws other seeds.
    const other = vitest(`npx vitest run ${fixture}`, { NUDGE_TEST_SEED: undefined });
    expect(other.match(/Received: "drew (\S+)/)?.[1]).not.toBe(drew![1]);
  });
});
