export type { DecodeOptions, EncodeOptions, StreamDecoder, Tokenizer } from "./tokenizer.js";
export { tokenizerFromHfFiles } from "./hf.js";
export { tokenizerFromGguf } from "./gguf-vocab.js";
export { ggufTokenizerMetadata, tokenizerFamilies, type TokenizerFamily } from "./to-gguf.js";
