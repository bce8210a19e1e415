// A minimal parquet writer for test fixtures (no parquet writer is installed): one column
// schema like the Hugging Face imagenet-1k shards, image {bytes, path} + label int64, all
// REQUIRED, PLAIN-encoded, uncompressed, v1 data pages, metadata in Thrift compact protocol.
// Several row groups, so readers must walk them.

type Field = [id: number, type: number, value: unknown];
const T = { I32: 5, I64: 6, BINARY: 8, LIST: 9, STRUCT: 12 };

class Compact {
  bytes: number[] = [];

  varint(n: number): void {
    let v = n;
    while (v >= 0x80) {
      this.bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.bytes.push(v);
  }

  zigzag(n: number): void {
    this.varint(n >= 0 ? 2 * n : -2 * n - 1);
  }

  value(type: number, v: unknown): void {
    if (type === T.I32 || type === T.I64) this.zigzag(v as number);
    else if (type === T.BINARY) {
      const b = typeof v === 'string' ? Buffer.from(v) : (v as Buffer);
      this.varint(b.length);
      this.bytes.push(...b);
    } else if (type === T.STRUCT) this.struct(v as Field[]);
    else if (type === T.LIST) {
      const { elem, items } = v as { elem: number; items: unknown[] };
      if (items.length < 15) this.bytes.push((items.length << 4) | elem);
      else {
        this.bytes.push(0xf0 | elem);
        this.varint(items.length);
      }
      for (const it of items) this.value(elem, it);
    }
  }

  struct(fields: Field[]): void {
    let last = 0;
    for (const [id, type, v] of fields) {
      this.bytes.push(((id - last) << 4) | type);
      last = id;
      this.value(type, v);
    }
    this.bytes.push(0);
  }
}

function thrift(fields: Field[]): Buffer {
  const c = new Compact();
  c.struct(fields);
  return Buffer.from(c.bytes);
}

const BYTE_ARRAY = 6;
const INT64 = 2;
const REQUIRED = 0;

interface Column {
  path: string[];
  type: number;
  values: (Buffer | number)[];
}

function plain(col: Column): Buffer {
  if (col.type === INT64) {
    const b = Buffer.alloc(8 * col.values.length);
    col.values.forEach((v, i) => b.writeBigInt64LE(BigInt(v as number), 8 * i));
    return b;
  }
  return Buffer.concat(
    col.values.map((v) => {
      const len = Buffer.alloc(4);
      len.writeUInt32LE((v as Buffer).length);
      return Buffer.concat([len, v as Buffer]);
    }),
  );
}

export interface ParquetRow {
  bytes: Buffer;
  path: string;
  label: number;
}

export function writeImageParquet(rows: ParquetRow[], rowsPerGroup: number): Buffer {
  const parts: Buffer[] = [Buffer.from('PAR1')];
  let offset = 4;
  const rowGroups: Field[][] = [];
  for (let start = 0; start < rows.length; start += rowsPerGroup) {
    const group = rows.slice(start, start + rowsPerGroup);
    const columns: Column[] = [
      { path: ['image', 'bytes'], type: BYTE_ARRAY, values: group.map((r) => r.bytes) },
      { path: ['image', 'path'], type: BYTE_ARRAY, values: group.map((r) => Buffer.from(r.path)) },
      { path: ['label'], type: INT64, values: group.map((r) => r.label) },
    ];
    const chunks: Field[][] = [];
    let groupBytes = 0;
    for (const col of columns) {
      const data = plain(col);
      const header = thrift([
        [1, T.I32, 0], // DATA_PAGE
        [2, T.I32, data.length],
        [3, T.I32, data.length],
        [5, T.STRUCT, [[1, T.I32, col.values.length], [2, T.I32, 0], [3, T.I32, 3], [4, T.I32, 3]]],
      ]);
      const pageOffset = offset;
      parts.push(header, data);
      offset += header.length + data.length;
      groupBytes += header.length + data.length;
      chunks.push([
        [2, T.I64, pageOffset],
        [
          3,
          T.STRUCT,
          [
            [1, T.I32, col.type],
            [2, T.LIST, { elem: T.I32, items: [0] }],
            [3, T.LIST, { elem: T.BINARY, items: col.path }],
            [4, T.I32, 0], // UNCOMPRESSED
            [5, T.I64, col.values.length],
            [6, T.I64, header.length + data.length],
            [7, T.I64, header.length + data.length],
            [9, T.I64, pageOffset],
          ],
        ],
      ]);
    }
    rowGroups.push([
      [1, T.LIST, { elem: T.STRUCT, items: chunks }],
      [2, T.I64, groupBytes],
      [3, T.I64, group.length],
    ]);
  }
  const schema: Field[][] = [
    [[4, T.BINARY, 'schema'], [5, T.I32, 2]],
    [[3, T.I32, REQUIRED], [4, T.BINARY, 'image'], [5, T.I32, 2]],
    [[1, T.I32, BYTE_ARRAY], [3, T.I32, REQUIRED], [4, T.BINARY, 'bytes']],
    [[1, T.I32, BYTE_ARRAY], [3, T.I32, REQUIRED], [4, T.BINARY, 'path'], [6, T.I32, 0]],
    [[1, T.I32, INT64], [3, T.I32, REQUIRED], [4, T.BINARY, 'label']],
  ];
  const meta = thrift([
    [1, T.I32, 1],
    [2, T.LIST, { elem: T.STRUCT, items: schema }],
    [3, T.I64, rows.length],
    [4, T.LIST, { elem: T.STRUCT, items: rowGroups }],
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(meta.length);
  parts.push(meta, len, Buffer.from('PAR1'));
  return Buffer.concat(parts);
}
