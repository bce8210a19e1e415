// The `nudge` command line.
import { parseArgs } from 'node:util';
import { closeDevice } from '../engine/index.js';
import { doctor } from './doctor.js';
import { UserError } from './errors.js';
import { EVAL_USAGE, TRAIN_USAGE, evalCommand, trainCommand } from './train.js';
import { TUNE_USAGE, tuneCommand } from './tune.js';
import { DATA_USAGE, dataCommand } from './data/command.js';
import { exitWithParent, relaunchWithThreadpool } from './data/pool.js';

const USAGE = `usage: nudge <command> [options]

commands:
  doctor     describe the WebGPU adapter and check that a kernel runs on it
             --adapter <name>   pick an adapter by (part of) its name (also NUDGE_ADAPTER)
             --toggle <t>       enable a Dawn toggle, repeatable (e.g. disable_robustness)
             --json             machine-readable output
${TRAIN_USAGE}
${EVAL_USAGE}
${DATA_USAGE}
${TUNE_USAGE}

exit codes: 0 ok, 1 the command failed, 2 bad usage`;


async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  switch (command) {
    case 'doctor': {
      const { values } = parseArgs({
        args: rest,
        options: {
          adapter: { type: 'string' },
          toggle: { type: 'string', multiple: true },
          json: { type: 'boolean', default: false },
        },
        strict: true,
      });
      return doctor({ adapter: values.adapter, toggles: values.toggle ?? [], json: values.json ?? false });
    }
    case 'train':
      // ImageNet batches are decoded in worker threads, which need a larger libuv pool (tools/data/pool.ts).
      if (rest.some((a) => a.includes('imagenet:'))) {
        const relaunched = relaunchWithThreadpool();
        if (relaunched) return relaunched;
      }
      return trainCommand(rest);
    case 'eval':
      return evalCommand(rest);
    case 'data':
      return dataCommand(rest);
    case 'tune':
      return tuneCommand(rest);
    default:
      console.error(`nudge: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

// A relaunched child (tools/data/pool.ts) must not outlive the process the user started.
exitWithParent();
main(process.argv.slice(2))
  .then((code) => {
    closeDevice();
    process.exit(code);
  })
  .catch((e: unknown) => {
    closeDevice();
    const err = e as Error;
    // Argument errors from parseArgs carry a code; they are usage errors.
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`nudge: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (err instanceof UserError || err.name === 'ShapeError' || err.name === 'NoAdapterError' || err.name === 'NonFiniteError' || err.name === 'DataError') {
      console.error(`nudge: ${err.message}`);
    } else {
      console.error(`nudge: internal error: ${err.stack ?? err.message}`);
    }
    process.exit(1);
  });
