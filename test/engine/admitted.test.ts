/**
 * The "admitted" event: once per request, after "accepted" and before the first "delta", naming the
 * adapters it runs with and the content hashes the engine computed from their files. A preempted
 * sequence whose adapter was reloaded with other content meanwhile ends with ADAPTER_CONTENT_CHANGED
 * (with the same content it finishes as alone). Runtime loads refuse the hostile corpus.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { contentHash } from "../../src/attribution/content-hash.js";
import { baseShapeOf } from "../../src/adapters/base-shape.js";
import type { AdapterLoader } from "../../src/adapters/cache.js";
import { createAdapterLoader } from "../../src/adapters/loader.js";
import { AdapterRegistry } from "../../src/adapters/registry.js";
import type { CompletionRequest, EngineEvent } from "../../src/engine/protocol.js";
import type { LoadedModel } from "../../src/model/load.js";
import { native } from "../../src/native/index.js";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { assertHarmlessMessage, writeHostileCorpus } from "../helpers/hostile-adapters.js";
import { tempDir } from "../helpers/tmp.js";
import { alone, Harness, stream, tinyLlama3 } from "./harness.js";

const dir = tempDir("openlora-admitted-");
const adapterDir = join(dir, "adapters");
let model: LoadedModel;

beforeAll(async () => {
  model = await tinyLlama3(dir);
  mkdirSync(adapterDir, { recursive: true });
  writePeftAdapter(join(adapterDir, "p"), "tiny-llama3", { seed: 1, rank: 8, alpha: 16, targets: ["q", "v"], dtype: "F16" });
  for (const id of ["x", "y", "z"]) writeGgufLora(join(adapterDir, `${id}.gguf`), "tiny-llama3", { seed: id.charCodeAt(0), rank: 8, alpha: 16, targets: ["q", "v"], type: "f32" });
  native.setThreads(2);
});

async function registry(): Promise<AdapterRegistry> {
  const r = new AdapterRegistry();
  await r.scanDirectory(adapterDir);
  return r;
}

const kinds = (events: EngineEvent[]): string[] => events.map((e) => e.type).filter((t, i, a) => t !== "delta" || a[i - 1] !== "delta");

describe("the admitted event", () => {
  it("comes once, between accepted and the first delta, with the adapters in request order and the hashes of their files", async () => {
    const h = new Harness(model, await registry());
    const base = h.submit({ maxTokens: 3 });
    const composed = h.submit({ maxTokens: 3, adapters: [{ id: "x", weight: 0.5 }, { id: "p", weight: 0.25 }] });
    await h.run();
    const b = await base.done;
    expect(kinds(b.events)).toEqual(["accepted", "admitted", "delta", "done"]);
    expect(b.events[1]).toEqual({ type: "admitted", adapters: [] });
    const c = await composed.done;
    expect(kinds(c.events)).toEqual(["accepted", "admitted", "delta", "done"]);
    expect(c.events[1]).toEqual({
      type: "admitted",
      adapters: [{ id: "x", contentHash: await contentHash(join(adapterDir, "x.gguf")) }, { id: "p", contentHash: await contentHash(join(adapterDir, "p")) }],
    });
  });

  it("is not sent for a request refused before admission", async () => {
    const h = new Harness(model, await registry());
    const bad = h.submit({ adapters: [{ id: "nope", weight: 1 }] });
    await h.run();
    expect(kinds((await bad.done).events)).toEqual(["error"]);
  });
});

describe("re-admission after a preemption", () => {
  /**
   * x (arrival 2) is preempted by y's growth in a 6-block cache; z, arriving meanwhile, evicts x from
   * a pool of two adapters; x is loaded again when y is done. `changing`: each load of x reports new
   * content (its file changed on disk).
   */
  async function scenario(changing: boolean): Promise<{ x: EngineEvent; xStream: unknown; preemptions: number; loadsOfX: number }> {
    const reg = await registry();
    const real = createAdapterLoader(baseShapeOf(model.config), { maxRank: 64 });
    let loadsOfX = 0;
    const loader: AdapterLoader = async (entry, signal) => {
      const a = await real(entry, signal);
      if (entry.id !== "x") return a;
      loadsOfX++;
      return changing ? { ...a, contentHash: `0x${String(loadsOfX).padStart(64, "0")}` } : a;
    };
    const size = (await real(reg.get("x")!, new AbortController().signal)).weights.bytes;
    const h = new Harness(model, reg, { kvBlocks: 6, blockSize: 8, adapterPoolBytes: 2 * size }, { loader });
    const reqs: Array<Partial<CompletionRequest>> = [
      { prompt: "The quick brown fox", adapters: [{ id: "y", weight: 1 }], maxTokens: 30 },
      { prompt: "Once upon a time there", adapters: [{ id: "x", weight: 1 }], maxTokens: 30, logprobs: 1 },
    ];
    const runs = reqs.map((r) => h.submit(r));
    let z: ReturnType<Harness["submit"]> | undefined;
    await h.run(100_000, () => {
      if (!z && h.core.stats().preemptions > 0) z = h.submit({ prompt: "A", adapters: [{ id: "z", weight: 1 }], maxTokens: 4 });
    });
    expect((await runs[0]!.done).final.type).toBe("done");
    expect((await z!.done).final.type).toBe("done");
    const x = await runs[1]!.done;
    if (!changing) expect(stream(x)).toEqual(stream(await alone(model, registry, reqs[1]!)));
    return { x: x.final, xStream: stream(x), preemptions: h.core.stats().preemptions, loadsOfX };
  }

  it("with other content now: ADAPTER_CONTENT_CHANGED, naming both hashes", async () => {
    const r = await scenario(true);
    expect(r.preemptions).toBeGreaterThan(0);
    expect(r.loadsOfX).toBeGreaterThan(1);
    expect(r.x).toMatchObject({ type: "error", error: { code: "ADAPTER_CONTENT_CHANGED", details: { id: "x", was: `0x${"1".padStart(64, "0")}` } } });
  });

  it("with the same content: it finishes exactly as alone", async () => {
    const r = await scenario(false);
    expect(r.preemptions).toBeGreaterThan(0);
    expect(r.loadsOfX).toBeGreaterThan(1);
    expect(r.x).toMatchObject({ type: "done", finishReason: "length" });
  });
});

describe("runtime loads of the hostile corpus", () => {
  it("each is refused with its code and a harmless message; nothing stays registered", async () => {
    const root = join(dir, "hostile");
    const corpus = writeHostileCorpus(root, join(dir, "outside"));
    const h = new Harness(model, new AdapterRegistry(), { adapterRoot: root });
    for (const a of corpus) {
      const rel = a.format === "gguf" ? `${a.name}.gguf` : a.name;
      const e = await h.core.loadAdapter(`rt-${a.name}`, rel).then(() => undefined, (err: unknown) => err);
      expect(e, a.name).toMatchObject({ code: a.runtimeCode });
      assertHarmlessMessage((e as Error).message);
    }
    expect(h.core.listAdapters()).toEqual([]);
  });
});
