/** Shared fixtures for the tokenizer tests: bundled vocabularies, vocab-only GGUF files, a corpus. */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeGguf, type GgufEntry } from "../../src/formats/gguf-writer.js";
import { ggufTokenizerMetadata, tokenizerFamilies, type TokenizerFamily } from "../../src/tokenizer/to-gguf.js";
import { mulberry32 as rng } from "../../src/synth/random.js";

export { rng };

export interface LoadedFamily {
  family: TokenizerFamily;
  json: Record<string, unknown>;
  config: Record<string, unknown>;
}

const cache = new Map<string, LoadedFamily>();

export function loadFamily(name: TokenizerFamily["name"]): LoadedFamily {
  let hit = cache.get(name);
  if (!hit) {
    const family = tokenizerFamilies().find((f) => f.name === name)!;
    hit = {
      family,
      json: JSON.parse(readFileSync(family.tokenizerJsonPath, "utf8")),
      config: JSON.parse(readFileSync(family.tokenizerConfigPath, "utf8")),
    };
    cache.set(name, hit);
  }
  return hit;
}

/** Hyper-parameters llama.cpp reads for the architecture (values are tiny and arbitrary). */
export function archMetadata(arch: string, vocabSize: number): Record<string, GgufEntry> {
  const u32 = (value: number): GgufEntry => ({ type: "u32", value });
  return {
    "general.architecture": { type: "string", value: arch },
    "general.name": { type: "string", value: `openlora-test-${arch}` },
    [`${arch}.context_length`]: u32(256),
    [`${arch}.embedding_length`]: u32(64),
    [`${arch}.block_count`]: u32(1),
    [`${arch}.feed_forward_length`]: u32(128),
    [`${arch}.attention.head_count`]: u32(4),
    [`${arch}.attention.head_count_kv`]: u32(2),
    [`${arch}.attention.key_length`]: u32(16),
    [`${arch}.attention.value_length`]: u32(16),
    [`${arch}.rope.dimension_count`]: u32(16),
    [`${arch}.rope.freq_base`]: { type: "f32", value: 10000 },
    [`${arch}.attention.layer_norm_rms_epsilon`]: { type: "f32", value: 1e-5 },
    [`${arch}.vocab_size`]: u32(vocabSize),
  };
}

let dir: string | undefined;

/** Writes a vocab-only (tensor-less) GGUF for the family and returns its path. */
export function writeVocabGguf(
  name: TokenizerFamily["name"],
  overrides: Record<string, GgufEntry> = {},
  tag = "",
): { path: string; metadata: Record<string, GgufEntry> } {
  dir ??= mkdtempSync(join(tmpdir(), "openlora-tok-"));
  const { family, json, config } = loadFamily(name);
  const tok = ggufTokenizerMetadata(json, config);
  const n = (tok["tokenizer.ggml.tokens"]!.value as readonly string[]).length;
  const metadata = { ...archMetadata(family.architecture, n), ...tok, ...overrides };
  const path = join(dir, `${name}${tag}-vocab.gguf`);
  writeGguf(path, metadata, []);
  return { path, metadata };
}

export const CORPUS: readonly string[] = [
  "",
  "Hello world",
  "Hello, world! How are you doing today?",
  " leading space",
  "trailing space ",
  "  two leading spaces",
  "multiple     spaces   inside",
  "   ",
  " ",
  "\t",
  "tabs\tand\t\ttabs",
  "\n",
  "line1\nline2\n\nline4\n\n\n",
  "\r\nwindows\r\nlines\r\n",
  " \n \n  \t\n",
  "The year 2024 had 365 days; 1234567890 is a long number, and 3.14159 is pi.",
  "12345678901234567890",
  "x=1;y=22;z=333;w=4444",
  "def foo(bar):\n    return bar ** 2  # square\n",
  "function f(a, b) {\n\treturn a + b;\n}\n",
  "if (x != y && z >= 10) { console.log(`${x}`); }",
  "I'm sure they're here, aren't they? We'll see... It's OK. I'VE GOT IT, YOU'LL SEE.",
  "Punctuation!!! ??? ... --- *** ((()))[]{}<>",
  "Hello , world . What ' s up ?",
  "Café naïve résumé façade Ångström Über straße",
  "Ελληνικά και Русский текст",
  "日本語のテキストと中文文本，还有한국어 텍스트。",
  "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷",
  "مرحبا بالعالم، كيف حالك؟",
  "עברית ✓ हिन्दी ภาษาไทย",
  "Mixed: abc123def 456ghi 7.8.9 v2.0.1-beta",
  "<|begin_of_text|>Hello<|eot_id|>",
  "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
  "<s>[INST] Hi [/INST]</s>",
  "text with <s> inside and </s> at end",
  "<think>\nreasoning\n</think>\n\nanswer",
  "<|endoftext|><|endoftext|>",
  "a<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>",
  "\u00a0non-breaking\u00a0space and zero\u200bwidth",
  "ÿþ \u0085 \ufeffBOM",
  "a".repeat(300),
  "The quick brown fox jumps over the lazy dog. ".repeat(8),
];


const FUZZ_PIECES = [
  " ", " ", " ", "  ", "\t", "\n", "\r\n", "\n\n", "'", "'s", "'RE", "'ll", "a", "e", "the", "The", " of", "ing",
  "0", "1", "12", "123", "4567", ".", ",", "!", "?", "...", "-", "_", "(", ")", "{", "}", "<", ">", "/", "\\", "\"", "#",
  "é", "ñ", "ß", "Ж", "ω", "中", "文", "日本", "한", "ا", "ل", "ש", "ह", "ไ", "😀", "👍🏽", "🇫🇷", "\u200b", "\u00a0",
  "\u3000", "\u0085", "\u2028", "²", "½", "Ⅻ", "٣", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>",
  "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "▁", "<0x0A>", "Ġ", "<|", "|>",
];

/** Random strings built from pieces that stress the pre-tokenizers and special-token matching. */
export function fuzzStrings(seed: number, count: number): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = 1 + Math.floor(r() * 12);
    let s = "";
    for (let k = 0; k < n; k++) s += FUZZ_PIECES[Math.floor(r() * FUZZ_PIECES.length)];
    out.push(s);
  }
  return out;
}
