/**
 * Opens a model or adapter file as bytes: a plain read, or a private memory map through the native
 * addon once initFileMapping() has run (no copy; the OS pages weights in on demand). Nothing in the
 * product calls initFileMapping() yet, so files are read. A Uint8Array holds at most 4 GiB, so a
 * larger file comes back as its ArrayBuffer, and the parsers view each tensor in it (wholeFile).
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, readlinkSync, readSync, realpathSync } from "node:fs";
import { totalmem } from "node:os";
import { oerr } from "../errors.js";

/** A file's bytes: one Uint8Array up to 4 GiB, the ArrayBuffer of the whole file past that. */
export type FileBytes = Uint8Array | ArrayBuffer;

/** The whole file: `size` bytes of `buffer` from `base` (tensors are views into it). */
export interface WholeFile {
  buffer: ArrayBufferLike;
  base: number;
  size: number;
}

type MapFile = (path: string) => ArrayBuffer;
/** A Uint8Array's largest length. */
const MAX_VIEW_BYTES = 2 ** 32;
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

/**
 * The whole file as (buffer, base, size) for per-tensor views, and `head`, a Uint8Array over its
 * first min(size, 4 GiB) bytes, where every format keeps its header.
 */
export function wholeFile(input: FileBytes): WholeFile & { head: Uint8Array } {
  if (input instanceof ArrayBuffer) {
    return { buffer: input, base: 0, size: input.byteLength, head: new Uint8Array(input, 0, Math.min(input.byteLength, MAX_VIEW_BYTES)) };
  }
  return { buffer: input.buffer, base: input.byteOffset, size: input.byteLength, head: new Uint8Array(input.buffer, input.byteOffset, input.byteLength) };
}

export interface OpenOptions {
  /**
   * Called with the real path of the file actually opened (on Linux read back from the open
   * descriptor, so a symlink swapped after a check cannot redirect the read), before any byte is
   * read; it throws to refuse the file (adapter files must stay inside their adapters folder).
   */
  checkRealPath?: (realPath: string) => void;
  /** Larger files are MODEL_FILE_TOO_LARGE before they are read (small config files). */
  maxBytes?: number;
}

/** The path the descriptor refers to, with every symlink resolved. */
function realPathOf(fd: number, path: string): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return realpathSync(path);
  }
}

/**
 * Returns the file's bytes; a missing path or anything but a regular file (a folder, a FIFO: opened
 * non-blocking, so it cannot stall the thread) is MODEL_NOT_FOUND.
 */
export function openFileBytes(path: string, opts: OpenOptions = {}): FileBytes {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") throw oerr("MODEL_NOT_FOUND", `${path} does not exist`);
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw oerr("MODEL_NOT_FOUND", `${path} is not a file`);
    opts.checkRealPath?.(realPathOf(fd, path));
    return readOpen(fd, path, st.size, opts.maxBytes);
  } finally {
    closeSync(fd);
  }
}

function readOpen(fd: number, path: string, size: number, maxBytes: number | undefined): FileBytes {
  if (size === 0) throw oerr("MODEL_FILE_TRUNCATED", `${path} is empty`);
  if (maxBytes !== undefined && size > maxBytes) throw oerr("MODEL_FILE_TOO_LARGE", `${path} is ${size} bytes, more than the ${maxBytes} accepted`, { size });
  if (mapFile && size <= MAX_VIEW_BYTES) return new Uint8Array(mapFile(path));
  if (size <= READ_PIECE) {
    const b = readFileSync(fd);
    if (b.byteLength !== size) throw oerr("MODEL_FILE_TRUNCATED", `${path} changed size while being read (${b.byteLength} of ${size} bytes)`);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  if (size > totalmem()) throw oerr("MODEL_FILE_TOO_LARGE", `${path} is ${size} bytes, more than this machine's ${totalmem()} bytes of memory`, { size });
  let buffer: ArrayBuffer;
  try {
    buffer = new ArrayBuffer(size);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw oerr("MODEL_FILE_TOO_LARGE", `${path} is ${size} bytes; a buffer that large could not be allocated (${e.message})`, { size });
  }
  let done = 0;
  while (done < size) {
    const piece = new Uint8Array(buffer, done, Math.min(READ_PIECE, size - done));
    const n = readSync(fd, piece, 0, piece.length, done);
    if (n === 0) throw oerr("MODEL_FILE_TRUNCATED", `${path} ended at ${done} of its ${size} bytes while being read`);
    done += n;
  }
  return size <= MAX_VIEW_BYTES ? new Uint8Array(buffer) : buffer;
}
