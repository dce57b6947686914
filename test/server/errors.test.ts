import OpenAI, { APIError } from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildServer } from "../../src/server/index.js";
import { BASE_MODEL, FakeEngine, expectError, startTestServer, type TestServer } from "./fake-engine.js";

let s: TestServer;
beforeEach(async () => {
  s = await startTestServer();
});
afterEach(async () => {
  await s.close();
});

const completion = (extra: Record<string, unknown>) => ({ model: BASE_MODEL, prompt: "hi", ...extra });
const chat = (extra: Record<string, unknown>) => ({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }], ...extra });

const INVALID_COMPLETIONS: [string, Record<string, unknown>, string | null][] = [
  ["n > 1", completion({ n: 2 }), "n"],
  ["echo", completion({ echo: true }), "echo"],
  ["several prompts", completion({ prompt: ["a", "b"] }), "prompt"],
  ["empty prompt array", completion({ prompt: [] }), "prompt"],
  ["negative token id", completion({ prompt: [5, -1] }), "prompt"],
  ["token id past the vocabulary", completion({ prompt: [1000] }), "prompt"],
  ["several token-id prompts", completion({ prompt: [[1], [2]] }), "prompt"],
  ["prompt of the wrong type", completion({ prompt: 42 }), "prompt"],
  ["missing model", { prompt: "hi" }, "model"],
  ["model not a string", completion({ model: 7 }), "model"],
  ["negative temperature", completion({ temperature: -0.1 }), "temperature"],
  ["temperature as a string", completion({ temperature: "hot" }), "temperature"],
  ["top_p 0", completion({ top_p: 0 }), "top_p"],
  ["top_p above 1", completion({ top_p: 1.5 }), "top_p"],
  ["fractional top_k", completion({ top_k: 1.5 }), "top_k"],
  ["min_p above 1", completion({ min_p: 2 }), "min_p"],
  ["repetition_penalty 0", completion({ repetition_penalty: 0 }), "repetition_penalty"],
  ["presence_penalty above 2", completion({ presence_penalty: 3 }), "presence_penalty"],
  ["frequency_penalty as a string", completion({ frequency_penalty: "x" }), "frequency_penalty"],
  ["fractional seed", completion({ seed: 1.5 }), "seed"],
  ["five stop strings", completion({ stop: ["a", "b", "c", "d", "e"] }), "stop"],
  ["stop of numbers", completion({ stop: [1] }), "stop"],
  ["empty stop string", completion({ stop: "" }), "stop"],
  ["max_tokens 0", completion({ max_tokens: 0 }), "max_tokens"],
  ["fractional max_tokens", completion({ max_tokens: 1.5 }), "max_tokens"],
  ["logprobs above 5", completion({ logprobs: 6 }), "logprobs"],
  ["ignore_eos as a string", completion({ ignore_eos: "yes" }), "ignore_eos"],
  ["user as a number", completion({ user: 5 }), "user"],
  ["stream as a string", completion({ stream: "yes" }), "stream"],
  ["stream_options without stream", completion({ stream_options: { include_usage: true } }), "stream_options"],
  ["empty adapters", completion({ adapters: [] }), "adapters"],
  ["nine adapters", completion({ adapters: Array.from({ length: 9 }, (_, i) => ({ id: `a${i}`, weight: 1 })) }), "adapters"],
  ["adapter weight as a string", completion({ adapters: [{ id: "alpha", weight: "1" }] }), "adapters"],
  ["adapter without id", completion({ adapters: [{ weight: 1 }] }), "adapters"],
  ["adapter listed twice", completion({ adapters: [{ id: "alpha", weight: 1 }, { id: "alpha", weight: 2 }] }), "adapters"],
  ["model outside the composition", completion({ model: "gamma", adapters: [{ id: "alpha", weight: 1 }] }), "model"],
];

const INVALID_CHATS: [string, Record<string, unknown>, string | null][] = [
  ["empty messages", chat({ messages: [] }), "messages"],
  ["message without role", chat({ messages: [{ content: "x" }] }), "messages"],
  ["content of the wrong type", chat({ messages: [{ role: "user", content: 3 }] }), "messages"],
  ["logprobs as a number", chat({ logprobs: 2 }), "logprobs"],
  ["top_logprobs above 20", chat({ logprobs: true, top_logprobs: 21 }), "top_logprobs"],
  ["max_completion_tokens 0", chat({ max_completion_tokens: 0 }), "max_completion_tokens"],
];

