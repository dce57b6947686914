/**
 * SHA-256 of bytes already in memory, for the content hashes of what the engine serves (the rule of
 * src/attribution/content-hash.ts, applied to the very bytes a reader parsed rather than to a second
 * read of the path): a GGUF file's hash; a PEFT folder's SHA-256(SHA-256(config) ‖ SHA-256(weights));
 * a Hugging Face model folder's SHA-256 over its .json and .safetensors files' hashes in name order.
 */
import { createHash, webcrypto } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import type { FileBytes } from "./file-bytes.js";

/** 0x + 64 lowercase hex digits. */
export type Hex = `0x${string}`;

/** One update covers at most this much (a view of a file past 4 GiB is hashed in pieces). */
const PIECE = 1 << 30;

export function sha256(bytes: FileBytes): Buffer {
  const h = createHash("sha256");
  const buffer = bytes instanceof ArrayBuffer ? bytes : bytes.buffer;
  const base = bytes instanceof ArrayBuffer ? 0 : bytes.byteOffset;
  const size = bytes.byteLength;
  for (let at = 0; at < size; at += PIECE) h.update(new Uint8Array(buffer, base + at, Math.min(PIECE, size - at)));
  return h.digest();
}

/** Larger inputs are hashed on the calling thread (a copy that size is not worth the overlap). */
const ASYNC_MAX = 1 << 30;

/**
 * sha256 on the libuv thread pool (WebCrypto copies the bytes when called), so that the caller can
 * parse them meanwhile: an adapter load then costs about max(parse, hash) instead of their sum.
 */
export async function sha256Async(bytes: FileBytes): Promise<Buffer> {
  if (bytes.byteLength > ASYNC_MAX) return sha256(bytes);
  return Buffer.from(await webcrypto.subtle.digest("SHA-256", bytes));
}

/** SHA-256 of a file read in 1 MiB pieces (a file the loader does not otherwise read). */
export function sha256File(path: string): Buffer {
  const h = createHash("sha256");
  const chunk = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      h.update(chunk.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest();
}

export function toHex(digest: Buffer): Hex {
  return `0x${digest.toString("hex")}`;
}

/** SHA-256 over the concatenated digests (a folder's hash from its files' hashes, in order). */
export function hashOfDigests(digests: readonly Buffer[]): Hex {
  const h = createHash("sha256");
  for (const d of digests) h.update(d);
  return toHex(h.digest());
}
