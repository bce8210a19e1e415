// `npm run bench -- data [--images 400] [--workers 1,2] [--batch 64] [--repeat 3]`
// Prepare throughput (photo-like ~500x375 JPEGs in, shorter side 256 JPEG q90 out) and loader
// throughput (256-px JPEG shards in, RandomResizedCrop 224 + flip out as bytes; normalization
// is the GPU's, Backend.imagesFromU8), per worker count, on generated images. Prepare includes
// worker start-up (it is part of a run); the loader is timed over a second epoch, the median
// of --repeat epochs. CPU ms/img is the whole process's CPU time per image (main thread and
// workers): on a shared machine it moves less than wall-clock rates. Then a one-thread
// profile of the loader's stages on the same shards.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { IMAGENET_MEAN, IMAGENET_STD, ImageLoader, ShardReader, normalizeU8 } from '../tools/data/loader.js';
import { resampleCrop } from '../tools/data/resample.mjs';
import { relaunchWithThreadpool } from '../tools/data/pool.js';
import { MAX_WORKERS, prepare } from '../tools/data/prepare.js';
import { UserError } from '../tools/errors.js';
import { printTable } from './timing.js';

/** A photo-like image: smooth colour fields, edges and mild noise, so JPEG sizes are realistic (~60-120 kB). */
async function photo(w: number, h: number, seed: number): Promise<Buffer> {
  const rng = seedrandom(`bench-photo-${seed}`);
  const px = Buffer.alloc(w * h * 3);
  const cx = rng() * w;
  const cy = rng() * h;
  const f = 0.01 + rng() * 0.05;
  const base = [rng() * 255, rng() * 255, rng() * 255];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = 3 * (y * w + x);
      const r = Math.hypot(x - cx, y - cy);
      const wave = 60 * Math.sin(r * f) + 40 * Math.sin(x * 0.07 + y * 0.03);
      for (let c = 0; c < 3; c++) px[o + c] = Math.max(0, Math.min(255, base[c] + wave * (c + 1) * 0.5 + (rng() - 0.5) * 40));
    }
  }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

export const DATA_BENCH_USAGE = `usage: npm run bench -- data [options]
  --images N     generated source JPEGs (default 400)
  --workers A,B  worker counts to measure, each 1..${MAX_WORKERS} (default 1 and cores-1)
  --batch N      loader batch size (default 64)
  --repeat N     loader epochs timed per worker count; the median is shown (default 3)`;

/** A positive whole number as typed, naming the option when it is not one. */
function count(v: string, name: string, max = 1e7): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) < 1 || Number(v) > max) throw new UserError(`--${name} must be a whole number in 1..${max}, got '${v}'`);
  return Number(v);
}

