/**
 * The engine loop's state and one step of it: requests in, forward passes out. It owns the model,
 * the paged KV cache, the adapter registry and cache, and the live sequences; the pure scheduler
 * decides each step, this class carries the decision out. Synchronous except for adapter loads,
 * whose completions only ever `wake()` the loop. Runs inside the engine worker (engine/worker.ts);
 * tests drive it directly.
 *
 * A step:  snapshot sequences → schedule() → preempt (free blocks + leases) → admit (take leases of
 * resident adapters) → grow block tables → one batched forward → check the logits → sample, stream,
 * finish → prefetch the adapters of waiting requests.
 *
 * Failure isolation: whatever one sequence causes after the forward pass (logits that turned NaN
 * or infinite, a sampler, stop-string or detokenizer error) ends that sequence alone through the one
 * exit, end(); the other sequences of the step go on, bit-identical to what they give alone. Only a
 * failed forward pass ends the whole batch; nothing a request does throws out of step().
 */
import { baseShapeOf } from "../adapters/base-shape.js";
import { isCompositionWeight, MAX_COMPOSITION_WEIGHT } from "../adapters/composition.js";
import { type AdapterLoader, AdapterCache } from "../adapters/cache.js";
import { adapterSourceAt, createAdapterLoader } from "../adapters/loader.js";
import type { AdapterRegistry } from "../adapters/registry.js";
import { resolveInside, validateAdapterId } from "../adapters/validate.js";
import { isOpenLoraError, OpenLoraError, oerr, quoted } from "../errors.js";
import { GGML_TYPE } from "../formats/ggml-types.js";
import type { LoadedModel } from "../model/load.js";
import { buildBatch, type SequenceChunk } from "../model/llama.js";
import { native } from "../native/index.js";
import { pruneFairness, schedule } from "../scheduler/scheduler.js";
import { blocksFor, type SchedulerConfig } from "../scheduler/types.js";
import { PagedKvCache } from "./kv-cache.js";
import { MAX_TOP_LOGPROBS, tokenLogprob } from "./logprobs.js";
import type { AdapterInfo, CompletionRequest, EngineEvent, EngineStats, WireError } from "./protocol.js";
import { validateDecoding } from "./decoding.js";
import { Sequence } from "./sequence.js";

export interface EngineCoreOptions {
  kvBlocks: number;
  blockSize: number;
  /** Rows per forward step. */
  tokenBudget: number;
  maxRunning: number;
  prefillChunk: number;
  /** Requests accepted but not admitted, at most; more → QUEUE_FULL. */
  maxQueue: number;
  prefetchDepth: number;
  /** false: every batch holds one adapter set only (the baseline heterogeneous batching is measured against). */
  mixedAdapters: boolean;
  adapterPoolBytes: number;
  maxLoraRank: number;
  /** Runtime loads (`loadAdapter`) must name a path inside this folder; undefined = any path. */
  adapterRoot: string | undefined;
  retryAfterSeconds: number;
  /** Most adapters composed in one request. */
  maxComposition: number;
}

export const DEFAULT_CORE_OPTIONS: Omit<EngineCoreOptions, "kvBlocks" | "adapterRoot"> = {
  blockSize: 16, tokenBudget: 512, maxRunning: 64, prefillChunk: 256, maxQueue: 1024, prefetchDepth: 16,
  mixedAdapters: true, adapterPoolBytes: 1 << 30, maxLoraRank: 256, retryAfterSeconds: 1, maxComposition: 8,
};

type Emit = (id: number, event: EngineEvent) => void;

/** What EngineCore may be given instead of its defaults. */
export interface EngineCoreDeps {
  /** Reads adapters for the cache (default: the PEFT / GGUF readers, checked against the base). */
  loader?: AdapterLoader;
}

export function toWireError(e: unknown): WireError {
  if (e instanceof OpenLoraError) return { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) };
  return { code: "INTERNAL", message: e instanceof Error ? e.message : String(e) };
}

