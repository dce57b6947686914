/**
 * safetensors reader and writer. Layout: u64 LE header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data;
 * offsets are relative to the end of the header. A hostile file can lie about every number, so
 * the header length, each range, each shape × dtype size, and overlaps are all checked before any
 * tensor byte is read.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { oerr, quoted } from "../errors.js";
import { type FileBytes, type WholeFile, wholeFile } from "./file-bytes.js";
import { jsonErrorWhere } from "./json.js";

export type SafetensorsDtype = "F32" | "F16" | "BF16" | "F64" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  /** Row-major, outermost first (PyTorch order): a Linear weight is [out, in]. */
  shape: number[];
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  source: string;
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
  /** The file's first min(size, 4 GiB) bytes; tensors through safetensorsData(). */
  bytes: Uint8Array;
  whole: WholeFile;
}

const MAX_HEADER = 100 * 1024 * 1024;

export function parseSafetensors(input: FileBytes, source = "<safetensors>"): SafetensorsFile {
  const { head: bytes, ...whole } = wholeFile(input);
  const bad = (msg: string, details?: Record<string, unknown>) => oerr("SAFETENSORS_HEADER_INVALID", `${source}: ${msg}`, details);
  if (bytes.byteLength < 8) throw oerr("MODEL_FILE_TRUNCATED", `${source}: ${bytes.byteLength} bytes is too short for a safetensors file`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(whole.size - 8)) throw bad(`header claims ${headerLen} bytes but the file has ${whole.size - 8} after the length`);
  if (headerLen > BigInt(MAX_HEADER)) throw bad(`header of ${headerLen} bytes exceeds the ${MAX_HEADER}-byte limit`);
  const n = Number(headerLen);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, n).toString("utf8"));
  } catch (e) {
    throw bad(`header is not valid JSON (${jsonErrorWhere(e)})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw bad("header is not a JSON object");

  const dataStart = 8 + n;
  const dataSize = whole.size - dataStart;
  const tensors = new Map<string, SafetensorsTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad("__metadata__ is not an object");
      metadata = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== "object" || t === null) throw bad(`entry ${quoted(name)} is not an object`);
    if (typeof t.dtype !== "string" || !(t.dtype in DTYPE_BYTES)) {
      throw oerr("MODEL_UNSUPPORTED_TENSOR_TYPE", `${source}: tensor ${quoted(name)} has unsupported dtype ${quoted(t.dtype)}`, { tensor: quoted(name) });
    }
    if (!Array.isArray(t.shape) || t.shape.length > 8 || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`tensor ${quoted(name)} has an invalid shape ${quoted(t.shape)}`, { tensor: quoted(name) });
    }
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw oerr("SAFETENSORS_OFFSETS_INVALID", `${source}: tensor ${quoted(name)} has invalid data_offsets ${quoted(off)}`, { tensor: quoted(name) });
    }
    const [begin, end] = off as [number, number];
    const dtype = t.dtype as SafetensorsDtype;
    const shape = t.shape as number[];
    const elements = shape.reduce((a, b) => a * b, 1);
    const expected = elements * DTYPE_BYTES[dtype];
    if (end < begin || end > dataSize) {
      throw oerr("SAFETENSORS_OFFSETS_INVALID", `${source}: tensor ${quoted(name)} range [${begin}, ${end}) lies outside the ${dataSize}-byte data section`, { tensor: quoted(name) });
    }
    if (end - begin !== expected) {
      throw oerr("SAFETENSORS_OFFSETS_INVALID", `${source}: tensor ${quoted(name)} spans ${end - begin} bytes but shape ${quoted(shape)} × ${dtype} needs ${expected}`, { tensor: quoted(name) });
    }
    tensors.set(name, { name, dtype, shape, offset: dataStart + begin, byteLength: expected });
  }
  const sorted = [...tensors.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]!.offset + sorted[i - 1]!.byteLength > sorted[i]!.offset) {
      throw oerr("SAFETENSORS_OFFSETS_INVALID", `${source}: tensors ${quoted(sorted[i - 1]!.name)} and ${quoted(sorted[i]!.name)} overlap`);
    }
  }
  return { source, tensors, metadata, bytes, whole };
}

/** A view (no copy) of a tensor's bytes. */
export function safetensorsData(file: SafetensorsFile, t: SafetensorsTensor): Uint8Array {
  return new Uint8Array(file.whole.buffer, file.whole.base + t.offset, t.byteLength);
}

export interface SafetensorsTensorSpec {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array | (() => Uint8Array);
}

/** Writes a safetensors file; the header is padded with spaces to a multiple of 8 bytes. */
export function writeSafetensors(path: string, tensors: SafetensorsTensorSpec[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(path, "w");
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const t of tensors) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
      if (data.byteLength !== expected) throw new RangeError(`tensor ${t.name}: ${data.byteLength} bytes given, ${expected} expected`);
      writeSync(fd, data);
    }
  } finally {
    closeSync(fd);
  }
}
