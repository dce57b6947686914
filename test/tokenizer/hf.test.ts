/** The tokenizer.json path (@huggingface/tokenizers) on the bundled vocabularies. */
import { describe, expect, it } from "vitest";
import { tokenizerFromHfFiles } from "../../src/tokenizer/hf.js";
import { CORPUS, fuzzStrings, loadFamily, rng } from "./helpers.js";

const hf = (name: "llama3" | "qwen3" | "llama2") => {
  const { json, config } = loadFamily(name);
  return tokenizerFromHfFiles(json, config);
};

/** transformers' clean_up_tokenization, which Llama 3's tokenizer_config.json turns on. */
function hfCleanup(s: string): string {
  return s.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!").replaceAll(" ,", ",")
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

describe("tokenizer.json path", () => {
  it("Llama 3: known ids, BOS, EOS set, chat template", () => {
    const t = hf("llama3");
    expect(t.encode("Hello world")).toEqual([128000, 9906, 1917]);
    expect(t.encode("Hello world", { addSpecial: false })).toEqual([9906, 1917]);
    expect(t.encode("<|begin_of_text|>Hi<|eot_id|>", { addSpecial: false })).toEqual([128000, 13347, 128009]);
    expect(t.encode("<|eot_id|>", { addSpecial: false, parseSpecial: false }).length).toBeGreaterThan(1);
    expect(t.encode("1234567")).toEqual([128000, 4513, 10961, 22]); // digits in groups of three
    expect(t.bosId).toBe(128000);
    expect(t.addBos).toBe(true);
    expect(t.eosIds).toEqual(expect.arrayContaining([128001, 128009]));
    expect(t.vocabSize).toBe(128256);
    expect(t.isSpecial(128000)).toBe(true);
    expect(t.isSpecial(9906)).toBe(false);
    expect(t.tokenText(9906)).toBe("Hello");
    expect(t.chatTemplate).toContain("<|start_header_id|>");
  });

  it("Qwen3: known ids, no BOS, im_end ends generation", () => {
    const t = hf("qwen3");
    expect(t.encode("Hello world")).toEqual([9707, 1879]);
    expect(t.encode("<|im_start|>user\nHi<|im_end|>")).toEqual([151644, 872, 198, 13048, 151645]);
    expect(t.encode("123")).toEqual([16, 17, 18]); // one digit per token
    expect(t.bosId).toBeUndefined();
    expect(t.addBos).toBe(false);
    expect(t.eosIds).toEqual(expect.arrayContaining([151643, 151645]));
    expect(t.chatTemplate).toContain("<|im_start|>");
  });

  it("Llama 2: known ids with the SentencePiece space prefix", () => {
    const t = hf("llama2");
    // The bundled SentencePiece vocabulary's ids (not Meta's original piece order).
    expect(t.encode("Hello world")).toEqual([1, 22557, 1526]);
    expect(t.tokenText(22557)).toBe("\u2581Hello");
    expect(t.bosId).toBe(1);
    expect(t.addBos).toBe(true);
    expect(t.eosIds).toContain(2);
  });

  it.each(["llama3", "qwen3", "llama2"] as const)("%s: decode(encode(x)) round-trips the corpus; streaming joins to decode", (name) => {
    const t = hf(name);
    const failures: string[] = [];
    for (const text of CORPUS) {
      // Legacy SentencePiece prepends "▁" after every special token, so such text cannot round-trip.
      if (name === "llama2" && /<\/?s>/.test(text)) continue;
      const ids = t.encode(text, { addSpecial: false });
      const back = t.decode(ids);
      const want = name === "llama3" ? hfCleanup(text) : text;
      if (back !== want) failures.push(`${JSON.stringify(text)} → ${JSON.stringify(back)}`);
      const dec = t.createDecoder();
      const streamed = ids.map((id) => dec.push(id)).join("") + dec.flush();
      if (streamed !== back) failures.push(`stream ${JSON.stringify(streamed)} vs ${JSON.stringify(back)}`);
    }
    expect(failures).toEqual([]);
  });

  it.each(["llama3", "qwen3", "llama2"] as const)("%s: the stream decoder joins to decode on random text and random ids", (name) => {
    const t = hf(name);
    const r = rng(7);
    const failures: string[] = [];
    const cases = [
      ...fuzzStrings(42, 150).map((s) => t.encode(s)),
      ...Array.from({ length: 150 }, () => Array.from({ length: 1 + Math.floor(r() * 12) }, () => Math.floor(r() * (r() < 0.5 ? 300 : t.vocabSize)))),
    ];
    for (const ids of cases) {
      for (const skipSpecial of [false, true]) {
        const whole = t.decode(ids, { skipSpecial });
        const dec = t.createDecoder({ skipSpecial });
        const streamed = ids.map((id) => dec.push(id)).join("") + dec.flush();
        if (streamed !== whole) failures.push(`${JSON.stringify(ids)}: stream ${JSON.stringify(streamed)} decode ${JSON.stringify(whole)}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it("skipSpecial drops control tokens when decoding", () => {
    const t = hf("qwen3");
    const ids = t.encode("<|im_start|>user\nHi<|im_end|>");
    expect(t.decode(ids)).toBe("<|im_start|>user\nHi<|im_end|>");
    expect(t.decode(ids, { skipSpecial: true })).toBe("user\nHi");
    expect(t.decode([])).toBe("");
  });
});
