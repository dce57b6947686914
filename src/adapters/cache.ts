/**
 * The host tier of the adapter cache: parsed adapters in host memory under a byte budget.
 *
 * Per adapter id:  registered ──acquire/prefetch──▶ loading ──▶ ready ──evict──▶ registered
 *                                                      └──────▶ failed ──acquire──▶ loading (retry)
 *
 *   acquire(id)    → Promise<LeasedAdapter>. Loads just in time on first use; the reference is taken
 *                    at once (a waiter counts as a user), so nothing it waits for can be evicted.
 *                    Concurrent acquires of a cold adapter share ONE load (the `loading` promise is
 *                    set synchronously before any await: check-lock-check without a lock). A failed
 *                    load rejects every waiter with ADAPTER_LOAD_FAILED (cause attached, reader's code
 *                    in details.causeCode); the state becomes failed and the next acquire retries.
 *                    Unknown id → ADAPTER_NOT_FOUND. lease.release() is idempotent.
 *   prefetch(id)   → starts a load with no reference (for queued requests); never throws or rejects,
 *                    resolves to the outcome. A prefetched adapter is evictable once ready.
 *   pin / unpin    → pinned adapters are never evicted (entries registered `pinned` start pinned).
 *   unregister(id) → removes the id from the registry; if in use, the adapter stays resident
 *                    (counted against the budget) until its last lease is released. A load with no
 *                    waiters is aborted through its AbortSignal.
 *
 * Budget: reserved + resident bytes never exceed `budgetBytes`. A load reserves
 * `estimateBytes(entry)` before it starts (when given) and settles to `weights.bytes` when done; without
 * an estimate it reserves 0 and is admitted only after loading. Room is made by evicting ready
 * adapters with refCount 0 and not pinned, least recently used first (a logical clock, ticked on
 * acquire and release). Nothing is evicted unless the eviction makes the adapter fit.
 *
 * When the pool is full of in-use or pinned adapters the load fails at once with
 * ADAPTER_POOL_EXHAUSTED (details: needed, budget, inUse, pinned) rather than waiting: the scheduler
 * owns the queue and should hold the request back and retry after leases are released (a stall
 * inside the cache would be invisible to it and could deadlock a batch that holds leases while
 * waiting for another). An adapter larger than the whole budget fails the same way.
 *
 * Device tier (not built): a device pool would sit above this one as a second `AdapterCache`-like
 * tier whose loader takes a host lease (host ready → device ready) and releases it when the device
 * copy is evicted; the `hooks.onReady` / `hooks.onEvict` callbacks are where it learns of host changes.
 */
import { OpenLoraError, isOpenLoraError, oerr, quoted } from "../errors.js";
import type { AdapterRegistry, RegistryEntry } from "./registry.js";
import type { LoraAdapter } from "./types.js";

export type AdapterLoader = (entry: RegistryEntry, signal: AbortSignal) => Promise<LoraAdapter>;

export type AdapterCacheState = "registered" | "loading" | "ready" | "failed";

export interface LeasedAdapter {
  readonly id: string;
  readonly adapter: LoraAdapter;
  /** Drops this lease's reference; calling it again does nothing. */
  release(): void;
}

export interface AdapterCacheHooks {
  /** An adapter became resident in host memory. */
  onReady?(id: string, adapter: LoraAdapter): void;
  /** An adapter left host memory (evicted, or its id unregistered and released). */
  onEvict?(id: string, reason: "lru" | "unregistered"): void;
  /** A load finished (successfully or not) after `ms` milliseconds. */
  onLoadLatency?(id: string, ms: number): void;
}

export interface AdapterCacheOptions {
  registry: AdapterRegistry;
  loader: AdapterLoader;
  /** Host bytes the pool may hold (resident + reserved for loads in flight). */
  budgetBytes: number;
  /** Size to reserve before loading; should be ≥ the real size (more is made room for after load). */
  estimateBytes?: (entry: RegistryEntry) => number | undefined;
  /** Monotonic milliseconds for load latency; default performance.now. */
  now?: () => number;
  /** Load latency samples kept for percentiles (default 1024). */
  latencySamples?: number;
  hooks?: AdapterCacheHooks;
}

export interface AdapterStateInfo {
  id: string;
  state: AdapterCacheState;
  refCount: number;
  pinned: boolean;
  /** Resident bytes when ready, reserved bytes when loading, else 0. */
  bytes: number;
  /** Logical clock value of the last acquire/release/load (0 = never). */
  lastUsed: number;
  /** Error code and message of the last failure, when failed. */
  error?: string;
  errorMessage?: string;
  /** The reader's code behind a failed load (ADAPTER_INVALID, ADAPTER_SHAPE_MISMATCH…). */
  errorCause?: string;
  /** Unregistered while in use; freed at the last release. */
  retiring?: boolean;
}

