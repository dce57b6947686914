/**
 * The one per-token step: from a row of logits to the next token, its streamed text and whether the
 * request is finished. The server's engine loop (engine-core.ts), the CLI and receipt replay
 * (generate.ts) all decode through this class, so a replay applies exactly the logit bias,
 * min_tokens rule and grammar mask the request was served with.
 *
 * Order of a step: raw logits → logit bias (added) → EOS barred while fewer than minTokens were
 * generated → grammar mask (disallowed ids to −∞) → sampleToken (penalties, temperature, top-k/p,
 * min-p, draw). Log-probabilities are reported from the raw row, as vLLM and OpenAI do.
 *
 * Finishing: an end-of-sequence id ends with "eos" (unless ignoreEos; a constrained request always
 * ends at EOS, since nothing may follow a complete constraint); a stop string with "stop" (text up
 * to it, or through it with includeStopStr; stop strings are looked for only in text of tokens
 * after the first minTokens); maxTokens with "length".
 */
import { oerr } from "../errors.js";
import type { Tokenizer, StreamDecoder } from "../tokenizer/tokenizer.js";
import { Rng, sampleToken, type SamplingParams, validateSampling } from "./sampling.js";
import { StopMatcher } from "./stop.js";

export type FinishReason = "length" | "stop" | "eos";

/** The largest |bias| a logit_bias entry may add (OpenAI's bound). */
export const MAX_LOGIT_BIAS = 100;
/** Most logit_bias entries one request may give. */
export const MAX_LOGIT_BIAS_ENTRIES = 1024;

/** A token mask per step, from a grammar (see engine/grammar). */
export interface TokenConstraint {
  /** Writes the allowed ids of the next token: bit (id & 31) of word (id >> 5); length ceil(vocab / 32). */
  fillMask(mask: Int32Array): void;
  /** Advances by a sampled token; false when the token was not allowed. */
  accept(token: number): boolean;
  isTerminated(): boolean;
  dispose(): void;
}

/** What decides a request's tokens and where it ends (everything a replay must repeat). */
export interface DecodingParams {
  maxTokens: number;
  sampling: SamplingParams;
  stop: readonly string[];
  /** Keep generating past end-of-sequence ids (benchmarks, replay). */
  ignoreEos: boolean;
  /** End-of-sequence ids may not be sampled before this many tokens. Default 0. */
  minTokens?: number;
  /** Token id (decimal string) → added to its logit, in [−100, 100]. */
  logitBias?: Readonly<Record<string, number>>;
  /** A matched stop string stays in the text. Default false. */
  includeStopStr?: boolean;
}

export interface DecodedToken {
  token: number;
  /** Text this token completed (may be ""; at the finish, whatever was held back too). */
  text: string;
  finish: FinishReason | undefined;
}

/** Checks the parameters against the model's vocabulary and context; INVALID_ARGUMENT otherwise. */
export function validateDecoding(p: DecodingParams, vocabSize: number): void {
  const bad = (msg: string): never => { throw oerr("INVALID_ARGUMENT", msg); };
  if (!Number.isSafeInteger(p.maxTokens) || p.maxTokens < 1) bad(`max_tokens must be a positive integer, got ${p.maxTokens}`);
  validateSampling(p.sampling);
  const min = p.minTokens ?? 0;
  if (!Number.isSafeInteger(min) || min < 0) bad(`min_tokens must be a non-negative integer, got ${min}`);
  if (min > p.maxTokens) bad(`min_tokens (${min}) must not exceed max_tokens (${p.maxTokens})`);
  if (p.logitBias !== undefined) {
    const entries = Object.entries(p.logitBias);
    if (entries.length > MAX_LOGIT_BIAS_ENTRIES) bad(`logit_bias may hold at most ${MAX_LOGIT_BIAS_ENTRIES} entries, got ${entries.length}`);
    for (const [k, v] of entries) {
      if (!/^(0|[1-9][0-9]*)$/.test(k) || Number(k) >= vocabSize) bad(`logit_bias key ${JSON.stringify(k)} is not a token id in [0, ${vocabSize})`);
      if (typeof v !== "number" || !Number.isFinite(v) || Math.abs(v) > MAX_LOGIT_BIAS) bad(`logit_bias[${k}] must be a number in [-${MAX_LOGIT_BIAS}, ${MAX_LOGIT_BIAS}], got ${v}`);
    }
  }
}

