/**
 * LoRA against llama.cpp: the same adapter as a GGUF LoRA file in node-llama-cpp and in openlora
 * (64 greedy tokens identical, logits within tolerance) on F32 and Q8_0 bases; the PEFT and GGUF
 * forms of one adapter give identical output; two adapters at 0.7 / 0.3 match llama.cpp with
 * both adapters at those scales.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LlamaModel as LlamaCppModel } from "node-llama-cpp";
import { baseShapeOf } from "../../src/adapters/base-shape.js";
import { readGgufLora } from "../../src/adapters/formats/gguf-lora.js";
import { readPeftAdapter } from "../../src/adapters/formats/peft.js";
import { generate } from "../../src/engine/generate.js";
import type { AppliedAdapter } from "../../src/model/llama.js";
import { loadModel, type LoadedModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { compareSteps, llamaCpp, llamaCppGreedy, llamaCppSharesOurArithmetic, teacherForcedLogits } from "../helpers/llamacpp.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const PROMPT = "Adapters are small; the base model is shared.";
const TOLERANCE = { f32: 0.01, q8_0: 0.5 } as const;
/** Q8_0 where llama.cpp runs its AVX-512/AMX variant (see test/parity/llamacpp.test.ts). */
const OTHER_ARITHMETIC_TOLERANCE = 1.5;
const ALL_STEPS = Array.from({ length: 64 }, (_, i) => i);

/** llama.cpp's 64 greedy steps against ours: all steps teacher-forced within tolerance; free-running tokens identical where the arithmetic is the same. */
async function expectMatches(ours: LoadedModel, prompt: number[], mine: { tokens: number[] }, ref: Awaited<ReturnType<typeof llamaCppGreedy>>, type: "f32" | "q8_0", adapters: AppliedAdapter[]): Promise<void> {
  const same = type === "f32" || (await llamaCppSharesOurArithmetic());
  const tolerance = same ? TOLERANCE[type] : OTHER_ARITHMETIC_TOLERANCE;
  const { worstDiff, worstChoiceGap } = compareSteps(teacherForcedLogits(ours, prompt, ref.tokens, adapters), ref);
  expect(worstDiff).toBeLessThan(tolerance);
  expect(worstChoiceGap).toBeLessThan(tolerance);
  if (same) expect(mine.tokens).toEqual(ref.tokens);
  else expect(mine.tokens.slice(0, 8)).toEqual(ref.tokens.slice(0, 8));
}


describe.each([["tiny-llama3", "f32"], ["tiny-llama3", "q8_0"], ["tiny-qwen3", "f32"], ["tiny-qwen3", "q8_0"]] as const)("%s %s base with LoRA vs llama.cpp", (preset, type) => {
  const base = join(dir, `${preset}-${type}.gguf`);
  const ggufA = join(dir, `${preset}-${type}-a.gguf`);
  const ggufB = join(dir, `${preset}-${type}-b.gguf`);
  const peftA = join(dir, `${preset}-${type}-a-peft`);
  let cpp: LlamaCppModel;
  let ours: LoadedModel;
  beforeAll(async () => {
    writeGgufModel(base, preset, { seed: 21, type });
    const common = { rank: 8, alpha: 16, targets: ["q", "k", "v", "o", "gate", "up", "down"] as const };
    writeGgufLora(ggufA, preset, { ...common, targets: [...common.targets], seed: 1, type: "f32" });
    writePeftAdapter(peftA, preset, { ...common, targets: [...common.targets], seed: 1, dtype: "F32" });
    writeGgufLora(ggufB, preset, { rank: 16, alpha: 8, targets: ["q", "v", "down"], seed: 2, type: "f32" });
    cpp = await (await llamaCpp(2)).loadModel({ modelPath: base, gpuLayers: 0 });
    ours = await loadModel(base, { prefault: false });
  });
  afterAll(async () => { await cpp?.dispose(); });

  it("one adapter: 64 identical greedy tokens, logits within tolerance; PEFT == GGUF", async () => {
    native.setThreads(2);
    const shape = baseShapeOf(ours.config);
    const a = readGgufLora(ggufA, "a", shape, { maxRank: 64 });
    const prompt = ours.tokenizer.encode(PROMPT);
    const mine = generate(ours, { prompt, maxTokens: 64, ignoreEos: true, adapters: [{ adapter: a.weights, weight: 1 }] }, { collectLogits: true });
    const ref = await llamaCppGreedy(cpp, prompt, 64, ALL_STEPS, 2, [{ filePath: ggufA, scale: 1 }]);
    await expectMatches(ours, prompt, mine, ref, type, [{ adapter: a.weights, weight: 1 }]);
    // The adapter must matter: the base model alone answers differently.
    const plain = generate(ours, { prompt, maxTokens: 64, ignoreEos: true });
    expect(plain.tokens).not.toEqual(mine.tokens);

    const p = readPeftAdapter(peftA, "a-peft", shape, { maxRank: 64 });
    const fromPeft = generate(ours, { prompt, maxTokens: 64, ignoreEos: true, adapters: [{ adapter: p.weights, weight: 1 }] }, { collectLogits: true });
    expect(fromPeft.tokens).toEqual(mine.tokens);
    expect(fromPeft.logits!.every((l, i) => Buffer.from(l.buffer).equals(Buffer.from(mine.logits![i]!.buffer)))).toBe(true);
  });

  it("two adapters at 0.7 / 0.3 match llama.cpp with both at those scales", async () => {
    native.setThreads(2);
    const shape = baseShapeOf(ours.config);
    const a = readGgufLora(ggufA, "a", shape, { maxRank: 64 });
    const b = readGgufLora(ggufB, "b", shape, { maxRank: 64 });
    const prompt = ours.tokenizer.encode(PROMPT);
    const mine = generate(ours, {
      prompt, maxTokens: 64, ignoreEos: true,
      adapters: [{ adapter: a.weights, weight: 0.7 }, { adapter: b.weights, weight: 0.3 }],
    }, { collectLogits: true });
    const ref = await llamaCppGreedy(cpp, prompt, 64, ALL_STEPS, 2, [{ filePath: ggufA, scale: 0.7 }, { filePath: ggufB, scale: 0.3 }]);
    await expectMatches(ours, prompt, mine, ref, type, [{ adapter: a.weights, weight: 0.7 }, { adapter: b.weights, weight: 0.3 }]);
  });
});
