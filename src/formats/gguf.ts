/**
 * GGUF reader (versions 2 and 3). Parses the header, metadata and tensor infos from bytes that
 * are usually a memory map of the whole file, and validates every number the file declares before
 * anything reads tensor data: a hostile file yields a typed OpenLoraError, never a crash or a huge
 * allocation. Tensor data is returned as views into the same bytes (no copy).
 *
 * Layout: "GGUF" u32 version, u64 tensorCount, u64 kvCount, kvCount × (string key, u32 type, value),
 * tensorCount × (string name, u32 nDims, nDims × u64 ne, u32 type, u64 offset), padding to
 * `general.alignment` (default 32), then the data section; offsets are relative to its start.
 */
import { oerr, quoted } from "../errors.js";
import { byteSize, isKnownType, typeName } from "./ggml-types.js";
import { type FileBytes, type WholeFile, wholeFile } from "./file-bytes.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

export const GGUF_VALUE = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GGUF_VALUE)[keyof typeof GGUF_VALUE];

/**
 * Metadata values: integers and floats as number (64-bit integers beyond 2^53 as bigint), strings,
 * booleans; numeric arrays as typed arrays (Int32Array for INT32 etc., Float32Array for FLOAT32),
 * string arrays as string[].
 */
export type GgufScalar = number | bigint | string | boolean;
export type GgufValue = GgufScalar | GgufScalar[] | ArrayBufferView | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (row length). */
  dims: number[];
  type: number;
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
  nElements: number;
}

export interface GgufFile {
  source: string;
  version: number;
  metadata: Map<string, GgufValue>;
  /** The metadata value types as stored, for faithful rewriting. */
  metadataTypes: Map<string, { type: GgufValueType; elemType?: GgufValueType }>;
  tensors: GgufTensorInfo[];
  tensorsByName: Map<string, GgufTensorInfo>;
  alignment: number;
  dataOffset: number;
  /** The file's first min(size, 4 GiB) bytes (its header and metadata); tensors through tensorData(). */
  bytes: Uint8Array;
  whole: WholeFile;
}

const MAX_DIMS = 4;
const MAX_STRING = 1 << 26; // 64 MiB: far above any real key, value or token

