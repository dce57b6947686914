/**
 * The embedded default model: a SmolLM2-135M-shaped random-weight model in Q8_0 with the real
 * Llama 3 vocabulary, generated on first use into the cache folder and reused after.
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeGgufModel } from "./synthesize.js";

export const DEFAULT_PRESET = "smollm2-135m";
export const DEFAULT_TYPE = "q8_0";
const DEFAULT_SEED = 7;

export function cacheDir(): string {
  return process.env.OPENLORA_CACHE ?? join(homedir(), ".cache", "openlora");
}

/** Returns the default model's path, writing it first if needed. */
export function ensureDefaultModel(log: (msg: string) => void = () => {}): string {
  const dir = join(cacheDir(), "models");
  const path = join(dir, `${DEFAULT_PRESET}-${DEFAULT_TYPE}-seed${DEFAULT_SEED}.gguf`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  log(`generating the embedded default model (${DEFAULT_PRESET}-shaped, random weights, ${DEFAULT_TYPE}) into ${path} — once`);
  const tmp = `${path}.${process.pid}.tmp`;
  writeGgufModel(tmp, DEFAULT_PRESET, { seed: DEFAULT_SEED, type: DEFAULT_TYPE });
  renameSync(tmp, path);
  return path;
}
