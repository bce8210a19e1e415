// tools/setup.sh's own checks, run the way CI runs the script (bash with pipefail).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'];
const icdPresent = ICD_DIRS.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));

describe('tools/setup.sh', () => {
  it('reports the Vulkan driver as present exactly when an ICD manifest is installed (one folder may be empty)', () => {
    // NUDGE_SKIP_APT: no system packages; node_modules is current, so this only runs the checks.
    const out = execFileSync('bash', ['tools/setup.sh'], { env: { ...process.env, NUDGE_SKIP_APT: '1' }, encoding: 'utf8' });
    const last = out.trim().split('\n').at(-1)!;
    expect(last, `ICD manifests in ${ICD_DIRS.join(' or ')}: ${icdPresent}`).toContain(icdPresent ? 'Vulkan driver present' : 'no Vulkan driver');
  });
});
