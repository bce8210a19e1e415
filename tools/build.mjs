// Bundles the command line and the bench runner with esbuild into dist/.
// npm packages stay external (webgpu is a native addon; the others resolve from node_modules).
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
};

await Promise.all([
  build({ ...common, entryPoints: ['tools/cli.ts'], outfile: 'dist/nudge.mjs', banner: { js: '#!/usr/bin/env node' } }),
  build({ ...common, entryPoints: ['bench/main.ts'], outfile: 'dist/bench.mjs' }),
  // Image worker threads load this file from next to the bundle (see tools/data/pool.ts).
  build({ ...common, entryPoints: ['tools/data/data-worker.mjs'], outfile: 'dist/data-worker.mjs' }),
]);
