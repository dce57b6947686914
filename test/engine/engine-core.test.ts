/**
 * The continuous-batching engine loop on a real (tiny) model: requests submitted together, at
 * different times, preempted for lack of KV blocks, or with heterogeneous batching switched off all
 * produce exactly the tokens of the same request run alone; adapters load just in time from files;
 * cancellations and failures free their blocks and leave everyone else served.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AdapterRegistry } from "../../src/adapters/registry.js";
import { DEFAULT_CORE_OPTIONS, EngineCore, type EngineCoreOptions } from "../../src/engine/engine-core.js";
import { generate } from "../../src/engine/generate.js";
import type { CompletionRequest, EngineEvent } from "../../src/engine/protocol.js";
import type { LoadedModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { tempDir } from "../helpers/tmp.js";
import { tinyLlama3 } from "./harness.js";

const dir = tempDir();
const adapterDir = join(dir, "adapters");
let model: LoadedModel;

beforeAll(async () => {
  model = await tinyLlama3(dir);
  mkdirSync(adapterDir, { recursive: true });
  for (let i = 0; i < 6; i++) {
    const common = { seed: 40 + i, rank: [8, 16, 32][i % 3]!, alpha: 16, targets: ["q", "k", "v", "o"] as const, strength: 0.1 };
    if (i % 2 === 0) writePeftAdapter(join(adapterDir, `a${i}`), "tiny-llama3", { ...common, targets: [...common.targets], dtype: "F32" });
    else writeGgufLora(join(adapterDir, `a${i}.gguf`), "tiny-llama3", { ...common, targets: [...common.targets], type: "f32" });
  }
  mkdirSync(join(adapterDir, "broken"));
  writeFileSync(join(adapterDir, "broken", "adapter_config.json"), "{ not json");
  native.setThreads(2);
});

interface Outcome { tokens: number[]; text: string; events: EngineEvent[]; final: EngineEvent }

class Harness {
  readonly core: EngineCore;
  private readonly outcomes = new Map<number, Outcome>();
  private readonly waiters = new Map<number, (o: Outcome) => void>();
  private nextId = 1;

  constructor(registry: AdapterRegistry, opts: Partial<EngineCoreOptions> = {}) {
    this.core = new EngineCore(model, registry, { ...DEFAULT_CORE_OPTIONS, kvBlocks: 256, adapterRoot: adapterDir, ...opts }, (id, e) => this.onEvent(id, e), () => {});
  }

  submit(req: Partial<CompletionRequest>): Promise<Outcome> {
    const id = this.nextId++;
    this.outcomes.set(id, { tokens: [], text: "", events: [], final: undefined as unknown as EngineEvent });
    const done = new Promise<Outcome>((resolve) => this.waiters.set(id, resolve));
    this.core.submit(id, { prompt: "Hello", addSpecial: true, adapters: [], maxTokens: 8, sampling: {}, stop: [], ignoreEos: true, fairKey: "k", ...req });
    return done;
  }

  lastId(): number {
    return this.nextId - 1;
  }

  private onEvent(id: number, e: EngineEvent): void {
    const o = this.outcomes.get(id)!;
    o.events.push(e);
    if (e.type === "delta") { o.tokens.push(...e.tokens); o.text += e.text; }
    if (e.type === "done" || e.type === "error") { o.final = e; this.waiters.get(id)!(o); }
  }

  /** Runs steps until nothing is live; waits (real time) while only adapter loads are pending. */
  async run(maxSteps = 10_000): Promise<number> {
    let steps = 0;
    while (this.core.live > 0 && steps < maxSteps) {
      if (this.core.step()) steps++;
      else await new Promise((r) => setTimeout(r, 2));
    }
    return steps;
  }
}

async function registryWithAdapters(): Promise<AdapterRegistry> {
  const r = new AdapterRegistry();
  await r.scanDirectory(adapterDir);
  return r;
}

