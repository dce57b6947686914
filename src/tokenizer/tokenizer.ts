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
 * A streaming decoder for tokenizers that can only decode whole sequences: re-decodes everything
 * pushed so far and emits the part that can no longer change. Quadratic, so meant for the HF path.
 */
export function prefixStreamDecoder(decodeAll: (ids: readonly number[]) => string): StreamDecoder {
  const ids: number[] = [];
  let emitted = "";
  return {
    push(id: number): string {
      ids.push(id);
      const text = decodeAll(ids);
      // Hold back a trailing replacement char (maybe half a character) and trailing spaces
      // (clean-up rules may still remove them).
      let end = text.length;
      while (end > emitted.length && (text[end - 1] === "\uFFFD" || text[end - 1] === " " || text[end - 1] === "'")) end--;
      if (end <= emitted.length || !text.startsWith(emitted)) return "";
      const out = text.slice(emitted.length, end);
      emitted += out;
      return out;
    },
    flush(): string {
      const text = decodeAll(ids);
      const out = text.startsWith(emitted) ? text.slice(emitted.length) : "";
      emitted += out;
      return out;
    },
  };
}
