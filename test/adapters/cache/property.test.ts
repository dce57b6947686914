import { describe, expect, it } from "vitest";
import { AdapterCache, type LeasedAdapter } from "../../../src/adapters/cache.js";
import { AdapterRegistry } from "../../../src/adapters/registry.js";
import { deferred, fakeAdapter, flush, prng, type Deferred } from "./helpers.js";

/**
 * Random sequences of acquire / release / pin / unpin / prefetch / unregister / slow and failing
 * loads over 50 adapters under a small budget. After every step: resident + reserved bytes ≤
 * budget, the books add up, and every lease held is on a ready adapter. Every eviction is checked
 * against the test's own model: nobody held or awaited it, and it was not pinned.
 */
async function run(seed: number, steps: number, withEstimate: boolean): Promise<Record<string, number>> {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const N = 50;
  const ids = Array.from({ length: N }, (_, i) => `ad-${i}`);
  const sizes = new Map(ids.map((id) => [id, 10 + Math.floor(rnd() * 90)]));
  const budget = 400;
  const registry = new AdapterRegistry();
  for (const id of ids) registry.register(id, { format: "peft", path: `/fake/${id}` });

  const pending = new Map<string, Deferred<boolean>>(); // resolve(true) = succeed, (false) = fail
  const held = new Map<string, LeasedAdapter[]>();
  const awaiting = new Map<string, number>();
  const pinned = new Set<string>();
  const violations: string[] = [];
  const count = { evictions: 0, exhausted: 0, failures: 0, leases: 0 };

  const cache = new AdapterCache({
    registry,
    budgetBytes: budget,
    // Sometimes under-estimates, so admission after load is exercised too.
    ...(withEstimate ? { estimateBytes: (e) => Math.floor(sizes.get(e.id)! * (rnd() < 0.3 ? 0.5 : 1)) } : {}),
    loader: async (entry) => {
      const d = deferred<boolean>();
      pending.set(entry.id, d);
      const ok = await d.promise;
      if (!ok) throw new Error("injected failure");
      return fakeAdapter(entry.id, sizes.get(entry.id)!);
    },
    hooks: {
      onEvict: (id, reason) => {
        if (reason !== "lru") return;
        count.evictions++;
        if ((held.get(id)?.length ?? 0) > 0) violations.push(`evicted ${id} while held`);
        if ((awaiting.get(id) ?? 0) > 0) violations.push(`evicted ${id} while awaited`);
        if (pinned.has(id)) violations.push(`evicted pinned ${id}`);
      },
    },
  });

  const bump = (m: Map<string, number>, id: string, d: number): void => {
    m.set(id, (m.get(id) ?? 0) + d);
  };

  for (let step = 0; step < steps; step++) {
    const r = rnd();
    const id = pick(ids);
    if (r < 0.3) {
      if (!registry.has(id)) continue;
      bump(awaiting, id, 1);
      cache.acquire(id).then(
        (l) => {
          bump(awaiting, id, -1);
          count.leases++;
          held.set(id, [...(held.get(id) ?? []), l]);
        },
        (e: { code?: string }) => {
          bump(awaiting, id, -1);
          if (e.code === "ADAPTER_POOL_EXHAUSTED") count.exhausted++;
          else if (e.code === "ADAPTER_LOAD_FAILED") count.failures++;
          else violations.push(`unexpected ${e.code}`);
        },
      );
    } else if (r < 0.55) {
      const withLeases = [...held.entries()].filter(([, ls]) => ls.length > 0);
      if (withLeases.length) {
        const [hid, ls] = pick(withLeases);
        const l = ls.splice(Math.floor(rnd() * ls.length), 1)[0]!;
        l.release();
        if (rnd() < 0.1) l.release(); // double release must be harmless
        void hid;
      }
    } else if (r < 0.62) {
      if (registry.has(id)) {
        cache.pin(id);
        pinned.add(id);
      }
    } else if (r < 0.7) {
      cache.unpin(id);
      pinned.delete(id);
    } else if (r < 0.78) {
      void cache.prefetch(id);
    } else if (r < 0.95) {
      if (pending.size) {
        const [pid, d] = pick([...pending.entries()]);
        pending.delete(pid);
        d.resolve(rnd() > 0.1);
      }
    } else if (r < 0.975) {
      if (registry.has(id)) {
        cache.unregister(id);
        pinned.delete(id);
      }
    } else if (!registry.has(id)) {
      registry.register(id, { format: "peft", path: `/fake/${id}` });
    }
    await flush();

    const s = cache.stats();
    if (s.bytesResident + s.bytesReserved > budget) violations.push(`step ${step}: over budget ${s.bytesResident}+${s.bytesReserved}`);
    const listed = cache.states();
    const sum = listed.reduce((a, x) => a + x.bytes, 0);
    if (sum !== s.bytesResident + s.bytesReserved) violations.push(`step ${step}: books ${sum} vs stats`);
    for (const [hid, ls] of held) {
      if (ls.length === 0) continue;
      const st = listed.filter((x) => x.id === hid && x.state === "ready");
      const refs = st.reduce((a, x) => a + x.refCount, 0);
      if (refs < ls.length) violations.push(`step ${step}: ${hid} held ${ls.length} but ready refs ${refs}`);
    }
    for (const pid of pinned) {
      const st = cache.stateOf(pid);
      if (!st?.pinned) violations.push(`step ${step}: ${pid} lost its pin`);
    }
    if (violations.length) break;
  }
  expect(violations).toEqual([]);
  // Drain: settle every load, release every lease; the pool must end with only unused bytes.
  while (pending.size) {
    for (const [pid, d] of [...pending]) {
      pending.delete(pid);
      d.resolve(true);
    }
    await flush();
  }
  for (const ls of held.values()) ls.forEach((l) => l.release());
  const end = cache.stats();
  expect(end.adaptersInUse).toBe(0);
  expect(end.bytesReserved).toBe(0);
  expect(end.bytesResident).toBeLessThanOrEqual(budget);
  return { ...count, loads: end.loads, hits: end.hits };
}

describe("AdapterCache: property — budget and in-use/pinned safety under random operations", () => {
  for (const [seed, withEstimate] of [
    [1, false],
    [2, true],
    [3, false],
    [4, true],
  ] as const) {
    it(`seed ${seed}, ${withEstimate ? "with" : "without"} size estimates`, async () => {
      const c = await run(seed, 1500, withEstimate);
      // The run must actually have exercised eviction, exhaustion, failures and hits.
      expect(c.evictions).toBeGreaterThan(0);
      expect(c.exhausted).toBeGreaterThan(0);
      expect(c.failures).toBeGreaterThan(0);
      expect(c.hits).toBeGreaterThan(0);
    });
  }
});
