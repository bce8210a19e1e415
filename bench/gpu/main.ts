// The one-file program carried to the GPU machine (bench/gpu/pack.sh bundles it with
// esbuild; only Dawn's native module travels beside it). It holds the commands the GPU
// check runs and nothing that needs other native modules (the data tools use sharp).
import { closeDevice } from '../../engine/index.js';
import { doctor } from '../../tools/doctor.js';
import { tuneCommand } from '../../tools/tune.js';
import { benchConv } from '../conv.js';
import { benchOps } from '../ops.js';
import { benchStep } from '../step.js';

const USAGE = 'usage: nudge-gpu doctor [--json] [--toggle T] | tune [options] | bench conv|ops|step [options]';

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'doctor': {
      const toggles: string[] = [];
      rest.forEach((a, i) => a === '--toggle' && rest[i + 1] && toggles.push(rest[i + 1]));
      return doctor({ adapter: undefined, toggles, json: rest.includes('--json') });
    }
    case 'tune':
      return tuneCommand(rest);
    case 'bench': {
      const [suite, ...args] = rest;
      if (suite === 'conv') await benchConv(args);
      else if (suite === 'ops') await benchOps(args);
      else if (suite === 'step') await benchStep(args);
      else {
        console.error(USAGE);
        return 2;
      }
      return 0;
    }
    default:
      console.error(USAGE);
      return 2;
  }
}

main(process.argv.slice(2))
  .then((code) => {
    closeDevice();
    process.exit(code);
  })
  .catch((e: unknown) => {
    closeDevice();
    console.error(`nudge-gpu: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  });
