/**
 * The embedded default model: a SmolLM2-135M-shaped random-weight model in Q8_0 with the real
 * Llama 3 vocabulary, generated on first use into the cache folder and reused after.
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { LoraModule } from "../adapters/types.js";
import { writeGgufLora, writePeftAdapter } from "./adapters.js";
import { writeGgufModel } from "./synthesize.js";

export const DEFAULT_PRESET = "smollm2-135m";
export const DEFAULT_TYPE = "q8_0";
const DEFAULT_SEED = 7;

export function cacheDir(): string {
  return process.env.OPENLORA_CACHE ?? join(homedir(), ".cache", "openlora");
}

/** Returns the default model's path, writing it first if needed. */
export function ensureDefaultModel(log: (msg: string) => void = () => {}, onProgress?: (fraction: number, message: string) => void): string {
  const dir = join(cacheDir(), "models");
  const path = join(dir, `${DEFAULT_PRESET}-${DEFAULT_TYPE}-seed${DEFAULT_SEED}.gguf`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  log(`generating the embedded default model (${DEFAULT_PRESET}-shaped, random weights, ${DEFAULT_TYPE}) into ${path} — once`);
  const tmp = `${path}.${process.pid}.tmp`;
  writeGgufModel(tmp, DEFAULT_PRESET, { seed: DEFAULT_SEED, type: DEFAULT_TYPE, ...(onProgress ? { onProgress } : {}) });
  renameSync(tmp, path);
  return path;
}

export const DEMO_ADAPTER_COUNT = 8;

/**
 * The embedded default's demo adapters: DEMO_ADAPTER_COUNT random adapters for the default model,
 * half PEFT folders, half GGUF LoRA files, ranks 8–32 on q/k/v/o (some also on the MLP), written
 * once into the cache folder. Returns the folder to register.
 */
export function ensureDemoAdapters(log: (msg: string) => void = () => {}): string {
  const dir = join(cacheDir(), "adapters", `${DEFAULT_PRESET}-demo-v1`);
  if (existsSync(join(dir, ".complete"))) return dir;
  log(`generating ${DEMO_ADAPTER_COUNT} demo adapters into ${dir} — once`);
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const ranks = [8, 16, 32, 8, 16, 32, 16, 8];
  for (let i = 0; i < DEMO_ADAPTER_COUNT; i++) {
    const rank = ranks[i % ranks.length]!;
    const targets: LoraModule[] = i % 3 === 2 ? ["q", "k", "v", "o", "gate", "up", "down"] : ["q", "k", "v", "o"];
    const common = { seed: 100 + i, rank, alpha: 2 * rank, targets, strength: 0.05 };
    if (i % 2 === 0) writePeftAdapter(join(tmp, `demo-${i}`), DEFAULT_PRESET, { ...common, dtype: "F16" });
    else writeGgufLora(join(tmp, `demo-${i}.gguf`), DEFAULT_PRESET, { ...common, type: "f16" });
  }
  writeFileSync(join(tmp, ".complete"), "");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  renameSync(tmp, dir);
  return dir;
}
