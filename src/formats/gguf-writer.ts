/**
 * GGUF v3 writer. Streams to disk so multi-gigabyte models never sit in one buffer: tensor data
 * may be given as bytes or as a function producing them when its turn comes.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VALUE, type GgufValueType } from "./gguf.js";
import { byteSize, typeName } from "./ggml-types.js";

/** A metadata entry with its explicit GGUF type (numbers alone do not say which). */
export type GgufEntry =
  | { type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "u64" | "i64" | "f64"; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "u32[]" | "i32[]" | "f32[]" | "u8[]"; value: ArrayLike<number> }
  | { type: "string[]"; value: readonly string[] };

export interface GgufTensorSpec {
  name: string;
  /** ggml order: dims[0] is the row length. */
  dims: number[];
  type: number;
  data: Uint8Array | (() => Uint8Array);
}

const SCALAR: Record<string, GgufValueType> = {
  u8: GGUF_VALUE.UINT8, i8: GGUF_VALUE.INT8, u16: GGUF_VALUE.UINT16, i16: GGUF_VALUE.INT16,
  u32: GGUF_VALUE.UINT32, i32: GGUF_VALUE.INT32, f32: GGUF_VALUE.FLOAT32, u64: GGUF_VALUE.UINT64,
  i64: GGUF_VALUE.INT64, f64: GGUF_VALUE.FLOAT64, bool: GGUF_VALUE.BOOL, string: GGUF_VALUE.STRING,
};

class ByteSink {
  private chunks: Buffer[] = [];
  private cur = Buffer.alloc(1 << 16);
  private pos = 0;
  length = 0;
  private ensure(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.alloc(Math.max(1 << 16, n));
    this.pos = 0;
  }
  u8(v: number): void { this.ensure(1); this.cur.writeUInt8(v, this.pos); this.pos += 1; this.length += 1; }
  u32(v: number): void { this.ensure(4); this.cur.writeUInt32LE(v, this.pos); this.pos += 4; this.length += 4; }
  u64(v: number | bigint): void { this.ensure(8); this.cur.writeBigUInt64LE(BigInt(v), this.pos); this.pos += 8; this.length += 8; }
  bytes(b: Uint8Array): void { this.ensure(b.length); this.cur.set(b, this.pos); this.pos += b.length; this.length += b.length; }
  str(s: string): void { const b = Buffer.from(s, "utf8"); this.u64(b.length); this.bytes(b); }
  scalar(type: GgufValueType, v: number | bigint | boolean | string): void {
    this.ensure(8);
    const c = this.cur;
    const p = this.pos;
    let n: number;
    switch (type) {
      case GGUF_VALUE.UINT8: c.writeUInt8(Number(v), p); n = 1; break;
      case GGUF_VALUE.INT8: c.writeInt8(Number(v), p); n = 1; break;
      case GGUF_VALUE.UINT16: c.writeUInt16LE(Number(v), p); n = 2; break;
      case GGUF_VALUE.INT16: c.writeInt16LE(Number(v), p); n = 2; break;
      case GGUF_VALUE.UINT32: c.writeUInt32LE(Number(v), p); n = 4; break;
      case GGUF_VALUE.INT32: c.writeInt32LE(Number(v), p); n = 4; break;
      case GGUF_VALUE.FLOAT32: c.writeFloatLE(Number(v), p); n = 4; break;
      case GGUF_VALUE.UINT64: c.writeBigUInt64LE(BigInt(v as number), p); n = 8; break;
      case GGUF_VALUE.INT64: c.writeBigInt64LE(BigInt(v as number), p); n = 8; break;
      case GGUF_VALUE.FLOAT64: c.writeDoubleLE(Number(v), p); n = 8; break;
      case GGUF_VALUE.BOOL: c.writeUInt8(v ? 1 : 0, p); n = 1; break;
      case GGUF_VALUE.STRING: this.str(String(v)); return;
      default: throw new RangeError(`bad GGUF scalar type ${type}`);
    }
    this.pos += n;
    this.length += n;
  }
  finish(): Buffer {
    this.chunks.push(this.cur.subarray(0, this.pos));
    return Buffer.concat(this.chunks);
  }
}

function writeEntry(sink: ByteSink, key: string, e: GgufEntry): void {
  sink.str(key);
  if (e.type.endsWith("[]")) {
    sink.u32(GGUF_VALUE.ARRAY);
    const elem = SCALAR[e.type.slice(0, -2)]!;
    sink.u32(elem);
    const arr = e.value as ArrayLike<number | string>;
    sink.u64(arr.length);
    for (let i = 0; i < arr.length; i++) sink.scalar(elem, arr[i]!);
    return;
  }
  const t = SCALAR[e.type]!;
  sink.u32(t);
  sink.scalar(t, e.value as number);
}

/**
 * Writes a GGUF v3 file. `metadata` is written in insertion order; `general.alignment` is added
 * when the alignment is not the default.
 */
export function writeGguf(path: string, metadata: Record<string, GgufEntry>, tensors: GgufTensorSpec[], alignment = GGUF_DEFAULT_ALIGNMENT): void {
  const entries = Object.entries(metadata);
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !("general.alignment" in metadata)) {
    entries.push(["general.alignment", { type: "u32", value: alignment }]);
  }
  const header = new ByteSink();
  header.u32(GGUF_MAGIC);
  header.u32(3);
  header.u64(tensors.length);
  header.u64(entries.length);
  for (const [k, e] of entries) writeEntry(header, k, e);

  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const nElements = t.dims.reduce((a, b) => a * b, 1);
    const bytes = byteSize(t.type, nElements);
    if (bytes === undefined) throw new RangeError(`tensor ${t.name}: ${nElements} elements is not a whole number of ${typeName(t.type)} blocks`);
    header.str(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(t.type);
    header.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(bytes / alignment) * alignment;
  }
  const pad = (Math.ceil(header.length / alignment) * alignment) - header.length;
  header.bytes(new Uint8Array(pad));

  const fd = openSync(path, "w");
  try {
    writeSync(fd, header.finish());
    let written = 0;
    tensors.forEach((t, i) => {
      const data = typeof t.data === "function" ? t.data() : t.data;
      const expected = byteSize(t.type, t.dims.reduce((a, b) => a * b, 1))!;
      if (data.byteLength !== expected) throw new RangeError(`tensor ${t.name}: ${data.byteLength} bytes given, ${expected} expected`);
      if (written < offsets[i]!) { writeSync(fd, new Uint8Array(offsets[i]! - written)); written = offsets[i]!; }
      writeSync(fd, data);
      written += data.byteLength;
    });
    const end = Math.ceil(written / alignment) * alignment;
    if (end > written) writeSync(fd, new Uint8Array(end - written));
  } finally {
    closeSync(fd);
  }
}