describe("request validation (400 INVALID_ARGUMENT)", () => {
  it.each(INVALID_COMPLETIONS)("completions: %s", async (_name, body, param) => {
    await expectError(s.client.post("/completions", { body }), 400, "INVALID_ARGUMENT", param);
    expect(s.engine.submitted).toEqual([]);
  });

  it.each(INVALID_CHATS)("chat: %s", async (_name, body, param) => {
    await expectError(s.client.post("/chat/completions", { body }), 400, "INVALID_ARGUMENT", param);
    expect(s.engine.submitted).toEqual([]);
  });

  it("treats null like an absent field", async () => {
    await s.client.post("/completions", { body: completion({ max_tokens: null, stop: null, temperature: null, n: null, user: null }) });
    expect(s.engine.submitted[0]).toMatchObject({ maxTokens: 16, stop: [], fairKey: BASE_MODEL, sampling: { temperature: 1 } });
  });

  it("enforces maxStopStrings and maxTokensLimit options", async () => {
    const t = await startTestServer(new FakeEngine(), { maxStopStrings: 1, maxTokensLimit: 8 });
    try {
      await expectError(t.client.post("/completions", { body: completion({ stop: ["a", "b"] }) }), 400, "INVALID_ARGUMENT", "stop");
      await expectError(t.client.post("/completions", { body: completion({ max_tokens: 9 }) }), 400, "INVALID_ARGUMENT", "max_tokens");
      await t.client.post("/completions", { body: completion({ stop: ["a"], max_tokens: 8 }) });
      expect(t.engine.submitted).toHaveLength(1);
    } finally {
      await t.close();
    }
  });
});

describe("engine errors before any output", () => {
  it("answers 404 MODEL_NOT_SERVED for an unknown model, streaming or not", async () => {
    await expectError(s.client.completions.create({ model: "nope", prompt: "hi" }), 404, "MODEL_NOT_SERVED", "model");
    await expectError(s.client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }], stream: true }), 404, "MODEL_NOT_SERVED");
  });

  it("keeps ADAPTER_NOT_FOUND for an unknown adapter in a composition", async () => {
    await expectError(s.client.post("/completions", { body: completion({ adapters: [{ id: "alpha", weight: 1 }, { id: "zeta", weight: 1 }] }) }), 404, "ADAPTER_NOT_FOUND");
  });

  it("answers 429 QUEUE_FULL with the engine's Retry-After", async () => {
    s.engine.nextFailure = { error: { code: "QUEUE_FULL", message: "queue full", details: { waiting: 16, retryAfterSeconds: 7 } } };
    const e = await expectError(s.client.completions.create({ model: BASE_MODEL, prompt: "hi" }), 429, "QUEUE_FULL");
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect(e.headers?.get("retry-after")).toBe("7");
  });

  it("falls back to maxQueueRetryAfterSeconds, also for streams", async () => {
    const t = await startTestServer(new FakeEngine(), { maxQueueRetryAfterSeconds: 3 });
    try {
      t.engine.nextFailure = { error: { code: "QUEUE_FULL", message: "queue full" } };
      const e = await expectError(t.client.completions.create({ model: BASE_MODEL, prompt: "hi", stream: true }), 429, "QUEUE_FULL");
      expect(e.headers?.get("retry-after")).toBe("3");
    } finally {
      await t.close();
    }
  });

  it("answers with the engine error's own status and the request id", async () => {
    s.engine.nextFailure = { error: { code: "PROMPT_TOO_LONG", message: "too long" } };
    const e = await expectError(s.client.completions.create({ model: BASE_MODEL, prompt: "hi" }), 413, "PROMPT_TOO_LONG");
    expect(e.message).toMatch(/too long/);
    expect(e.headers?.get("openlora-request-id")).toMatch(/^cmpl-/);
  });

  it("answers 500 ENGINE_FAILED when the engine fails after output in a non-streaming request", async () => {
    s.engine.nextFailure = { error: { code: "ENGINE_FAILED", message: "worker died" }, afterTokens: 2 };
    await expectError(s.client.completions.create({ model: BASE_MODEL, prompt: "hello" }), 500, "ENGINE_FAILED");
  });

  it("structures an exception thrown by submit", async () => {
    s.engine.submit = () => {
      throw new Error("boom");
    };
    await expectError(s.client.completions.create({ model: BASE_MODEL, prompt: "hi" }), 500, "ENGINE_FAILED");
  });

  it("hides the message of an unexpected exception behind INTERNAL", async () => {
    s.engine.listAdapters = () => Promise.reject(new TypeError("secret detail"));
    const e = await expectError(s.client.models.list(), 500, "INTERNAL");
    expect(e.message).not.toMatch(/secret/);
  });
});

