/** The tokenizer interface the engine uses, and helpers shared by its implementations. */

export interface EncodeOptions {
  /** Add BOS (and EOS where the vocabulary asks for it). Default true. */
  addSpecial?: boolean;
  /** Match control tokens such as `<|im_start|>` in the text. Default true. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Render control/unknown tokens as nothing. Default false. */
  skipSpecial?: boolean;
  /**
   * The ids continue earlier text (generation after a prompt): keep the first token's leading
   * space, which decoding a whole SentencePiece text strips. Default false.
   */
  continuation?: boolean;
}

export interface StreamDecoder {
  /** Text completed by this token; never ends inside a UTF-8 character. */
  push(id: number): string;
  /** Whatever is still held back (an incomplete character comes out as U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  /** Every end-of-generation id (eos, eot, im_end…). */
  readonly eosIds: readonly number[];
  /** Whether encode(..., {addSpecial:true}) prepends BOS. */
  readonly addBos: boolean;
  readonly chatTemplate: string | undefined;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** Incremental detokenizer for streaming: push returns only newly completed text (never half a UTF-8 char). */
  createDecoder(opts?: DecodeOptions): StreamDecoder;
  isSpecial(id: number): boolean;
  /** Raw vocab string, for debugging. */
  tokenText(id: number): string;
}

/**
 * Token texts llama.cpp treats as end of generation whatever the metadata says
 * (llama_vocab::impl::load, "special_eog_ids").
 */
export const EOG_TEXTS: ReadonlySet<string> = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
  "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
  "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
  "<｜end▁of▁sentence｜>", "[e~[",
]);

/**
 * A streaming decoder for tokenizers that can only decode whole sequences (the HF path): decodes a
 * short window of recent tokens and emits what it adds. Trailing U+FFFD (half a character), spaces
 * and apostrophes (clean-up rules may still drop them) are held back until the next token.
 */
export function windowStreamDecoder(decodeAll: (ids: readonly number[]) => string, context = 4): StreamDecoder {
  const ids: number[] = [];
  let start = 0; // window start in ids
  let sent = 0; // chars of decode(ids[start:]) already emitted
  return {
    push(id: number): string {
      ids.push(id);
      const text = decodeAll(ids.slice(start));
      let end = text.length;
      while (end > sent && (text[end - 1] === "\uFFFD" || text[end - 1] === " " || text[end - 1] === "'")) end--;
      // A high surrogate alone is never emitted.
      if (end > sent && /[\uD800-\uDBFF]/.test(text[end - 1]!)) end--;
      const out = end > sent ? text.slice(sent, end) : "";
      sent = Math.max(sent, end);
      if (end === text.length) {
        // Everything so far is out: restart the window a few tokens back, all of it counted as sent.
        start = Math.max(start, ids.length - context);
        sent = decodeAll(ids.slice(start)).length;
      }
      return out;
    },
    flush(): string {
      const text = decodeAll(ids.slice(start));
      const out = text.slice(sent);
      sent = text.length;
      return out;
    },
  };
}
