/**
 * Opens a model or adapter file as bytes: a plain read, or a private memory map through the native
 * addon once initFileMapping() has run (no copy; the OS pages weights in on demand). Nothing in the
 * product calls initFileMapping() yet, so files are read, at most 2 GiB each (a mapping would hold
 * 4 GiB; models larger than that need more than one mapping per file).
 */
import { readFileSync, statSync } from "node:fs";
import { oerr } from "../errors.js";

type MapFile = (path: string) => ArrayBuffer;
const MAX_READ_BYTES = 2 ** 31 - 1;
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
  if (mapFile) return new Uint8Array(mapFile(path));
  // One read returns at most this much (Node's kIoMaxLength); past it readFileSync throws its own
  // untyped RangeError.
  if (size > MAX_READ_BYTES) {
    throw oerr("MODEL_FILE_TOO_LARGE", `${path} is ${size} bytes; openlora reads files of at most 2 GiB for now (a Hugging Face model can be re-sharded below that)`, { size, max: MAX_READ_BYTES });
  }
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
