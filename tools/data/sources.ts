// Where ImageNet images come from, each in its real layout, reduced to one stream of
// (name, class, bytes) per split:
//   official   ILSVRC2012_img_train.tar (1000 per-class nXXXXXXXX.tar inside),
//              ILSVRC2012_img_val.tar (flat ILSVRC2012_val_000000NN.JPEG),
//              ILSVRC2012_devkit_t12.tar.gz (data/meta.mat, data/ILSVRC2012_validation_ground_truth.txt)
//   kaggle     LOC_synset_mapping.txt, LOC_val_solution.csv, ILSVRC/Data/CLS-LOC/{train/<wnid>/,val/}
//   hf         Hugging Face ILSVRC/imagenet-1k parquet shards (image {bytes, path}, label in sorted-wnid order)
//   folder     any class-per-folder tree: <root>/train/<class>/*, <root>/val/<class>/*
//   idx        MNIST / Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-...): val = t10k
// A class's index is the position of its wnid (or folder name) in sorted order.
import { Dirent, Stats, existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, join, sep } from 'node:path';

import { DataError, readIdx } from './idx.js';
import { MatValue, matNumber, matString, readMat } from './matv5.js';
import { entryNameProblem, openArchive, shownName, tarFiles } from './tar.js';
import { IMAGENET_WNIDS } from './wnids.js';

export type Split = 'train' | 'val';

export interface SourceItem {
  /** Where the image came from, unique within the split (for reports). */
  name: string;
  /** Class id (wnid, or folder name for a generic tree). */
  cls: string;
  bytes: Buffer;
  /** Raw pixels (IDX sources) instead of an encoded image file. */
  raw?: { width: number; height: number; channels: number };
}

/** An entry refused before decoding (unsafe path, unknown class). */
export interface SourceReject {
  name: string;
  reason: string;
}

export interface SplitSource {
  split: Split;
  /** Files read, for the manifest. */
  inputs: string[];
  /** Images per class when the source states it (the devkit, the ground truth). */
  expected?: Map<string, number>;
  /** Source order, deterministic for the same input. Rejects go to the callback. */
  items(onReject: (r: SourceReject) => void): AsyncGenerator<SourceItem>;
}

export interface Source {
  kind: 'official' | 'kaggle' | 'hf' | 'folder' | 'idx';
  root: string;
  /** All classes of the source, sorted. */
  classes: string[];
  words?: Map<string, string>;
  splits: Partial<Record<Split, SplitSource>>;
}

export const OFFICIAL = {
  train: 'ILSVRC2012_img_train.tar',
  val: 'ILSVRC2012_img_val.tar',
  devkit: 'ILSVRC2012_devkit_t12.tar.gz',
};
export const FULL_COUNTS: Record<Split, number> = { train: 1_281_167, val: 50_000 };

const IMAGE_EXT = /\.(jpe?g|png|webp|bmp|tiff?)$/i;
/** Larger image files are rejected unread (ImageNet's largest is a few MB). */
export const MAX_IMAGE_BYTES = 256 << 20;
/** The devkit's members are a few MB; more is refused before it is held in memory. */
export const MAX_DEVKIT_MEMBER_BYTES = 64 << 20;
/** The whole devkit inflated: a few MB for the real one, so anything near this is a gzip bomb. */
export const MAX_DEVKIT_BYTES = 256 << 20;
/** Text files a layout names (Kaggle's CSVs), read whole. */
const MAX_TEXT_BYTES = 256 << 20;

const LINK_OUT = 'symlink that leaves the source folder (or dangles)';
const tooLarge = (n: number, max: number) => `${n} bytes, more than the ${max >> 20} MiB allowed`;

// ---------- the devkit ----------

export interface Devkit {
  /** ILSVRC2012_ID (1..1000) -> wnid; NOT sorted-wnid order. */
  idToWnid: Map<number, string>;
  words: Map<string, string>;
  trainCounts: Map<string, number>;
  /** The wnid of validation image k (1-based) at index k-1. */
  valWnids: string[];
}