export class EngineCore {
  readonly kv: PagedKvCache;
  readonly adapters: AdapterCache;
  private readonly seqs = new Map<number, Sequence>();
  /** Logits of a step, reused (rows are sampled before the next step overwrites them). */
  private logitsBuf = new Float32Array(0);
  private fairness = new Map<string, number>();
  private arrivals = 0;
  private draining = false;
  private readonly prefetching = new Set<string>();
  /** Adapters whose load found the pool full of in-use adapters: retried once a lease is released. */
  private readonly exhausted = new Set<string>();
  private newLatencies: number[] = [];
  private readonly counts = { promptTokens: 0, completionTokens: 0, steps: 0, preemptions: 0, hits: 0, misses: 0 };
  private readonly schedConfig: SchedulerConfig;
  private readonly eos: Set<number>;

  constructor(
    readonly loaded: LoadedModel,
    readonly registry: AdapterRegistry,
    readonly opts: EngineCoreOptions,
    private readonly emit: Emit,
    private readonly wake: () => void,
    deps: EngineCoreDeps = {},
  ) {
    this.kv = new PagedKvCache({ nLayers: loaded.config.nLayers, kvDim: loaded.model.kvDim, numBlocks: opts.kvBlocks, blockSize: opts.blockSize });
    this.adapters = new AdapterCache({
      registry,
      loader: deps.loader ?? createAdapterLoader(baseShapeOf(loaded.config), { maxRank: opts.maxLoraRank }),
      budgetBytes: opts.adapterPoolBytes,
      hooks: { onLoadLatency: (_id, ms) => { if (this.newLatencies.length < 10_000) this.newLatencies.push(ms); } },
    });
    this.schedConfig = {
      blockSize: opts.blockSize, totalBlocks: opts.kvBlocks, tokenBudget: opts.tokenBudget,
      maxRunning: opts.maxRunning, prefillChunk: Math.min(opts.prefillChunk, opts.tokenBudget), prefetchDepth: opts.prefetchDepth,
    };
    this.eos = new Set(loaded.tokenizer.eosIds);
  }

  get live(): number {
    return this.seqs.size;
  }

  // ── requests ───────────────────────────────────────────────────────────────────────────────

  submit(id: number, req: CompletionRequest): void {
    let seq: Sequence;
    try {
      if (this.draining) throw oerr("SHUTTING_DOWN", "the server is shutting down and accepts no new requests");
      const prompt = this.validate(req);
      const waiting = this.waitingCount();
      if (waiting >= this.opts.maxQueue) {
        throw oerr("QUEUE_FULL", `the queue is full (${waiting} requests waiting)`, { waiting, retryAfterSeconds: this.opts.retryAfterSeconds });
      }
      seq = new Sequence(id, this.arrivals++, req, prompt, this.loaded.tokenizer, this.eos, performance.now());
    } catch (e) {
      this.emit(id, { type: "error", error: toWireError(e) });
      return;
    }
    for (const a of seq.adapterIds) {
      if (this.adapters.stateOf(a)?.state === "ready") this.counts.hits++;
      else this.counts.misses++;
    }
    this.seqs.set(id, seq);
    this.counts.promptTokens += seq.promptTokens.length;
    this.emit(id, { type: "accepted", promptTokens: seq.promptTokens.length, promptTokenIds: seq.promptTokens });
    // Within the prefetch window, start loading now: the load then completes before the next step
    // and the request joins it, instead of waiting one step for the scheduler's prefetch list.
    if (seq.adapterIds.length && this.waitingCount() <= this.opts.prefetchDepth) this.startPrefetches(seq.adapterIds, []);
    this.wake();
  }

  private waitingCount(): number {
    let n = 0;
    for (const s of this.seqs.values()) if (s.status === "waiting") n++;
    return n;
  }

  /** Stops a request wherever it is; its blocks and leases are freed at once. */
  cancel(id: number): void {
    const seq = this.seqs.get(id);
    if (!seq) return;
    this.end(seq, { type: "error", error: { code: "REQUEST_CANCELLED", message: "the request was cancelled" } });
  }

