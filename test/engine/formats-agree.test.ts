/**
 * The same weights written as GGUF and as a Hugging Face safetensors folder load to the same
 * model: bit-identical logits for each architecture variant (the HF loader applies llama.cpp's
 * Q/K row permutation to Llama weights, so both run the very same arithmetic).
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generate } from "../../src/engine/generate.js";
import { loadModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { TINY_PRESETS } from "../../src/synth/presets.js";
import { writeGgufModel, writeHfModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const request = { prompt: "Same weights, two formats, one answer.", maxTokens: 16, ignoreEos: true };

function bits(a: Float32Array[]): string {
  return a.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64")).join("|");
}

describe.each(TINY_PRESETS)("%s: GGUF and safetensors", (preset) => {
  it.each([["f32", "F32", undefined], ["f16", "F16", undefined], ["bf16", "BF16", undefined], ["q8_0", "F32", "q8_0"], ["q4_0", "F32", "q4_0"]] as const)(
    "GGUF %s == HF %s (load-time quantization %s)", async (ggufType, hfType, quantize) => {
      native.setThreads(2);
      const g = join(dir, `${preset}-${ggufType}.gguf`);
      const h = join(dir, `${preset}-${hfType}-hf`);
      writeGgufModel(g, preset, { seed: 9, type: ggufType });
      writeHfModel(h, preset, { seed: 9, dtype: hfType });
      const fromGguf = await loadModel(g, { prefault: false });
      const fromHf = await loadModel(h, { prefault: false, ...(quantize ? { quantize } : {}) });
      expect(fromHf.config.vocabSize).toBe(fromGguf.config.vocabSize);
      expect(fromHf.tokenizer.encode(request.prompt)).toEqual(fromGguf.tokenizer.encode(request.prompt));
      const a = generate(fromGguf, request, { collectLogits: true });
      const b = generate(fromHf, request, { collectLogits: true });
      expect(b.tokens).toEqual(a.tokens);
      expect(bits(b.logits!)).toBe(bits(a.logits!));
    });
});
