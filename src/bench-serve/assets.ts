/**
 * The files every system serves: one synthetic GGUF base model and n synthetic GGUF LoRA adapters
 * (a0000.gguf, a0001.gguf, …), written once into the cache and reused by later runs. GGUF LoRA is
 * the one format both openlora and llama.cpp read, so all systems load byte-identical adapters.
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { LoraModule } from "../adapters/types.js";
import { writeGgufLora } from "../synth/adapters.js";
import { cacheDir } from "../synth/default-model.js";
import { type GgufWeightType, writeGgufModel } from "../synth/synthesize.js";
import { adapterId, streamRng } from "./workload.js";

export interface AssetSpec {
  preset: string;
  weightType: GgufWeightType;
  modelSeed: number;
  /** Each adapter's rank is drawn (seeded by its index) from this set. */
  ranks: number[];
  loraType: "f32" | "f16" | "q8_0";
  targets: LoraModule[];
  count: number;
}

export interface Assets {
  modelPath: string;
  adapterDir: string;
  /** Adapter ids in the order the workload indexes them. */
  adapterIds: string[];
}

function writeOnce(path: string, write: (tmp: string) => void): void {
  if (existsSync(path)) return;
  const tmp = `${path}.${process.pid}.tmp`;
  write(tmp);
  renameSync(tmp, path);
}

export function rankOf(i: number, ranks: readonly number[]): number {
  return ranks[Math.floor(streamRng(1000 + i, "rank")() * ranks.length)]!;
}

export function ensureAssets(spec: AssetSpec, log: (msg: string) => void, root = join(cacheDir(), "bench-serve")): Assets {
  const modelPath = join(root, "models", `${spec.preset}-${spec.weightType}-seed${spec.modelSeed}.gguf`);
  mkdirSync(join(root, "models"), { recursive: true });
  if (!existsSync(modelPath)) log(`writing the ${spec.preset}-shaped ${spec.weightType} base model to ${modelPath} (once)`);
  writeOnce(modelPath, (tmp) => writeGgufModel(tmp, spec.preset, { seed: spec.modelSeed, type: spec.weightType }));
  const adapterDir = join(root, "adapters", `${spec.preset}-r${spec.ranks.join("_")}-${spec.targets.join("")}-${spec.loraType}`);
  mkdirSync(adapterDir, { recursive: true });
  const ids = Array.from({ length: spec.count }, (_, i) => adapterId(i));
  const missing = ids.filter((id) => !existsSync(join(adapterDir, `${id}.gguf`)));
  if (missing.length) log(`writing ${missing.length} GGUF LoRA adapters to ${adapterDir} (once)`);
  ids.forEach((id, i) => {
    const rank = rankOf(i, spec.ranks);
    writeOnce(join(adapterDir, `${id}.gguf`), (tmp) => writeGgufLora(tmp, spec.preset, {
      seed: 1000 + i, rank, alpha: 2 * rank, targets: spec.targets, type: spec.loraType,
    }));
  });
  return { modelPath, adapterDir, adapterIds: ids };
}

/** A directory the user brings: its *.gguf files, by stem, sorted (the registry's naming). */
export function existingAssets(modelPath: string, adapterDir: string): Assets {
  const adapterIds = readdirSync(adapterDir).filter((f) => f.endsWith(".gguf")).map((f) => f.slice(0, -5)).sort();
  return { modelPath, adapterDir, adapterIds };
}
