/**
 * Generation over the batched forward pass: several sequences prefill together, then decode in
 * lock-step, each with its own sampler, stop strings and end-of-sequence ids. This is the
 * building block the continuous-batching engine drives step by step.
 */
import { oerr } from "../errors.js";
import type { LoadedModel } from "../model/load.js";
import { type AppliedAdapter, buildBatch, type SequenceChunk } from "../model/llama.js";
import { Decoding, type DecodingParams, type FinishReason, type TokenConstraint, validateDecoding } from "./decoding.js";
import { PagedKvCache } from "./kv-cache.js";
import type { SamplingParams } from "./sampling.js";

export type { FinishReason } from "./decoding.js";

export interface GenerateRequest extends Partial<Omit<DecodingParams, "maxTokens">> {
  /** Either a prompt text (tokenized with the model's special tokens) or token ids. */
  prompt: string | readonly number[];
  maxTokens: number;
  sampling?: SamplingParams;
  /** LoRA adapters with weights (several = their weighted sum); none = the base model. */
  adapters?: readonly AppliedAdapter[];
  /** A grammar's token mask per step (a fresh matcher: it is advanced and disposed here). */
  constraint?: TokenConstraint;
}

export interface GenerateResult {
  promptTokens: number[];
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  /** Logits of every sampled position, when asked for (tests, verification). */
  logits?: Float32Array[];
}

export interface GenerateOptions {
  /** Streams each request's newly completed text. */
  onText?: (index: number, text: string) => void;
  collectLogits?: boolean;
  /** Largest number of prompt tokens one sequence feeds per step. Default 512. */
  prefillChunk?: number;
  blockSize?: number;
}

class SequenceState {
  readonly promptTokens: number[];
  readonly table: number[] = [];
  readonly logits: Float32Array[] = [];
  readonly decoding: Decoding;
  cached = 0;
  text = "";

  constructor(readonly index: number, readonly req: GenerateRequest, loaded: LoadedModel, eos: ReadonlySet<number>) {
    this.promptTokens = typeof req.prompt === "string" ? loaded.tokenizer.encode(req.prompt) : [...req.prompt];
    const params: DecodingParams = {
      maxTokens: req.maxTokens, sampling: req.sampling ?? {}, stop: req.stop ?? [], ignoreEos: req.ignoreEos ?? false,
      ...(req.minTokens !== undefined ? { minTokens: req.minTokens } : {}),
      ...(req.logitBias !== undefined ? { logitBias: req.logitBias } : {}),
      ...(req.includeStopStr !== undefined ? { includeStopStr: req.includeStopStr } : {}),
    };
    validate(params, loaded, this.promptTokens.length);
    this.decoding = new Decoding(params, loaded.tokenizer, eos, req.constraint);
  }

  get all(): number[] {
    const g = this.decoding.generated;
    return g.length ? [...this.promptTokens, ...g] : this.promptTokens;
  }
}

function validate(p: DecodingParams, loaded: LoadedModel, promptLen: number): void {
  validateDecoding(p, loaded.config.vocabSize);
  if (promptLen === 0) throw oerr("INVALID_ARGUMENT", "the prompt is empty (no tokens)");
  const ctx = loaded.config.contextLength;
  if (promptLen + p.maxTokens > ctx) {
    throw oerr("CONTEXT_OVERFLOW", `prompt (${promptLen} tokens) + max tokens (${p.maxTokens}) exceeds the context length ${ctx}`, { promptTokens: promptLen, maxTokens: p.maxTokens, contextLength: ctx });
  }
}

export function generateBatch(loaded: LoadedModel, requests: readonly GenerateRequest[], opts: GenerateOptions = {}): GenerateResult[] {
  const eos = new Set(loaded.tokenizer.eosIds);
  const seqs = requests.map((r, i) => new SequenceState(i, r, loaded, eos));
  const blockSize = opts.blockSize ?? 16;
  const totalTokens = seqs.reduce((a, s) => a + s.promptTokens.length + s.req.maxTokens, 0);
  const cache = new PagedKvCache({
    nLayers: loaded.config.nLayers,
    kvDim: loaded.model.kvDim,
    numBlocks: seqs.reduce((a, s) => a + Math.ceil((s.promptTokens.length + s.req.maxTokens) / blockSize), 0),
    blockSize,
  });
  if (totalTokens === 0) return [];
  const prefillChunk = opts.prefillChunk ?? 512;

  for (;;) {
    const active = seqs.filter((s) => s.decoding.finish === undefined);
    if (active.length === 0) break;
    const chunks: SequenceChunk[] = [];
    for (const s of active) {
      const all = s.all;
      const end = Math.min(all.length, s.cached + prefillChunk);
      cache.ensureCapacity(s.table, end);
      chunks.push({
        tokens: all.slice(s.cached, end), startPos: s.cached, blockTable: s.table, wantLogits: end === all.length,
        ...(s.req.adapters?.length ? { adapters: s.req.adapters } : {}),
      });
    }
    const logits = loaded.model.forward(buildBatch(chunks, blockSize), cache);
    const V = loaded.config.vocabSize;
    let r = 0;
    active.forEach((s, i) => {
      const chunk = chunks[i]!;
      s.cached += chunk.tokens.length;
      if (!chunk.wantLogits) return;
      const row = logits.subarray(r * V, (r + 1) * V);
      r++;
      if (opts.collectLogits) s.logits.push(row.slice());
      const { text, finish } = s.decoding.next(row, s.all);
      s.text += text;
      if (text && opts.onText) opts.onText(s.index, text);
      if (finish !== undefined) cache.release(s.table);
    });
  }
  return seqs.map((s) => ({
    promptTokens: s.promptTokens,
    tokens: s.decoding.generated,
    text: s.text,
    finishReason: s.decoding.finish!,
    ...(opts.collectLogits ? { logits: s.logits } : {}),
  }));
}

export function generate(loaded: LoadedModel, request: GenerateRequest, opts: Omit<GenerateOptions, "onText"> & { onText?: (text: string) => void } = {}): GenerateResult {
  const { onText, ...rest } = opts;
  return generateBatch(loaded, [request], { ...rest, ...(onText ? { onText: (_i: number, t: string) => onText(t) } : {}) })[0]!;
}
