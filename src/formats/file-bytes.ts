/**
 * Opens a model or adapter file as bytes: a plain read, or a private memory map through the native
 * addon once initFileMapping() has run (no copy; the OS pages weights in on demand). Nothing in the
 * product calls initFileMapping() yet, so files are read. Either way one file is one Uint8Array,
 * which holds at most 4 GiB; models larger than that need per-tensor views over a larger buffer.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { oerr } from "../errors.js";

type MapFile = (path: string) => ArrayBuffer;
/** A Uint8Array's largest length. */
const MAX_FILE_BYTES = 2 ** 32;
/** One read returns at most 2 GiB (Node's kIoMaxLength); larger files are read in pieces. */
const READ_PIECE = 2 ** 30;
let mapFile: MapFile | null | undefined;

async function loadMapper(): Promise<MapFile | null> {
  try {
    const native = await import("../native/index.js");
    return (native.native as { mapFile: MapFile }).mapFile;
  } catch {
    return null;
  }
}

export async function initFileMapping(): Promise<void> {
  if (mapFile === undefined) mapFile = await loadMapper();
}

/** Returns the file's bytes; a missing path or a directory is MODEL_NOT_FOUND. */
export function openFileBytes(path: string): Uint8Array {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw oerr("MODEL_NOT_FOUND", `${path} is not a file`);
    size = st.size;
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") throw oerr("MODEL_NOT_FOUND", `${path} does not exist`);
    throw e;
  }
  if (size === 0) throw oerr("MODEL_FILE_TRUNCATED", `${path} is empty`);
  if (size > MAX_FILE_BYTES) {
    throw oerr("MODEL_FILE_TOO_LARGE", `${path} is ${size} bytes; openlora reads files of at most 4 GiB for now (a Hugging Face model can be re-sharded below that)`, { size, max: MAX_FILE_BYTES });
  }
  if (mapFile) return new Uint8Array(mapFile(path));
  if (size <= READ_PIECE) {
    const b = readFileSync(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const out = new Uint8Array(size);
  const fd = openSync(path, "r");
  try {
    let done = 0;
    while (done < size) {
      const n = readSync(fd, out, done, Math.min(READ_PIECE, size - done), done);
      if (n === 0) throw oerr("MODEL_FILE_TRUNCATED", `${path} ended at ${done} of its ${size} bytes while being read`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}
