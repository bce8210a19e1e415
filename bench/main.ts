// `npm run bench -- <suite>`: prints a table per suite.
import { closeDevice } from '../engine/index.js';
import { benchOps } from './ops.js';
import { benchData } from './data.js';
import { benchConv } from './conv.js';
import { benchStep } from './step.js';
import { benchAnalogStudy } from './analog-study.js';
import { benchFused } from './fused.js';
import { benchWgsl } from './wgsl.js';
import { UserError } from '../tools/errors.js';

/** A suite resolves to its exit code, or to nothing for 0. */
const suites: Record<string, (args: string[]) => Promise<void | number>> = { ops: benchOps, data: benchData, conv: benchConv, 'analog-study': benchAnalogStudy, step: benchStep, fused: benchFused, wgsl: benchWgsl };

async function main(): Promise<number> {
  const [name, ...rest] = process.argv.slice(2);
  const suite = name ? suites[name] : undefined;
  const usage = `usage: npm run bench -- <${Object.keys(suites).join('|')}> [options]`;
  if (name === '--help' || name === '-h') {
    console.log(usage);
    return 0;
  }
  if (!suite) {
    console.error(name ? `bench: unknown suite '${name}'\n${usage}` : usage);
    return 2;
  }
  return (await suite(rest)) ?? 0;
}

main()
  .then((code) => {
    closeDevice();
    process.exit(code);
  })
  .catch((e: Error) => {
    closeDevice();
    // A mistake in the arguments is one line; anything else keeps its stack.
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`bench: ${e.message}`);
      process.exit(2);
    }
    if (e instanceof UserError || e.name === 'DataError') {
      console.error(`bench: ${e.message}`);
      process.exit(1);
    }
    console.error(e);
    process.exit(1);
  });
