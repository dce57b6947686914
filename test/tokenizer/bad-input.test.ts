/** Malformed or incomplete tokenizer definitions fail with typed error codes. */
import { describe, expect, it } from "vitest";
import { isOpenLoraError, type ErrorCode } from "../../src/errors.js";
import type { GgufValue } from "../../src/formats/gguf.js";
import { tokenizerFromGguf } from "../../src/tokenizer/gguf-vocab.js";
import { tokenizerFromHfFiles } from "../../src/tokenizer/hf.js";
import { ggufTokenizerMetadata } from "../../src/tokenizer/to-gguf.js";

function code(fn: () => unknown): ErrorCode | "no error" | "untyped" {
  try {
    fn();
    return "no error";
  } catch (e) {
    return isOpenLoraError(e) ? e.code : "untyped";
  }
}

const gpt2 = (extra: Record<string, GgufValue> = {}): Map<string, GgufValue> => new Map<string, GgufValue>(Object.entries({
  "tokenizer.ggml.model": "gpt2",
  "tokenizer.ggml.pre": "llama-bpe",
  "tokenizer.ggml.tokens": ["a", "b", "ab", "Ġ"],
  "tokenizer.ggml.token_type": Int32Array.from([1, 1, 1, 1]),
  "tokenizer.ggml.merges": ["a b"],
  "tokenizer.ggml.bos_token_id": 0,
  ...extra,
}));

describe("GGUF vocabulary: bad input", () => {
  it("a minimal valid vocabulary works", () => {
    const t = tokenizerFromGguf(gpt2({ "tokenizer.ggml.add_bos_token": false }), "mem");
    expect(t.encode("ab a")).toEqual([2, 3, 0]);
    expect(t.decode([2, 3, 0])).toBe("ab a");
  });

  it("missing model, tokens or merges → TOKENIZER_MISSING", () => {
    const noModel = gpt2();
    noModel.delete("tokenizer.ggml.model");
    expect(code(() => tokenizerFromGguf(noModel, "mem"))).toBe("TOKENIZER_MISSING");
    const noTokens = gpt2();
    noTokens.delete("tokenizer.ggml.tokens");
    expect(code(() => tokenizerFromGguf(noTokens, "mem"))).toBe("TOKENIZER_MISSING");
    const noMerges = gpt2();
    noMerges.delete("tokenizer.ggml.merges");
    expect(code(() => tokenizerFromGguf(noMerges, "mem"))).toBe("TOKENIZER_MISSING");
  });

  it("unknown model or pre-tokenizer, wrong types, short arrays → TOKENIZER_INVALID", () => {
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.model": "wordpiece-ish" }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.pre": "no-such-pre" }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.tokens": Int32Array.from([1, 2]) }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.tokens": [] }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.token_type": Int32Array.from([1]) }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.scores": ["x"] }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.merges": "a b" }), "mem"))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromGguf(gpt2({ "tokenizer.ggml.add_bos_token": 1 }), "mem"))).toBe("TOKENIZER_INVALID");
  });

  it("an SPM vocabulary without byte tokens cannot encode unknown characters → TOKENIZER_MISSING", () => {
    const spm = new Map<string, GgufValue>(Object.entries({
      "tokenizer.ggml.model": "llama",
      "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>", "\u2581", "a"],
      "tokenizer.ggml.scores": Float32Array.from([0, 0, 0, -1, -2]),
      "tokenizer.ggml.token_type": Int32Array.from([2, 3, 3, 1, 1]),
    }));
    const t = tokenizerFromGguf(spm, "mem");
    expect(t.encode("a a")).toEqual([1, 3, 4, 3, 4]);
    expect(code(() => t.encode("é"))).toBe("TOKENIZER_MISSING");
  });

  it("out-of-range ids in decode → INVALID_ARGUMENT", () => {
    const t = tokenizerFromGguf(gpt2(), "mem");
    expect(code(() => t.decode([99]))).toBe("INVALID_ARGUMENT");
    expect(code(() => t.createDecoder().push(-1))).toBe("INVALID_ARGUMENT");
    expect(code(() => t.tokenText(4))).toBe("INVALID_ARGUMENT");
  });
});

describe("tokenizer.json: bad input", () => {
  it("no model → TOKENIZER_INVALID; no vocab or merges → TOKENIZER_MISSING; unsupported model type → TOKENIZER_INVALID", () => {
    expect(code(() => tokenizerFromHfFiles({}))).toBe("TOKENIZER_INVALID");
    expect(code(() => tokenizerFromHfFiles({ model: { type: "BPE", vocab: {}, merges: [] }, added_tokens: 5 }))).toBe("TOKENIZER_INVALID");
    expect(code(() => ggufTokenizerMetadata({ model: { type: "BPE", merges: [] } }))).toBe("TOKENIZER_MISSING");
    expect(code(() => ggufTokenizerMetadata({ model: { type: "BPE", vocab: { a: 0 } }, decoder: { type: "ByteLevel" } }))).toBe("TOKENIZER_MISSING");
    expect(code(() => ggufTokenizerMetadata({ model: { type: "Unigram", vocab: [] } }))).toBe("TOKENIZER_INVALID");
    expect(code(() => ggufTokenizerMetadata({ model: { type: "BPE", vocab: { a: 0 }, merges: [] } }))).toBe("TOKENIZER_INVALID");
    expect(code(() => ggufTokenizerMetadata({ model: { type: "BPE", vocab: { a: -1 }, merges: [], byte_fallback: true } }))).toBe("TOKENIZER_INVALID");
  });
});