export class Decoding {
  readonly generated: number[] = [];
  finish: FinishReason | undefined;
  private readonly rng: Rng;
  private readonly decoder: StreamDecoder;
  private readonly stopper: StopMatcher;
  private readonly bias: [number, number][];
  private mask = new Int32Array(0);
  private work = new Float32Array(0);

  constructor(
    readonly params: DecodingParams,
    tokenizer: Tokenizer,
    private readonly eos: ReadonlySet<number>,
    private readonly constraint?: TokenConstraint,
  ) {
    this.rng = new Rng(params.sampling.seed ?? 0);
    this.decoder = tokenizer.createDecoder({ continuation: true });
    this.stopper = new StopMatcher(params.stop, { includeStop: params.includeStopStr ?? false });
    this.bias = Object.entries(params.logitBias ?? {}).map(([k, v]) => [Number(k), v]);
    this.bias.sort((a, b) => a[0] - b[0]);
  }

  /** The row the sampler sees: `raw` itself when no processor applies, else a processed copy. */
  private processed(raw: Float32Array): Float32Array {
    const barEos = this.generated.length < (this.params.minTokens ?? 0) && !this.constraint?.isTerminated();
    if (this.bias.length === 0 && !barEos && !this.constraint) return raw;
    if (this.work.length !== raw.length) this.work = new Float32Array(raw.length);
    const row = this.work;
    row.set(raw);
    for (const [id, b] of this.bias) row[id] = row[id]! + b;
    if (barEos) for (const id of this.eos) if (id < row.length) row[id] = -Infinity;
    if (this.constraint) {
      const words = Math.ceil(row.length / 32);
      if (this.mask.length !== words) this.mask = new Int32Array(words);
      const mask = this.mask;
      mask.fill(0);
      this.constraint.fillMask(mask);
      let allowed = 0;
      for (let w = 0; w < words; w++) {
        const bits = mask[w]!;
        const end = Math.min(row.length, (w + 1) * 32);
        if (bits === -1 && end - w * 32 === 32) { allowed += 32; continue; }
        for (let i = w * 32; i < end; i++) {
          if (((bits >>> (i & 31)) & 1) === 0) row[i] = -Infinity;
          else allowed++;
        }
      }
      if (allowed === 0) throw oerr("INTERNAL", `the grammar allows no token at position ${this.generated.length}`);
    }
    return row;
  }

  /**
   * Samples the next token from `raw` (finite logits, one per vocabulary id; not modified) given the
   * sequence so far (`history`: prompt + generated, for penalties).
   */
  next(raw: Float32Array, history: readonly number[]): DecodedToken {
    if (this.finish !== undefined) throw oerr("INTERNAL", "decoding continued past its finish");
    const token = sampleToken(this.processed(raw), history, this.params.sampling, this.rng);
    if (!Number.isInteger(token) || token < 0 || token >= raw.length) throw oerr("INTERNAL", `the sampler returned ${token}, not a token id`);
    if (this.constraint && !this.constraint.accept(token)) throw oerr("INTERNAL", `the grammar refused token ${token} it allowed`);
    this.generated.push(token);
    let text = "";
    if (this.eos.has(token) && (!this.params.ignoreEos || this.constraint)) {
      this.finish = "eos";
    } else {
      const piece = this.decoder.push(token);
      const { emit, stopped } = this.generated.length <= (this.params.minTokens ?? 0) ? this.stopper.pass(piece) : this.stopper.push(piece);
      text = emit;
      if (stopped) this.finish = "stop";
    }
    if (this.finish === undefined && this.generated.length >= this.params.maxTokens) this.finish = "length";
    if (this.finish !== undefined && this.finish !== "stop") text += this.stopper.flush(this.decoder.flush());
    if (this.finish !== undefined) this.constraint?.dispose();
    return { token, text, finish: this.finish };
  }

  /** Frees the constraint of a request that ends early (cancelled, failed). Idempotent. */
  dispose(): void {
    this.constraint?.dispose();
  }
}
