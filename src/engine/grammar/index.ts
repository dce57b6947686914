/**
 * Grammar-constrained decoding: OpenAI response_format (json_object, json_schema) and vLLM's
 * guided_json / guided_regex / guided_choice / guided_grammar as a token mask per decoding step,
 * computed by xgrammar (the engine vLLM uses) compiled to WebAssembly.
 *
 * Use, on the engine thread:
 *   const cc = await ConstraintCompiler.create(tokenizer, { vocabSize: model.vocabSize }); // once
 *   const compiled = await cc.compile(validateConstraintSpec(request.constraint));         // per request, cached
 *   const m = compiled.matcher();                                                          // per sequence
 *   each step: if (m.isTerminated()) finish; m.fillMask(mask); applyMask(logits, mask); sample; m.accept(id)
 *   m.dispose() when the sequence ends.
 * Everything is deterministic: the same vocabulary, spec and token sequence give the same masks on
 * every run and thread count (xgrammar's web build is single-threaded).
 */
export { ConstraintCompiler, type CompiledConstraint, type ConstraintCompilerOptions } from "./compiler.js";
export type { ConstraintMatcher } from "./matcher.js";
export { allowedIds, applyMask, isAllowed } from "./mask.js";
export { constraintKey, validateConstraintSpec, MAX_CHOICES, MAX_CONSTRAINT_CHARS, type ConstraintKind, type ConstraintSpec } from "./spec.js";
export { detectVocabType, maskWords, type VocabType } from "./vocab.js";