describe("engine loop", () => {
  const prompts = ["The quick brown fox", "Once upon a time there was", "A", "Adapters are small low-rank updates of a shared base model that specialise it"];

  it("gives every request of a mixed batch exactly its tokens alone (base, adapters, composition)", async () => {
    const h = new Harness(await registryWithAdapters(), { prefillChunk: 8 });
    const reqs: Array<Partial<CompletionRequest>> = prompts.flatMap((prompt, i) => [
      { prompt, maxTokens: 6 + i },
      { prompt, maxTokens: 5, adapters: [{ id: `a${i}`, weight: 1 }] },
      { prompt, maxTokens: 7, adapters: [{ id: "a1", weight: 0.7 }, { id: "a2", weight: 0.3 }] },
    ]);
    const together = reqs.map((r) => h.submit(r));
    await h.run();
    const results = await Promise.all(together);
    for (const [i, r] of reqs.entries()) {
      const alone = new Harness(await registryWithAdapters());
      const p = alone.submit(r);
      await alone.run();
      const a = await p;
      expect(results[i]!.final.type, `request ${i}`).toBe("done");
      expect(results[i]!.tokens, `request ${i}`).toEqual(a.tokens);
      expect(results[i]!.tokens.length).toBe(r.maxTokens);
    }
    // The base-model requests equal the plain generate() path too.
    const ref = generate(model, { prompt: prompts[0]!, maxTokens: 6, ignoreEos: true });
    expect(results[0]!.tokens).toEqual(ref.tokens);
    expect(results[0]!.text).toBe(ref.text);
  });

  it("admits requests arriving mid-generation and still matches each alone", async () => {
    const h = new Harness(await registryWithAdapters());
    const first = h.submit({ prompt: prompts[3], maxTokens: 12 });
    h.core.step();
    h.core.step();
    const second = h.submit({ prompt: prompts[1], maxTokens: 6, adapters: [{ id: "a3", weight: 1 }] });
    await h.run();
    const alone = new Harness(await registryWithAdapters());
    const p1 = alone.submit({ prompt: prompts[3], maxTokens: 12 });
    const p2 = alone.submit({ prompt: prompts[1], maxTokens: 6, adapters: [{ id: "a3", weight: 1 }] });
    await alone.run();
    expect((await first).tokens).toEqual((await p1).tokens);
    expect((await second).tokens).toEqual((await p2).tokens);
  });

  it("preempts when KV blocks run out and recomputes to the same tokens", async () => {
    const reqs = prompts.map((prompt, i) => ({ prompt, maxTokens: 24, adapters: i % 2 ? [{ id: `a${i}`, weight: 1 }] : [] }));
    const roomy = new Harness(await registryWithAdapters());
    const want = reqs.map((r) => roomy.submit(r));
    await roomy.run();
    const tight = new Harness(await registryWithAdapters(), { kvBlocks: 6, blockSize: 8 });
    const got = reqs.map((r) => tight.submit(r));
    await tight.run();
    for (let i = 0; i < reqs.length; i++) expect((await got[i]!).tokens).toEqual((await want[i]!).tokens);
    expect(tight.core.stats().preemptions).toBeGreaterThan(0);
    expect(tight.core.kv.usedBlocks).toBe(0);
  });

  it("with heterogeneous batching off, batches one adapter set at a time and gives the same tokens", async () => {
    const reqs = [0, 1, 2, 3].map((i) => ({ prompt: prompts[i], maxTokens: 5, adapters: [{ id: `a${i}`, weight: 1 }] }));
    const mixed = new Harness(await registryWithAdapters());
    const a = reqs.map((r) => mixed.submit(r));
    const mixedSteps = await mixed.run();
    const single = new Harness(await registryWithAdapters(), { mixedAdapters: false });
    const b = reqs.map((r) => single.submit(r));
    const singleSteps = await single.run();
    for (let i = 0; i < reqs.length; i++) expect((await b[i]!).tokens).toEqual((await a[i]!).tokens);
    expect(singleSteps).toBeGreaterThanOrEqual(4 * 5);
    expect(mixedSteps).toBeLessThan(singleSteps);
  });

  it("cancels a running request, frees its blocks and leases, and keeps serving the others", async () => {
    const h = new Harness(await registryWithAdapters());
    const victim = h.submit({ prompt: prompts[0], maxTokens: 40, adapters: [{ id: "a0", weight: 1 }] });
    const victimId = h.lastId();
    const other = h.submit({ prompt: prompts[1], maxTokens: 10 });
    for (let i = 0; i < 50 && h.core.adapters.stateOf("a0")?.refCount !== 1; i++) {
      if (!h.core.step()) await new Promise((r) => setTimeout(r, 2));
    }
    expect(h.core.kv.usedBlocks).toBeGreaterThan(0);
    h.core.cancel(victimId);
    expect((await victim).final).toMatchObject({ type: "error", error: { code: "REQUEST_CANCELLED" } });
    expect(h.core.adapters.stateOf("a0")?.refCount).toBe(0);
    await h.run();
    expect((await other).final.type).toBe("done");
    expect((await other).tokens.length).toBe(10);
    expect(h.core.kv.usedBlocks).toBe(0);
  });

  it("rejects bad requests with typed errors and serves the good ones", async () => {
    const h = new Harness(await registryWithAdapters(), { kvBlocks: 8, blockSize: 16, maxQueue: 3 });
    const bad = await Promise.all([
      h.submit({ adapters: [{ id: "nope", weight: 1 }] }),
      h.submit({ maxTokens: 0 }),
      h.submit({ prompt: [1, 2, model.config.vocabSize] }),
      h.submit({ prompt: "" , addSpecial: false }),
      h.submit({ maxTokens: model.config.contextLength }),
      h.submit({ maxTokens: 8 * 16 }),
      h.submit({ sampling: { temperature: -1 } }),
      h.submit({ adapters: [{ id: "a1", weight: Number.NaN }] }),
    ]);
    expect(bad.map((o) => (o.final as { error: { code: string } }).error.code)).toEqual([
      "ADAPTER_NOT_FOUND", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "CONTEXT_OVERFLOW", "PROMPT_TOO_LONG", "INVALID_ARGUMENT", "INVALID_ARGUMENT",
    ]);
    const good = [h.submit({}), h.submit({}), h.submit({})];
    const full = await h.submit({});
    expect(full.final).toMatchObject({ type: "error", error: { code: "QUEUE_FULL", details: { retryAfterSeconds: 1 } } });
    await h.run();
    for (const g of good) expect((await g).final.type).toBe("done");
  });

  it("loads adapters just in time; a broken adapter fails only its own waiting requests", async () => {
    const h = new Harness(await registryWithAdapters());
    expect(h.core.adapters.stateOf("a5")?.state).toBe("registered");
    const ok = h.submit({ prompt: prompts[2], maxTokens: 4, adapters: [{ id: "a5", weight: 1 }] });
    const broken = [h.submit({ adapters: [{ id: "broken", weight: 1 }] }), h.submit({ adapters: [{ id: "broken", weight: 0.5 }] })];
    const base = h.submit({ maxTokens: 4 });
    await h.run();
    for (const b of broken) expect((await b).final).toMatchObject({ type: "error", error: { code: "ADAPTER_LOAD_FAILED", details: { causeCode: "ADAPTER_INVALID" } } });
    expect((await ok).final.type).toBe("done");
    expect((await base).final.type).toBe("done");
    const s = h.core.stats();
    expect(s.adapters.loads).toBeGreaterThanOrEqual(1);
    expect(s.adapters.misses).toBeGreaterThanOrEqual(3);
    expect(s.newLoadLatenciesMs.length).toBeGreaterThanOrEqual(1);
    expect(h.core.stats().newLoadLatenciesMs).toEqual([]);
  });

  it("prefetches a queued request's adapter while the batch ahead of it runs", async () => {
    const h = new Harness(await registryWithAdapters(), { maxRunning: 1 });
    const running = h.submit({ maxTokens: 30 });
    const queued = h.submit({ maxTokens: 3, adapters: [{ id: "a4", weight: 1 }] });
    let readyWhileWaiting = false;
    while (h.core.live > 0) {
      const ran = h.core.step();
      const st = h.core.adapters.stateOf("a4")!;
      const waiting = h.core.stats().waiting === 1 && h.core.live === 2;
      if (st.state === "ready" && waiting) readyWhileWaiting = true;
      // The worker yields to its event loop between steps the same way; loads progress meanwhile.
      await new Promise((r) => (ran ? setImmediate(r) : setTimeout(r, 2)));
    }
    expect(readyWhileWaiting).toBe(true);
    expect((await running).final.type).toBe("done");
    expect((await queued).final.type).toBe("done");
  });

  it("keeps resident adapters within a pool that fits only one, serving requests for several", async () => {
    const registry = await registryWithAdapters();
    const h = new Harness(registry, { adapterPoolBytes: 1 });
    const pending = h.submit({ adapters: [{ id: "a0", weight: 1 }] });
    await h.run();
    expect((await pending).final).toMatchObject({ type: "error", error: { code: "ADAPTER_POOL_EXHAUSTED" } });
    const probe = new Harness(registry);
    await probe.core.loadAdapter("a0-copy", "a0");
    const size = probe.core.listAdapters().find((a) => a.id === "a0-copy")!.bytes;
    registry.unregister("a0-copy");
    // a0 and a3 are both rank 8 (same size): the pool holds one of them at a time.
    const one = new Harness(await registryWithAdapters(), { adapterPoolBytes: Math.ceil(size * 1.5) });
    const outs = [one.submit({ adapters: [{ id: "a0", weight: 1 }] }), one.submit({ adapters: [{ id: "a3", weight: 1 }] }), one.submit({ adapters: [{ id: "a0", weight: 1 }] })];
    await one.run();
    for (const o of outs) expect((await o).final.type).toBe("done");
    const st = one.core.stats();
    expect(st.adapters.residentBytes).toBeLessThanOrEqual(Math.ceil(size * 1.5));
    expect(st.adapters.evictions).toBeGreaterThanOrEqual(1);
  });

  it("loads and unloads adapters at run time, confined to the adapter folder", async () => {
    const h = new Harness(new AdapterRegistry());
    const info = await h.core.loadAdapter("mine", "a1.gguf");
    expect(info).toMatchObject({ id: "mine", format: "gguf", state: "ready" });
    await expect(h.core.loadAdapter("mine", "a1.gguf")).rejects.toMatchObject({ code: "ADAPTER_ALREADY_EXISTS" });
    await expect(h.core.loadAdapter("evil", "../../etc")).rejects.toMatchObject({ code: "ADAPTER_PATH_OUTSIDE_ROOT" });
    await expect(h.core.loadAdapter("bad/id", "a1.gguf")).rejects.toMatchObject({ code: "ADAPTER_ID_INVALID" });
    await expect(h.core.loadAdapter("b", "broken")).rejects.toMatchObject({ code: "ADAPTER_INVALID" });
    expect(h.core.listAdapters().map((a) => a.id)).toEqual(["mine"]);
    const waiting = h.submit({ adapters: [{ id: "mine", weight: 1 }] });
    h.core.unloadAdapter("mine");
    expect((await waiting).final).toMatchObject({ type: "error", error: { code: "ADAPTER_NOT_FOUND" } });
    expect(() => h.core.unloadAdapter("mine")).toThrow(expect.objectContaining({ code: "ADAPTER_NOT_FOUND" }));
  });

  it("reports logprobs of the model distribution, the sampled token first in its top list under greedy", async () => {
    const h = new Harness(await registryWithAdapters());
    const o = h.submit({ maxTokens: 3, logprobs: 3 });
    await h.run();
    const deltas = (await o).events.filter((e) => e.type === "delta");
    expect(deltas).toHaveLength(3);
    for (const d of deltas) {
      const lp = (d as { logprobs: Array<{ logprob: number; top: Array<{ logprob: number; token: string }>; token: string }> }).logprobs[0]!;
      expect(lp.top).toHaveLength(3);
      expect(lp.logprob).toBeLessThanOrEqual(0);
      expect(lp.top[0]!.logprob).toBe(lp.logprob);
      expect(lp.top[0]!.logprob).toBeGreaterThanOrEqual(lp.top[1]!.logprob);
    }
  });

  it("drains: refuses new requests, finishes the ones in flight", async () => {
    const h = new Harness(await registryWithAdapters());
    const inflight = h.submit({ maxTokens: 5 });
    h.core.drain();
    expect(h.core.isDrained).toBe(false);
    const late = await h.submit({});
    expect(late.final).toMatchObject({ type: "error", error: { code: "SHUTTING_DOWN" } });
    await h.run();
    expect((await inflight).final.type).toBe("done");
    expect(h.core.isDrained).toBe(true);
  });
});
