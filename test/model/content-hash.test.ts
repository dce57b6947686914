/**
 * The base model's content hash is computed by the loader from the bytes it loaded and equals the
 * rule of src/attribution/content-hash.ts applied to the path: a GGUF file; a Hugging Face folder
 * (single file, with a .json the loader does not read, and sharded).
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { contentHash } from "../../src/attribution/content-hash.js";
import { parseSafetensors, safetensorsData, writeSafetensors } from "../../src/formats/safetensors.js";
import { loadModel } from "../../src/model/load.js";
import { writeGgufModel, writeHfModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-model-hash-");

describe("model content hash", () => {
  it("GGUF: the SHA-256 of the file bytes parsed; absent unless asked for", async () => {
    const p = writeGgufModel(join(dir, "m.gguf"), "tiny-llama3", { seed: 2, type: "q8_0" });
    const loaded = await loadModel(p, { prefault: false, hash: true });
    expect(loaded.contentHash).toMatch(/^0x[0-9a-f]{64}$/);
    expect(loaded.contentHash).toBe(await contentHash(p));
    expect((await loadModel(p, { prefault: false })).contentHash).toBeUndefined();
  });

  it("Hugging Face folder: over its .json and .safetensors files in name order, read or not", async () => {
    const d = join(dir, "hf");
    writeHfModel(d, "tiny-qwen2", { seed: 3, dtype: "BF16" });
    writeFileSync(join(d, "generation_config.json"), JSON.stringify({ do_sample: false }));
    writeFileSync(join(d, "README.md"), "not hashed");
    mkdirSync(join(d, "checkpoints.json")); // a folder with a hashed suffix is not a file: skipped by both
    const loaded = await loadModel(d, { prefault: false, hash: true });
    expect(loaded.contentHash).toBe(await contentHash(d));
    writeFileSync(join(d, "generation_config.json"), JSON.stringify({ do_sample: true }));
    expect((await loadModel(d, { prefault: false, hash: true })).contentHash).not.toBe(loaded.contentHash);
  });

  it("sharded Hugging Face folder", async () => {
    const single = join(dir, "single");
    writeHfModel(single, "tiny-qwen2", { seed: 4, dtype: "F16" });
    const d = join(dir, "sharded");
    mkdirSync(d);
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(single, f), join(d, f));
    const file = parseSafetensors(readFileSync(join(single, "model.safetensors")));
    const names = [...file.tensors.keys()];
    const weightMap: Record<string, string> = {};
    [names.slice(0, 5), names.slice(5)].forEach((part, i) => {
      const shard = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(d, shard), part.map((n) => {
        const t = file.tensors.get(n)!;
        weightMap[n] = shard;
        return { name: n, dtype: t.dtype, shape: t.shape, data: safetensorsData(file, t).slice() };
      }));
    });
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    expect((await loadModel(d, { prefault: false, hash: true })).contentHash).toBe(await contentHash(d));
  });
});
