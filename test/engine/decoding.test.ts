/**
 * The one per-token step (engine/decoding.ts) on a real tiny model, through generate(): logit bias,
 * min_tokens, include_stop_str_in_output and a grammar mask change the tokens exactly as stated,
 * and the same parameters give the same tokens again (what a receipt replay relies on).
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { generate } from "../../src/engine/generate.js";
import { ConstraintCompiler } from "../../src/engine/grammar/index.js";
import { type LoadedModel, loadModel } from "../../src/model/load.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { isOpenLoraError } from "../../src/errors.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
let model: LoadedModel;

beforeAll(async () => {
  const path = join(dir, "m.gguf");
  writeGgufModel(path, "tiny-qwen3", { seed: 11, type: "q8_0" });
  model = await loadModel(path, { prefault: false });
});

describe("decoding", () => {
  const base = { prompt: "The one per-token step", maxTokens: 8 };

  it("a +100 logit bias forces the token at every greedy step; -100 bars the greedy token", () => {
    const free = generate(model, base);
    const forced = generate(model, { ...base, logitBias: { "42": 100 } });
    expect(forced.tokens.every((t) => t === 42)).toBe(true);
    const barred = generate(model, { ...base, logitBias: { [String(free.tokens[0])]: -100 } });
    expect(barred.tokens[0]).not.toBe(free.tokens[0]);
  });

  it("min_tokens bars end-of-sequence until reached", () => {
    const eos = model.tokenizer.eosIds[0]!;
    const early = generate(model, { ...base, logitBias: { [String(eos)]: 100 } });
    expect(early.tokens).toEqual([eos]);
    expect(early.finishReason).toBe("eos");
    const held = generate(model, { ...base, minTokens: 5, logitBias: { [String(eos)]: 100 } });
    expect(held.tokens.length).toBe(6);
    expect(held.tokens.slice(0, 5)).not.toContain(eos);
    expect(held.tokens[5]).toBe(eos);
  });

  it("include_stop_str_in_output keeps the matched stop string", () => {
    const free = generate(model, { ...base, maxTokens: 12, ignoreEos: true });
    const stop = free.text.slice(3, 5);
    expect(stop.length).toBe(2);
    const cut = generate(model, { ...base, maxTokens: 12, ignoreEos: true, stop: [stop] });
    const kept = generate(model, { ...base, maxTokens: 12, ignoreEos: true, stop: [stop], includeStopStr: true });
    expect(cut.finishReason).toBe("stop");
    expect(kept.text).toBe(cut.text + stop);
    expect(free.text.startsWith(kept.text)).toBe(true);
  });

  it("rejects logit_bias outside the vocabulary or range, and min_tokens above max_tokens", () => {
    const bad = (r: object) => { try { generate(model, { ...base, ...r }); return "ok"; } catch (e) { return isOpenLoraError(e, "INVALID_ARGUMENT") ? "invalid" : String(e); } };
    expect(bad({ logitBias: { [String(model.config.vocabSize)]: 1 } })).toBe("invalid");
    expect(bad({ logitBias: { "5": 101 } })).toBe("invalid");
    expect(bad({ logitBias: { "-1": 1 } })).toBe("invalid");
    expect(bad({ minTokens: 9 })).toBe("invalid");
  });

  it("a grammar mask makes the random-weight model answer one of the choices, identically on a second run", async () => {
    const cc = await ConstraintCompiler.create(model.tokenizer, { vocabSize: model.config.vocabSize });
    try {
      const compiled = await cc.compile({ kind: "choice", choices: ["alpha", "beta gamma", "delta"] });
      const run = () => generate(model, { ...base, maxTokens: 16, sampling: { temperature: 1, seed: 7 }, constraint: compiled.matcher() });
      const a = run();
      expect(["alpha", "beta gamma", "delta"]).toContain(a.text);
      expect(a.finishReason).toBe("eos");
      expect(run().tokens).toEqual(a.tokens);
    } finally {
      cc.dispose();
    }
  });
});