class Cursor {
  pos = 0;
  private readonly view: DataView;
  private readonly buf: Buffer;
  constructor(private readonly bytes: Uint8Array, private readonly source: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get remaining(): number {
    return this.bytes.byteLength - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.remaining) {
      throw oerr("MODEL_FILE_TRUNCATED", `${this.source}: file ends inside ${what} (needs ${n} bytes at offset ${this.pos}, ${this.remaining} left)`, { offset: this.pos });
    }
  }
  u8(): number { this.need(1, "a value"); return this.view.getUint8(this.pos++); }
  i8(): number { this.need(1, "a value"); return this.view.getInt8(this.pos++); }
  u16(): number { this.need(2, "a value"); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16(): number { this.need(2, "a value"); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32(): number { this.need(4, "a value"); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(): number { this.need(4, "a value"); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32(): number { this.need(4, "a value"); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64(): number { this.need(8, "a value"); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64(): number | bigint {
    this.need(8, "a value");
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  i64(): number | bigint {
    this.need(8, "a value");
    const v = this.view.getBigInt64(this.pos, true);
    this.pos += 8;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
  }
  /** A u64 that must be a count/size that fits in this file. */
  count(what: string, unitBytes: number): number {
    const at = this.pos;
    const v = this.u64();
    if (typeof v === "bigint" || v * unitBytes > this.remaining) {
      throw oerr("MODEL_FILE_TRUNCATED", `${this.source}: ${what} at offset ${at} is ${v}, more than the ${this.remaining} bytes left`, { offset: at });
    }
    return v;
  }
  str(): string {
    const len = this.count("string length", 1);
    if (len > MAX_STRING) throw oerr("MODEL_METADATA_INVALID", `${this.source}: string of ${len} bytes at offset ${this.pos}`);
    const s = this.buf.toString("utf8", this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
  typed<T extends ArrayBufferView>(n: number, elemBytes: number, make: (b: ArrayBuffer) => T): T {
    this.need(n * elemBytes, "an array");
    const copy = Uint8Array.prototype.slice.call(this.bytes, this.pos, this.pos + n * elemBytes);
    this.pos += n * elemBytes;
    return make(copy.buffer);
  }
}

const SCALAR_BYTES: Partial<Record<number, number>> = {
  0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8,
};

function readScalar(c: Cursor, type: number, where: string): GgufScalar {
  switch (type) {
    case GGUF_VALUE.UINT8: return c.u8();
    case GGUF_VALUE.INT8: return c.i8();
    case GGUF_VALUE.UINT16: return c.u16();
    case GGUF_VALUE.INT16: return c.i16();
    case GGUF_VALUE.UINT32: return c.u32();
    case GGUF_VALUE.INT32: return c.i32();
    case GGUF_VALUE.FLOAT32: return c.f32();
    case GGUF_VALUE.BOOL: {
      const b = c.u8();
      if (b > 1) throw oerr("MODEL_METADATA_INVALID", `${where}: bool value ${b}`);
      return b === 1;
    }
    case GGUF_VALUE.STRING: return c.str();
    case GGUF_VALUE.UINT64: return c.u64();
    case GGUF_VALUE.INT64: return c.i64();
    case GGUF_VALUE.FLOAT64: return c.f64();
    default:
      throw oerr("MODEL_METADATA_INVALID", `${where}: unknown value type ${type}`);
  }
}

function readArray(c: Cursor, where: string, depth: number): { value: GgufValue; elemType: GgufValueType } {
  const elemType = c.u32();
  const minBytes = elemType === GGUF_VALUE.STRING || elemType === GGUF_VALUE.ARRAY ? 8 : SCALAR_BYTES[elemType];
  if (minBytes === undefined) throw oerr("MODEL_METADATA_INVALID", `${where}: unknown array element type ${elemType}`);
  const n = c.count(`${where} array length`, minBytes);
  const v = GGUF_VALUE;
  switch (elemType) {
    case v.INT32: return { value: c.typed(n, 4, (b) => new Int32Array(b)), elemType };
    case v.UINT32: return { value: c.typed(n, 4, (b) => new Uint32Array(b)), elemType };
    case v.FLOAT32: return { value: c.typed(n, 4, (b) => new Float32Array(b)), elemType };
    case v.UINT8: return { value: c.typed(n, 1, (b) => new Uint8Array(b)), elemType };
    case v.INT8: return { value: c.typed(n, 1, (b) => new Int8Array(b)), elemType };
    case v.FLOAT64: return { value: c.typed(n, 8, (b) => new Float64Array(b)), elemType };
    case v.ARRAY: {
      if (depth > 2) throw oerr("MODEL_METADATA_INVALID", `${where}: arrays nested too deep`);
      const out: GgufValue[] = [];
      for (let i = 0; i < n; i++) out.push(readArray(c, where, depth + 1).value);
      return { value: out, elemType };
    }
    default: {
      const out: GgufScalar[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readScalar(c, elemType, where);
      return { value: out, elemType: elemType as GgufValueType };
    }
  }
}

/** Parses and validates a GGUF file held in `input` (openFileBytes: a read or a memory map). */
export function parseGguf(input: FileBytes, source = "<gguf>"): GgufFile {
  // A plain Uint8Array (a Buffer's slice() is a view, not a copy), so views and copies behave.
  const { head: bytes, ...whole } = wholeFile(input);
  if (bytes.byteLength < 4) throw oerr("MODEL_FILE_TRUNCATED", `${source}: ${bytes.byteLength} bytes is too short for a GGUF file`);
  const c = new Cursor(bytes, source);
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    throw oerr("MODEL_BAD_MAGIC", `${source}: not a GGUF file (magic 0x${magic.toString(16).padStart(8, "0")}, expected "GGUF")`);
  }
  const version = c.u32();
  if (version !== 2 && version !== 3) throw oerr("MODEL_UNSUPPORTED_VERSION", `${source}: GGUF version ${version} (supported: 2, 3)`, { version });
  const tensorCount = c.count("tensor count", 8 + 4 + 4 + 8);
  const kvCount = c.count("metadata count", 8 + 4);

  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, { type: GgufValueType; elemType?: GgufValueType }>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.str();
    const type = c.u32();
    const where = `${source}: metadata ${quoted(key)}`;
    if (type === GGUF_VALUE.ARRAY) {
      const { value, elemType } = readArray(c, where, 0);
      metadata.set(key, value);
      metadataTypes.set(key, { type: GGUF_VALUE.ARRAY, elemType });
    } else {
      metadata.set(key, readScalar(c, type, where));
      metadataTypes.set(key, { type: type as GgufValueType });
    }
  }

  const alignmentValue = metadata.get("general.alignment") ?? GGUF_DEFAULT_ALIGNMENT;
  if (typeof alignmentValue !== "number" || alignmentValue < 1 || alignmentValue > 1 << 20 || (alignmentValue & (alignmentValue - 1)) !== 0) {
    throw oerr("MODEL_METADATA_INVALID", `${source}: general.alignment must be a power of two, got ${quoted(alignmentValue)}`);
  }
  const alignment = alignmentValue;

  const infos: Array<Omit<GgufTensorInfo, "offset"> & { relOffset: number }> = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.str();
    const nDims = c.u32();
    if (nDims < 1 || nDims > MAX_DIMS) throw oerr("MODEL_METADATA_INVALID", `${source}: tensor ${quoted(name)} has ${nDims} dimensions`);
    const dims: number[] = [];
    let nElements = 1;
    for (let d = 0; d < nDims; d++) {
      const ne = c.u64();
      if (typeof ne === "bigint" || ne < 0) throw oerr("MODEL_TENSOR_OUT_OF_BOUNDS", `${source}: tensor ${quoted(name)} dimension ${String(ne)} is too large`);
      dims.push(ne);
      nElements *= ne;
      if (!Number.isSafeInteger(nElements)) throw oerr("MODEL_TENSOR_OUT_OF_BOUNDS", `${source}: tensor ${quoted(name)} has too many elements`);
    }
    const type = c.u32();
    const relOffset = c.u64();
    if (!isKnownType(type)) throw oerr("MODEL_UNSUPPORTED_TENSOR_TYPE", `${source}: tensor ${quoted(name)} has unknown ggml type ${type}`, { tensor: quoted(name), type });
    const byteLength = byteSize(type, nElements);
    if (byteLength === undefined || byteSize(type, dims[0]!) === undefined) {
      throw oerr("MODEL_TENSOR_SHAPE_MISMATCH", `${source}: tensor ${quoted(name)} row of ${dims[0]} is not a whole number of ${typeName(type)} blocks`, { tensor: quoted(name) });
    }
    if (typeof relOffset === "bigint") throw oerr("MODEL_TENSOR_OUT_OF_BOUNDS", `${source}: tensor ${quoted(name)} offset is past the end of the file`, { tensor: quoted(name) });
    if (relOffset % alignment !== 0) throw oerr("MODEL_METADATA_INVALID", `${source}: tensor ${quoted(name)} offset ${relOffset} is not aligned to ${alignment}`, { tensor: quoted(name) });
    infos.push({ name, dims, type, relOffset, byteLength, nElements });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const tensors: GgufTensorInfo[] = [];
  const tensorsByName = new Map<string, GgufTensorInfo>();
  for (const { relOffset, ...rest } of infos) {
    const offset = dataOffset + relOffset;
    if (offset + rest.byteLength > whole.size) {
      throw oerr("MODEL_TENSOR_OUT_OF_BOUNDS", `${source}: tensor ${quoted(rest.name)} (${rest.byteLength} bytes at ${offset}) ends past the end of the file (${whole.size} bytes)`, { tensor: quoted(rest.name) });
    }
    if (tensorsByName.has(rest.name)) throw oerr("MODEL_METADATA_INVALID", `${source}: duplicate tensor ${quoted(rest.name)}`);
    const t: GgufTensorInfo = { ...rest, offset };
    tensors.push(t);
    tensorsByName.set(t.name, t);
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.offset + prev.byteLength > sorted[i]!.offset) {
      throw oerr("MODEL_TENSOR_OVERLAP", `${source}: tensors ${quoted(prev.name)} and ${quoted(sorted[i]!.name)} overlap`);
    }
  }
  return { source, version, metadata, metadataTypes, tensors, tensorsByName, alignment, dataOffset, bytes, whole };
}

/** A view (no copy) of a tensor's bytes. */
export function tensorData(file: GgufFile, info: GgufTensorInfo): Uint8Array {
  return new Uint8Array(file.whole.buffer, file.whole.base + info.offset, info.byteLength);
}

// ---- typed metadata accessors: a wrong or missing value is a typed error naming the key ----

export function metaString(file: GgufFile, key: string): string | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw oerr("MODEL_METADATA_INVALID", `${file.source}: ${quoted(key)} should be a string`);
  return v;
}

export function metaNumber(file: GgufFile, key: string): number | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw oerr("MODEL_METADATA_INVALID", `${file.source}: ${quoted(key)} should be a finite number`);
  return v;
}

export function metaBool(file: GgufFile, key: string): boolean | undefined {
  const v = file.metadata.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw oerr("MODEL_METADATA_INVALID", `${file.source}: ${quoted(key)} should be a boolean`);
  return v;
}

export function requireNumber(file: GgufFile, key: string): number {
  const v = metaNumber(file, key);
  if (v === undefined) throw oerr("MODEL_METADATA_INVALID", `${file.source}: required metadata ${quoted(key)} is missing`);
  return v;
}
