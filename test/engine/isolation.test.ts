/**
 * A sequence fails alone: one whose logits turn NaN (an adapter with values the loader would refuse,
 * injected below the loader) or whose detokenizer throws ends with its typed error while the others
 * of the same steps finish bit-identical to their solo runs, and the KV blocks it used serve later
 * requests unpoisoned. And every sampling value the HTTP layer accepts, however extreme, gives a
 * valid token stream.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { baseShapeOf } from "../../src/adapters/base-shape.js";
import type { AdapterLoader } from "../../src/adapters/cache.js";
import { createAdapterLoader } from "../../src/adapters/loader.js";
import { AdapterRegistry } from "../../src/adapters/registry.js";
import type { LoraAdapter } from "../../src/adapters/types.js";
import type { CompletionRequest } from "../../src/engine/protocol.js";
import type { SamplingParams } from "../../src/engine/sampling.js";
import type { LoadedModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { randomAdapter } from "../helpers/random-adapter.js";
import { tempDir } from "../helpers/tmp.js";
import { alone, Harness, stream, tinyLlama3 } from "./harness.js";

const dir = tempDir("openlora-isolation-");
const adapterDir = join(dir, "adapters");
let model: LoadedModel;

beforeAll(async () => {
  model = await tinyLlama3(dir);
  mkdirSync(adapterDir, { recursive: true });
  for (let i = 0; i < 4; i++) {
    const common = { seed: 60 + i, rank: [8, 16][i % 2]!, alpha: 16, targets: ["q", "v", "down"] as Array<"q" | "v" | "down">, strength: 0.1 };
    if (i % 2 === 0) writePeftAdapter(join(adapterDir, `a${i}`), "tiny-llama3", { ...common, dtype: "F16" });
    else writeGgufLora(join(adapterDir, `a${i}.gguf`), "tiny-llama3", { ...common, type: "f32" });
  }
  native.setThreads(2);
});

async function registry(): Promise<AdapterRegistry> {
  const r = new AdapterRegistry();
  await r.scanDirectory(adapterDir);
  return r;
}

/** The real loader, except "poison": every A and B value 1e30 (the loader would refuse it). */
function poisonLoader(): AdapterLoader {
  const real = createAdapterLoader(baseShapeOf(model.config), { maxRank: 64 });
  const weights = randomAdapter(model.config, 8, 5, ["q", "v"]);
  for (const layer of weights.layers) for (const p of Object.values(layer)) { (p.a as Float32Array).fill(1e30); (p.b as Float32Array).fill(1e30); }
  const poison: LoraAdapter = { id: "poison", format: "gguf", path: "/injected/poison.gguf", contentHash: `0x${"5".repeat(64)}`, baseModel: undefined, targetModules: ["q", "v"], weights };
  return async (entry, signal) => (entry.id === "poison" ? poison : real(entry, signal));
}

async function poisonedRegistry(): Promise<AdapterRegistry> {
  const r = await registry();
  r.register("poison", { format: "gguf", path: "/injected/poison.gguf" });
  return r;
}

const NORMAL: Array<Partial<CompletionRequest>> = [
  { prompt: "The quick brown fox", maxTokens: 9, logprobs: 2 },
  { prompt: "Once upon a time there was", maxTokens: 7, adapters: [{ id: "a0", weight: 1 }], logprobs: 2 },
  { prompt: "A", maxTokens: 8, adapters: [{ id: "a1", weight: 0.7 }, { id: "a2", weight: 0.3 }], sampling: { temperature: 0.8, seed: 3 } },
  { prompt: "Adapters are small low-rank updates", maxTokens: 6, adapters: [{ id: "a3", weight: 1 }], sampling: { temperature: 1.2, topP: 0.9, seed: 9 } },
];
/** Prompts of ~40 tokens, so that a second wave needs blocks the poisoned sequence held. */
const LONG: Array<Partial<CompletionRequest>> = [0, 1, 2, 3].map((i) => ({
  prompt: `${"Many words make a long prompt for the cache. ".repeat(4)}${i}`, maxTokens: 8, logprobs: 1,
  ...(i % 2 ? { adapters: [{ id: `a${i}`, weight: 1 }] } : {}),
}));

