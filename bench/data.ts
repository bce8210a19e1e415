// `npm run bench -- data [--images 400] [--workers 1,2]`
// Prepare throughput (photo-like ~500x375 JPEGs in, shorter side 256 JPEG q90 out) and loader
// throughput (256-px JPEG shards in, RandomResizedCrop 224 + flip + normalize out), per
// worker count, on generated images. Worker start-up is included (it is part of a run).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { ImageLoader } from '../tools/data/loader.js';
import { relaunchWithThreadpool } from '../tools/data/pool.js';
import { prepare } from '../tools/data/prepare.js';
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

export async function benchData(args: string[]): Promise<void> {
  // Image workers need a libuv pool as large as they are (see tools/data/pool.ts).
  const relaunched = relaunchWithThreadpool();
  if (relaunched) {
    const code = await relaunched;
    if (code !== 0) throw new Error(`data bench exited with ${code}`);
    return;
  }
  const { values } = parseArgs({
    args,
    options: {
      images: { type: 'string', default: '400' },
      workers: { type: 'string', default: [...new Set([1, Math.max(1, availableParallelism() - 1)])].join(',') },
      batch: { type: 'string', default: '64' },
    },
  });
  const n = Number(values.images);
  const workerCounts = String(values.workers).split(',').map(Number);
  const batch = Number(values.batch);
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
    for (const w of workerCounts) {
      const out = join(root, `out-${w}`);
      const t0 = performance.now();
      await prepare({ src: join(root, 'src'), out, splits: ['train'], workers: w, size: 256, shardBytes: 64 << 20 });
      const s = (performance.now() - t0) / 1000;
      rows.push(['prepare 256 q90', String(w), n / s, n / s / w]);
      prepared = out;
    }
    for (const w of workerCounts) {
      const loader = new ImageLoader(prepared, { split: 'train', crop: 224, augment: true, seed: 'bench', workers: w });
      // Warm-up: start the workers and page the shards in.
      for await (const b of loader.epoch(0, batch, { depth: 2 })) void b;
      const t0 = performance.now();
      let count = 0;
      for await (const b of loader.epoch(1, batch, { depth: 2 })) count += b.n;
      const s = (performance.now() - t0) / 1000;
      rows.push(['load rrc224+flip', String(w), count / s, count / s / w]);
      await loader.close();
    }
    printTable(['stage', 'workers', 'img/s', 'img/s/worker'], rows);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