/** The synsets struct of meta.mat: the 1000 leaf classes with their ILSVRC2012 ids. */
export function parseMeta(bytes: Uint8Array, what: string): Pick<Devkit, 'idToWnid' | 'words' | 'trainCounts'> {
  const vars = readMat(bytes, what);
  const synsets = vars.synsets;
  if (!synsets || synsets.kind !== 'struct') throw new DataError(`${what}: no 'synsets' struct`);
  const idToWnid = new Map<number, string>();
  const words = new Map<string, string>();
  const trainCounts = new Map<string, number>();
  for (const [i, s] of synsets.elements.entries()) {
    const id = matNumber(s.ILSVRC2012_ID, `${what}: synsets(${i + 1}).ILSVRC2012_ID`);
    const children = s.num_children ? matNumber(s.num_children, `${what}: synsets(${i + 1}).num_children`) : 0;
    // Entries past 1000 are the inner nodes of the WordNet hierarchy, not classes.
    if (id < 1 || id > 1000 || children !== 0) continue;
    const wnid = matString(s.WNID, `${what}: synsets(${i + 1}).WNID`);
    idToWnid.set(id, wnid);
    if (s.words) words.set(wnid, matString(s.words as MatValue, `${what}: synsets(${i + 1}).words`));
    if (s.num_train_images) trainCounts.set(wnid, matNumber(s.num_train_images, `${what}: synsets(${i + 1}).num_train_images`));
  }
  if (idToWnid.size === 0) throw new DataError(`${what}: no leaf synsets with ILSVRC2012_ID in 1..1000`);
  return { idToWnid, words, trainCounts };
}

export function parseValGroundTruth(text: string, idToWnid: Map<number, string>, what: string): string[] {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return lines.map((l, k) => {
    const id = Number(l);
    const wnid = idToWnid.get(id);
    if (!Number.isInteger(id) || !wnid) throw new DataError(`${what}: line ${k + 1}: '${l}' is not an ILSVRC2012_ID of meta.mat`);
    return wnid;
  });
}

export async function readDevkit(path: string): Promise<Devkit> {
  let meta: Buffer | undefined;
  let gt: string | undefined;
  const member = (f: { name: string; size: number; read(): Promise<Buffer> }) => {
    if (f.size > MAX_DEVKIT_MEMBER_BYTES) throw new DataError(`${path}: ${shownName(f.name)} is ${tooLarge(f.size, MAX_DEVKIT_MEMBER_BYTES)}; not the devkit's`);
    return f.read();
  };
  for await (const f of tarFiles(openArchive(path, { maxBytes: MAX_DEVKIT_BYTES }), path)) {
    if (f.name.endsWith('data/meta.mat')) meta = await member(f);
    else if (f.name.endsWith('data/ILSVRC2012_validation_ground_truth.txt')) gt = (await member(f)).toString('utf8');
  }
  if (!meta) throw new DataError(`${path}: no data/meta.mat inside (is this ${OFFICIAL.devkit}?)`);
  if (gt === undefined) throw new DataError(`${path}: no data/ILSVRC2012_validation_ground_truth.txt inside`);
  const m = parseMeta(meta, `${path}:meta.mat`);
  return { ...m, valWnids: parseValGroundTruth(gt, m.idToWnid, `${path}:ILSVRC2012_validation_ground_truth.txt`) };
}

/** ILSVRC2012_val_00000042.JPEG (or dir/ILSVRC2012_val_00000042.JPEG) -> 42 */
export function valNumber(name: string): number | undefined {
  const m = /(?:^|[\\/])ILSVRC2012_val_(\d{8})\.JPEG$/i.exec(name);
  return m ? Number(m[1]) : undefined;
}

function counts(wnids: Iterable<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const w of wnids) m.set(w, (m.get(w) ?? 0) + 1);
  return m;
}

// ---------- official archives ----------

