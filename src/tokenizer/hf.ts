/**
 * Tokenizer from Hugging Face tokenizer.json / tokenizer_config.json, backed by
 * @huggingface/tokenizers. BOS/EOS are added here rather than by the library's post-processor,
 * because many tokenizer.json files (e.g. some Llama 3 copies) omit the TemplateProcessing step that
 * transformers relies on.
 */
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { oerr } from "../errors.js";
import { configChatTemplate, configTokenText, postProcessorAddsBos } from "./to-gguf.js";
import { EOG_TEXTS, windowStreamDecoder, type DecodeOptions, type EncodeOptions, type StreamDecoder, type Tokenizer } from "./tokenizer.js";

type Json = Record<string, unknown>;

function build(json: Json, config: Json): HfTokenizer {
  try {
    return new HfTokenizer(json, config);
  } catch (e) {
    throw oerr("TOKENIZER_INVALID", `tokenizer.json could not be loaded: ${(e as Error).message}`);
  }
}

export function tokenizerFromHfFiles(tokenizerJson: object, tokenizerConfig: object = {}): Tokenizer {
  const json = tokenizerJson as Json;
  const config = tokenizerConfig as Json;
  if (typeof json !== "object" || json === null || typeof json["model"] !== "object" || json["model"] === null) {
    throw oerr("TOKENIZER_INVALID", "tokenizer.json has no model");
  }
  if (json["added_tokens"] !== undefined && !Array.isArray(json["added_tokens"])) {
    throw oerr("TOKENIZER_INVALID", "tokenizer.json added_tokens is not a list");
  }
  const hf = build(json, config);
  const added = ((json["added_tokens"] ?? []) as { id: number; content: string; special?: boolean }[]);
  const specialIds = new Set(added.filter((a) => a.special).map((a) => a.id));
  for (const t of (config["additional_special_tokens"] ?? []) as unknown[]) {
    const id = typeof t === "string" ? hf.token_to_id(t) : undefined;
    if (id !== undefined) specialIds.add(id);
  }

  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  const idOfConfig = (key: string): number | undefined => {
    const t = configTokenText(config[key]);
    return t === undefined ? undefined : hf.token_to_id(t);
  };
  const bosId = idOfConfig("bos_token");
  const eosId = idOfConfig("eos_token");
  const bosText = configTokenText(config["bos_token"]);
  const addBos = bosId !== undefined && (typeof config["add_bos_token"] === "boolean"
    ? config["add_bos_token"]
    : postProcessorAddsBos(json, bosText) ?? true);
  const addEos = eosId !== undefined && config["add_eos_token"] === true;
  const eos = new Set<number>();
  if (eosId !== undefined) eos.add(eosId);
  for (const a of added) if (EOG_TEXTS.has(a.content)) eos.add(a.id);

  // Without special-token parsing, control tokens in the text are tokenized as plain text: a second
  // tokenizer that does not know them as added tokens (user-defined ones are still split out).
  let plain: HfTokenizer | undefined;
  const plainTokenizer = (): HfTokenizer => {
    plain ??= build({ ...json, added_tokens: added.filter((a) => !a.special) }, { ...config, additional_special_tokens: [] });
    return plain;
  };

  const decode = (ids: readonly number[], opts: DecodeOptions = {}): string => {
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw oerr("INVALID_ARGUMENT", `token id ${id} out of range`);
    }
    return hf.decode([...ids], { skip_special_tokens: opts.skipSpecial ?? false });
  };

  return {
    vocabSize,
    bosId,
    eosIds: [...eos].sort((a, b) => a - b),
    addBos,
    chatTemplate: configChatTemplate(config),
    encode(text: string, opts: EncodeOptions = {}): number[] {
      const tok = (opts.parseSpecial ?? true) ? hf : plainTokenizer();
      const ids = text.length > 0 ? tok.encode(text, { add_special_tokens: false }).ids : [];
      if (opts.addSpecial ?? true) {
        if (addBos) ids.unshift(bosId!);
        if (addEos) ids.push(eosId!);
      }
      return ids;
    },
    decode,
    createDecoder(opts: DecodeOptions = {}): StreamDecoder {
      if (!opts.continuation) return windowStreamDecoder((ids) => decode(ids, opts));
      // Decoders such as Metaspace strip the first token's leading space: decode after a fixed
      // anchor token and drop the anchor's text, so a continuation keeps its space.
      const anchor = hf.encode("a", { add_special_tokens: false }).ids[0]!;
      const anchorText = decode([anchor], opts);
      return windowStreamDecoder((ids) => decode([anchor, ...ids], opts).slice(anchorText.length));
    },
    isSpecial: (id: number): boolean => specialIds.has(id),
    tokenText(id: number): string {
      const t = hf.id_to_token(id);
      if (t === undefined) throw oerr("INVALID_ARGUMENT", `token id ${id} out of range`);
      return t;
    },
  };
}
