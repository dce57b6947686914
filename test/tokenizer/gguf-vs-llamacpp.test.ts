/**
 * The GGUF-vocabulary tokenizer against llama.cpp itself (through node-llama-cpp, vocab-only), for
 * the three bundled vocabularies, and against the tokenizer.json path.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { parseGguf } from "../../src/formats/gguf.js";
import { readFileSync } from "node:fs";
import { tokenizerFromGguf } from "../../src/tokenizer/gguf-vocab.js";
import { tokenizerFromHfFiles } from "../../src/tokenizer/hf.js";
import type { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import type { GgufEntry } from "../../src/formats/gguf-writer.js";
import { CORPUS, fuzzStrings, loadFamily, rng, writeVocabGguf } from "./helpers.js";

let llama: Llama;

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", maxThreads: 2, logLevel: LlamaLogLevel.error });
});

afterAll(async () => {
  await llama?.dispose();
});

// The three bundled vocabularies, plus Llama 3's vocabulary under the other pre-tokenizers and
// without add_bos, to cover the GPT-2 splitter, llama.cpp's four-regex "default" and the flags.
const VARIANTS: { label: string; name: "llama3" | "qwen3" | "llama2"; overrides?: Record<string, GgufEntry> }[] = [
  { label: "llama3", name: "llama3" },
  { label: "qwen3", name: "qwen3" },
  { label: "llama2", name: "llama2" },
  { label: "llama3-vocab/gpt-2-pre", name: "llama3", overrides: { "tokenizer.ggml.pre": { type: "string", value: "gpt-2" } } },
  { label: "llama3-vocab/default-pre", name: "llama3", overrides: { "tokenizer.ggml.pre": { type: "string", value: "default" }, "tokenizer.ggml.add_bos_token": { type: "bool", value: false } } },
  { label: "llama2-no-space-prefix", name: "llama2", overrides: { "tokenizer.ggml.add_space_prefix": { type: "bool", value: false }, "tokenizer.ggml.add_eos_token": { type: "bool", value: true } } },
];

describe.each(VARIANTS)("$label: GGUF vocabulary vs llama.cpp", ({ label, name, overrides }) => {
  let model: LlamaModel;
  let ours: Tokenizer;

  beforeAll(async () => {
    const { path } = writeVocabGguf(name, overrides, label.replace(/\W/g, "_"));
    model = await llama.loadModel({ modelPath: path, vocabOnly: true });
    ours = tokenizerFromGguf(parseGguf(readFileSync(path), path).metadata, path);
  });

  afterAll(async () => {
    await model?.dispose();
  });

  const llamaTokenize = (text: string, parseSpecial: boolean, addSpecial: boolean): number[] => {
    const ids = text === "" ? [] : model.tokenize(text, parseSpecial);
    // node-llama-cpp tokenizes with add_special = false; BOS is what llama.cpp would prepend.
    const bos = addSpecial && model.tokens.shouldPrependBosToken ? [model.tokens.bos!] : [];
    const eos = addSpecial && model.tokens.shouldAppendEosToken ? [model.tokens.eos!] : [];
    return [...bos, ...ids, ...eos];
  };

  it("agrees on special ids and flags", () => {
    expect(ours.bosId).toBe(model.tokens.bos ?? undefined);
    expect(ours.addBos).toBe(model.tokens.shouldPrependBosToken);
    expect(ours.eosIds).toContain(model.tokens.eos);
    if (model.tokens.eot != null) expect(ours.eosIds).toContain(model.tokens.eot);
    for (const id of ours.eosIds) expect(model.isEogToken(id as Token)).toBe(true);
  });

  it.each([
    [true, true], [false, true], [true, false], [false, false],
  ])("tokenizes the corpus like llama_tokenize (addSpecial=%s, parseSpecial=%s)", (addSpecial, parseSpecial) => {
    const mismatches: string[] = [];
    for (const text of CORPUS) {
      const want = llamaTokenize(text, parseSpecial, addSpecial);
      const got = ours.encode(text, { addSpecial, parseSpecial });
      if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)} llama.cpp ${JSON.stringify(want)}`);
    }
    expect(mismatches).toEqual([]);
  });

  it("detokenizes like llama_detokenize, and the stream decoder joins to decode", () => {
    const mismatches: string[] = [];
    for (const text of CORPUS) {
      const ids = ours.encode(text);
      for (const skipSpecial of [false, true]) {
        const want = model.detokenize(ids as Token[], !skipSpecial);
        const got = ours.decode(ids, { skipSpecial });
        if (got !== want) mismatches.push(`${JSON.stringify(text)} skip=${skipSpecial}: ours ${JSON.stringify(got)} llama.cpp ${JSON.stringify(want)}`);
        const dec = ours.createDecoder({ skipSpecial });
        let streamed = "";
        for (const id of ids) {
          const piece = dec.push(id);
          expect(piece).not.toMatch(/\uFFFD$/u);
          streamed += piece;
        }
        streamed += dec.flush();
        if (streamed !== got) mismatches.push(`${JSON.stringify(text)} skip=${skipSpecial}: stream ${JSON.stringify(streamed)} decode ${JSON.stringify(got)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("tokenizes random strings like llama_tokenize", () => {
    const mismatches: string[] = [];
    for (const [i, text] of fuzzStrings(1234, 400).entries()) {
      const parseSpecial = i % 2 === 0;
      const want = llamaTokenize(text, parseSpecial, true);
      const got = ours.encode(text, { parseSpecial });
      if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(`${JSON.stringify(text)} parse=${parseSpecial}: ours ${JSON.stringify(got)} llama.cpp ${JSON.stringify(want)}`);
    }
    expect(mismatches).toEqual([]);
  });

  it("detokenizes random id sequences like llama_detokenize, streaming included", () => {
    const r = rng(99);
    const mismatches: string[] = [];
    for (let i = 0; i < 200; i++) {
      // Mix arbitrary ids with low ids (byte tokens in SPM, single bytes in BPE) to split UTF-8.
      const ids = Array.from({ length: 1 + Math.floor(r() * 10) }, () =>
        Math.floor(r() * (r() < 0.5 ? 300 : ours.vocabSize)));
      for (const skipSpecial of [false, true]) {
        const want = model.detokenize(ids as Token[], !skipSpecial);
        const got = ours.decode(ids, { skipSpecial });
        if (got !== want) mismatches.push(`${JSON.stringify(ids)} skip=${skipSpecial}: ours ${JSON.stringify(got)} llama.cpp ${JSON.stringify(want)}`);
        const dec = ours.createDecoder({ skipSpecial });
        const streamed = ids.map((id) => dec.push(id)).join("") + dec.flush();
        if (streamed !== got) mismatches.push(`${JSON.stringify(ids)} skip=${skipSpecial}: stream ${JSON.stringify(streamed)} decode ${JSON.stringify(got)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("decodes single tokens like llama.cpp's token_to_piece", () => {
    const mismatches: string[] = [];
    const step = Math.max(1, Math.floor(ours.vocabSize / 3000));
    for (let id = 1; id < ours.vocabSize; id += step) {
      const want = model.detokenize([0, id] as Token[], true);
      const got = ours.decode([0, id]);
      if (got !== want) mismatches.push(`${id}: ours ${JSON.stringify(got)} llama.cpp ${JSON.stringify(want)}`);
    }
    expect(mismatches).toEqual([]);
  });
});

describe.each(["llama3", "qwen3", "llama2"] as const)("%s: GGUF path vs tokenizer.json path", (name) => {
  it("encodes the corpus identically", () => {
    const { path } = writeVocabGguf(name);
    const gguf = tokenizerFromGguf(parseGguf(readFileSync(path), path).metadata, path);
    const { json, config } = loadFamily(name);
    const hf = tokenizerFromHfFiles(json, config);
    expect(gguf.bosId).toBe(hf.bosId);
    expect(gguf.addBos).toBe(hf.addBos);
    const mismatches: string[] = [];
    for (const text of CORPUS) {
      const a = gguf.encode(text);
      const b = hf.encode(text);
      // Known, deliberate divergence: llama.cpp turns every token whose text is in its
      // end-of-generation list into a control token, including Qwen's ordinary "</s>" (128247),
      // so in llama.cpp (and our GGUF path) "</s>" in Qwen text is one token; HF spells it out.
      if (name === "qwen3" && text.includes("</s>")) {
        expect(a).toContain(128247);
        continue;
      }
      if (JSON.stringify(a) !== JSON.stringify(b)) mismatches.push(`${JSON.stringify(text)}: gguf ${JSON.stringify(a)} hf ${JSON.stringify(b)}`);
    }
    expect(mismatches).toEqual([]);
  });
});
