import OpenAI from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BASE_MODEL, FakeEngine, startTestServer, waitFor, type TestServer } from "./fake-engine.js";

let s: TestServer;
beforeEach(async () => {
  s = await startTestServer();
});
afterEach(async () => {
  await s.close();
});

describe("POST /v1/completions", () => {
  it("returns an OpenAI completion with usage, finish reason and the request id header", async () => {
    const { data, response } = await s.client.completions.create({ model: BASE_MODEL, prompt: "Hello", max_tokens: 3 }).withResponse();
    expect(data.object).toBe("text_completion");
    expect(data.id).toMatch(/^cmpl-[0-9a-f]{24}$/);
    expect(response.headers.get("openlora-request-id")).toBe(data.id);
    expect(data.model).toBe(BASE_MODEL);
    expect(data.choices).toHaveLength(1);
    expect(data.choices[0]!.text).toBe("Hel");
    expect(data.choices[0]!.finish_reason).toBe("length");
    expect(data.choices[0]!.logprobs).toBeNull();
    expect(data.usage).toEqual({ prompt_tokens: 6, completion_tokens: 3, total_tokens: 9 });
    const req = s.engine.submitted[0]!;
    expect(req).toMatchObject({ prompt: "Hello", addSpecial: true, adapters: [], maxTokens: 3, stop: [], ignoreEos: false, fairKey: BASE_MODEL });
    expect(req.logprobs).toBeUndefined();
  });

  it("defaults to 16 tokens and temperature 1, and maps end-of-sequence to finish_reason stop", async () => {
    const r = await s.client.completions.create({ model: BASE_MODEL, prompt: "hi" });
    expect(r.choices[0]!.text).toBe("hi");
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(s.engine.submitted[0]!.maxTokens).toBe(16);
    expect(s.engine.submitted[0]!.sampling).toEqual({ temperature: 1 });
  });

  it("passes every sampling field and extension to the engine", async () => {
    const body = {
      model: BASE_MODEL,
      prompt: "abcdef",
      max_tokens: 10,
      temperature: 0,
      top_p: 0.9,
      seed: 7,
      stop: ["d", "zz"],
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      top_k: 40,
      min_p: 0.05,
      repetition_penalty: 1.1,
      ignore_eos: true,
      user: "client-42",
      unknown_field: { ignored: true },
    };
    const r = await s.client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    expect(r.choices[0]!.text).toBe("abc");
    expect(r.choices[0]!.finish_reason).toBe("stop");
    expect(s.engine.submitted[0]).toMatchObject({
      stop: ["d", "zz"],
      ignoreEos: true,
      fairKey: "client-42",
      maxTokens: 10,
      sampling: { temperature: 0, topP: 0.9, seed: 7, presencePenalty: 0.5, frequencyPenalty: -0.5, topK: 40, minP: 0.05, repetitionPenalty: 1.1 },
    });
  });

  it("accepts token-id prompts and a one-string array", async () => {
    const r = await s.client.completions.create({ model: BASE_MODEL, prompt: [72, 105], max_tokens: 5 });
    expect(r.choices[0]!.text).toBe("Hi");
    expect(s.engine.submitted[0]!.prompt).toEqual([72, 105]);
    await s.client.completions.create({ model: BASE_MODEL, prompt: [[72, 105]], max_tokens: 5 });
    expect(s.engine.submitted[1]!.prompt).toEqual([72, 105]);
    await s.client.completions.create({ model: BASE_MODEL, prompt: ["Yo"], max_tokens: 5 });
    expect(s.engine.submitted[2]!.prompt).toBe("Yo");
  });

  it("uses an adapter named as the model, with the model as fairness key", async () => {
    const r = await s.client.completions.create({ model: "alpha", prompt: "x", max_tokens: 2 });
    expect(r.model).toBe("alpha");
    expect(s.engine.submitted[0]).toMatchObject({ adapters: [{ id: "alpha", weight: 1 }], fairKey: "alpha" });
  });

  it("sends a weighted adapter composition to the engine", async () => {
    const adapters = [{ id: "alpha", weight: 0.75 }, { id: "beta", weight: 0.25 }];
    const body = { model: BASE_MODEL, prompt: "x", max_tokens: 2, adapters };
    await s.client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    expect(s.engine.submitted[0]!.adapters).toEqual(adapters);
    await s.client.completions.create({ ...body, model: "beta" } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(s.engine.submitted[1]!.adapters).toEqual(adapters);
  });

  it("rounds composition weights to parts per million, and refuses negative, huge or non-numeric ones before the engine", async () => {
    const body = { model: BASE_MODEL, prompt: "x", max_tokens: 2, adapters: [{ id: "alpha", weight: 0.12345678 }] };
    await s.client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    expect(s.engine.submitted[0]!.adapters).toEqual([{ id: "alpha", weight: 0.123457 }]);
    for (const weight of [-1, -1e-9, 10.000001, 1e10, 1e308, "1", null, true]) {
      const res = await fetch(`${s.baseURL}/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...body, adapters: [{ id: "alpha", weight }] }),
      });
      expect(res.status, String(weight)).toBe(400);
      expect(((await res.json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: "INVALID_ARGUMENT", param: "adapters" });
    }
    expect(s.engine.submitted).toHaveLength(1);
  });

  it("returns legacy logprobs: tokens, token_logprobs, top_logprobs, text_offset", async () => {
    const r = await s.client.completions.create({ model: BASE_MODEL, prompt: "Hello", max_tokens: 3, logprobs: 2 });
    expect(s.engine.submitted[0]!.logprobs).toBe(2);
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens).toEqual(["H", "e", "l"]);
    expect(lp.token_logprobs).toEqual([-0.25, -0.25, -0.25]);
    expect(lp.top_logprobs).toHaveLength(3);
    expect(Object.keys(lp.top_logprobs![0]!)).toHaveLength(2);
    expect(lp.top_logprobs![0]!["H"]).toBe(-0.25);
    expect(lp.text_offset).toEqual([0, 1, 2]);
  });
});

describe("POST /v1/completions, streaming", () => {
  it("streams text chunks and a final finish_reason, ids matching the header", async () => {
    const { data: stream, response } = await s.client.completions
      .create({ model: BASE_MODEL, prompt: "Hello", max_tokens: 10, stream: true })
      .withResponse();
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const chunks: OpenAI.Completion[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.map((c) => c.choices[0]!.text).join("")).toBe("Hello");
    expect(chunks.every((c) => c.id === response.headers.get("openlora-request-id"))).toBe(true);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
    expect(chunks.some((c) => c.usage)).toBe(false);
  });

  it("ends with a usage chunk with empty choices when include_usage is set", async () => {
    const stream = await s.client.completions.create({
      model: BASE_MODEL,
      prompt: "Hey",
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Completion[] = [];
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it("streams logprobs per chunk with text offsets continuing across chunks", async () => {
    const stream = await s.client.completions.create({ model: BASE_MODEL, prompt: "abc", max_tokens: 3, logprobs: 1, stream: true });
    const offsets: number[] = [];
    const tokens: string[] = [];
    for await (const c of stream) {
      const lp = c.choices[0]!.logprobs;
      if (lp && lp.tokens!.length > 0) {
        offsets.push(...lp.text_offset!);
        tokens.push(...lp.tokens!);
      }
    }
    expect(tokens).toEqual(["a", "b", "c"]);
    expect(offsets).toEqual([0, 1, 2]);
  });
});

describe("client disconnects", () => {
  it("cancels the engine request when a stream is aborted", async () => {
    s.engine.tokenDelayMs = 30;
    const ac = new AbortController();
    const stream = await s.client.completions.create(
      { model: BASE_MODEL, prompt: "x".repeat(100), max_tokens: 100, stream: true },
      { signal: ac.signal },
    );
    let seen = 0;
    // The openai client ends an aborted stream's iteration quietly.
    for await (const _ of stream) {
      if (++seen === 2) ac.abort();
    }
    expect(seen).toBe(2);
    await waitFor(() => s.engine.cancelled.length === 1);
  });

  it("cancels the engine request when a non-streaming client goes away", async () => {
    s.engine.tokenDelayMs = 30;
    const ac = new AbortController();
    const pending = s.client.completions.create({ model: BASE_MODEL, prompt: "y".repeat(100), max_tokens: 100 }, { signal: ac.signal });
    await waitFor(() => s.engine.submitted.length === 1);
    setTimeout(() => ac.abort(), 60);
    await expect(pending).rejects.toBeInstanceOf(OpenAI.APIUserAbortError);
    await waitFor(() => s.engine.cancelled.length === 1);
  });

  it("does not cancel requests that finished normally", async () => {
    await s.client.completions.create({ model: BASE_MODEL, prompt: "done", max_tokens: 4 });
    const stream = await s.client.completions.create({ model: BASE_MODEL, prompt: "done", max_tokens: 4, stream: true });
    for await (const _ of stream);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.engine.cancelled).toEqual([]);
  });
});

describe("engine events", () => {
  it("tolerates an engine that emits events synchronously inside submit", async () => {
    const engine = new FakeEngine();
    engine.submit = (req, onEvent) => {
      onEvent({ type: "accepted", promptTokens: 1, promptTokenIds: [1] });
      onEvent({ type: "delta", tokens: [65], text: "A" });
      onEvent({ type: "done", finishReason: "length", promptTokens: 1, completionTokens: 1, timings: { queuedMs: 0, firstTokenMs: 0, totalMs: 0 } });
      return { id: 1, cancel: () => engine.cancelled.push(1) };
    };
    const t = await startTestServer(engine);
    try {
      const r = await t.client.completions.create({ model: BASE_MODEL, prompt: "z", max_tokens: 1 });
      expect(r.choices[0]!.text).toBe("A");
      expect(engine.cancelled).toEqual([]);
    } finally {
      await t.close();
    }
  });
});