async function officialSource(root: string): Promise<Source> {
  const trainTar = join(root, OFFICIAL.train);
  const valTar = join(root, OFFICIAL.val);
  const devkitPath = join(root, OFFICIAL.devkit);
  const devkit = existsSync(devkitPath) ? await readDevkit(devkitPath) : undefined;
  const classes = devkit ? [...devkit.idToWnid.values()].sort() : [...IMAGENET_WNIDS];
  const known = new Set(classes);
  const splits: Source['splits'] = {};
  if (existsSync(trainTar)) {
    splits.train = {
      split: 'train',
      inputs: [trainTar],
      expected: devkit && devkit.trainCounts.size > 0 ? devkit.trainCounts : undefined,
      async *items(onReject) {
        const seenClasses = new Set<string>();
        for await (const outer of tarFiles(openArchive(trainTar), trainTar)) {
          const problem = entryNameProblem(outer.name);
          if (problem) {
            onReject({ name: shownName(outer.name), reason: problem });
            continue;
          }
          const wnid = basename(outer.name).replace(/\.tar$/, '');
          if (!outer.name.endsWith('.tar') || !known.has(wnid)) {
            onReject({ name: outer.name, reason: `not a per-class tar of a known class` });
            continue;
          }
          // A second tar of the same class would count its images twice.
          if (seenClasses.has(wnid)) {
            onReject({ name: outer.name, reason: 'a second tar of this class' });
            continue;
          }
          seenClasses.add(wnid);
          const seen = new Set<string>();
          for await (const f of tarFiles(outer.stream, `${trainTar}:${outer.name}`)) {
            const bad = entryNameProblem(f.name);
            const name = `${wnid}/${bad ? shownName(f.name) : f.name}`;
            if (bad) onReject({ name, reason: bad });
            else if (!IMAGE_EXT.test(f.name)) continue;
            else if (seen.has(f.name)) onReject({ name, reason: 'a second entry of this name' });
            else if (f.size > MAX_IMAGE_BYTES) onReject({ name, reason: tooLarge(f.size, MAX_IMAGE_BYTES) });
            else {
              seen.add(f.name);
              yield { name, cls: wnid, bytes: await f.read() };
            }
          }
        }
      },
    };
  }
  if (existsSync(valTar)) {
    if (!devkit) throw new DataError(`${valTar} needs the labels in ${OFFICIAL.devkit}: put it next to it in ${root}`);
    splits.val = {
      split: 'val',
      inputs: [valTar, devkitPath],
      expected: counts(devkit.valWnids),
      async *items(onReject) {
        const seen = new Set<number>();
        for await (const f of tarFiles(openArchive(valTar), valTar)) {
          const problem = entryNameProblem(f.name);
          if (problem) {
            onReject({ name: shownName(f.name), reason: problem });
            continue;
          }
          const k = valNumber(f.name);
          const wnid = k !== undefined ? devkit.valWnids[k - 1] : undefined;
          if (!wnid) {
            onReject({ name: f.name, reason: 'no ground-truth label for this file name' });
            continue;
          }
          // Two entries of one number (dir/ and flat, say) would put one image in twice.
          if (seen.has(k!)) {
            onReject({ name: f.name, reason: `a second entry for validation image ${k}` });
            continue;
          }
          if (f.size > MAX_IMAGE_BYTES) {
            onReject({ name: f.name, reason: tooLarge(f.size, MAX_IMAGE_BYTES) });
            continue;
          }
          seen.add(k!);
          yield { name: f.name, cls: wnid, bytes: await f.read() };
        }
      },
    };
  }
  return { kind: 'official', root, classes, words: devkit?.words, splits };
}

// ---------- directory trees (Kaggle, class-per-folder) ----------

function fsError(path: string, e: unknown): DataError {
  return new DataError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
}

function sortedDir(dir: string): string[] {
  return sortedEntries(dir).map((d) => d.name);
}

function sortedEntries(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (e) {
    throw fsError(dir, e);
  }
}

function stat(path: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    throw fsError(path, e);
  }
}

function readText(path: string): string {
  const st = stat(path);
  if (st.size > MAX_TEXT_BYTES) throw new DataError(`${path}: ${tooLarge(st.size, MAX_TEXT_BYTES)}`);
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw fsError(path, e);
  }
}

/**
 * Symlinks are followed only while they stay inside the source folder: a downloaded tree
 * could otherwise pack any file the user can read (~/.ssh, /etc) into the shards.
 */
class Tree {
  readonly real: string;

  constructor(readonly root: string) {
    this.real = realpathSync.native(root);
  }

