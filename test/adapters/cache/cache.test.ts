import { describe, expect, it } from "vitest";
import { isOpenLoraError } from "../../../src/errors.js";
import { codeOf, flush, setup } from "./helpers.js";

describe("AdapterCache: just-in-time loading", () => {
  it("loads on first acquire, hits afterwards, counts both", async () => {
    const { cache, loader } = setup({ a: 100 }, 1000);
    expect(cache.stateOf("a")?.state).toBe("registered");
    expect(loader.calls).toEqual([]);
    const l1 = await cache.acquire("a");
    expect(l1.adapter.id).toBe("a");
    expect(cache.stateOf("a")).toMatchObject({ state: "ready", refCount: 1, bytes: 100 });
    const l2 = await cache.acquire("a");
    expect(cache.stateOf("a")?.refCount).toBe(2);
    expect(loader.calls).toEqual(["a"]);
    const s = cache.stats();
    expect(s).toMatchObject({ hits: 1, misses: 1, loads: 1, loadFailures: 0, bytesResident: 100, adaptersResident: 1 });
    expect(s.loadLatencyMs.samples).toBe(1);
    l1.release();
    l1.release(); // idempotent
    expect(cache.stateOf("a")?.refCount).toBe(1);
    l2.release();
    expect(cache.stateOf("a")).toMatchObject({ state: "ready", refCount: 0 });
  });

  it("unknown id rejects with ADAPTER_NOT_FOUND; prefetch of it resolves not-found", async () => {
    const { cache } = setup({}, 1000);
    expect(await codeOf(cache.acquire("nope"))).toBe("ADAPTER_NOT_FOUND");
    expect(await cache.prefetch("nope")).toBe("not-found");
    expect(() => cache.pin("nope")).toThrow(expect.objectContaining({ code: "ADAPTER_NOT_FOUND" }));
  });

  it("concurrent acquires of a cold adapter share one load", async () => {
    const { cache, loader } = setup({ a: 100 }, 1000);
    loader.manual = true;
    const ps = [cache.acquire("a"), cache.acquire("a"), cache.acquire("a")];
    void cache.prefetch("a");
    await flush();
    expect(loader.calls).toEqual(["a"]);
    expect(cache.stateOf("a")).toMatchObject({ state: "loading", refCount: 3 });
    loader.pending.get("a")!.resolve();
    const leases = await Promise.all(ps);
    expect(new Set(leases.map((l) => l.adapter)).size).toBe(1);
    expect(cache.stats()).toMatchObject({ loads: 1, misses: 3, hits: 0 });
    leases.forEach((l) => l.release());
    expect(cache.stateOf("a")?.refCount).toBe(0);
  });

  it("prefetch loads without taking a reference", async () => {
    const { cache, loader } = setup({ a: 100 }, 1000);
    expect(await cache.prefetch("a")).toBe("ready");
    expect(cache.stateOf("a")).toMatchObject({ state: "ready", refCount: 0 });
    expect(await cache.prefetch("a")).toBe("ready");
    await (await cache.acquire("a")).release();
    expect(loader.calls).toEqual(["a"]);
    expect(cache.stats().hits).toBe(1);
  });

  it("load latency percentiles come from the injected monotonic clock", async () => {
    let t = 0;
    const { cache, loader } = setup({ a: 1, b: 1, c: 1 }, 1000, { now: () => t });
    loader.manual = true;
    for (const [id, ms] of [["a", 10], ["b", 20], ["c", 30]] as const) {
      const p = cache.prefetch(id);
      await flush();
      t += ms;
      loader.pending.get(id)!.resolve();
      await p;
    }
    expect(cache.stats().loadLatencyMs).toEqual({ samples: 3, p50: 20, p99: 30, max: 30 });
  });
});

