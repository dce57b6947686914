/**
 * Determinism and batch invariance: a request's logits are bit-identical with 1 or 2 threads,
 * alone or inside a batch with other sequences, and whatever the prefill chunking.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { generate, generateBatch } from "../../src/engine/generate.js";
import { type LoadedModel, loadModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function sameBits(a: Float32Array[], b: Float32Array[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b[i]!.buffer, b[i]!.byteOffset, b[i]!.byteLength)));
}

describe.each(["q8_0", "q4_0", "f16"] as const)("determinism (tiny-qwen3 %s)", (type) => {
  let model: LoadedModel;
  beforeAll(async () => {
    const path = join(dir, `m-${type}.gguf`);
    writeGgufModel(path, "tiny-qwen3", { seed: 5, type });
    model = await loadModel(path, { prefault: false });
  });

  const request = { prompt: "Determinism is a feature: the same input, the same bits.", maxTokens: 12, ignoreEos: true };

  it("gives bit-identical logits with 1 and 2 threads", () => {
    native.setThreads(1);
    const one = generate(model, request, { collectLogits: true });
    native.setThreads(2);
    const two = generate(model, request, { collectLogits: true });
    expect(two.tokens).toEqual(one.tokens);
    expect(sameBits(one.logits!, two.logits!)).toBe(true);
  });

  it("gives bit-identical logits alone and inside a batch of different sequences", () => {
    native.setThreads(2);
    const alone = generate(model, request, { collectLogits: true });
    const others = [
      { prompt: "Another prompt, longer than the first one by quite a few tokens, to change the batch shape.", maxTokens: 20, ignoreEos: true },
      { prompt: "x", maxTokens: 3, ignoreEos: true },
      { prompt: "Sampling too", maxTokens: 15, sampling: { temperature: 0.8, seed: 3 }, ignoreEos: true },
    ];
    const batch = generateBatch(model, [others[0]!, request, others[1]!, others[2]!], { collectLogits: true });
    expect(batch[1]!.tokens).toEqual(alone.tokens);
    expect(sameBits(alone.logits!, batch[1]!.logits!)).toBe(true);
  });

  it("gives bit-identical logits whatever the prefill chunk size", () => {
    native.setThreads(2);
    const whole = generate(model, request, { collectLogits: true });
    const chunked = generate(model, request, { collectLogits: true, prefillChunk: 3, blockSize: 4 });
    expect(sameBits(whole.logits!, chunked.logits!)).toBe(true);
  });

  it("reproduces sampled output for the same seed", () => {
    const r = { ...request, sampling: { temperature: 1, topP: 0.9, topK: 40, seed: 42 } };
    expect(generate(model, r).tokens).toEqual(generate(model, r).tokens);
  });
});