  /** Whether `path` resolves inside the root (a dangling link does not). */
  inside(path: string): boolean {
    let r: string;
    try {
      r = realpathSync.native(path);
    } catch {
      return false;
    }
    return r === this.real || r.startsWith(this.real.endsWith(sep) ? this.real : this.real + sep);
  }

  /** A folder we are about to list: the split folders may be links too. */
  private enter(dir: string): Dirent[] {
    if (!this.inside(dir)) throw new DataError(`${dir} leads outside ${this.root} (a symlink?): links are followed only inside the source folder`);
    return sortedEntries(dir);
  }

  /** A class folder's image files in name order, each read or rejected. */
  *images(dir: string, label: string, onReject: (r: SourceReject) => void): Generator<{ name: string; bytes: Buffer }> {
    for (const d of this.enter(dir)) {
      if (!IMAGE_EXT.test(d.name)) continue;
      const name = label ? `${label}/${d.name}` : d.name;
      const path = join(dir, d.name);
      if (d.isSymbolicLink() && !this.inside(path)) {
        onReject({ name: shownName(name), reason: LINK_OUT });
        continue;
      }
      // Names go into reports and the manifest, one per line.
      if (/[\x00-\x1f\x7f]/.test(name)) {
        onReject({ name: shownName(name), reason: 'control characters in the name' });
        continue;
      }
      const st = stat(path);
      // A FIFO named x.JPEG would block the read forever.
      if (!st.isFile()) onReject({ name: shownName(name), reason: 'not a regular file' });
      else if (st.size > MAX_IMAGE_BYTES) onReject({ name: shownName(name), reason: tooLarge(st.size, MAX_IMAGE_BYTES) });
      else {
        let bytes: Buffer;
        try {
          bytes = readFileSync(path);
        } catch (e) {
          throw fsError(path, e);
        }
        yield { name, bytes };
      }
    }
  }

  /** The sub-folders of dir (links to folders inside the root included); links leaving it are rejected. */
  folders(dir: string, onReject?: (r: SourceReject) => void): string[] {
    const out: string[] = [];
    for (const d of this.enter(dir)) {
      const path = join(dir, d.name);
      if (d.isSymbolicLink()) {
        if (!this.inside(path)) onReject?.({ name: shownName(d.name), reason: LINK_OUT });
        else if (stat(path).isDirectory()) out.push(d.name);
      } else if (d.isDirectory()) out.push(d.name);
    }
    return out;
  }
}

function classFolderSplit(split: Split, dir: string, known: Set<string>, tree: Tree): SplitSource {
  return {
    split,
    inputs: [dir],
    async *items(onReject) {
      for (const cls of tree.folders(dir, onReject)) {
        if (!known.has(cls)) {
          onReject({ name: shownName(cls), reason: 'class folder not in the class list' });
          continue;
        }
        for (const f of tree.images(join(dir, cls), cls, onReject)) yield { name: f.name, cls, bytes: f.bytes };
      }
    },
  };
}

function kaggleSource(root: string): Source {
  const tree = new Tree(root);
  const mapping = readText(join(root, 'LOC_synset_mapping.txt'));
  const words = new Map<string, string>();
  for (const line of mapping.split('\n')) {
    const m = /^(n\d{8})\s+(.*)$/.exec(line.trim());
    if (m) words.set(m[1], m[2]);
  }
  const classes = [...words.keys()].sort();
  const known = new Set(classes);
  const base = join(root, 'ILSVRC', 'Data', 'CLS-LOC');
  const splits: Source['splits'] = {};
  if (existsSync(join(base, 'train'))) splits.train = classFolderSplit('train', join(base, 'train'), known, tree);
  const solution = join(root, 'LOC_val_solution.csv');
  const valDir = join(base, 'val');
  if (existsSync(valDir)) {
    if (!existsSync(solution)) throw new DataError(`${valDir} needs its labels: LOC_val_solution.csv not found in ${root}`);
    const labels = new Map<string, string>();
    const rows = readText(solution).split('\n').slice(1);
    for (const [i, row] of rows.entries()) {
      if (!row.trim()) continue;
      const [id, pred] = row.split(',');
      const wnid = pred?.trim().split(/\s+/)[0];
      if (!id || !wnid || !known.has(wnid)) throw new DataError(`${solution}: line ${i + 2}: no known wnid in '${row.trim()}'`);
      labels.set(id.trim(), wnid);
    }
    splits.val = {
      split: 'val',
      inputs: [valDir, solution],
      expected: counts(labels.values()),
      async *items(onReject) {
        for (const f of tree.images(valDir, '', onReject)) {
          const wnid = labels.get(f.name.replace(/\.[^.]+$/, ''));
          if (!wnid) onReject({ name: shownName(f.name), reason: 'not in LOC_val_solution.csv' });
          else yield { name: f.name, cls: wnid, bytes: f.bytes };
        }
      },
    };
  }
  return { kind: 'kaggle', root, classes, words, splits };
}

