/**
 * llama.cpp (node-llama-cpp) serving many LoRA adapters the best way it allows: one context per
 * adapter sharing the loaded model, since a llama.cpp context applies one fixed set of adapters to
 * every sequence in it. Contexts are created on first use (creating one, LoRA file read included,
 * is this server's "adapter load") and kept in an LRU pool with a cap; requests for the same
 * adapter share their context's sequences and queue for a free one. Base-model requests use one
 * base context. Within a context the batch items are ordered by sequence id, which is what lets
 * llama.cpp pack concurrent sequences into one micro-batch (see ../shared/reference/workload.md).
 */
import type { BatchingOptions, LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";

export interface PoolOptions {
  threads: number;
  /** Most adapter contexts alive at once (LRU beyond). */
  maxContexts: number;
  sequencesPerContext: number;
  baseSequences: number;
  /** Tokens per sequence (prompt + output). */
  contextSize: number;
}

export interface PoolCounters {
  loads: number;
  evictions: number;
  hits: number;
  misses: number;
  loadFailures: number;
}

interface Slot {
  key: string;
  ctx: LlamaContext | undefined;
  ready: Promise<void>;
  free: LlamaContextSequence[];
  /** Requests holding or waiting for a sequence here: a slot with users is never evicted. */
  users: number;
}

export interface Lease {
  sequence: LlamaContextSequence;
  release(): void;
}

type Strategy = NonNullable<BatchingOptions["itemPrioritizationStrategy"]>;

/**
 * Orders a context's batch items by sequence id. The strategy only sees items, built in the order
 * of the context's (internal) queue, so the ids are read from that queue by position. Sorted,
 * llama.cpp packs the sequences into one micro-batch. Also used by bench/lora-llamacpp.ts.
 */
export function bySequenceId(ctxRef: { ctx?: LlamaContext }): Strategy {
  return ({ items, size }) => {
    const queued = (ctxRef.ctx as unknown as { _queuedDecodes?: Array<{ sequenceId: number }> } | undefined)?._queuedDecodes;
    const order = items.map((item, i) => ({ item, id: queued?.[i]?.sequenceId ?? i })).sort((a, b) => a.id - b.id);
    const out: Array<{ item: (typeof items)[number]; processAmount: number }> = [];
    let left = size;
    for (const { item } of order) {
      if (left <= 0) break;
      const n = Math.min(left, item.tokens.length);
      out.push({ item, processAmount: n });
      left -= n;
    }
    return out;
  };
}

export class ContextPool {
  readonly counters: PoolCounters = { loads: 0, evictions: 0, hits: 0, misses: 0, loadFailures: 0 };
  /** Adapter contexts; Map order is recency (least recently used first). */
  private readonly slots = new Map<string, Slot>();
  private base: Slot | undefined;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly model: LlamaModel,
    /** adapter id → GGUF LoRA path */
    readonly adapters: ReadonlyMap<string, string>,
    readonly opts: PoolOptions,
  ) {}

  get resident(): number {
    return this.slots.size;
  }

  private createSlot(key: string, loraPath: string | undefined, sequences: number): Slot {
    const ref: { ctx?: LlamaContext } = {};
    const slot: Slot = { key, ctx: undefined, free: [], users: 0, ready: Promise.resolve() };
    slot.ready = this.model.createContext({
      contextSize: this.opts.contextSize, sequences, threads: this.opts.threads, flashAttention: false,
      // llama.cpp reserves a compute buffer for a whole micro-batch of logits (n_vocab × batch):
      // one sequence's worth of tokens keeps that small; longer batches are chunked, not refused.
      batchSize: Math.max(64, Math.min(512, this.opts.contextSize)),
      batching: { itemPrioritizationStrategy: bySequenceId(ref) },
      ...(loraPath ? { lora: { adapters: [{ filePath: loraPath, scale: 1 }] } } : {}),
    }).then((ctx) => {
      ref.ctx = ctx;
      slot.ctx = ctx;
      slot.free = Array.from({ length: sequences }, () => ctx.getSequence());
      this.wake();
    });
    return slot;
  }

  async init(): Promise<void> {
    this.base = this.createSlot("<base>", undefined, this.opts.baseSequences);
    await this.base.ready;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private waitForChange(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Evicts the least recently used idle context; false when every context is in use. */
  private evictOne(): boolean {
    for (const slot of this.slots.values()) {
      if (slot.users > 0 || !slot.ctx) continue;
      this.slots.delete(slot.key);
      this.counters.evictions++;
      void slot.ctx.dispose();
      return true;
    }
    return false;
  }

  /** A sequence for `adapter` (null = base model), waiting for one when all are busy. */
  async acquire(adapter: string | null): Promise<Lease> {
    let slot: Slot;
    if (adapter === null) {
      if (!this.base) throw new Error("pool not initialised");
      slot = this.base;
      slot.users++;
    } else {
      const path = this.adapters.get(adapter);
      if (!path) throw new Error(`unknown adapter ${adapter}`);
      const existing = this.slots.get(adapter);
      if (existing) this.counters.hits++; else this.counters.misses++;
      for (;;) {
        const s = this.slots.get(adapter);
        if (s) {
          this.slots.delete(adapter);
          this.slots.set(adapter, s);
          slot = s;
          break;
        }
        if (this.slots.size < this.opts.maxContexts || this.evictOne()) {
          slot = this.createSlot(adapter, path, this.opts.sequencesPerContext);
          this.slots.set(adapter, slot);
          this.counters.loads++;
          break;
        }
        await this.waitForChange();
      }
      slot.users++;
    }
    try {
      await slot.ready;
    } catch (e) {
      slot.users--;
      if (this.slots.get(slot.key) === slot) {
        this.slots.delete(slot.key);
        this.counters.loadFailures++;
      }
      this.wake();
      throw e;
    }
    while (slot.free.length === 0) await this.waitForChange();
    const sequence = slot.free.pop()!;
    let released = false;
    return {
      sequence,
      release: () => {
        if (released) return;
        released = true;
        slot.free.push(sequence);
        slot.users--;
        this.wake();
      },
    };
  }

  async dispose(): Promise<void> {
    for (const s of this.slots.values()) await s.ctx?.dispose();
    this.slots.clear();
    await this.base?.ctx?.dispose();
  }
}

/**
 * Greedy generation on a leased sequence, one token per step: the prompt in one evaluation whose
 * last position samples the first token, then one token at a time. Stops at maxTokens, or at an
 * end-of-generation token unless ignoreEos, or when `cancelled()` turns true.
 */
export async function* generateGreedy(
  model: LlamaModel, sequence: LlamaContextSequence, prompt: number[], maxTokens: number, ignoreEos: boolean,
  cancelled: () => boolean = () => false,
): AsyncGenerator<number> {
  await sequence.clearHistory();
  let input = prompt as Token[];
  for (let i = 0; i < maxTokens && !cancelled(); i++) {
    const items = input.map((t, j) => (j === input.length - 1 ? [t, { generateNext: { token: true, options: { temperature: 0 } } }] as const : t));
    const out = await sequence.controlledEvaluate(items as never);
    const token = (out[input.length - 1] as { next?: { token?: Token | null } } | undefined)?.next?.token;
    if (token === undefined || token === null) throw new Error(`llama.cpp produced no token at step ${i}`);
    yield token as number;
    if (!ignoreEos && model.isEogToken(token)) return;
    input = [token];
  }
}