  private validate(req: CompletionRequest): number[] {
    const { tokenizer, config } = this.loaded;
    if (!Array.isArray(req.adapters) || req.adapters.length > this.opts.maxComposition) {
      throw oerr("INVALID_ARGUMENT", `at most ${this.opts.maxComposition} adapters can be composed in one request`);
    }
    const seen = new Set<string>();
    for (const a of req.adapters) {
      if (!this.registry.has(a.id)) throw oerr("ADAPTER_NOT_FOUND", `no adapter is registered as ${quoted(a.id)}`, { id: a.id });
      if (!isCompositionWeight(a.weight)) throw oerr("INVALID_ARGUMENT", `adapter ${a.id}: weight must be a number in [0, ${MAX_COMPOSITION_WEIGHT}]`);
      if (seen.has(a.id)) throw oerr("INVALID_ARGUMENT", `adapter ${a.id} is listed twice`);
      seen.add(a.id);
    }
    validateDecoding(req, config.vocabSize);
    if (req.logprobs !== undefined && !(Number.isInteger(req.logprobs) && req.logprobs >= 0 && req.logprobs <= MAX_TOP_LOGPROBS)) {
      throw oerr("INVALID_ARGUMENT", `top logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}]`);
    }
    let prompt: number[];
    if (typeof req.prompt === "string") {
      prompt = tokenizer.encode(req.prompt, { addSpecial: req.addSpecial });
    } else {
      prompt = [...req.prompt];
      const bad = prompt.find((t) => !Number.isInteger(t) || t < 0 || t >= config.vocabSize);
      if (bad !== undefined) throw oerr("INVALID_ARGUMENT", `token id ${bad} is outside the vocabulary [0, ${config.vocabSize})`);
    }
    if (prompt.length === 0) throw oerr("INVALID_ARGUMENT", "the prompt is empty (no tokens)");
    const total = prompt.length + req.maxTokens;
    if (total > config.contextLength) {
      throw oerr("CONTEXT_OVERFLOW", `prompt (${prompt.length} tokens) + max_tokens (${req.maxTokens}) exceeds the context length ${config.contextLength}`, { promptTokens: prompt.length, maxTokens: req.maxTokens, contextLength: config.contextLength });
    }
    if (blocksFor(total, this.opts.blockSize) > this.opts.kvBlocks) {
      throw oerr("PROMPT_TOO_LONG", `prompt (${prompt.length} tokens) + max_tokens (${req.maxTokens}) needs more KV cache than the server has (${this.opts.kvBlocks * this.opts.blockSize} tokens)`, { promptTokens: prompt.length, maxTokens: req.maxTokens, kvTokens: this.opts.kvBlocks * this.opts.blockSize });
    }
    return prompt;
  }

  // ── the step ───────────────────────────────────────────────────────────────────────────────