describe("engine error mid-stream", () => {
  it("sends an error event then [DONE] after a 200", async () => {
    s.engine.nextFailure = { error: { code: "ENGINE_FAILED", message: "worker died" }, afterTokens: 2 };
    const stream = await s.client.completions.create({ model: BASE_MODEL, prompt: "hello", max_tokens: 10, stream: true });
    const texts: string[] = [];
    const err = await (async () => {
      for await (const c of stream) texts.push(c.choices[0]!.text);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(texts.join("")).toBe("he");
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as APIError).code).toBe("ENGINE_FAILED");
    expect((err as APIError).type).toBe("server_error");
  });

  it("writes the raw SSE frames: data chunks, an error object, then [DONE]", async () => {
    s.engine.nextFailure = { error: { code: "ENGINE_FAILED", message: "worker died" }, afterTokens: 1 };
    const res = await fetch(`${s.baseURL}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: BASE_MODEL, prompt: "hello", stream: true }),
    });
    expect(res.status).toBe(200);
    const frames = (await res.text()).split("\n\n").filter((f) => f !== "");
    expect(frames.every((f) => f.startsWith("data: "))).toBe(true);
    expect(frames.at(-1)).toBe("data: [DONE]");
    const error = JSON.parse(frames.at(-2)!.slice(6));
    expect(error).toEqual({ error: { message: "worker died", type: "server_error", param: null, code: "ENGINE_FAILED" } });
    expect(JSON.parse(frames[0]!.slice(6)).choices[0].text).toBe("h");
  });
});

describe("server state", () => {
  it("answers 503 NOT_READY with Retry-After while loading", async () => {
    const t = await startTestServer(new FakeEngine(), { notReadyRetryAfterSeconds: 9 }, "loading");
    try {
      const e = await expectError(t.client.completions.create({ model: BASE_MODEL, prompt: "hi" }), 503, "NOT_READY");
      expect(e.headers?.get("retry-after")).toBe("9");
      await expectError(t.client.models.list(), 503, "NOT_READY");
      const health = await fetch(`${t.baseURL.replace("/v1", "")}/health`);
      expect(health.status).toBe(503);
      expect((await health.json()).error.code).toBe("NOT_READY");
    } finally {
      await t.close();
    }
  });

  it("answers 503 SHUTTING_DOWN while draining", async () => {
    s.slot.state = "draining";
    const e = await expectError(s.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "x" }] }), 503, "SHUTTING_DOWN");
    expect(e.headers?.get("retry-after")).toBeNull();
    expect(s.engine.submitted).toEqual([]);
  });
});

describe("transport errors", () => {
  it("answers 413 REQUEST_TOO_LARGE for a body over the limit", async () => {
    const t = await startTestServer(new FakeEngine(), { bodyLimitBytes: 1024 });
    try {
      await expectError(t.client.completions.create({ model: BASE_MODEL, prompt: "x".repeat(2000) }), 413, "REQUEST_TOO_LARGE");
      expect(t.engine.submitted).toEqual([]);
    } finally {
      await t.close();
    }
  });

  async function injectStatus(payload: string, contentType: string, url = "/v1/completions") {
    const app = await buildServer({ state: "ready", engine: new FakeEngine() });
    const res = await app.inject({ method: "POST", url, payload, headers: { "content-type": contentType } });
    await app.close();
    return { status: res.statusCode, body: res.json() };
  }

  it("answers 400 INVALID_ARGUMENT for malformed JSON", async () => {
    const r = await injectStatus('{"model": "tiny-base", "prompt": ', "application/json");
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "INVALID_ARGUMENT", type: "invalid_request_error", param: null });
    expect(r.body.error.message).toMatch(/JSON/);
  });

  it("answers 400 for an empty JSON body, a non-object body and a wrong content type", async () => {
    for (const [payload, type] of [["", "application/json"], ["[1,2]", "application/json"], ["model=x", "application/x-www-form-urlencoded"]]) {
      const r = await injectStatus(payload!, type!);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("INVALID_ARGUMENT");
    }
  });

  it("answers 404 with an OpenAI error body for unknown routes", async () => {
    const app = await buildServer({ state: "ready", engine: new FakeEngine() });
    const res = await app.inject({ method: "GET", url: "/v1/nothing?x=1" });
    await app.close();
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: { message: "No route GET /v1/nothing.", type: "invalid_request_error", param: null, code: "ROUTE_NOT_FOUND" } });
  });
});