describe("one sequence fails alone", () => {
  it("NaN logits end that sequence with LOGITS_NONFINITE; the batch goes on bit-identical; its KV blocks serve later requests clean", async () => {
    // Prefill chunks of 16: the poisoned prompt spans steps, so its blocks are seen held.
    const h = new Harness(model, await poisonedRegistry(), { kvBlocks: 16, blockSize: 16, prefillChunk: 16 }, { loader: poisonLoader() });
    const poisonPrompt = "Poisoned prompt that is long enough to fill several KV blocks of sixteen. ".repeat(6);
    const poison = h.submit({ prompt: poisonPrompt, maxTokens: 8, adapters: [{ id: "poison", weight: 1 }] });
    const first = NORMAL.map((r) => h.submit(r));
    let maxUsed = 0;
    await h.run(100_000, () => { maxUsed = Math.max(maxUsed, h.core.kv.usedBlocks); });
    const p = await poison.done;
    expect(p.final).toMatchObject({ type: "error", error: { code: "LOGITS_NONFINITE" } });
    expect(p.tokens).toEqual([]);
    expect(maxUsed).toBeGreaterThanOrEqual(7);
    expect(h.core.kv.usedBlocks).toBe(0);
    expect(h.core.adapters.stateOf("poison")?.refCount).toBe(0);
    for (const [i, r] of NORMAL.entries()) {
      const got = await first[i]!.done;
      expect(got.final.type, `request ${i}`).toBe("done");
      expect(stream(got), `request ${i}`).toEqual(stream(await alone(model, registry, r)));
    }
    // A second wave needs more blocks than the poisoned sequence left untouched: it reuses them.
    const second = LONG.map((r) => h.submit(r));
    maxUsed = 0;
    await h.run(100_000, () => { maxUsed = Math.max(maxUsed, h.core.kv.usedBlocks); });
    expect(maxUsed).toBeGreaterThan(16 - 7);
    for (const [i, r] of LONG.entries()) expect(stream(await second[i]!.done), `long ${i}`).toEqual(stream(await alone(model, registry, r)));
    expect(h.core.stats().steps).toBeGreaterThan(0);
  });

  it("a sequence whose detokenizer throws ends with its error alone; the others finish as alone", async () => {
    const h = new Harness(model, await registry());
    const victim = h.submit({ prompt: "Victim", maxTokens: 12 });
    const others = NORMAL.map((r) => h.submit(r));
    // Reach into the engine's sequence: a bug in one request's text path, not in the engine.
    const seqs = (h.core as unknown as { seqs: Map<number, { decoding: { decoder: { push: (t: number) => string } } }> }).seqs;
    let calls = 0;
    seqs.get(victim.id)!.decoding.decoder.push = () => {
      if (++calls === 3) throw new Error("detokenizer exploded");
      return "x";
    };
    await h.run();
    const v = await victim.done;
    expect(v.final).toMatchObject({ type: "error", error: { code: "INTERNAL" } });
    // Its third token was sampled but never streamed: the text path failed before the delta.
    expect(v.tokens).toHaveLength(2);
    for (const [i, r] of NORMAL.entries()) expect(stream(await others[i]!.done), `request ${i}`).toEqual(stream(await alone(model, registry, r)));
    expect(h.core.kv.usedBlocks).toBe(0);
  });
});

describe("extreme sampling values the HTTP layer accepts", () => {
  const MAX_SAFE = Number.MAX_SAFE_INTEGER;
  const cases: Array<[string, SamplingParams]> = [
    ["temperature 1e-300", { temperature: 1e-300, seed: 1 }],
    ["temperature 1e300", { temperature: 1e300, seed: 1 }],
    ["temperature max double", { temperature: Number.MAX_VALUE, seed: 1 }],
    ["top_k 2^53-1", { temperature: 1, topK: MAX_SAFE, seed: 2 }],
    ["top_p 1e-300", { temperature: 1, topP: 1e-300, seed: 3 }],
    ["min_p 1", { temperature: 1, minP: 1, seed: 4 }],
    ["repetition_penalty 1e-300", { temperature: 0.7, repetitionPenalty: 1e-300, seed: 5 }],
    ["repetition_penalty 1e300", { temperature: 0.7, repetitionPenalty: 1e300, seed: 6 }],
    ["repetition_penalty 1e-300, greedy", { repetitionPenalty: 1e-300 }],
    ["repetition_penalty 1e-300 with temperature max double", { temperature: Number.MAX_VALUE, repetitionPenalty: 1e-300, seed: 7 }],
    ["repetition_penalty 1e300 with temperature 1e-300", { temperature: 1e-300, repetitionPenalty: 1e300, seed: 7 }],
    ["presence +2, frequency +2", { temperature: 1, presencePenalty: 2, frequencyPenalty: 2, seed: 8 }],
    ["presence -2, frequency -2", { temperature: 1, presencePenalty: -2, frequencyPenalty: -2, seed: 8 }],
    ["seed 2^53-1", { temperature: 1, seed: MAX_SAFE }],
    ["seed -(2^53-1)", { temperature: 1, seed: -MAX_SAFE }],
    ["everything at once", { temperature: 1e300, topK: MAX_SAFE, topP: 1e-300, minP: 1, repetitionPenalty: 1e-300, presencePenalty: -2, frequencyPenalty: 2, seed: -MAX_SAFE }],
  ];

  it("each gives a full, valid token stream, all in one batch, and the same alone", async () => {
    const h = new Harness(model, await registry());
    const runs = cases.map(([, sampling]) => h.submit({ prompt: "Repeat repeat repeat the words", sampling, maxTokens: 12, logprobs: 1 }));
    await h.run();
    for (const [i, [what, sampling]] of cases.entries()) {
      const o = await runs[i]!.done;
      expect(o.final, what).toMatchObject({ type: "done", finishReason: "length", completionTokens: 12 });
      expect(o.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < model.config.vocabSize), what).toBe(true);
      expect(stream(o), what).toEqual(stream(await alone(model, registry, { prompt: "Repeat repeat repeat the words", sampling, maxTokens: 12, logprobs: 1 })));
    }
  });

  it("max_tokens up to the context limit runs to its end", async () => {
    const h = new Harness(model, await registry(), { kvBlocks: Math.ceil(model.config.contextLength / 16) + 1, blockSize: 16 });
    const prompt = [1, 2, 3, 4];
    const o = h.submit({ prompt, maxTokens: model.config.contextLength - prompt.length, sampling: { repetitionPenalty: 1e-300, presencePenalty: 2 } });
    const over = h.submit({ prompt, maxTokens: model.config.contextLength - prompt.length + 1 });
    await h.run();
    expect((await o.done).final).toMatchObject({ type: "done", finishReason: "length", completionTokens: model.config.contextLength - prompt.length });
    expect((await over.done).final).toMatchObject({ type: "error", error: { code: "CONTEXT_OVERFLOW" } });
  });
});
