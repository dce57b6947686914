/**
 * Generation over the batched forward pass: several sequences prefill together, then decode in
 * lock-step, each with its own sampler, stop strings and end-of-sequence ids. This is the
 * building block the continuous-batching engine drives step by step.
 */
import { oerr } from "../errors.js";
import type { LoadedModel } from "../model/load.js";
import { type AppliedAdapter, buildBatch, type SequenceChunk } from "../model/llama.js";
import { PagedKvCache } from "./kv-cache.js";
import { Rng, sampleToken, type SamplingParams, validateSampling } from "./sampling.js";
import { StopMatcher } from "./stop.js";

export interface GenerateRequest {
  /** Either a prompt text (tokenized with the model's special tokens) or token ids. */
  prompt: string | readonly number[];
  maxTokens: number;
  sampling?: SamplingParams;
  stop?: readonly string[];
  /** Keep generating past end-of-sequence tokens (benchmarks). */
  ignoreEos?: boolean;
  /** LoRA adapters with weights (several = their weighted sum); none = the base model. */
  adapters?: readonly AppliedAdapter[];
}

export type FinishReason = "length" | "stop" | "eos";

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
  readonly generated: number[] = [];
  readonly table: number[] = [];
  readonly logits: Float32Array[] = [];
  cached = 0;
  text = "";
  finish: FinishReason | undefined;
  readonly rng: Rng;
  readonly decoder;
  readonly stopper: StopMatcher;

  constructor(readonly index: number, readonly req: GenerateRequest, loaded: LoadedModel) {
    this.promptTokens = typeof req.prompt === "string" ? loaded.tokenizer.encode(req.prompt) : [...req.prompt];
    this.rng = new Rng(req.sampling?.seed ?? 0);
    this.decoder = loaded.tokenizer.createDecoder({ continuation: true });
    this.stopper = new StopMatcher(req.stop ?? []);
  }

  get all(): number[] {
    return this.generated.length ? [...this.promptTokens, ...this.generated] : this.promptTokens;
  }
}

function validate(req: GenerateRequest, loaded: LoadedModel, promptLen: number): void {
  if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw oerr("INVALID_ARGUMENT", `max tokens must be a positive integer, got ${req.maxTokens}`);
  validateSampling(req.sampling ?? {});
  if (promptLen === 0) throw oerr("INVALID_ARGUMENT", "the prompt is empty (no tokens)");
  const ctx = loaded.config.contextLength;
  if (promptLen + req.maxTokens > ctx) {
    throw oerr("CONTEXT_OVERFLOW", `prompt (${promptLen} tokens) + max tokens (${req.maxTokens}) exceeds the context length ${ctx}`, { promptTokens: promptLen, maxTokens: req.maxTokens, contextLength: ctx });
  }
}

export function generateBatch(loaded: LoadedModel, requests: readonly GenerateRequest[], opts: GenerateOptions = {}): GenerateResult[] {
  const seqs = requests.map((r, i) => new SequenceState(i, r, loaded));
  seqs.forEach((s) => validate(s.req, loaded, s.promptTokens.length));
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
  const eos = new Set(loaded.tokenizer.eosIds);

  for (;;) {
    const active = seqs.filter((s) => s.finish === undefined);
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
      const token = sampleToken(row, s.all, s.req.sampling ?? {}, s.rng);
      s.generated.push(token);
      if (!s.req.ignoreEos && eos.has(token)) {
        s.finish = "eos";
      } else {
        const { emit, stopped } = s.stopper.push(s.decoder.push(token));
        s.text += emit;
        if (emit && opts.onText) opts.onText(s.index, emit);
        if (stopped) s.finish = "stop";
      }
      if (s.finish === undefined && s.generated.length >= s.req.maxTokens) s.finish = "length";
      if (s.finish !== undefined) {
        if (s.finish !== "stop") {
          const tail = s.stopper.flush(s.decoder.flush());
          s.text += tail;
          if (tail && opts.onText) opts.onText(s.index, tail);
        }
        cache.release(s.table);
      }
    });
  }
  return seqs.map((s) => ({
    promptTokens: s.promptTokens,
    tokens: s.generated,
    text: s.text,
    finishReason: s.finish!,
    ...(opts.collectLogits ? { logits: s.logits } : {}),
  }));
}

export function generate(loaded: LoadedModel, request: GenerateRequest, opts: Omit<GenerateOptions, "onText"> & { onText?: (text: string) => void } = {}): GenerateResult {
  const { onText, ...rest } = opts;
  return generateBatch(loaded, [request], { ...rest, ...(onText ? { onText: (_i: number, t: string) => onText(t) } : {}) })[0]!;
}