  /** Runs one scheduling step; false when nothing could run (idle, or waiting on adapter loads). */
  step(): boolean {
    if (this.seqs.size === 0) return false;
    const { candidates, others } = this.candidates();
    const ready = new Set<string>();
    for (const s of candidates) {
      if (s.status !== "waiting") continue;
      for (const a of s.adapterIds) if (!ready.has(a) && this.adapters.stateOf(a)?.state === "ready") ready.add(a);
    }
    const snapshot = candidates.map((s) => s.snapshot());
    const plan = schedule({ config: this.schedConfig, seqs: snapshot, freeBlocks: this.kv.freeBlocks, readyAdapters: ready, fairness: this.fairness });
    this.fairness = plan.fairness;

    for (const id of plan.preempted) {
      const seq = this.seqs.get(id)!;
      this.kv.release(seq.table);
      seq.releaseLeases();
      seq.computed = 0;
      seq.status = "waiting";
      this.counts.preemptions++;
      this.exhausted.clear();
    }
    const admittedOk = new Set<number>();
    for (const id of plan.admitted) if (this.admit(this.seqs.get(id)!)) admittedOk.add(id);

    const batch: Sequence[] = [];
    const chunks: SequenceChunk[] = [];
    for (const c of plan.batch) {
      const seq = this.seqs.get(c.id);
      if (!seq || (seq.status !== "running" && !admittedOk.has(c.id))) continue;
      const end = seq.computed + c.tokens;
      try {
        this.kv.ensureCapacity(seq.table, end);
      } catch (e) {
        this.fail(seq, e, "growing its KV cache");
        continue;
      }
      batch.push(seq);
      chunks.push({
        tokens: seq.tokens(seq.computed, end), startPos: seq.computed, blockTable: seq.table, wantLogits: end === seq.totalTokens,
        ...(seq.applied.length ? { adapters: seq.applied } : {}),
      });
    }
    this.startPrefetches(plan.prefetch, others);
    if (batch.length === 0) return false;

    let logits: Float32Array;
    try {
      const need = chunks.filter((c) => c.wantLogits).length * this.loaded.config.vocabSize;
      if (this.logitsBuf.length < need) this.logitsBuf = new Float32Array(need);
      logits = this.loaded.model.forward(buildBatch(chunks, this.opts.blockSize), this.kv, this.logitsBuf);
    } catch (e) {
      const error = toWireError(isOpenLoraError(e) ? e : oerr("INTERNAL", `forward pass failed: ${(e as Error).message}`));
      for (const seq of batch) this.end(seq, { type: "error", error });
      return true;
    }
    this.counts.steps++;
    const V = this.loaded.config.vocabSize;
    const rows = chunks.reduce((n, c) => n + (c.wantLogits ? 1 : 0), 0);
    // One pass over every row; only when it finds something are the rows told apart.
    const anyBad = rows > 0 && native.firstOutOfRange(logits.subarray(0, rows * V), GGML_TYPE.F32, Infinity) >= 0;
    let row = 0;
    batch.forEach((seq, i) => {
      const chunk = chunks[i]!;
      seq.computed += chunk.tokens.length;
      if (!chunk.wantLogits) return;
      const r = logits.subarray(row * V, (row + 1) * V);
      row++;
      if (anyBad && native.firstOutOfRange(r, GGML_TYPE.F32, Infinity) >= 0) {
        this.end(seq, { type: "error", error: toWireError(oerr("LOGITS_NONFINITE", `the logits at position ${seq.computed} turned NaN or infinite (an adapter or the model overflowed); this sequence was stopped, the others go on`, { position: seq.computed })) });
        return;
      }
      try {
        this.sample(seq, r);
      } catch (e) {
        this.fail(seq, e, "sampling");
      }
    });
    this.fairness = pruneFairness(this.fairness, [...this.seqs.values()].map((s) => ({ fairKey: s.req.fairKey })));
    return true;
  }

  /** With heterogeneous batching off, only sequences of one adapter set are visible to the scheduler. */
  private candidates(): { candidates: Sequence[]; others: Sequence[] } {
    const all = [...this.seqs.values()];
    if (this.opts.mixedAdapters) return { candidates: all, others: [] };
    const running = all.find((s) => s.status === "running");
    const key = (running ?? all.reduce((a, b) => (b.arrival < a.arrival ? b : a))).adapterKey;
    return { candidates: all.filter((s) => s.adapterKey === key), others: all.filter((s) => s.adapterKey !== key) };
  }

  /**
   * Takes the leases of a sequence whose adapters are resident. Its first admission sends
   * "admitted" with the content hashes of the adapters it runs with; a re-admission (after a
   * preemption) whose adapter files changed meanwhile ends it with ADAPTER_CONTENT_CHANGED rather
   * than continue one output on two models.
   */
  private admit(seq: Sequence): boolean {
    for (const ref of seq.req.adapters) {
      const lease = this.adapters.acquireReady(ref.id);
      if (!lease) {
        seq.releaseLeases();
        return false;
      }
      seq.leases.push(lease);
      seq.applied.push({ adapter: lease.adapter.weights, weight: ref.weight });
    }
    const hashes = seq.leases.map((l) => l.adapter.contentHash);
    if (seq.contentHashes === undefined) {
      seq.contentHashes = hashes;
      this.emit(seq.id, { type: "admitted", adapters: seq.req.adapters.map((a, i) => ({ id: a.id, contentHash: hashes[i]! })) });
    } else {
      const i = hashes.findIndex((h, k) => h !== seq.contentHashes![k]);
      if (i >= 0) {
        const id = seq.req.adapters[i]!.id;
        this.end(seq, { type: "error", error: toWireError(oerr("ADAPTER_CONTENT_CHANGED", `adapter ${id} was reloaded with other content while this request was preempted; it was stopped rather than mix two models`, { id, was: seq.contentHashes[i], now: hashes[i] })) });
        return false;
      }
    }
    seq.status = "running";
    seq.admittedAt ??= performance.now();
    return true;
  }