export interface AdapterCacheStats {
  budgetBytes: number;
  bytesResident: number;
  bytesReserved: number;
  /** Resident bytes no one uses or pins: with the free bytes, the most a new load can get now. */
  bytesEvictable: number;
  adaptersResident: number;
  adaptersLoading: number;
  adaptersInUse: number;
  hits: number;
  misses: number;
  loads: number;
  loadFailures: number;
  evictions: number;
  exhausted: number;
  loadLatencyMs: { samples: number; p50: number; p99: number; max: number };
}

export type PrefetchOutcome = "ready" | "failed" | "exhausted" | "not-found";

interface Slot {
  readonly id: string;
  readonly entry: RegistryEntry;
  state: AdapterCacheState;
  adapter?: LoraAdapter | undefined;
  error?: OpenLoraError | undefined;
  /** Counted against the budget: reservation while loading, weights.bytes when ready. */
  bytes: number;
  refCount: number;
  pinned: boolean;
  lastUsed: number;
  loading?: Promise<Slot> | undefined;
  abort?: AbortController | undefined;
  retired: boolean;
}

export class AdapterCache {
  readonly budgetBytes: number;
  private readonly registry: AdapterRegistry;
  private readonly loader: AdapterLoader;
  private readonly estimate: ((entry: RegistryEntry) => number | undefined) | undefined;
  private readonly now: () => number;
  private readonly hooks: AdapterCacheHooks;
  /** Live slots by id, in LRU order for ready ones (re-inserted on use). */
  private readonly slots = new Map<string, Slot>();
  /** Unregistered while in use or loading. */
  private readonly retiring = new Set<Slot>();
  /** Registry-pinned ids unpinned at run time; remembered because their slots come and go. */
  private readonly unpinned = new Set<string>();
  private readonly unsubscribe: () => void;
  private clock = 0;
  private used = 0;
  private readonly latency: number[] = [];
  private latencyNext = 0;
  private readonly latencyCap: number;
  private counters = { hits: 0, misses: 0, loads: 0, loadFailures: 0, evictions: 0, exhausted: 0 };

  constructor(opts: AdapterCacheOptions) {
    if (!Number.isFinite(opts.budgetBytes) || opts.budgetBytes < 0) {
      throw oerr("INVALID_ARGUMENT", "budgetBytes must be a finite number ≥ 0", { budgetBytes: opts.budgetBytes });
    }
    this.budgetBytes = opts.budgetBytes;
    this.registry = opts.registry;
    this.loader = opts.loader;
    this.estimate = opts.estimateBytes;
    this.now = opts.now ?? (() => performance.now());
    this.hooks = opts.hooks ?? {};
    this.latencyCap = Math.max(1, opts.latencySamples ?? 1024);
    this.unsubscribe = this.registry.onRemove((entry) => this.retire(entry.id));
  }

  acquire(id: string): Promise<LeasedAdapter> {
    let slot: Slot;
    try {
      slot = this.slotFor(id);
    } catch (e) {
      return Promise.reject(e);
    }
    slot.refCount++;
    if (slot.state === "ready") {
      this.counters.hits++;
      this.touch(slot);
      return Promise.resolve(this.lease(slot));
    }
    this.counters.misses++;
    return (slot.loading ?? this.startLoad(slot)).then(
      () => {
        this.touch(slot);
        return this.lease(slot);
      },
      (e: unknown) => {
        slot.refCount--;
        this.settle(slot);
        throw e;
      },
    );
  }

  /**
   * A lease taken synchronously on an adapter that is ready now (a hit), or undefined (nothing
   * taken) when it is not resident: the engine loop admits a request only once its adapters are.
   */
  acquireReady(id: string): LeasedAdapter | undefined {
    const slot = this.slots.get(id);
    if (!slot || slot.state !== "ready" || slot.retired) return undefined;
    slot.refCount++;
    this.counters.hits++;
    this.touch(slot);
    return this.lease(slot);
  }

  prefetch(id: string): Promise<PrefetchOutcome> {
    let slot: Slot;
    try {
      slot = this.slotFor(id);
    } catch {
      return Promise.resolve("not-found");
    }
    if (slot.state === "ready") {
      this.touch(slot); // its request is queued: keep it away from the LRU end
      return Promise.resolve("ready");
    }
    return (slot.loading ?? this.startLoad(slot)).then(
      (): PrefetchOutcome => "ready",
      (e: unknown): PrefetchOutcome => {
        this.settle(slot);
        if (isOpenLoraError(e, "ADAPTER_POOL_EXHAUSTED")) return "exhausted";
        if (isOpenLoraError(e, "ADAPTER_NOT_FOUND")) return "not-found";
        return "failed";
      },
    );
  }

  pin(id: string): void {
    this.slotFor(id).pinned = true;
    this.unpinned.delete(id);
  }