function folderSource(root: string): Source {
  const tree = new Tree(root);
  const trainDir = join(root, 'train');
  const valDir = ['val', 'validation'].map((d) => join(root, d)).find((d) => existsSync(d));
  const classSet = new Set<string>();
  for (const d of [trainDir, valDir]) {
    if (!d || !existsSync(d)) continue;
    for (const c of tree.folders(d)) classSet.add(c);
  }
  const classes = [...classSet].sort();
  const splits: Source['splits'] = {};
  if (existsSync(trainDir)) splits.train = classFolderSplit('train', trainDir, classSet, tree);
  if (valDir) splits.val = classFolderSplit('val', valDir, classSet, tree);
  return { kind: 'folder', root, classes, splits };
}

// ---------- Hugging Face parquet shards ----------

function parquetFiles(root: string): Record<Split, string[]> {
  const dir = existsSync(join(root, 'data')) ? join(root, 'data') : root;
  const files = sortedDir(dir).filter((f) => f.endsWith('.parquet'));
  return {
    train: files.filter((f) => f.startsWith('train')).map((f) => join(dir, f)),
    val: files.filter((f) => f.startsWith('validation') || f.startsWith('val')).map((f) => join(dir, f)),
  };
}

function hfSplit(split: Split, files: string[]): SplitSource {
  return {
    split,
    inputs: files,
    async *items(onReject) {
      const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet');
      for (const path of files) {
        const file = await asyncBufferFromFile(path);
        let meta;
        try {
          meta = await parquetMetadataAsync(file);
        } catch (e) {
          throw new DataError(`${path}: not a readable parquet file (${shownName((e as Error).message)})`);
        }
        // One row group at a time: a shard's images never all sit in memory together.
        let rowStart = 0;
        for (const [g, rg] of meta.row_groups.entries()) {
          const claimed = Number(rg.num_rows);
          // hyparquet returns what the columns hold, so a row count that lies would drop or
          // shift rows without a word: the count must match the label and image columns.
          if (!(Number.isSafeInteger(claimed) && claimed >= 0)) throw new DataError(`${path}: row group ${g} claims ${rg.num_rows} rows`);
          for (const c of rg.columns ?? []) {
            const col = c.meta_data?.path_in_schema?.join('.');
            if ((col === 'label' || col === 'image.bytes') && Number(c.meta_data!.num_values) !== claimed) {
              throw new DataError(`${path}: row group ${g} claims ${claimed} rows but its ${col} column holds ${c.meta_data!.num_values} values`);
            }
          }
          const rowEnd = rowStart + claimed;
          let rows: Record<string, unknown>[];
          try {
            rows = await parquetReadObjects({ file, metadata: meta, rowStart, rowEnd, columns: ['image', 'label'], utf8: false });
          } catch (e) {
            // hyparquet decodes snappy itself; gzip/zstd/brotli pages would need hyparquet-compressors.
            throw new DataError(`${path}: cannot read rows ${rowStart}-${rowEnd - 1} (${shownName((e as Error).message)}); is it an imagenet-1k shard with image {bytes, path} and label columns?`);
          }
          if (rows.length !== claimed) throw new DataError(`${path}: row group ${g} claims ${claimed} rows but ${rows.length} were read`);
          for (const [i, row] of rows.entries()) {
            const name = `${basename(path)}#${rowStart + i}`;
            const image = row.image as { bytes?: Uint8Array; path?: unknown } | undefined;
            const label = Number(row.label);
            if (!image?.bytes || !(image.bytes instanceof Uint8Array)) onReject({ name, reason: 'no image bytes' });
            else if (!Number.isInteger(label) || label < 0 || label >= IMAGENET_WNIDS.length) onReject({ name, reason: `label ${row.label} out of range (test split?)` });
            else yield { name, cls: IMAGENET_WNIDS[label], bytes: Buffer.from(image.bytes.buffer, image.bytes.byteOffset, image.bytes.byteLength) };
          }
          rowStart = rowEnd;
        }
      }
    },
  };
}