describe("AdapterCache: failures", () => {
  it("a failed load rejects every waiter with ADAPTER_LOAD_FAILED, then a later acquire retries", async () => {
    const { cache, loader } = setup({ a: 100 }, 1000);
    loader.manual = true;
    loader.failing.add("a");
    const ps = [cache.acquire("a"), cache.acquire("a")];
    const pre = cache.prefetch("a");
    await flush();
    loader.pending.get("a")!.resolve();
    const errs = await Promise.all(ps.map((p) => p.catch((e: unknown) => e)));
    for (const e of errs) {
      expect(isOpenLoraError(e, "ADAPTER_LOAD_FAILED")).toBe(true);
      expect((e as Error).cause).toBeInstanceOf(Error);
    }
    expect(await pre).toBe("failed");
    expect(cache.stateOf("a")).toMatchObject({ state: "failed", refCount: 0, bytes: 0, error: "ADAPTER_LOAD_FAILED" });
    expect(cache.stats()).toMatchObject({ loadFailures: 1, bytesResident: 0, bytesReserved: 0 });

    loader.failing.delete("a");
    loader.manual = false;
    const lease = await cache.acquire("a");
    expect(cache.stateOf("a")?.state).toBe("ready");
    expect(loader.callsFor("a")).toBe(2);
    lease.release();
  });

  it("keeps the reader's own error code in details.causeCode", async () => {
    const { cache, registry } = setup({}, 1000);
    registry.register("bad", { format: "gguf", path: "/x.gguf" });
    const { AdapterCache } = await import("../../../src/adapters/cache.js");
    const { oerr } = await import("../../../src/errors.js");
    const c2 = new AdapterCache({
      registry,
      budgetBytes: 1000,
      loader: async () => {
        throw oerr("ADAPTER_RANK_TOO_LARGE", "rank 512");
      },
    });
    const e = await c2.acquire("bad").catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "ADAPTER_LOAD_FAILED", details: { causeCode: "ADAPTER_RANK_TOO_LARGE" } });
    void cache;
  });

  it("a loader that throws synchronously still fails as ADAPTER_LOAD_FAILED", async () => {
    const { registry } = setup({ a: 1 }, 1000);
    const { AdapterCache } = await import("../../../src/adapters/cache.js");
    const c = new AdapterCache({
      registry,
      budgetBytes: 1000,
      loader: (() => {
        throw new Error("sync");
      }) as never,
    });
    expect(await codeOf(c.acquire("a"))).toBe("ADAPTER_LOAD_FAILED");
  });
});

describe("AdapterCache: eviction", () => {
  it("evicts least recently used unused adapters first", async () => {
    const { cache, loader } = setup({ a: 100, b: 100, c: 100, d: 100 }, 300);
    for (const id of ["a", "b", "c"]) (await cache.acquire(id)).release();
    (await cache.acquire("a")).release(); // a is now the most recent; b is the LRU
    const evicted: string[] = [];
    (cache as unknown as { hooks: { onEvict: (id: string) => void } }).hooks.onEvict = (id) => evicted.push(id);
    (await cache.acquire("d")).release();
    expect(evicted).toEqual(["b"]);
    expect(cache.stateOf("b")?.state).toBe("registered");
    (await cache.acquire("c")).release(); // still resident
    expect(loader.callsFor("c")).toBe(1);
    (await cache.acquire("b")).release(); // evicts a (LRU after c was touched)
    expect(evicted).toEqual(["b", "a"]);
    expect(cache.stats()).toMatchObject({ evictions: 2, bytesResident: 300, adaptersResident: 3 });
  });

  it("never evicts an adapter in use or pinned; fails with ADAPTER_POOL_EXHAUSTED without evicting anything", async () => {
    const { cache } = setup({ a: 100, b: 100, c: 100, d: 150 }, 300);
    const la = await cache.acquire("a");
    cache.pin("b");
    await cache.prefetch("b");
    (await cache.acquire("c")).release();
    // d needs 150: only c (100) is evictable → cannot fit, and c must survive the attempt.
    expect(await codeOf(cache.acquire("d"))).toBe("ADAPTER_POOL_EXHAUSTED");
    expect(await cache.prefetch("d")).toBe("exhausted");
    expect(cache.stateOf("c")?.state).toBe("ready");
    expect(cache.stateOf("d")?.state).toBe("registered");
    expect(cache.stats()).toMatchObject({ evictions: 0, exhausted: 2, bytesResident: 300 });
    // Releasing a makes room: c (least recent) and then a are evicted for d; pinned b stays.
    la.release();
    const ld = await cache.acquire("d");
    expect(cache.stateOf("c")?.state).toBe("registered");
    expect(cache.stateOf("b")?.state).toBe("ready");
    expect(cache.stats().bytesResident).toBeLessThanOrEqual(300);
    ld.release();
    cache.unpin("b");
    expect(cache.stateOf("b")?.pinned).toBe(false);
  });

  it("an adapter larger than the whole budget is ADAPTER_POOL_EXHAUSTED and leaves the pool intact", async () => {
    const { cache } = setup({ a: 100, big: 1001 }, 1000);
    (await cache.acquire("a")).release();
    expect(await codeOf(cache.acquire("big"))).toBe("ADAPTER_POOL_EXHAUSTED");
    expect(cache.stateOf("a")?.state).toBe("ready");
    expect(cache.stateOf("big")?.state).toBe("registered");
  });

  it("reserves estimateBytes before loading so loads in flight cannot overrun the budget", async () => {
    const { cache, loader } = setup({ a: 60, b: 60 }, 100, { estimateBytes: () => 60 });
    loader.manual = true;
    const pa = cache.acquire("a");
    await flush();
    expect(cache.stats()).toMatchObject({ bytesReserved: 60, adaptersLoading: 1 });
    expect(await codeOf(cache.acquire("b"))).toBe("ADAPTER_POOL_EXHAUSTED");
    expect(loader.callsFor("b")).toBe(0);
    loader.pending.get("a")!.resolve();
    (await pa).release();
    expect(cache.stats()).toMatchObject({ bytesReserved: 0, bytesResident: 60 });
  });

  it("without an estimate, admits after load and evicts to fit, or discards the load", async () => {
    const { cache, loader } = setup({ a: 60, b: 60, c: 60 }, 100);
    loader.manual = true;
    const pa = cache.acquire("a");
    const pb = cache.acquire("b");
    await flush();
    loader.pending.get("a")!.resolve();
    const la = await pa;
    loader.pending.get("b")!.resolve();
    expect(await codeOf(pb)).toBe("ADAPTER_POOL_EXHAUSTED"); // a is in use
    expect(cache.stats()).toMatchObject({ bytesResident: 60, bytesReserved: 0 });
    la.release();
    loader.manual = false;
    (await cache.acquire("c")).release(); // evicts a
    expect(cache.stateOf("a")?.state).toBe("registered");
    expect(cache.stats()).toMatchObject({ bytesResident: 60, evictions: 1 });
  });
});

