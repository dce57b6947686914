import { AdapterRegistry, type RegistryEntry } from "../../../src/adapters/registry.js";
import { AdapterCache, type AdapterCacheOptions } from "../../../src/adapters/cache.js";
import type { LoraAdapter } from "../../../src/adapters/types.js";
export { mulberry32 as prng } from "../../../src/synth/random.js";

export function fakeAdapter(id: string, bytes: number): LoraAdapter {
  return {
    id,
    format: "peft",
    path: `/fake/${id}`,
    contentHash: `0x${"0".repeat(64)}`,
    baseModel: undefined,
    targetModules: ["q"],
    weights: { layers: [], maxRank: 8, bytes },
  };
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A loader over a table of sizes. By default loads resolve on the next microtask; `manual` makes
 * each load wait for `pending.get(id)!.resolve()`; `failing` ids reject.
 */
export class FakeLoader {
  readonly sizes = new Map<string, number>();
  readonly calls: string[] = [];
  readonly failing = new Set<string>();
  readonly pending = new Map<string, Deferred<void>>();
  readonly signals = new Map<string, AbortSignal>();
  manual = false;

  readonly load = async (entry: RegistryEntry, signal: AbortSignal): Promise<LoraAdapter> => {
    this.calls.push(entry.id);
    this.signals.set(entry.id, signal);
    if (this.manual) {
      const d = deferred<void>();
      this.pending.set(entry.id, d);
      await d.promise;
    }
    if (this.failing.has(entry.id)) throw new Error(`boom ${entry.id}`);
    return fakeAdapter(entry.id, this.sizes.get(entry.id) ?? 100);
  };

  callsFor(id: string): number {
    return this.calls.filter((c) => c === id).length;
  }
}

export function setup(
  sizes: Record<string, number>,
  budgetBytes: number,
  extra: Partial<AdapterCacheOptions> = {},
): { registry: AdapterRegistry; loader: FakeLoader; cache: AdapterCache } {
  const registry = new AdapterRegistry({ now: () => 0 });
  const loader = new FakeLoader();
  for (const [id, n] of Object.entries(sizes)) {
    registry.register(id, { format: "peft", path: `/fake/${id}` });
    loader.sizes.set(id, n);
  }
  const cache = new AdapterCache({ registry, loader: loader.load, budgetBytes, ...extra });
  return { registry, loader, cache };
}


/** Lets every queued microtask and timer-free continuation run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await new Promise((r) => setImmediate(r));
}

export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code ?? "no-code";
  }
}