  private sample(seq: Sequence, row: Float32Array): void {
    const history = seq.history();
    const { token, text, finish } = seq.decoding.next(row, history);
    this.counts.completionTokens++;
    seq.firstTokenAt ??= performance.now();
    seq.finish = finish;
    const logprobs = seq.req.logprobs !== undefined ? [tokenLogprob(row, token, seq.req.logprobs, this.loaded.tokenizer)] : undefined;
    this.emit(seq.id, { type: "delta", tokens: [token], text, ...(logprobs ? { logprobs } : {}) });
    if (seq.finish !== undefined) {
      const now = performance.now();
      this.end(seq, {
        type: "done", finishReason: seq.finish, promptTokens: seq.promptTokens.length, completionTokens: seq.generated.length,
        timings: { queuedMs: (seq.admittedAt ?? now) - seq.submittedAt, firstTokenMs: (seq.firstTokenAt ?? now) - seq.submittedAt, totalMs: now - seq.submittedAt },
      });
    }
  }

  /** Ends one sequence with the error it caused (INTERNAL, naming `during`, for a non-typed one). */
  private fail(seq: Sequence, e: unknown, during: string): void {
    const err = isOpenLoraError(e) ? e : oerr("INTERNAL", `${during} failed: ${e instanceof Error ? e.message : String(e)}`);
    this.end(seq, { type: "error", error: toWireError(err) });
  }

  /** The one exit of a sequence: blocks and leases freed, the final event sent. */
  private end(seq: Sequence, event: EngineEvent): void {
    this.kv.release(seq.table);
    if (seq.leases.length) this.exhausted.clear();
    seq.releaseLeases();
    seq.decoding.dispose();
    this.seqs.delete(seq.id);
    this.emit(seq.id, event);
    if (this.seqs.size === 0) this.fairness.clear();
  }

  private startPrefetches(ids: readonly string[], others: readonly Sequence[]): void {
    const wanted = [...ids];
    if (others.length) {
      const next = [...others].sort((a, b) => a.arrival - b.arrival).slice(0, this.opts.prefetchDepth);
      for (const s of next) for (const a of s.adapterIds) if (!wanted.includes(a)) wanted.push(a);
    }
    for (const id of wanted) {
      if (this.prefetching.has(id) || this.exhausted.has(id)) continue;
      if (this.adapters.stateOf(id)?.state === "ready") continue;
      this.prefetching.add(id);
      void this.adapters.prefetch(id).then((outcome) => {
        this.prefetching.delete(id);
        if (outcome === "exhausted") {
          const holders = [...this.seqs.values()].some((s) => s.leases.length > 0);
          if (holders) this.exhausted.add(id);
          else this.failWaiting(id, oerr("ADAPTER_POOL_EXHAUSTED", `adapter ${id} does not fit in the adapter pool (${this.opts.adapterPoolBytes} bytes) even with nothing else in use`, { id, budget: this.opts.adapterPoolBytes }));
        } else if (outcome === "failed" || outcome === "not-found") {
          const st = this.adapters.stateOf(id);
          const err = outcome === "not-found"
            ? oerr("ADAPTER_NOT_FOUND", `adapter ${id} is no longer registered`, { id })
            : oerr("ADAPTER_LOAD_FAILED", `adapter ${id} failed to load: ${st?.errorMessage ?? "unknown error"}`, { id, causeCode: st?.errorCause ?? st?.error });
          this.failWaiting(id, err);
        }
        this.wake();
      });
    }
  }

