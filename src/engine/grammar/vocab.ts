/**
 * The vocabulary as xgrammar sees it, built from openlora's Tokenizer interface: the raw token
 * strings (xgrammar decodes them itself), the vocabulary type, the stop tokens, and the ids that
 * may never be sampled under a constraint.
 *
 * Vocabulary types (xgrammar's TokenizerInfo):
 *  - BYTE_LEVEL: GPT-2 byte-to-unicode strings ("Ġhello", "Ċ") — Llama 3, Qwen2/3 (HF and GGUF gpt2);
 *  - BYTE_FALLBACK: SentencePiece pieces ("▁hello") with "<0x0A>"-style byte tokens — Llama 2,
 *    Mistral (HF and GGUF llama);
 *  - RAW: anything else, strings taken literally.
 * The Tokenizer interface does not name its type, so it is detected from the vocabulary (all 256
 * "<0xXX>" tokens → BYTE_FALLBACK; "Ġ" and "Ċ" present → BYTE_LEVEL), overridable by the caller.
 *
 * Never allowed under a constraint (their string is sent as "", which xgrammar treats as special):
 * control/unknown tokens (tokenizer.isSpecial), ids the tokenizer cannot name, and tokens that
 * decode to nothing (GGUF holes such as "[PAD123]"); plus every id past the tokenizer's vocabulary
 * up to the model's (padding rows of the logits). The stop tokens (tokenizer.eosIds) are allowed
 * exactly when the constraint can end.
 */
import { oerr } from "../../errors.js";
import type { Tokenizer } from "../../tokenizer/tokenizer.js";

export type VocabType = "BYTE_LEVEL" | "BYTE_FALLBACK" | "RAW";

export interface GrammarVocab {
  /** Raw token strings by id, "" for never-allowed ids; length = min(tokenizer, model vocab). */
  readonly encoded: string[];
  readonly type: VocabType;
  /** The logits row length; the mask has ceil(vocabSize / 32) words. */
  readonly vocabSize: number;
  readonly stopIds: readonly number[];
  /** Bit set = the id may ever be allowed (ordinary tokens and stop tokens). */
  readonly sampleable: Int32Array;
  /** Bit set = stop token. */
  readonly stopMask: Int32Array;
}

const BYTE_TOKEN = /^<0x[0-9A-F]{2}>$/;
/** Texts of tokens that may render as nothing (holes in GGUF vocabularies, unused slots). */
const MAYBE_EMPTY = /^(\[.*\]|<.*>)$/;

export function maskWords(vocabSize: number): number {
  return Math.ceil(vocabSize / 32);
}

function tokenTextOrUndefined(tok: Tokenizer, id: number): string | undefined {
  try {
    return tok.tokenText(id);
  } catch {
    return undefined;
  }
}

/** Detects the vocabulary type from the token strings (see the file comment). */
export function detectVocabType(texts: readonly (string | undefined)[]): VocabType {
  let bytes = 0;
  let hasG = false;
  let hasC = false;
  for (const t of texts) {
    if (t === undefined) continue;
    if (t.length === 6 && BYTE_TOKEN.test(t)) bytes++;
    else if (t === "\u0120") hasG = true;
    else if (t === "\u010a") hasC = true;
  }
  if (bytes >= 256) return "BYTE_FALLBACK";
  if (hasG && hasC) return "BYTE_LEVEL";
  return "RAW";
}

export interface VocabOptions {
  /** The model's logits row length (default: tokenizer.vocabSize). */
  vocabSize?: number;
  /** Overrides detection. */
  vocabType?: VocabType;
}

export function buildGrammarVocab(tok: Tokenizer, opts: VocabOptions = {}): GrammarVocab {
  const vocabSize = opts.vocabSize ?? tok.vocabSize;
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) throw oerr("INVALID_ARGUMENT", `vocabSize must be a positive integer, got ${vocabSize}`);
  const n = Math.min(tok.vocabSize, vocabSize);
  const texts: (string | undefined)[] = new Array(n);
  for (let id = 0; id < n; id++) texts[id] = tokenTextOrUndefined(tok, id);
  const type = opts.vocabType ?? detectVocabType(texts);
  const stopIds = [...new Set(tok.eosIds)].filter((id) => Number.isInteger(id) && id >= 0 && id < n).sort((a, b) => a - b);
  if (stopIds.length === 0) throw oerr("INVALID_ARGUMENT", "the tokenizer has no end-of-sequence token inside the model's vocabulary; a constraint could never end");
  const stop = new Set(stopIds);

  const words = maskWords(vocabSize);
  const sampleable = new Int32Array(words);
  const stopMask = new Int32Array(words);
  const encoded: string[] = new Array(n);
  for (let id = 0; id < n; id++) {
    const t = texts[id];
    let ok = t !== undefined && t.length > 0;
    if (ok && !stop.has(id)) {
      if (tok.isSpecial(id)) ok = false;
      else if (MAYBE_EMPTY.test(t!) && decodesEmpty(tok, id)) ok = false;
    }
    encoded[id] = ok ? t! : "";
    if (ok || stop.has(id)) sampleable[id >> 5]! |= 1 << (id & 31);
    if (stop.has(id)) stopMask[id >> 5]! |= 1 << (id & 31);
  }
  return { encoded, type, vocabSize, stopIds, sampleable, stopMask };
}

function decodesEmpty(tok: Tokenizer, id: number): boolean {
  try {
    return tok.decode([id], { continuation: true }) === "";
  } catch {
    return true;
  }
}
