/**
 * One request inside the engine loop: its tokens, its KV block table, its adapter leases, and the
 * per-request decoding (engine/decoding.ts: sampling, streamed text, stop strings, finishing).
 */
import type { LeasedAdapter } from "../adapters/cache.js";
import type { AppliedAdapter } from "../model/llama.js";
import type { SeqState } from "../scheduler/types.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { Decoding } from "./decoding.js";
import type { CompletionRequest, FinishReason } from "./protocol.js";

export class Sequence {
  /** KV blocks owned, in position order. */
  readonly table: number[] = [];
  /** Tokens whose keys/values are in the cache. */
  computed = 0;
  status: "waiting" | "running" = "waiting";
  /** Held while running; released on finish and on preemption. */
  leases: LeasedAdapter[] = [];
  applied: AppliedAdapter[] = [];
  readonly decoding: Decoding;
  readonly adapterIds: string[];
  admittedAt: number | undefined;
  /** Content hashes of its adapters (request order) at its first admission; a re-admission must match. */
  contentHashes: string[] | undefined;
  firstTokenAt: number | undefined;
  finish: FinishReason | undefined;

  constructor(
    readonly id: number,
    readonly arrival: number,
    readonly req: CompletionRequest,
    readonly promptTokens: number[],
    tokenizer: Tokenizer,
    eos: ReadonlySet<number>,
    readonly submittedAt: number,
  ) {
    this.decoding = new Decoding(req, tokenizer, eos);
    this.adapterIds = req.adapters.map((a) => a.id);
  }

  /** Tokens sampled so far. */
  get generated(): readonly number[] {
    return this.decoding.generated;
  }

  get totalTokens(): number {
    return this.promptTokens.length + this.generated.length;
  }

  /** Tokens [from, to) of prompt + generated. */
  tokens(from: number, to: number): number[] {
    const p = this.promptTokens.length;
    if (to <= p) return this.promptTokens.slice(from, to);
    if (from >= p) return this.generated.slice(from - p, to - p);
    return [...this.promptTokens.slice(from), ...this.generated.slice(0, to - p)];
  }

  history(): number[] {
    return this.generated.length ? [...this.promptTokens, ...this.generated] : this.promptTokens;
  }

  /** Adapter set key: sequences with equal keys can share a batch when heterogeneous batching is off. */
  get adapterKey(): string {
    return this.req.adapters.map((a) => `${a.id}=${a.weight}`).join(",");
  }

  snapshot(): SeqState {
    return {
      id: this.id,
      arrival: this.arrival,
      fairKey: this.req.fairKey,
      adapters: this.adapterIds,
      totalTokens: this.totalTokens,
      computed: this.computed,
      blocks: this.table.length,
      remaining: this.req.maxTokens - this.generated.length,
      status: this.status,
    };
  }

  releaseLeases(): void {
    for (const l of this.leases) l.release();
    this.leases = [];
    this.applied = [];
  }
}