  /** Fails the waiting requests that need `adapterId`; running ones (holding leases) are unaffected. */
  private failWaiting(adapterId: string, err: OpenLoraError): void {
    for (const seq of [...this.seqs.values()]) {
      if (seq.status === "waiting" && seq.adapterIds.includes(adapterId)) this.end(seq, { type: "error", error: toWireError(err) });
    }
  }

  // ── adapters and state ─────────────────────────────────────────────────────────────────────

  listAdapters(): AdapterInfo[] {
    return this.registry.list().map((e) => this.adapterInfo(e.id));
  }

  private adapterInfo(id: string): AdapterInfo {
    const entry = this.registry.get(id)!;
    const st = this.adapters.stateOf(id);
    return {
      id, path: entry.source.path, format: entry.source.format, state: st?.state ?? "registered", bytes: st?.state === "ready" ? st.bytes : 0,
      refCount: st?.refCount ?? 0, pinned: st?.pinned ?? false, created: Math.floor(entry.registeredAt / 1000),
    };
  }

  /** Registers and loads an adapter now (vLLM's load_lora_adapter); on a failed load nothing stays registered. */
  async loadAdapter(id: string, path: string): Promise<AdapterInfo> {
    validateAdapterId(id);
    if (this.registry.has(id)) throw oerr("ADAPTER_ALREADY_EXISTS", `an adapter named ${quoted(id)} is already registered`, { id });
    if (typeof path !== "string" || path.length === 0) throw oerr("INVALID_ARGUMENT", "lora_path must be a non-empty string");
    const root = this.opts.adapterRoot;
    const abs = root !== undefined ? resolveInside(root, path) : path;
    this.registry.register(id, adapterSourceAt(abs, root));
    try {
      const lease = await this.adapters.acquire(id);
      lease.release();
    } catch (e) {
      if (this.registry.has(id)) this.registry.unregister(id);
      throw isOpenLoraError(e, "ADAPTER_LOAD_FAILED") && e.cause instanceof OpenLoraError ? e.cause : e;
    }
    return this.adapterInfo(id);
  }

  /** Unregisters an adapter: waiting requests on it fail with ADAPTER_NOT_FOUND, running ones finish. */
  unloadAdapter(id: string): void {
    if (!this.registry.has(id)) throw oerr("ADAPTER_NOT_FOUND", `no adapter is registered as ${quoted(id)}`, { id });
    this.registry.unregister(id);
    this.failWaiting(id, oerr("ADAPTER_NOT_FOUND", `adapter ${id} was unloaded`, { id }));
  }

  /** Stops admitting; resolves (through isDrained) once every request has ended. */
  drain(): void {
    this.draining = true;
  }

  get isDrained(): boolean {
    return this.draining && this.seqs.size === 0;
  }

  stats(): EngineStats {
    const a = this.adapters.stats();
    let waiting = 0;
    for (const s of this.seqs.values()) if (s.status === "waiting") waiting++;
    const newLoadLatenciesMs = this.newLatencies;
    this.newLatencies = [];
    return {
      waiting, running: this.seqs.size - waiting, kvBlocksUsed: this.kv.usedBlocks, kvBlocksFree: this.kv.freeBlocks,
      promptTokens: this.counts.promptTokens, completionTokens: this.counts.completionTokens, steps: this.counts.steps, preemptions: this.counts.preemptions,
      adapters: {
        registered: this.registry.size, resident: a.adaptersResident, residentBytes: a.bytesResident, budgetBytes: a.budgetBytes,
        hits: this.counts.hits, misses: this.counts.misses, loads: a.loads, evictions: a.evictions, failures: a.loadFailures,
      },
      newLoadLatenciesMs,
    };
  }

  close(): void {
    for (const seq of [...this.seqs.values()]) this.end(seq, { type: "error", error: { code: "SHUTTING_DOWN", message: "the engine is closing" } });
    this.adapters.close();
  }
}
