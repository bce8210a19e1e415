// `npm run bench -- <suite>`: prints a table per suite.
import { closeDevice } from '../engine/index.js';
import { benchOps } from './ops.js';
import { benchData } from './data.js';
import { benchConv } from './conv.js';
import { benchStep } from './step.js';
import { benchAnalogStudy } from './analog-study.js';
import { benchFused } from './fused.js';

const suites: Record<string, (args: string[]) => Promise<void>> = { ops: benchOps, data: benchData, conv: benchConv, 'analog-study': benchAnalogStudy, step: benchStep, fused: benchFused };

async function main(): Promise<number> {
  const [name, ...rest] = process.argv.slice(2);
  const suite = name ? suites[name] : undefined;
  if (!suite) {
    console.error(`usage: npm run bench -- <${Object.keys(suites).join('|')}> [options]`);
    return 2;
  }
  await suite(rest);
  return 0;
}

main()
  .then((code) => {
    closeDevice();
    process.exit(code);
  })
  .catch((e) => {
    closeDevice();
    console.error(e);
    process.exit(1);
  });