/** Resolves to the exit code (a relaunched run's). */
export async function benchData(args: string[]): Promise<number> {
  // Arguments first, so that --help and mistakes are answered without a relaunch.
  const { values } = parseArgs({
    args,
    options: {
      images: { type: 'string', default: '400' },
      workers: { type: 'string', default: [...new Set([1, Math.max(1, availableParallelism() - 1)])].join(',') },
      batch: { type: 'string', default: '64' },
      repeat: { type: 'string', default: '3' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(DATA_BENCH_USAGE);
    return 0;
  }
  const n = count(values.images, 'images');
  const workerCounts = values.workers.split(',').map((w) => count(w, 'workers', MAX_WORKERS));
  const batch = count(values.batch, 'batch');
  const repeat = count(values.repeat, 'repeat', 1000);
  // Image workers need a libuv pool as large as they are (see tools/data/pool.ts).
  const relaunched = relaunchWithThreadpool();
  if (relaunched) return relaunched;
  const root = mkdtempSync(join(tmpdir(), 'nudge-bench-data-'));
  try {
    const classes = 10;
    let inBytes = 0;
    const distinct: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const dir = join(root, 'src', 'train', `n0000000${i % classes}`);
      mkdirSync(dir, { recursive: true });
      // ImageNet's typical sizes: 500x375 landscape, some 375x500 portrait and 500x333.
      const [w, h] = i % 5 === 0 ? [375, 500] : i % 5 === 1 ? [500, 333] : [500, 375];
      // 100 distinct images, repeated: content does not change the speed, and generating is slow.
      const jpg = i < 100 ? await photo(w, h, i) : distinct[i % 100];
      if (i < 100) distinct.push(jpg);
      inBytes += jpg.length;
      writeFileSync(join(dir, `img_${String(i).padStart(5, '0')}.JPEG`), jpg);
    }
    console.log(`data: ${n} generated JPEGs, mean ${(inBytes / n / 1024).toFixed(0)} kB, ${availableParallelism()} cores (machine may be shared: numbers are noisy)\n`);
    const rows: (string | number)[][] = [];
    let prepared = '';
    const cpuMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
    for (const w of workerCounts) {
      const out = join(root, `out-${w}`);
      const t0 = performance.now();
      const c0 = cpuMs();
      await prepare({ src: join(root, 'src'), out, splits: ['train'], workers: w, size: 256, shardBytes: 64 << 20 });
      const s = (performance.now() - t0) / 1000;
      rows.push(['prepare 256 q90', String(w), n / s, n / s / w, (cpuMs() - c0) / n]);
      prepared = out;
    }
    for (const w of workerCounts) {
      const loader = new ImageLoader(prepared, { split: 'train', crop: 224, augment: true, seed: 'bench', workers: w });
      // Warm-up: start the workers and page the shards in.
      for await (const b of loader.epoch(0, batch, { depth: 2 })) void b;
      const runs: { rate: number; cpu: number }[] = [];
      for (let r = 0; r < repeat; r++) {
        const t0 = performance.now();
        const c0 = cpuMs();
        let count = 0;
        for await (const b of loader.epoch(1 + r, batch, { depth: 2 })) count += b.n;
        runs.push({ rate: count / ((performance.now() - t0) / 1000), cpu: (cpuMs() - c0) / count });
      }
      runs.sort((a, b) => a.rate - b.rate);
      const med = runs[runs.length >> 1];
      rows.push([`load rrc224+flip (median of ${repeat}: ${runs.map((x) => x.rate.toFixed(0)).join(', ')})`, String(w), med.rate, med.rate / w, med.cpu]);
      await loader.close();
    }
    printTable(['stage', 'workers', 'img/s', 'img/s/worker', 'CPU ms/img'], rows);
    console.log('');
    await profileStages(prepared, Math.min(n, 200));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return 0;
}

/** Where one image's time goes, each stage alone on the main thread (median ms of 3 passes). */
async function profileStages(dir: string, count: number): Promise<void> {
  sharp.concurrency(1);
  const reader = new ShardReader(dir, 'train');
  const loader = new ImageLoader(dir, { split: 'train', crop: 224, augment: true, seed: 'bench', workers: 1 });
  const ids = Array.from({ length: count }, (_, i) => i);
  const files = ids.map((i) => reader.read(i));
  const decoded = await Promise.all(files.map((f) => sharp(f).raw().toBuffer({ resolveWithObject: true })));
  const pixels = decoded.map((d) => new Uint8Array(d.data.buffer, d.data.byteOffset, d.data.length));
  const crops = ids.map((i) => loader.augmentation(i, 1));
  const out = new Uint8Array(224 * 224 * 3);
  const stage = async (name: string, f: (k: number) => unknown) => {
    const passes: number[] = [];
    for (let p = 0; p < 3; p++) {
      const t0 = performance.now();
      for (let k = 0; k < count; k++) await f(k);
      passes.push((performance.now() - t0) / count);
    }
    passes.sort((a, b) => a - b);
    return [name, passes[1], 1000 / passes[1]];
  };
  const rows = [
    await stage('read from shard', (k) => reader.read(k)),
    await stage('sharp metadata (per-call floor)', (k) => sharp(files[k]).metadata()),
    await stage('decode 256-px JPEG (sharp .raw())', (k) => sharp(files[k]).raw().toBuffer()),
    await stage('resample 224 + flip (JS, to bytes)', (k) => resampleCrop(pixels[k], decoded[k].info.width, crops[k].box, 224, crops[k].flip, out)),
    await stage('libvips extract+resize+flop (not used)', (k) =>
      sharp(files[k]).extract(crops[k].box).resize(224, 224, { fit: 'fill', kernel: 'linear' }).flop(crops[k].flip).raw().toBuffer(),
    ),
    await stage('normalize to float32 on the host (now on GPU)', () => normalizeU8(out, IMAGENET_MEAN, IMAGENET_STD)),
    await stage('copy 224x224x3 bytes', () => out.slice()),
  ];
  printTable(['one-thread stage', 'ms/img', 'img/s'], rows);
  reader.close();
  await loader.close();
}
