/** A Hugging Face folder with sharded safetensors and an index loads to the same model as one file. */
import { mkdirSync, copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isOpenLoraError } from "../../src/errors.js";
import { generate } from "../../src/engine/generate.js";
import { parseSafetensors, safetensorsData, writeSafetensors } from "../../src/formats/safetensors.js";
import { loadModel } from "../../src/model/load.js";
import { writeHfModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function shard(src: string, dst: string, escape = false): void {
  mkdirSync(dst, { recursive: true });
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(src, f), join(dst, f));
  const file = parseSafetensors(readFileSync(join(src, "model.safetensors")));
  const names = [...file.tensors.keys()];
  const halves = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
  const weightMap: Record<string, string> = {};
  halves.forEach((part, i) => {
    const shardName = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dst, shardName), part.map((n) => {
      const t = file.tensors.get(n)!;
      weightMap[n] = escape && i === 1 ? `../${shardName}` : shardName;
      return { name: n, dtype: t.dtype, shape: t.shape, data: safetensorsData(file, t).slice() };
    }));
  });
  writeFileSync(join(dst, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

describe("sharded safetensors", () => {
  it("gives bit-identical logits to the single-file folder", async () => {
    const single = join(dir, "single");
    writeHfModel(single, "tiny-qwen2", { seed: 4, dtype: "F16" });
    const sharded = join(dir, "sharded");
    shard(single, sharded);
    const a = generate(await loadModel(single, { prefault: false }), { prompt: "Shards", maxTokens: 5, ignoreEos: true }, { collectLogits: true });
    const b = generate(await loadModel(sharded, { prefault: false }), { prompt: "Shards", maxTokens: 5, ignoreEos: true }, { collectLogits: true });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.logits!.map((l) => Buffer.from(l.buffer).toString("base64"))).toEqual(a.logits!.map((l) => Buffer.from(l.buffer).toString("base64")));
  });

  it("rejects an index that points outside the model folder", async () => {
    const single = join(dir, "single2");
    writeHfModel(single, "tiny-qwen2", { seed: 4, dtype: "F16" });
    const bad = join(dir, "escaping");
    shard(single, bad, true);
    let err: unknown;
    try { await loadModel(bad); } catch (e) { err = e; }
    expect(isOpenLoraError(err, "MODEL_CONFIG_INVALID")).toBe(true);
  });
});
