// The built command line (npm test builds dist/ before running vitest).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = 'dist/nudge.mjs';

async function nudge(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('node', [CLI, ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('nudge doctor', () => {
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' (npm test does it)`);
  });

  it('describes the adapter, runs a kernel and exits 0', async () => {
    const r = await nudge(['doctor', '--json']);
    if (r.code !== 0) throw new Error(`doctor failed (a WebGPU adapter is required here):\n${r.stdout}\n${r.stderr}`);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(true);
    expect(report.kernelCheck).toBe('passed');
    expect(report.adapter.length).toBeGreaterThan(0);
    expect(report.backend).toBe('vulkan');
    expect(report.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(Array.isArray(report.adapterFeatures)).toBe(true);
    // Subgroup-shared conv tiles exactly where the device has subgroups of one fixed size.
    const [sgMin, sgMax] = report.subgroupSizes;
    const fixed = report.deviceFeatures.includes('subgroups') && sgMin > 0 && sgMin === sgMax;
    expect(report.subgroupTiles).toBe(fixed ? sgMin : null);
    expect(report.subgroupDefaults).toBe(fixed && report.software);
    expect(report.winogradDefaults).toBe(report.software);
  });

  it('with no Vulkan driver, says what is missing and how to fix it, exit 1', async () => {
    const r = await nudge(['doctor'], { VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no WebGPU adapter/);
    expect(r.stderr).toMatch(/\/nonexistent\/icd\.json/);
    expect(r.stderr).toMatch(/tools\/setup\.sh/);
    expect(r.stderr).not.toMatch(/internal error|at .*\.ts:\d+/);
  });

  it('rejects unknown commands and options with usage, exit 2', async () => {
    expect((await nudge(['frobnicate'])).code).toBe(2);
    const r = await nudge(['doctor', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/usage: nudge/);
  });
});

describe('nudge train (argument and data errors, before any GPU work)', () => {
  it('names a bad algorithm, a missing data set and a bad number, exit 1, no stack trace', async () => {
    const bad = await nudge(['train', '--algorithm', 'magic']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--algorithm must be one of ep-centered/);
    const missing = await nudge(['train', '--data', 'fashion-mnist:/nonexistent']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not found.*tools\/setup\.sh/s);
    const zero = await nudge(['train', '--epochs', '0']);
    expect(zero.code).toBe(1);
    expect(zero.stderr).toMatch(/--epochs must be a positive integer/);
    // VGG10's five pools do not fit 28x28 Fashion-MNIST: said before any GPU work.
    const small = await nudge(['train', '--model', 'vgg10', '--backend', 'reference']);
    expect(small.code).toBe(1);
    expect(small.stderr).toMatch(/--model vgg10 on 28x28x1 inputs: .*empty/);
    for (const r of [bad, missing, zero, small]) expect(r.stderr).not.toMatch(/internal error|\.ts:\d+/);
  });
});

describe('nudge train stops on a non-finite loss', () => {
  it('exits 1 with a message naming the step and what to change', async () => {
    const r = await nudge(['train', '--train-limit', '256', '--test-limit', '64', '--K', '2', '--lr', '1e20']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/loss became NaN at epoch 1, step \d+.*lower the learning rate/);
    expect(r.stderr).not.toMatch(/internal error/);
  });
});

describe('nudge train --cost mse and --clamp', () => {
  it('trains with the MSE cost and a clamped output, checkpoints it, and eval reports the MSE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nudge-mse-'));
    const ck = join(dir, 'run.safetensors');
    const r = await nudge(['train', '--cost', 'mse', '--clamp', '--train-limit', '128', '--test-limit', '64', '--K', '2', '--checkpoint', ck, '--progress', 'off']);
    expect(r.code, r.stderr).toBe(0);
    // VGG5's MSE defaults apply to the small model's optimizer too: lr 0.04, batch 16.
    expect(r.stdout).toMatch(/clamped.*MSE cost.*batch 16.*lr 0\.04/s);
    expect(r.stdout).toMatch(/test top-1 \d+\.\d+%/);
    const e = await nudge(['eval', '--checkpoint', ck, '--test-limit', '64']);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/MSE \d+\.\d+/);
    const bad = await nudge(['train', '--cost', 'hinge']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--cost must be ce or mse/);
    const bp = await nudge(['train', '--clamp', '--algorithm', 'bp']);
    expect(bp.code).toBe(1);
    expect(bp.stderr).toMatch(/--clamp applies to the EP algorithms/);
  });
});
