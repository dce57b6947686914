/**
 * The llama.cpp baseline server end to end on a tiny model: two GGUF LoRA adapters, four short
 * streamed requests through the harness's client, every one finishing with its requested token
 * count; /metrics counts one context load per adapter; unknown models are 404.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driveTrace } from "../../src/bench-serve/client.js";
import { startLlamaCppServer, type RunningLlamaCppServer } from "../../src/bench-serve/llamacpp-server.js";
import { baseModelId, parseAdapterCounters } from "../../src/bench-serve/server-probe.js";
import type { Trace } from "../../src/bench-serve/workload.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-bench-serve-");
let server: RunningLlamaCppServer;

beforeAll(async () => {
  const modelPath = writeGgufModel(join(dir, "tiny.gguf"), "tiny-llama3", { seed: 3, type: "f32" });
  for (const [i, id] of ["a0000", "a0001"].entries()) {
    writeGgufLora(join(dir, "loras", `${id}.gguf`), "tiny-llama3", { seed: 100 + i, rank: 4, alpha: 8, targets: ["q", "v"], type: "f32" });
  }
  server = await startLlamaCppServer({
    modelPath, loraDir: join(dir, "loras"), port: 0, threads: 1, maxContexts: 2, sequencesPerContext: 2, baseSequences: 2, contextSize: 64,
  });
});

afterAll(async () => { await server?.close(); });

describe("llama.cpp baseline server", () => {
  it("serves 4 streamed requests over 2 adapters with the requested token counts", async () => {
    expect(await baseModelId(server.origin, new Set(["a0000", "a0001"]), "?")).toBe("tiny");
    const trace: Trace = {
      spec: { seed: 1, requests: 4, adapters: 2, popularity: { pattern: "distinct" }, arrival: { mode: "closed", concurrency: 4 }, promptLen: [4, 9], outputLen: [3, 9] },
      requests: [5, 3, 8, 6].map((maxTokens, i) => ({ index: i, arrivalMs: undefined, adapterIndex: i % 2, prompt: [1000 + i, 2000, 3000, 4000 + i], maxTokens })),
    };
    const { records } = await driveTrace(trace, { baseURL: `${server.origin}/v1`, modelFor: (r) => ["a0000", "a0001"][r.adapterIndex]! });
    for (const r of records) {
      expect(r.status, r.error).toBe("ok");
      expect(r.outputTokens).toBe(r.maxTokens);
      expect(r.tokenTimesMs).toHaveLength(r.maxTokens);
      expect(r.finishReason).toBe("length");
    }
    const counters = parseAdapterCounters(await (await fetch(`${server.origin}/metrics`)).text());
    expect(counters).toMatchObject({ loads: 2, evictions: 0, hits: 2, misses: 2, resident: 2 });
  });

  it("serves the base model, answers non-streaming requests, and rejects unknown models with 404", async () => {
    const res = await fetch(`${server.origin}/v1/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", prompt: [1000, 2000], max_tokens: 4, ignore_eos: true }),
    });
    expect(res.status).toBe(200);
    const body = await res.json() as { usage: { completion_tokens: number }; choices: Array<{ finish_reason: string }> };
    expect(body.usage.completion_tokens).toBe(4);
    expect(body.choices[0]!.finish_reason).toBe("length");
    const missing = await fetch(`${server.origin}/v1/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "nope", prompt: "hi", max_tokens: 2 }),
    });
    expect(missing.status).toBe(404);
    expect((await missing.json() as { error: { code: string } }).error.code).toBe("model_not_found");
  });
});
