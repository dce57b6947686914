/**
 * Tokenizer from the vocabulary embedded in a GGUF file, behaving like llama.cpp's llama_vocab
 * (load, tokenize, detokenize) for tokenizer.ggml.model "llama" (SentencePiece) and "gpt2"
 * (byte-level BPE).
 */
import { oerr, quoted } from "../errors.js";
import type { GgufValue } from "../formats/gguf.js";
import {
  ATTR, TOKEN_TYPE, bpeTokenize, cleanSpaces, partition, spmTokenize, type BpeModel, type Vocab,
} from "./llama-algo.js";
import { EOG_TEXTS, type DecodeOptions, type EncodeOptions, type StreamDecoder, type Tokenizer } from "./tokenizer.js";
import { CHAR_TO_BYTE, wellFormed, type SplitKind } from "./unicode.js";

interface PreInfo { split: SplitKind; ignoreMerges?: boolean; addBos?: boolean; cleanSpaces: boolean }

/** tokenizer.ggml.pre values llama.cpp maps onto the pre-tokenizers implemented here. */
const PRE_TYPES: Record<string, PreInfo> = {};
for (const n of ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"]) {
  PRE_TYPES[n] = { split: "llama3", ignoreMerges: true, addBos: true, cleanSpaces: true };
}
for (const n of ["dbrx", "smaug-bpe", "glm4", "chatglm-bpe"]) PRE_TYPES[n] = { split: "llama3", cleanSpaces: true };
for (const n of ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2"]) PRE_TYPES[n] = { split: "qwen2", cleanSpaces: false };
for (const n of ["megrez", "stablelm2"]) PRE_TYPES[n] = { split: "qwen2", cleanSpaces: true };
for (const n of ["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
  "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais", "exaone4"]) {
  PRE_TYPES[n] = { split: "gpt2", cleanSpaces: true };
}
PRE_TYPES["trillion"] = { split: "gpt2", cleanSpaces: false };
PRE_TYPES["default"] = { split: "default", cleanSpaces: true };

// Auto-detected by text when the metadata names no id (llama_vocab::impl::load).
const EOT_TEXTS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
  "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"];
const FIM_TEXTS = {
  pre: ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
  suf: ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
  mid: ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"],
  pad: ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
  rep: ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
  sep: ["<|file_sep|>"],
};

function get(meta: Map<string, GgufValue>, key: string): GgufValue | undefined {
  return meta.get(key);
}

function optString(meta: Map<string, GgufValue>, key: string, source: string): string | undefined {
  const v = get(meta, key);
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw oerr("TOKENIZER_INVALID", `${source}: ${key} is not a string`);
  return v;
}

function optBool(meta: Map<string, GgufValue>, key: string, source: string): boolean | undefined {
  const v = get(meta, key);
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw oerr("TOKENIZER_INVALID", `${source}: ${key} is not a boolean`);
  return v;
}

function optId(meta: Map<string, GgufValue>, key: string, source: string): number | undefined {
  const v = get(meta, key);
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) throw oerr("TOKENIZER_INVALID", `${source}: ${key} is not an integer`);
  return v;
}