  /** Makes the adapter evictable again (when unused); unknown or unpinned ids are a no-op. */
  unpin(id: string): void {
    if (this.registry.get(id)?.pinned) this.unpinned.add(id);
    const slot = this.slots.get(id);
    if (!slot) return;
    slot.pinned = false;
    this.settle(slot);
  }

  /** Removes the id from the registry (ADAPTER_NOT_FOUND if absent); see the header for in-use ones. */
  unregister(id: string): void {
    this.registry.unregister(id);
  }

  stateOf(id: string): AdapterStateInfo | undefined {
    const slot = this.slots.get(id);
    const entry = slot ? undefined : this.registry.get(id);
    return slot ? info(slot) : entry ? info(this.newSlot(entry)) : undefined;
  }

  /** Adapters the cache holds (loading, ready, failed, pinned, retiring), sorted by id. */
  states(): AdapterStateInfo[] {
    const out = [...this.slots.values(), ...this.retiring].map(info);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  stats(): AdapterCacheStats {
    let resident = 0;
    let reserved = 0;
    let evictable = 0;
    let nResident = 0;
    let nLoading = 0;
    let nInUse = 0;
    for (const s of this.allSlots()) {
      if (s.state === "ready") {
        resident += s.bytes;
        nResident++;
        if (s.refCount === 0 && !s.pinned && !s.retired) evictable += s.bytes;
      } else if (s.state === "loading") {
        reserved += s.bytes;
        nLoading++;
      }
      if (s.refCount > 0) nInUse++;
    }
    const sorted = [...this.latency].sort((a, b) => a - b);
    const pct = (p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0;
    return {
      budgetBytes: this.budgetBytes,
      bytesResident: resident,
      bytesReserved: reserved,
      bytesEvictable: evictable,
      adaptersResident: nResident,
      adaptersLoading: nLoading,
      adaptersInUse: nInUse,
      ...this.counters,
      loadLatencyMs: { samples: sorted.length, p50: pct(0.5), p99: pct(0.99), max: sorted.at(-1) ?? 0 },
    };
  }

  /** Aborts loads in flight and stops following the registry. Leases already given stay valid. */
  close(): void {
    this.unsubscribe();
    for (const s of this.allSlots()) s.abort?.abort();
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────────

  private *allSlots(): Iterable<Slot> {
    yield* this.slots.values();
    yield* this.retiring;
  }

  private slotFor(id: string): Slot {
    const existing = this.slots.get(id);
    if (existing) return existing;
    const entry = this.registry.get(id);
    if (!entry) throw oerr("ADAPTER_NOT_FOUND", `no adapter is registered as ${quoted(id)}`, { id });
    const slot = this.newSlot(entry);
    this.slots.set(id, slot);
    return slot;
  }

  private newSlot(entry: RegistryEntry): Slot {
    const pinned = entry.pinned === true && !this.unpinned.has(entry.id);
    return { id: entry.id, entry, state: "registered", bytes: 0, refCount: 0, pinned, lastUsed: 0, retired: false };
  }

  private touch(slot: Slot): void {
    slot.lastUsed = ++this.clock;
    if (!slot.retired) {
      this.slots.delete(slot.id);
      this.slots.set(slot.id, slot);
    }
  }

  private lease(slot: Slot): LeasedAdapter {
    let released = false;
    return {
      id: slot.id,
      adapter: slot.adapter!,
      release: () => {
        if (released) return;
        released = true;
        slot.refCount--;
        this.touch(slot);
        this.settle(slot);
      },
    };
  }

  /** Must run synchronously up to setting slot.loading, so concurrent callers share the load. */
  private startLoad(slot: Slot): Promise<Slot> {
    const reserve = Math.max(0, this.estimate?.(slot.entry) ?? 0);
    try {
      this.makeRoom(reserve, slot);
    } catch (e) {
      return Promise.reject(e);
    }
    this.counters.loads++;
    const abort = new AbortController();
    slot.state = "loading";
    slot.error = undefined;
    slot.bytes = reserve;
    slot.abort = abort;
    this.used += reserve;
    const t0 = this.now();
    const p = Promise.resolve()
      .then(() => this.loader(slot.entry, abort.signal))
      .then(
        (adapter) => this.admit(slot, adapter, t0),
        (e: unknown) => this.failLoad(slot, e),
      )
      .finally(() => {
        slot.loading = undefined;
        slot.abort = undefined;
      });
    slot.loading = p;
    return p;
  }

  private admit(slot: Slot, adapter: LoraAdapter, t0: number): Slot {
    const ms = this.now() - t0;
    this.recordLatency(ms);
    this.hooks.onLoadLatency?.(slot.id, ms);
    const size = adapter?.weights?.bytes;
    if (typeof size !== "number" || !Number.isFinite(size) || size < 0) {
      return this.failLoad(slot, oerr("ADAPTER_INVALID", "loader returned an adapter without a valid weights.bytes"));
    }
    if (slot.retired && slot.refCount === 0) {
      this.unreserve(slot);
      throw oerr("ADAPTER_NOT_FOUND", `adapter ${slot.id} was unregistered while loading`, { id: slot.id });
    }
    try {
      if (size > slot.bytes) this.makeRoom(size - slot.bytes, slot);
    } catch (e) {
      this.unreserve(slot);
      throw e;
    }
    this.used += size - slot.bytes;
    slot.bytes = size;
    slot.adapter = adapter;
    slot.state = "ready";
    this.touch(slot);
    this.hooks.onReady?.(slot.id, adapter);
    return slot;
  }

  private failLoad(slot: Slot, cause: unknown): never {
    this.unreserve(slot);
    if (slot.retired && slot.refCount === 0) {
      throw oerr("ADAPTER_NOT_FOUND", `adapter ${slot.id} was unregistered while loading`, { id: slot.id });
    }
    this.counters.loadFailures++;
    const err = new OpenLoraError(
      "ADAPTER_LOAD_FAILED",
      `loading adapter ${slot.id} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { id: slot.id, ...(isOpenLoraError(cause) ? { causeCode: cause.code } : {}) },
      { cause },
    );
    slot.state = "failed";
    slot.error = err;
    throw err;
  }

  private unreserve(slot: Slot): void {
    this.used -= slot.bytes;
    slot.bytes = 0;
    slot.state = "registered";
  }

  /**
   * Evicts LRU candidates until `need` more bytes fit, or throws ADAPTER_POOL_EXHAUSTED having
   * evicted nothing.
   */
  private makeRoom(need: number, forSlot: Slot): void {
    const free = this.budgetBytes - this.used;
    if (need <= free) return;
    const victims: Slot[] = [];
    let freed = 0;
    for (const s of this.slots.values()) {
      if (free + freed >= need) break;
      if (s !== forSlot && s.state === "ready" && s.refCount === 0 && !s.pinned) {
        victims.push(s);
        freed += s.bytes;
      }
    }
    if (free + freed < need) {
      this.counters.exhausted++;
      let inUse = 0;
      let pinned = 0;
      for (const s of this.allSlots()) {
        if (s.refCount > 0) inUse += s.bytes;
        else if (s.pinned) pinned += s.bytes;
      }
      throw oerr("ADAPTER_POOL_EXHAUSTED", `adapter ${forSlot.id} (${need} bytes) does not fit the adapter pool`, {
        id: forSlot.id,
        needed: need,
        budget: this.budgetBytes,
        used: this.used,
        inUse,
        pinned,
      });
    }
    for (const v of victims) this.drop(v, "lru");
  }

  private drop(slot: Slot, reason: "lru" | "unregistered"): void {
    const wasResident = slot.state === "ready";
    this.used -= slot.bytes;
    slot.bytes = 0;
    slot.adapter = undefined;
    slot.state = "registered";
    if (reason === "lru") this.counters.evictions++;
    if (slot.retired) this.retiring.delete(slot);
    else this.slots.delete(slot.id);
    if (wasResident) this.hooks.onEvict?.(slot.id, reason);
  }

  /** Forgets slots nobody needs: unused registered ones, and retired ones at their last release. */
  private settle(slot: Slot): void {
    if (slot.refCount > 0 || slot.loading) return;
    if (slot.retired) {
      if (this.retiring.has(slot)) this.drop(slot, "unregistered");
    } else if (slot.state === "registered" && !slot.pinned && this.slots.get(slot.id) === slot) {
      this.slots.delete(slot.id);
    }
  }

  private retire(id: string): void {
    this.unpinned.delete(id);
    const slot = this.slots.get(id);
    if (!slot) return;
    this.slots.delete(id);
    slot.retired = true;
    this.retiring.add(slot);
    if (slot.refCount === 0) {
      if (slot.loading) slot.abort?.abort();
      else this.drop(slot, "unregistered");
    }
  }

  private recordLatency(ms: number): void {
    if (this.latency.length < this.latencyCap) this.latency.push(ms);
    else this.latency[this.latencyNext] = ms;
    this.latencyNext = (this.latencyNext + 1) % this.latencyCap;
  }
}

function info(s: Slot): AdapterStateInfo {
  return {
    id: s.id,
    state: s.state,
    refCount: s.refCount,
    pinned: s.pinned,
    bytes: s.bytes,
    lastUsed: s.lastUsed,
    ...(s.state === "failed" && s.error ? { error: s.error.code, errorMessage: s.error.message, ...(typeof s.error.details?.causeCode === "string" ? { errorCause: s.error.details.causeCode } : {}) } : {}),
    ...(s.retired ? { retiring: true } : {}),
  };
}
