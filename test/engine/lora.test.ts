/**
 * LoRA in the forward pass: adapters change the output, weight 0 leaves it bit-identical to the
 * base model, composition is the sum of updates, and a request's logits are bit-identical alone
 * and inside a batch of many sequences on different adapters of mixed ranks, with 1 and 2 threads.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { generate, generateBatch, type GenerateRequest } from "../../src/engine/generate.js";
import { type LoadedModel, loadModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { convertAdapter } from "../../src/adapters/pair-storage.js";
import type { LoraAdapterWeights } from "../../src/adapters/types.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { randomAdapter } from "../helpers/random-adapter.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
let model: LoadedModel;

function bits(a: Float32Array[]): string {
  return a.map((x) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("base64")).join("|");
}

beforeAll(async () => {
  const path = join(dir, "tiny-llama3-q8.gguf");
  writeGgufModel(path, "tiny-llama3", { seed: 8, type: "q8_0" });
  model = await loadModel(path, { prefault: false });
});

describe("LoRA in the forward pass", () => {
  const prompt = "Adapters specialise a shared base model.";

  it("changes the output, and weight 0 gives the base model bit for bit", () => {
    native.setThreads(2);
    const a = randomAdapter(model.config, 16, 1, ["q", "k", "v", "o", "gate", "up", "down"]);
    const base = generate(model, { prompt, maxTokens: 8, ignoreEos: true }, { collectLogits: true });
    const zero = generate(model, { prompt, maxTokens: 8, ignoreEos: true, adapters: [{ adapter: a, weight: 0 }] }, { collectLogits: true });
    const full = generate(model, { prompt, maxTokens: 8, ignoreEos: true, adapters: [{ adapter: a, weight: 1 }] }, { collectLogits: true });
    expect(bits(zero.logits!)).toBe(bits(base.logits!));
    expect(bits(full.logits!)).not.toBe(bits(base.logits!));
  });

  it("is bit-identical alone and inside a batch of 32 sequences on 32 adapters of mixed ranks, 1 and 2 threads", () => {
    const ranks = [8, 16, 32, 64];
    const adapters = Array.from({ length: 32 }, (_, i) => randomAdapter(model.config, ranks[i % 4]!, 100 + i));
    const requests: GenerateRequest[] = adapters.map((a, i) => ({
      prompt: `Request ${i}: ${"word ".repeat(i % 7)}end`, maxTokens: 4 + (i % 5), ignoreEos: true, adapters: [{ adapter: a, weight: 1 }],
    }));
    requests[5] = { ...requests[5]!, adapters: [{ adapter: adapters[5]!, weight: 0.7 }, { adapter: adapters[6]!, weight: 0.3 }] };
    requests[9] = { ...requests[9]!, adapters: [] }; // a base-model request in the same batch
    native.setThreads(2);
    const batch2 = generateBatch(model, requests, { collectLogits: true });
    native.setThreads(1);
    const batch1 = generateBatch(model, requests, { collectLogits: true });
    native.setThreads(2);
    for (const i of [0, 3, 5, 9, 17, 31]) {
      const alone = generate(model, requests[i]!, { collectLogits: true });
      expect(batch2[i]!.tokens).toEqual(alone.tokens);
      expect(bits(batch2[i]!.logits!)).toBe(bits(alone.logits!));
      expect(bits(batch1[i]!.logits!)).toBe(bits(alone.logits!));
    }
  });

  it("gives the same bits with the segmented (prefill) and gathered LoRA paths, 1 and 2 threads", () => {
    const a = randomAdapter(model.config, 16, 21, ["q", "k", "v", "o", "gate", "up", "down"]);
    const b = randomAdapter(model.config, 5, 22);
    const request: GenerateRequest = { prompt, maxTokens: 6, ignoreEos: true, adapters: [{ adapter: a, weight: 0.8 }, { adapter: b, weight: -0.4 }] };
    const run = (path: "auto" | "gathered" | "segmented", threads: number) => {
      native.setLoraPath(path);
      native.setThreads(threads);
      try {
        return bits(generate(model, request, { collectLogits: true }).logits!);
      } finally {
        native.setLoraPath("auto");
        native.setThreads(2);
      }
    };
    const want = run("gathered", 1);
    for (const threads of [1, 2]) for (const path of ["auto", "segmented", "gathered"] as const) expect(run(path, threads)).toBe(want);
  });

  it("f16 and bf16 adapters held as 16 bits give the bits of their f32 copies, mixed with f32 adapters in one batch", () => {
    // The same values two ways: rounded to 16 bits and held as f32, and held as the 16 bits.
    const as16 = (w: LoraAdapterWeights, dtype: "f16" | "bf16") => {
      const half = convertAdapter(w, dtype);
      return { half, f32: convertAdapter(half, "f32") };
    };
    const x = as16(randomAdapter(model.config, 16, 31, ["q", "k", "v", "o", "gate", "up", "down"]), "f16");
    const y = as16(randomAdapter(model.config, 8, 32), "bf16");
    const plain = randomAdapter(model.config, 4, 33);
    const requests = (half: boolean): GenerateRequest[] => [
      { prompt, maxTokens: 5, ignoreEos: true, adapters: [{ adapter: half ? x.half : x.f32, weight: 1 }] },
      { prompt: "Another request.", maxTokens: 5, ignoreEos: true, adapters: [{ adapter: plain, weight: 1 }] },
      { prompt: "A third one, composed.", maxTokens: 5, ignoreEos: true, adapters: [{ adapter: half ? y.half : y.f32, weight: 0.6 }, { adapter: plain, weight: 0.4 }] },
    ];
    for (const threads of [1, 2]) {
      native.setThreads(threads);
      const want = generateBatch(model, requests(false), { collectLogits: true });
      const got = generateBatch(model, requests(true), { collectLogits: true });
      for (let i = 0; i < 3; i++) expect(bits(got[i]!.logits!), `request ${i} threads ${threads}`).toBe(bits(want[i]!.logits!));
    }
    native.setThreads(2);
    expect(x.half.layers[0]!.q!.a).toBeInstanceOf(Uint16Array);
    expect(x.half.bytes * 2).toBe(x.f32.bytes);
    // The 16-bit adapter really acts: its request differs from the base model's.
    const base = generate(model, { ...requests(true)[0]!, adapters: [] }, { collectLogits: true });
    expect(bits(base.logits!)).not.toBe(bits(generate(model, requests(true)[0]!, { collectLogits: true }).logits!));
  });

  it("composes adapters as the sum of their updates (within float rounding)", () => {
    native.setThreads(2);
    const a = randomAdapter(model.config, 8, 7);
    const b = randomAdapter(model.config, 24, 9);
    const composed = generate(model, { prompt, maxTokens: 1, adapters: [{ adapter: a, weight: 0.7 }, { adapter: b, weight: 0.3 }] }, { collectLogits: true });
    // The same update from one adapter holding both (rank 8 + 24 = 32, A stacked, B side by side, weights folded into B).
    const cat = {
      maxRank: 32, bytes: 0,
      layers: a.layers.map((la, l) => Object.fromEntries(Object.entries(la).map(([m, pa]) => {
        const pb = b.layers[l]![m as keyof typeof la]!;
        const A = new Float32Array(32 * pa.inDim);
        A.set(pa.a, 0); A.set(pb.a, 8 * pa.inDim);
        const B = new Float32Array(pa.outDim * 32);
        for (let n = 0; n < pa.outDim; n++) {
          for (let j = 0; j < 8; j++) B[n * 32 + j] = 0.7 * pa.scale * pa.b[n * 8 + j]!;
          for (let j = 0; j < 24; j++) B[n * 32 + 8 + j] = 0.3 * pb.scale * pb.b[n * 24 + j]!;
        }
        return [m, { rank: 32, inDim: pa.inDim, outDim: pa.outDim, a: A, b: B, dtype: "f32", scale: 1 }];
      }))),
    };
    const single = generate(model, { prompt, maxTokens: 1, adapters: [{ adapter: cat, weight: 1 }] }, { collectLogits: true });
    const x = composed.logits![0]!, y = single.logits![0]!;
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    expect(worst).toBeLessThan(0.05);
    expect(single.tokens).toEqual(composed.tokens);
  });
});
