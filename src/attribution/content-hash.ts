/**
 * Content hashes of model and adapter files, as receipts and the ledger record them: SHA-256 of
 * the file bytes (a GGUF model or GGUF LoRA); for a PEFT folder, SHA-256 over the SHA-256s of
 * adapter_config.json then adapter_model.safetensors; for a Hugging Face model folder, over those of
 * its .json and .safetensors files in name order. Written as 0x-prefixed 32-byte hex, so a
 * verifier recomputes them with `sha256sum` alone.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { Hex } from "viem";
import { oerr } from "../errors.js";

const CHUNK = 1 << 20;
/**
 * Read buffers kept for reuse. A server hashes every adapter on its first use; a fresh buffer per
 * file (a read stream allocates one per chunk) is external memory that V8 answers with a major GC
 * every few dozen adapters.
 */
const spareChunks: Buffer[] = [];

export async function fileSha256(path: string): Promise<Buffer> {
  const h = createHash("sha256");
  const file = await open(path, "r");
  const chunk = spareChunks.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
  try {
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, CHUNK, null);
      if (bytesRead === 0) break;
      h.update(chunk.subarray(0, bytesRead));
    }
  } finally {
    if (spareChunks.length < 4) spareChunks.push(chunk);
    await file.close();
  }
  return h.digest();
}

/**
 * The files a Hugging Face model folder's hash covers: its top-level regular files (symlinks
 * followed) named *.json or *.safetensors, in name order (UTF-16 code units). The loader hashes the
 * same list (src/model/load.ts), so both always agree.
 */
export function folderHashFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => (f.endsWith(".json") || f.endsWith(".safetensors")) && isFile(join(dir, f)))
    .sort();
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export async function contentHash(path: string): Promise<Hex> {
  if (!existsSync(path)) throw oerr("MODEL_NOT_FOUND", `${path} does not exist`);
  if (!statSync(path).isDirectory()) return `0x${(await fileSha256(path)).toString("hex")}`;
  const cfg = join(path, "adapter_config.json");
  const weights = join(path, "adapter_model.safetensors");
  if (existsSync(cfg) && existsSync(weights)) {
    const h = createHash("sha256").update(await fileSha256(cfg)).update(await fileSha256(weights));
    return `0x${h.digest("hex")}`;
  }
  const files = folderHashFiles(path);
  const h = createHash("sha256");
  for (const f of files) h.update(await fileSha256(join(path, f)));
  return `0x${h.digest("hex")}`;
}
