/**
 * The span index file: one binary file per published Datanet version, written once.
 *
 *   offset  size        field
 *   0       8           magic "OLSPANIX"
 *   8       4           format version (1), u32 LE
 *   12      4           header bytes (64)
 *   16      4           text length n (tokens + one separator per record)
 *   20      4           record count R
 *   24      4           tokenLimit (largest token id + 1)
 *   28      4           string table bytes S
 *   32      32          SHA-256 of everything after the header
 *   64      4n          text, i32 LE
 *           4n          suffix array, i32 LE
 *           4(R+1)      record starts, i32 LE
 *           S           UTF-8 JSON [[recordId, contributor], …]
 *
 * Loading checks size, magic, version and checksum, then the arrays' structure
 * (SpanIndex.fromParts). Every failure is an OpenLoraError INVALID_ARGUMENT whose
 * details.reason names the problem (SpanIndexFileProblem).
 */
import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { OpenLoraError } from "../../errors.js";
import { SpanIndex } from "./span-index.js";

export const SPAN_INDEX_MAGIC = "OLSPANIX";
export const SPAN_INDEX_FORMAT_VERSION = 1;
const HEADER_BYTES = 64;
const CHUNK = 1 << 30;

export type SpanIndexFileProblem =
  | "unreadable" | "truncated" | "trailing-bytes" | "bad-magic" | "unsupported-version"
  | "bad-header" | "checksum" | "strings" | "structure";

function fileError(reason: SpanIndexFileProblem, message: string, details: Record<string, unknown> = {}, cause?: unknown): OpenLoraError {
  return new OpenLoraError("INVALID_ARGUMENT", `span index file: ${message}`, { reason, ...details }, { cause });
}

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
    throw new OpenLoraError("INTERNAL", "span index files are little-endian; this platform is not");
  }
}

const bytesOf = (a: Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Writes the index to `path` (via a temporary file and a rename, so readers never see half a file). */
export function writeSpanIndexFile(index: SpanIndex, path: string): void {
  assertLittleEndian();
  const { text, suffixArray, recordStarts, tokenLimit, recordIds, contributors } = index.parts;
  const strings = Buffer.from(JSON.stringify(recordIds.map((id, r) => [id, contributors[r]])), "utf8");
  const body = [bytesOf(text), bytesOf(suffixArray), bytesOf(recordStarts), strings];
  const hash = createHash("sha256");
  for (const part of body) hash.update(part);

  const header = Buffer.alloc(HEADER_BYTES);
  header.write(SPAN_INDEX_MAGIC, 0, "latin1");
  header.writeUInt32LE(SPAN_INDEX_FORMAT_VERSION, 8);
  header.writeUInt32LE(HEADER_BYTES, 12);
  header.writeUInt32LE(text.length, 16);
  header.writeUInt32LE(recordIds.length, 20);
  header.writeUInt32LE(tokenLimit, 24);
  header.writeUInt32LE(strings.length, 28);
  hash.digest().copy(header, 32);

  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    for (const part of [header, ...body]) {
      for (let off = 0; off < part.length; off += CHUNK) {
        const len = Math.min(CHUNK, part.length - off);
        let done = 0;
        while (done < len) done += writeSync(fd, part, off + done, len - done);
      }
    }
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Reads and validates an index written by writeSpanIndexFile. */
export function readSpanIndexFile(path: string): SpanIndex {
  assertLittleEndian();
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw fileError("unreadable", `cannot open ${path}`, { path }, e);
  }
  try {
    return readOpen(fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

function readOpen(fd: number, fileSize: number): SpanIndex {
  if (fileSize < HEADER_BYTES) throw fileError("truncated", `${fileSize} bytes, shorter than the header`, { fileSize });
  const header = Buffer.alloc(HEADER_BYTES);
  readExactly(fd, header, 0);
  if (header.toString("latin1", 0, 8) !== SPAN_INDEX_MAGIC) throw fileError("bad-magic", "not a span index (bad magic)");
  const version = header.readUInt32LE(8);
  if (version !== SPAN_INDEX_FORMAT_VERSION) {
    throw fileError("unsupported-version", `format version ${version}, expected ${SPAN_INDEX_FORMAT_VERSION}`, { version });
  }
  const headerBytes = header.readUInt32LE(12);
  const n = header.readUInt32LE(16);
  const recordCount = header.readUInt32LE(20);
  const tokenLimit = header.readUInt32LE(24);
  const stringBytes = header.readUInt32LE(28);
  if (headerBytes !== HEADER_BYTES || n > 0x7fffffff || recordCount > n || tokenLimit > 0x7fffffff) {
    throw fileError("bad-header", "header fields out of range", { headerBytes, n, recordCount, tokenLimit });
  }
  const expected = HEADER_BYTES + 8 * n + 4 * (recordCount + 1) + stringBytes;
  if (fileSize < expected) throw fileError("truncated", `${fileSize} bytes, header declares ${expected}`, { fileSize, expected });
  if (fileSize > expected) throw fileError("trailing-bytes", `${fileSize} bytes, header declares ${expected}`, { fileSize, expected });

  const hash = createHash("sha256");
  let offset = HEADER_BYTES;
  const readPart = (bytes: Uint8Array): void => {
    readExactly(fd, bytes, offset);
    hash.update(bytes);
    offset += bytes.length;
  };
  const text = new Int32Array(n);
  const suffixArray = new Int32Array(n);
  const recordStarts = new Int32Array(recordCount + 1);
  const strings = Buffer.alloc(stringBytes);
  for (const part of [bytesOf(text), bytesOf(suffixArray), bytesOf(recordStarts), strings]) readPart(part);
  if (!hash.digest().equals(header.subarray(32, 64))) throw fileError("checksum", "checksum mismatch (corrupt file)");

  let table: unknown;
  try {
    table = JSON.parse(strings.toString("utf8"));
  } catch (e) {
    throw fileError("strings", "record table is not JSON", {}, e);
  }
  const isPair = (x: unknown): x is [string, string] =>
    Array.isArray(x) && x.length === 2 && typeof x[0] === "string" && typeof x[1] === "string";
  if (!Array.isArray(table) || table.length !== recordCount || !table.every(isPair)) {
    throw fileError("strings", "record table does not hold one [recordId, contributor] per record");
  }
  return SpanIndex.fromParts({
    text, suffixArray, recordStarts, tokenLimit,
    recordIds: table.map((p) => p[0]), contributors: table.map((p) => p[1]),
  });
}

function readExactly(fd: number, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    const got = readSync(fd, into, done, Math.min(CHUNK, into.length - done), position + done);
    if (got === 0) throw fileError("truncated", "file ended early");
    done += got;
  }
}