function stringArray(meta: Map<string, GgufValue>, key: string, source: string): string[] | undefined {
  const v = get(meta, key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw oerr("TOKENIZER_INVALID", `${source}: ${key} is not a string array`);
  return v as string[];
}

function numberArray(meta: Map<string, GgufValue>, key: string, source: string, n: number, ints: boolean): ArrayLike<number> | undefined {
  const v = get(meta, key);
  if (v === undefined) return undefined;
  const ok = ints ? v instanceof Int32Array || v instanceof Uint32Array : v instanceof Float32Array || v instanceof Int32Array;
  if (!ok) throw oerr("TOKENIZER_INVALID", `${source}: ${key} has the wrong array type`);
  const arr = v as Int32Array | Float32Array;
  if (arr.length < n) throw oerr("TOKENIZER_INVALID", `${source}: ${key} has ${arr.length} entries for ${n} tokens`);
  return arr;
}

const ATTR_OF_TYPE: Record<number, number> = {
  [TOKEN_TYPE.NORMAL]: ATTR.NORMAL, [TOKEN_TYPE.UNKNOWN]: ATTR.UNKNOWN, [TOKEN_TYPE.CONTROL]: ATTR.CONTROL,
  [TOKEN_TYPE.USER_DEFINED]: ATTR.USER_DEFINED, [TOKEN_TYPE.UNUSED]: ATTR.UNUSED, [TOKEN_TYPE.BYTE]: ATTR.BYTE,
};

const utf8enc = new TextEncoder();

export function tokenizerFromGguf(metadata: Map<string, GgufValue>, source: string): Tokenizer {
  const model = optString(metadata, "tokenizer.ggml.model", source);
  if (model === undefined) throw oerr("TOKENIZER_MISSING", `${source}: no tokenizer.ggml.model`);
  if (model !== "llama" && model !== "gpt2") throw oerr("TOKENIZER_INVALID", `${source}: unsupported tokenizer model ${quoted(model)}`);
  const spm = model === "llama";

  let pre: PreInfo = { split: "default", cleanSpaces: false };
  if (!spm) {
    const name = optString(metadata, "tokenizer.ggml.pre", source) ?? "default";
    const info = PRE_TYPES[name];
    if (!info) throw oerr("TOKENIZER_INVALID", `${source}: unsupported pre-tokenizer ${quoted(name)}`);
    pre = info;
  }

  const tokens = stringArray(metadata, "tokenizer.ggml.tokens", source);
  if (!tokens) throw oerr("TOKENIZER_MISSING", `${source}: no tokenizer.ggml.tokens`);
  const n = tokens.length;
  if (n === 0) throw oerr("TOKENIZER_INVALID", `${source}: empty vocabulary`);
  const scoresIn = numberArray(metadata, "tokenizer.ggml.scores", source, n, false);
  const types = numberArray(metadata, "tokenizer.ggml.token_type", source, n, true);

  const texts: string[] = new Array(n);
  const scores = new Float32Array(n);
  const attrs = new Uint8Array(n);
  const textToId = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!.length > 0 ? tokens[i]! : `[EMPTY_${i}]`;
    texts[i] = t;
    textToId.set(t, i);
    scores[i] = scoresIn ? scoresIn[i]! : 0;
    attrs[i] = types ? (ATTR_OF_TYPE[types[i]!] ?? ATTR.UNDEFINED) : ATTR.NORMAL;
  }
  const vocab: Vocab = { texts, scores, attrs, textToId };

  let bpe: BpeModel | undefined;
  if (!spm) {
    const merges = stringArray(metadata, "tokenizer.ggml.merges", source);
    if (!merges) throw oerr("TOKENIZER_MISSING", `${source}: gpt2 tokenizer without tokenizer.ggml.merges`);
    const ranks = new Map<string, number>();
    merges.forEach((m, i) => {
      const at = m.indexOf(" ", 1);
      ranks.set(at === -1 ? " " : m, i);
    });
    bpe = { vocab, ranks, split: pre.split, ignoreMerges: pre.ignoreMerges ?? false };
  }

  const inRange = (id: number | undefined): number | undefined => (id !== undefined && id >= 0 && id < n ? id : undefined);
  const pick = (key: string, dflt: number | undefined): number | undefined => {
    const v = optId(metadata, key, source);
    return v !== undefined && v >= 0 && v < n ? v : inRange(dflt);
  };
  const bosId = pick("tokenizer.ggml.bos_token_id", spm ? 1 : 11);
  const eosId = pick("tokenizer.ggml.eos_token_id", spm ? 2 : 11);
  let eotId = pick("tokenizer.ggml.eot_token_id", undefined);
  let eomId = pick("tokenizer.ggml.eom_token_id", undefined);
  const addBos = optBool(metadata, "tokenizer.ggml.add_bos_token", source) ?? (spm ? true : pre.addBos ?? false);
  const addEos = optBool(metadata, "tokenizer.ggml.add_eos_token", source) ?? false;
  const addSpacePrefix = optBool(metadata, "tokenizer.ggml.add_space_prefix", source) ?? spm;
  if (addBos && bosId === undefined) throw oerr("TOKENIZER_INVALID", `${source}: add_bos_token set but no BOS token`);
  if (addEos && eosId === undefined) throw oerr("TOKENIZER_INVALID", `${source}: add_eos_token set but no EOS token`);

  // Text-based detection, as llama.cpp does; a detected token becomes a control token.
  const findFirst = (list: readonly string[]): number | undefined => {
    let best: number | undefined;
    for (const t of list) {
      const id = textToId.get(t);
      if (id !== undefined && (best === undefined || id < best)) best = id;
    }
    if (best !== undefined) attrs[best] |= ATTR.CONTROL;
    return best;
  };
  if (eotId === undefined) eotId = findFirst(EOT_TEXTS);
  if (eomId === undefined) eomId = findFirst(["<|eom_id|>"]);
  for (const k of ["pre", "suf", "mid"] as const) {
    if (optId(metadata, `tokenizer.ggml.fim_${k}_token_id`, source) === undefined) findFirst(FIM_TEXTS[k]);
  }
  const eog = new Set<number>();
  for (const k of ["pad", "rep", "sep"] as const) {
    const id = inRange(optId(metadata, `tokenizer.ggml.fim_${k}_token_id`, source)) ?? findFirst(FIM_TEXTS[k]);
    if (id !== undefined) eog.add(id);
  }
  for (let i = 0; i < n; i++) {
    if (EOG_TEXTS.has(texts[i]!)) { eog.add(i); attrs[i] |= ATTR.CONTROL; }
    if (texts[i] === "<|channel|>" || texts[i] === "<|message|>" || texts[i] === "<|start|>" || texts[i] === "<|constrain|>") {
      attrs[i] = ATTR.USER_DEFINED;
    }
  }
  // llama.cpp's fallback ids (11 for BPE) name ordinary tokens unless the metadata says otherwise;
  // like node-llama-cpp, expose a default BOS/EOS only when it is a control token.
  const realDefault = (key: string, id: number | undefined): number | undefined =>
    metadata.has(key) || (id !== undefined && attrs[id]! & ATTR.CONTROL) ? id : undefined;
  const publicBos = realDefault("tokenizer.ggml.bos_token_id", bosId);
  for (const id of [realDefault("tokenizer.ggml.eos_token_id", eosId), eotId, eomId]) if (id !== undefined) eog.add(id);

  const specials: number[] = [];
  for (let i = 0; i < n; i++) if (attrs[i]! & (ATTR.CONTROL | ATTR.USER_DEFINED | ATTR.UNKNOWN)) specials.push(i);
  const byteLen = new Map(specials.map((id) => [id, utf8enc.encode(texts[id]!).length]));
  specials.sort((a, b) => byteLen.get(b)! - byteLen.get(a)! || a - b);

  const chatTemplate = optString(metadata, "tokenizer.chat_template", source);
  return new GgufTokenizer(vocab, bpe, specials, {
    bosId, publicBos, eosId, eosIds: [...eog].sort((a, b) => a - b), addBos, addEos, addSpacePrefix,
    cleanSpaces: !spm && pre.cleanSpaces, chatTemplate,
  });
}