describe("AdapterCache: unregister", () => {
  it("an adapter in use stays until its last lease is released, then is freed", async () => {
    const { cache, registry } = setup({ a: 100 }, 1000);
    const l1 = await cache.acquire("a");
    const l2 = await cache.acquire("a");
    cache.unregister("a");
    expect(registry.has("a")).toBe(false);
    expect(await codeOf(cache.acquire("a"))).toBe("ADAPTER_NOT_FOUND");
    expect(cache.states()).toEqual([expect.objectContaining({ id: "a", refCount: 2, retiring: true, state: "ready" })]);
    expect(cache.stats().bytesResident).toBe(100);
    l1.release();
    expect(cache.stats().bytesResident).toBe(100);
    expect(l2.adapter.weights.bytes).toBe(100); // still usable
    l2.release();
    expect(cache.stats().bytesResident).toBe(0);
    expect(cache.states()).toEqual([]);
  });

  it("re-registering the id while the old one is in use gives a fresh, separate adapter", async () => {
    const { cache, registry, loader } = setup({ a: 100 }, 1000);
    const old = await cache.acquire("a");
    cache.unregister("a");
    registry.register("a", { format: "gguf", path: "/new/a.gguf" });
    loader.sizes.set("a", 200);
    const fresh = await cache.acquire("a");
    expect(fresh.adapter).not.toBe(old.adapter);
    expect(cache.stats().bytesResident).toBe(300);
    old.release();
    expect(cache.stats().bytesResident).toBe(200);
    expect(cache.stateOf("a")).toMatchObject({ state: "ready", refCount: 1, bytes: 200 });
    fresh.release();
  });

  it("unregistering an unused resident adapter frees it; an unknown id is ADAPTER_NOT_FOUND", async () => {
    const { cache } = setup({ a: 100 }, 1000);
    await cache.prefetch("a");
    cache.unregister("a");
    expect(cache.stats()).toMatchObject({ bytesResident: 0, adaptersResident: 0, evictions: 0 });
    expect(() => cache.unregister("a")).toThrow(expect.objectContaining({ code: "ADAPTER_NOT_FOUND" }));
  });

  it("a prefetch in flight is aborted when its id is unregistered", async () => {
    const { cache, loader } = setup({ a: 100 }, 1000, { estimateBytes: () => 100 });
    loader.manual = true;
    const p = cache.prefetch("a");
    await flush();
    cache.unregister("a");
    expect(loader.signals.get("a")!.aborted).toBe(true);
    loader.pending.get("a")!.resolve(); // this loader ignores the signal and finishes anyway
    expect(await p).toBe("not-found");
    expect(cache.stats()).toMatchObject({ bytesResident: 0, bytesReserved: 0 });
    expect(cache.states()).toEqual([]);
  });

  it("waiters of a load whose id is unregistered mid-load still get the adapter", async () => {
    const { cache, loader } = setup({ a: 100 }, 1000);
    loader.manual = true;
    const p = cache.acquire("a");
    await flush();
    cache.unregister("a");
    expect(loader.signals.get("a")!.aborted).toBe(false);
    loader.pending.get("a")!.resolve();
    const l = await p;
    expect(cache.stats().bytesResident).toBe(100);
    l.release();
    expect(cache.stats().bytesResident).toBe(0);
  });
});

