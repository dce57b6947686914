/**
 * Black-box tests of `openlora serve` (spawned, as a user runs it) through the official `openai`
 * npm client: completions and chat, streaming and not, adapters as models, composition, listing,
 * runtime load/unload, error codes, 64 concurrent streams over 16 adapters equal to each request
 * alone, a disconnect freeing its KV blocks, and SIGTERM draining in-flight requests.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { metric, type ServerProcess, startServer } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const modelPath = join(dir, "tiny-llama3-q8.gguf");
const adapterDir = join(dir, "adapters");
const MODEL_ID = "tiny-llama3-q8";
let server: ServerProcess;
let client: OpenAI;

beforeAll(async () => {
  writeGgufModel(modelPath, "tiny-llama3", { seed: 5, type: "q8_0" });
  mkdirSync(adapterDir, { recursive: true });
  for (let i = 0; i < 16; i++) {
    const common = { seed: 500 + i, rank: [8, 16, 32, 64][i % 4]!, alpha: 16, targets: ["q" as const, "k" as const, "v" as const, "o" as const], strength: 0.1 };
    if (i % 2 === 0) writePeftAdapter(join(adapterDir, `ad${i}`), "tiny-llama3", { ...common, dtype: "F16" });
    else writeGgufLora(join(adapterDir, `ad${i}.gguf`), "tiny-llama3", { ...common, type: "f32" });
  }
  mkdirSync(join(adapterDir, "broken"));
  writeFileSync(join(adapterDir, "broken", "adapter_config.json"), "{ not json");
  server = await startServer(["--model", modelPath, "--adapters", adapterDir, "--threads", "2"]);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0 });
}, 180_000);

afterAll(async () => {
  await server?.stop();
});

async function scrape(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
}

async function streamText(params: OpenAI.Completions.CompletionCreateParamsStreaming): Promise<{ text: string; finish: string | null }> {
  const stream = await client.completions.create(params);
  let text = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  return { text, finish };
}

describe("openlora serve through the openai client", () => {
  it("lists the base model and every registered adapter", async () => {
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids[0]).toBe(MODEL_ID);
    for (let i = 0; i < 16; i++) expect(ids).toContain(`ad${i}`);
    expect(ids).toContain("broken");
  });

  it("completes with the base model, streaming and not, to the same text", async () => {
    const params = { model: MODEL_ID, prompt: "The capital of France is", max_tokens: 12, temperature: 0, ignore_eos: true } as const;
    const whole = await client.completions.create(params);
    expect(whole.usage).toMatchObject({ completion_tokens: 12, total_tokens: whole.usage!.prompt_tokens + 12 });
    expect(whole.choices[0]!.finish_reason).toBe("length");
    const streamed = await streamText({ ...params, stream: true });
    expect(streamed.text).toBe(whole.choices[0]!.text);
    expect(streamed.finish).toBe("length");
  });

  it("chats, streaming with a final usage chunk", async () => {
    const params = { model: "ad3", messages: [{ role: "user" as const, content: "Say something." }], max_tokens: 6, temperature: 0 };
    const whole = await client.chat.completions.create(params);
    expect(whole.choices[0]!.message.role).toBe("assistant");
    const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(usage).toEqual(whole.usage);
  });

  it("selects adapters by model name; composition with weights 1/0 equals the first adapter alone", async () => {
    const base = { prompt: "Adapters change the output", max_tokens: 10, temperature: 0, ignore_eos: true };
    const texts = await Promise.all([MODEL_ID, "ad1", "ad2"].map(async (model) => (await client.completions.create({ ...base, model })).choices[0]!.text));
    expect(new Set(texts).size).toBe(3);
    const composed = await client.completions.create({ ...base, model: MODEL_ID, adapters: [{ id: "ad1", weight: 1 }, { id: "ad2", weight: 0 }] } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    expect(composed.choices[0]!.text).toBe(texts[1]);
    const mixed = await client.completions.create({ ...base, model: MODEL_ID, adapters: [{ id: "ad1", weight: 0.7 }, { id: "ad2", weight: 0.3 }] } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    expect(mixed.usage!.completion_tokens).toBe(10);
  });

  it("returns logprobs in OpenAI's completion shape", async () => {
    const r = await client.completions.create({ model: MODEL_ID, prompt: "One two", max_tokens: 4, temperature: 0, logprobs: 2, ignore_eos: true } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(4);
    expect(lp.token_logprobs).toHaveLength(4);
    expect(lp.top_logprobs![0]).toBeTypeOf("object");
    expect(Object.keys(lp.top_logprobs![0]!).length).toBeGreaterThanOrEqual(1);
    for (const v of lp.token_logprobs!) expect(v).toBeLessThanOrEqual(0);
  });

  it("loads and unloads an adapter at run time with vLLM's endpoints", async () => {
    const post = (path: string, body: unknown, auth = server.operator) => fetch(`http://127.0.0.1:${server.port}/v1/${path}`, { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
    // Only the operator loads and unloads.
    expect((await post("load_lora_adapter", { lora_name: "late", lora_path: "ad5.gguf" }, {})).status).toBe(401);
    expect((await post("unload_lora_adapter", { lora_name: "ad1" }, { authorization: "Bearer EMPTY" })).status).toBe(401);
    const loaded = await post("load_lora_adapter", { lora_name: "late", lora_path: "ad5.gguf" });
    expect(loaded.status).toBe(200);
    expect((await client.models.list()).data.map((m) => m.id)).toContain("late");
    const prompt = { prompt: "Late adapters", max_tokens: 6, temperature: 0, ignore_eos: true };
    const a = await client.completions.create({ ...prompt, model: "late" } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    const b = await client.completions.create({ ...prompt, model: "ad5" } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    expect((await post("load_lora_adapter", { lora_name: "late", lora_path: "ad5.gguf" })).status).toBe(409);
    expect((await post("load_lora_adapter", { lora_name: "escape", lora_path: "../../etc" })).status).toBe(400);
    expect((await post("unload_lora_adapter", { lora_name: "late" })).status).toBe(200);
    expect((await post("unload_lora_adapter", { lora_name: "late" })).status).toBe(404);
    await expect(client.completions.create({ ...prompt, model: "late" })).rejects.toMatchObject({ status: 404 });
  });

  it("answers bad requests with OpenAI error bodies and our codes, and keeps serving", async () => {
    const ok = { model: MODEL_ID, prompt: "x", max_tokens: 2 };
    await expect(client.completions.create({ ...ok, temperature: -1 })).rejects.toMatchObject({ status: 400, code: "INVALID_ARGUMENT" });
    await expect(client.completions.create({ ...ok, model: "no-such-adapter" })).rejects.toMatchObject({ status: 404 });
    await expect(client.completions.create({ ...ok, max_tokens: 1_000_000 })).rejects.toMatchObject({ status: 413, code: "CONTEXT_OVERFLOW" });
    await expect(client.completions.create({ ...ok, model: "broken" })).rejects.toMatchObject({ status: 500, code: "ADAPTER_LOAD_FAILED" });
    const bad = await fetch(`${server.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: "INVALID_ARGUMENT" } });
    const r = await client.completions.create(ok);
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it("serves 64 concurrent streams over 16 adapters, each equal to the same request alone", async () => {
    const reqs = Array.from({ length: 64 }, (_, i) => ({
      model: `ad${i % 16}`, prompt: `Request ${i}: ${"lorem ".repeat(i % 9)}ipsum`, max_tokens: 6 + (i % 7), temperature: 0, ignore_eos: true,
    }));
    const concurrent = await Promise.all(reqs.map((r) => streamText({ ...r, stream: true } as OpenAI.Completions.CompletionCreateParamsStreaming)));
    for (const [i, r] of reqs.entries()) {
      const alone = await client.completions.create(r as OpenAI.Completions.CompletionCreateParamsNonStreaming);
      expect(concurrent[i]!.text, `request ${i}`).toBe(alone.choices[0]!.text);
      expect(alone.usage!.completion_tokens).toBe(r.max_tokens);
    }
  }, 300_000);

  it("frees a disconnected client's blocks (seen through /metrics)", async () => {
    const controller = new AbortController();
    const stream = await client.completions.create({ model: "ad0", prompt: "A long story", max_tokens: 900, stream: true, ignore_eos: true } as OpenAI.Completions.CompletionCreateParamsStreaming, { signal: controller.signal });
    let chunks = 0;
    try {
      for await (const _ of stream) {
        if (++chunks === 3) {
          expect(metric(await scrape(), "openlora_kv_blocks_used")).toBeGreaterThan(0);
          controller.abort();
        }
      }
    } catch {
      // the client may surface the abort as an error or as the end of the stream
    }
    expect(chunks).toBeLessThan(100);
    let used: number | undefined = -1;
    for (let i = 0; i < 200 && used !== 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      used = metric(await scrape(), "openlora_kv_blocks_used");
    }
    expect(used).toBe(0);
    const text = await scrape();
    expect(metric(text, "openlora_sequences_running")).toBe(0);
    expect(Number(/^openlora_request_errors_total\{code="REQUEST_CANCELLED"\} (\d+)$/m.exec(text)?.[1] ?? 0)).toBeGreaterThanOrEqual(1);
  });
});

describe("queue limits and shutdown", () => {
  it("answers 429 with Retry-After when the queue is full, 503 while draining, and finishes in-flight work on SIGTERM", async () => {
    const s = await startServer(["--model", modelPath, "--threads", "1", "--max-running", "1", "--max-queue", "1"]);
    const c = new OpenAI({ baseURL: s.baseURL, apiKey: "unused", maxRetries: 0 });
    const scrapeS = async () => (await fetch(`http://127.0.0.1:${s.port}/metrics`)).text();
    try {
      const long = await c.completions.create({ model: MODEL_ID, prompt: "first", max_tokens: 300, stream: true, stream_options: { include_usage: true }, ignore_eos: true } as OpenAI.Completions.CompletionCreateParamsStreaming);
      const it1 = long[Symbol.asyncIterator]();
      await it1.next();
      const queued = c.completions.create({ model: MODEL_ID, prompt: "second", max_tokens: 3, ignore_eos: true } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
      for (let i = 0; i < 200 && metric(await scrapeS(), "openlora_requests_waiting") !== 1; i++) await new Promise((r) => setTimeout(r, 10));
      const full = await fetch(`${s.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL_ID, prompt: "third", max_tokens: 2 }) });
      expect(full.status).toBe(429);
      expect(Number(full.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await full.json()).toMatchObject({ error: { code: "QUEUE_FULL" } });

      s.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 100));
      const late = await fetch(`${s.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL_ID, prompt: "late", max_tokens: 2 }) });
      expect(late.status).toBe(503);
      expect(await late.json()).toMatchObject({ error: { code: "SHUTTING_DOWN" } });
      let completionTokens = 0;
      let finish: string | null | undefined;
      for (let r = await it1.next(); !r.done; r = await it1.next()) {
        finish = r.value.choices[0]?.finish_reason ?? finish;
        if (r.value.usage) completionTokens = r.value.usage.completion_tokens;
      }
      expect(finish).toBe("length");
      expect(completionTokens).toBe(300);
      expect((await queued).usage!.completion_tokens).toBe(3);
      expect(await s.stop()).toBe(0);
    } finally {
      await s.stop();
    }
  }, 300_000);
});