interface Settings {
  /** What llama.cpp prepends when add_bos is set. */
  bosId: number | undefined;
  publicBos: number | undefined;
  eosId: number | undefined;
  eosIds: number[];
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
  cleanSpaces: boolean;
  chatTemplate: string | undefined;
}

const EMPTY = new Uint8Array(0);

class GgufTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosIds: readonly number[];
  readonly addBos: boolean;
  readonly chatTemplate: string | undefined;
  /**
   * Every token's bytes end to end; token i is pieceBytes[pieceStart[i], pieceStart[i + 1]). One
   * buffer rather than one array per token: 128k small typed arrays were ~26 MB of the engine
   * thread's heap, marked again by every major GC.
   */
  private readonly pieceBytes: Uint8Array;
  private readonly pieceStart: Uint32Array;
  private readonly wordCache = new Map<string, number[]>();

  constructor(
    private readonly vocab: Vocab,
    private readonly bpe: BpeModel | undefined,
    private readonly specials: readonly number[],
    private readonly s: Settings,
  ) {
    this.vocabSize = vocab.texts.length;
    this.bosId = s.publicBos;
    this.eosIds = s.eosIds;
    this.addBos = s.addBos;
    this.chatTemplate = s.chatTemplate;
    const pieces = vocab.texts.map((_, id) => this.piece(id));
    this.pieceStart = new Uint32Array(pieces.length + 1);
    for (let i = 0; i < pieces.length; i++) this.pieceStart[i + 1] = this.pieceStart[i]! + pieces[i]!.length;
    this.pieceBytes = new Uint8Array(this.pieceStart[pieces.length]!);
    for (let i = 0; i < pieces.length; i++) this.pieceBytes.set(pieces[i]!, this.pieceStart[i]!);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecial = opts.addSpecial ?? true;
    const frags = partition(wellFormed(text), this.specials, this.vocab, opts.parseSpecial ?? true);
    const out: number[] = [];
    if (addSpecial && this.s.addBos) out.push(this.s.bosId!);
    let prevSpecial = true;
    for (const f of frags) {
      if (typeof f === "number") { out.push(f); prevSpecial = true; continue; }
      if (this.bpe) {
        bpeTokenize(this.bpe, f, out, this.wordCache);
      } else {
        // SentencePiece: a space prefix for the first fragment and after every special token.
        const t = (this.s.addSpacePrefix && prevSpecial ? " " : "") + f;
        spmTokenize(this.vocab, t.replaceAll(" ", "\u2581"), out);
      }
      prevSpecial = false;
    }
    if (addSpecial && this.s.addEos) out.push(this.s.eosId!);
    return out;
  }

  /** token_to_piece(special = true): the bytes a token renders as. */
  private piece(id: number): Uint8Array {
    const attr = this.vocab.attrs[id]!;
    const text = this.vocab.texts[id]!;
    if (attr & (ATTR.UNKNOWN | ATTR.CONTROL | ATTR.USER_DEFINED)) return utf8enc.encode(text);
    if (attr & ATTR.NORMAL) {
      if (!this.bpe) return utf8enc.encode(text.replaceAll("\u2581", " "));
      const bytes: number[] = [];
      for (const ch of text) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b !== undefined) { bytes.push(b); continue; }
        const hex = [...utf8enc.encode(ch)].map((x) => x.toString(16).padStart(2, "0")).join("");
        bytes.push(...utf8enc.encode(`[UNK_BYTE_0x${hex}${text}]`));
      }
      return Uint8Array.from(bytes);
    }
    if (attr & ATTR.BYTE) return Uint8Array.of(parseInt(text.substring(3, 5), 16) & 0xff);
    return EMPTY;
  }

  private pieceFor(id: number, skipSpecial: boolean, lstrip: boolean): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw oerr("INVALID_ARGUMENT", `token id ${id} out of range`);
    if (skipSpecial && this.vocab.attrs[id]! & (ATTR.UNKNOWN | ATTR.CONTROL)) return EMPTY;
    let start = this.pieceStart[id]!;
    const end = this.pieceStart[id + 1]!;
    if (lstrip && start < end && this.pieceBytes[start] === 0x20) start++;
    return this.pieceBytes.subarray(start, end);
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecial ?? false;
    const parts = ids.map((id, i) => this.pieceFor(id, skip, i === 0 && this.s.addSpacePrefix && !opts.continuation));
    const total = parts.reduce((a, p) => a + p.length, 0);
    let bytes: Uint8Array = new Uint8Array(total);
    let o = 0;
    for (const p of parts) { bytes.set(p, o); o += p.length; }
    if (this.s.cleanSpaces) bytes = cleanSpaces(bytes);
    return new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes);
  }

  createDecoder(opts: DecodeOptions = {}): StreamDecoder {
    const skip = opts.skipSpecial ?? false;
    const dec = new TextDecoder("utf-8", { ignoreBOM: true });
    const clean = this.s.cleanSpaces;
    let first = true;
    let pend: number[] = [];
    const emit = (bytes: Uint8Array, final: boolean): string => {
      const b = clean ? cleanSpaces(bytes) : bytes;
      return dec.decode(b, { stream: !final });
    };
    return {
      push: (id: number): string => {
        const p = this.pieceFor(id, skip, first && this.s.addSpacePrefix && !opts.continuation);
        first = false;
        if (!clean) return dec.decode(p, { stream: true });
        for (const b of p) pend.push(b);
        // The clean-up passes look at spaces and apostrophes up to two bytes ahead: hold those back.
        let c = pend.length;
        while (c > 0 && (pend[c - 1] === 0x20 || pend[c - 1] === 0x27 || (c >= 2 && pend[c - 2] === 0x27))) c--;
        if (c === 0) return "";
        const out = emit(Uint8Array.from(pend.slice(0, c)), false);
        pend = pend.slice(c);
        return out;
      },
      flush: (): string => {
        const out = emit(Uint8Array.from(pend), true);
        pend = [];
        return out;
      },
    };
  }

  isSpecial(id: number): boolean {
    return (this.vocab.attrs[id] ?? 0) & (ATTR.CONTROL | ATTR.UNKNOWN) ? true : false;
  }

  tokenText(id: number): string {
    const t = this.vocab.texts[id];
    if (t === undefined) throw oerr("INVALID_ARGUMENT", `token id ${id} out of range`);
    return t;
  }
}