function hfSource(root: string): Source {
  const f = parquetFiles(root);
  const splits: Source['splits'] = {};
  if (f.train.length) splits.train = hfSplit('train', f.train);
  if (f.val.length) splits.val = hfSplit('val', f.val);
  return { kind: 'hf', root, classes: [...IMAGENET_WNIDS], splits };
}

// ---------- MNIST-format IDX files ----------

function idxPaths(root: string, prefix: 'train' | 't10k'): { images: string; labels: string } | undefined {
  const pick = (kind: string) => [`${prefix}-${kind}-ubyte`, `${prefix}-${kind}-ubyte.gz`].map((f) => join(root, f)).find((f) => existsSync(f));
  const images = pick('images-idx3');
  const labels = pick('labels-idx1');
  return images && labels ? { images, labels } : undefined;
}

function idxSplit(split: Split, paths: { images: string; labels: string }): SplitSource {
  const images = readIdx(paths.images);
  const labels = readIdx(paths.labels);
  if (images.dims.length !== 3 || labels.dims[0] !== images.dims[0]) throw new DataError(`${paths.images}: dims [${images.dims.join(',')}] do not match ${labels.dims[0]} labels`);
  const [n, h, w] = images.dims;
  return {
    split,
    inputs: [paths.images, paths.labels],
    expected: counts(Array.from(labels.data, (l) => String(l))),
    async *items(onReject) {
      for (let i = 0; i < n; i++) {
        const label = labels.data[i];
        if (label > 9) {
          onReject({ name: `${split}#${i}`, reason: `label ${label} is not a digit class` });
          continue;
        }
        yield { name: `${split}#${i}`, cls: String(label), bytes: Buffer.from(images.data.subarray(i * h * w, (i + 1) * h * w)), raw: { width: w, height: h, channels: 1 } };
      }
    },
  };
}

function idxSource(root: string): Source {
  const splits: Source['splits'] = {};
  const train = idxPaths(root, 'train');
  const test = idxPaths(root, 't10k');
  if (train) splits.train = idxSplit('train', train);
  if (test) splits.val = idxSplit('val', test);
  return { kind: 'idx', root, classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], splits };
}

// ---------- detection ----------

/** Recognizes the layout under `root`. */
export async function openSource(root: string): Promise<Source> {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new DataError(`${root}: not a directory`);
  let src: Source;
  if (existsSync(join(root, OFFICIAL.train)) || existsSync(join(root, OFFICIAL.val))) src = await officialSource(root);
  else if (existsSync(join(root, 'LOC_synset_mapping.txt'))) src = kaggleSource(root);
  else if (parquetFiles(root).train.length || parquetFiles(root).val.length) src = hfSource(root);
  else if (idxPaths(root, 'train') || idxPaths(root, 't10k')) src = idxSource(root);
  else if (existsSync(join(root, 'train')) || existsSync(join(root, 'val')) || existsSync(join(root, 'validation'))) src = folderSource(root);
  else {
    throw new DataError(
      `${root}: no known ImageNet layout (expected ${OFFICIAL.train}/${OFFICIAL.val} + ${OFFICIAL.devkit}, ` +
        `Kaggle's LOC_synset_mapping.txt, Hugging Face *.parquet shards, MNIST-format IDX files, or train/<class>/ and val/<class>/ folders)`,
    );
  }
  if (!src.splits.train && !src.splits.val) throw new DataError(`${root}: found a ${src.kind} layout but no train or val images`);
  return src;
}
