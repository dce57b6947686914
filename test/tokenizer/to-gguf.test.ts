/** tokenizer.json → GGUF tokenizer metadata, and reading it back through a real GGUF file. */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { parseGguf } from "../../src/formats/gguf.js";
import { tokenizerFromGguf } from "../../src/tokenizer/gguf-vocab.js";
import { TOKEN_TYPE } from "../../src/tokenizer/llama-algo.js";
import { ggufTokenizerMetadata, tokenizerFamilies } from "../../src/tokenizer/to-gguf.js";
import { loadFamily, writeVocabGguf } from "./helpers.js";

const meta = (name: "llama3" | "qwen3" | "llama2", vocabSize?: number) => {
  const { json, config } = loadFamily(name);
  return ggufTokenizerMetadata(json, config, vocabSize === undefined ? {} : { vocabSize });
};
const val = (m: ReturnType<typeof meta>, k: string): unknown => m[k]?.value;

describe("ggufTokenizerMetadata", () => {
  it("lists the bundled vocabularies", () => {
    const fams = tokenizerFamilies();
    expect(fams.map((f) => f.name)).toEqual(["llama3", "qwen3", "llama2"]);
    for (const f of fams) expect(readFileSync(f.tokenizerJsonPath, "utf8").length).toBeGreaterThan(1000);
  });

  it("Llama 3 → gpt2 / llama-bpe", () => {
    const m = meta("llama3");
    expect(val(m, "tokenizer.ggml.model")).toBe("gpt2");
    expect(val(m, "tokenizer.ggml.pre")).toBe("llama-bpe");
    const tokens = val(m, "tokenizer.ggml.tokens") as string[];
    const types = val(m, "tokenizer.ggml.token_type") as number[];
    expect(tokens.length).toBe(128256);
    expect(tokens[128000]).toBe("<|begin_of_text|>");
    expect(types[128000]).toBe(TOKEN_TYPE.CONTROL);
    expect(types[9906]).toBe(TOKEN_TYPE.NORMAL);
    expect((val(m, "tokenizer.ggml.merges") as string[])[0]).toBe("Ġ Ġ");
    expect(val(m, "tokenizer.ggml.bos_token_id")).toBe(128000);
    expect(val(m, "tokenizer.ggml.eos_token_id")).toBe(128001);
    expect(val(m, "tokenizer.ggml.eot_token_id")).toBe(128009);
    expect(val(m, "tokenizer.ggml.add_bos_token")).toBe(true);
    expect(val(m, "tokenizer.chat_template")).toContain("<|start_header_id|>");
  });

  it("Qwen3 → gpt2 / qwen2, user-defined vs control added tokens, [PAD] holes", () => {
    const m = meta("qwen3", 151936);
    expect(val(m, "tokenizer.ggml.pre")).toBe("qwen2");
    const tokens = val(m, "tokenizer.ggml.tokens") as string[];
    const types = val(m, "tokenizer.ggml.token_type") as number[];
    expect(tokens.length).toBe(151936);
    expect(tokens[151700]).toBe("[PAD151700]");
    expect(types[151700]).toBe(TOKEN_TYPE.UNUSED);
    expect(types[151644]).toBe(TOKEN_TYPE.CONTROL); // <|im_start|>, special
    expect(types[151659]).toBe(TOKEN_TYPE.CONTROL); // <|fim_prefix|>: not special but looks special
    expect(tokens[151667]).toBe("<think>");
    expect(types[151667]).toBe(TOKEN_TYPE.USER_DEFINED);
    expect((val(m, "tokenizer.ggml.merges") as string[])[0]).toBe("Ġ Ġ");
    expect(val(m, "tokenizer.ggml.bos_token_id")).toBeUndefined();
    expect(val(m, "tokenizer.ggml.eos_token_id")).toBe(151645);
    expect(val(m, "tokenizer.ggml.padding_token_id")).toBe(151643);
    expect(val(m, "tokenizer.ggml.add_bos_token")).toBe(false);
  });

  it("Llama 2 → llama (SentencePiece) with scores from the merge order", () => {
    const m = meta("llama2");
    expect(val(m, "tokenizer.ggml.model")).toBe("llama");
    const tokens = val(m, "tokenizer.ggml.tokens") as string[];
    const types = val(m, "tokenizer.ggml.token_type") as number[];
    const scores = val(m, "tokenizer.ggml.scores") as number[];
    expect(tokens.length).toBe(32000);
    expect(types.slice(0, 4)).toEqual([TOKEN_TYPE.UNKNOWN, TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL, TOKEN_TYPE.BYTE]);
    expect(tokens[3]).toBe("<0x00>");
    expect(types[22557]).toBe(TOKEN_TYPE.NORMAL);
    expect(scores[tokens.indexOf("▁t")]).toBe(-1); // the first merge
    expect(scores[22557]).toBeLessThan(scores[tokens.indexOf("▁t")]!);
    expect(val(m, "tokenizer.ggml.add_bos_token")).toBe(true);
    expect(val(m, "tokenizer.ggml.add_space_prefix")).toBe(true);
    expect(val(m, "tokenizer.ggml.unknown_token_id")).toBe(0);
    expect(val(m, "tokenizer.ggml.merges")).toBeUndefined();
  });

  it("survives a GGUF write/read round trip", () => {
    const { path, metadata } = writeVocabGguf("qwen3");
    const file = parseGguf(readFileSync(path), path);
    expect(file.metadata.get("tokenizer.ggml.tokens")).toEqual(metadata["tokenizer.ggml.tokens"]!.value);
    const t = tokenizerFromGguf(file.metadata, path);
    expect(t.encode("Hello world")).toEqual([9707, 1879]);
    expect(t.vocabSize).toBe(151669);
    expect(t.isSpecial(151644)).toBe(true);
    expect(t.isSpecial(151667)).toBe(false);
    expect(t.tokenText(151667)).toBe("<think>");
  });
});