describe("AdapterCache: listing", () => {
  it("states() lists held adapters sorted, with pinned registry entries starting pinned", async () => {
    const { cache, registry } = setup({ b: 10, a: 20 }, 1000);
    registry.register("p", { format: "peft", path: "/p" }, { pinned: true });
    await cache.prefetch("b");
    const la = await cache.acquire("a");
    await cache.prefetch("p");
    expect(cache.states().map((s) => [s.id, s.state, s.refCount, s.pinned])).toEqual([
      ["a", "ready", 1, false],
      ["b", "ready", 0, false],
      ["p", "ready", 0, true],
    ]);
    const lu = cache.states().map((s) => s.lastUsed);
    expect(new Set(lu).size).toBe(3);
    la.release();
  });
});

describe("AdapterCache: pins from the registry, headroom, close", () => {
  it("a registry-pinned adapter unpinned at run time stays unpinned after eviction", async () => {
    const { cache, registry } = setup({ a: 100 }, 100);
    registry.register("p", { format: "peft", path: "/p" }, { pinned: true });
    expect(cache.stateOf("p")?.pinned).toBe(true);
    cache.unpin("p");
    expect(cache.stateOf("p")?.pinned).toBe(false);
    (await cache.acquire("p")).release();
    (await cache.acquire("a")).release(); // evicts p
    expect(cache.stateOf("p")).toMatchObject({ state: "registered", pinned: false });
    cache.pin("p");
    expect(cache.stateOf("p")?.pinned).toBe(true);
  });

  it("bytesEvictable tells a scheduler what a new load could get", async () => {
    const { cache } = setup({ a: 100, b: 200, c: 300 }, 1000);
    const la = await cache.acquire("a");
    await cache.prefetch("b");
    await cache.prefetch("c");
    cache.pin("c");
    expect(cache.stats()).toMatchObject({ bytesResident: 600, bytesEvictable: 200, adaptersInUse: 1 });
    la.release();
    expect(cache.stats().bytesEvictable).toBe(300);
  });

  it("close() aborts loads in flight and stops following the registry", async () => {
    const { cache, loader, registry } = setup({ a: 100 }, 1000);
    loader.manual = true;
    const p = cache.acquire("a");
    await flush();
    cache.close();
    expect(loader.signals.get("a")!.aborted).toBe(true);
    loader.pending.get("a")!.reject(new DOMException("aborted", "AbortError"));
    expect(await codeOf(p)).toBe("ADAPTER_LOAD_FAILED");
    registry.unregister("a"); // no longer observed: must not throw
  });
});

describe("AdapterCache: prefetch and recency", () => {
  it("prefetching a resident adapter refreshes its recency", async () => {
    const { cache } = setup({ a: 100, b: 100, c: 100 }, 200);
    await cache.prefetch("a");
    await cache.prefetch("b");
    await cache.prefetch("a"); // now b is the LRU
    await cache.prefetch("c");
    expect(cache.stateOf("a")?.state).toBe("ready");
    expect(cache.stateOf("b")?.state).toBe("registered");
  });
});
