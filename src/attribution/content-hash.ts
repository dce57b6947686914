/**
 * Content hashes of model and adapter files, as receipts and the ledger record them: SHA-256 of
 * the file bytes (a GGUF model or GGUF LoRA); for a PEFT folder, SHA-256 over the SHA-256s of
 * adapter_config.json then adapter_model.safetensors; for a Hugging Face model folder, over those of
 * its .json and .safetensors files in name order. Written as 0x-prefixed 32-byte hex, so a
 * verifier recomputes them with `sha256sum` alone.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Hex } from "viem";
import { oerr } from "../errors.js";

export async function fileSha256(path: string): Promise<Buffer> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest();
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
  // A Hugging Face model folder: its .json and .safetensors files, in name order.
  const files = readdirSync(path).filter((f) => f.endsWith(".json") || f.endsWith(".safetensors")).sort();
  const h = createHash("sha256");
  for (const f of files) h.update(await fileSha256(join(path, f)));
  return `0x${h.digest("hex")}`;
}
