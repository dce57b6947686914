import OpenAI from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BASE_MODEL, FakeEngine, expectError, startTestServer, type TestServer } from "./fake-engine.js";

let s: TestServer;
beforeEach(async () => {
  s = await startTestServer();
});
afterEach(async () => {
  await s.close();
});

const RENDERED_HI = "<s><|user|>hi\n<|assistant|>";

describe("POST /v1/chat/completions", () => {
  it("renders the chat template and answers with an assistant message", async () => {
    const r = await s.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 5 });
    expect(r.object).toBe("chat.completion");
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.model).toBe(BASE_MODEL);
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(r.choices[0]!.message.content).toBe(RENDERED_HI.slice(0, 5));
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.choices[0]!.logprobs).toBeNull();
    expect(r.usage).toEqual({ prompt_tokens: RENDERED_HI.length, completion_tokens: 5, total_tokens: RENDERED_HI.length + 5 });
    expect(s.engine.submitted[0]).toMatchObject({ prompt: RENDERED_HI, addSpecial: false, maxTokens: 5 });
  });

  it("defaults max_tokens to the rest of the context, submitting the tokenized prompt", async () => {
    await s.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }] });
    const req = s.engine.submitted[0]!;
    expect(req.prompt).toEqual([...RENDERED_HI].map((c) => c.codePointAt(0)));
    expect(req.maxTokens).toBe(256 - RENDERED_HI.length);
  });

  it("caps the default max_tokens with maxTokensLimit", async () => {
    const t = await startTestServer(new FakeEngine(), { maxTokensLimit: 50 });
    try {
      await t.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }] });
      expect(t.engine.submitted[0]!.maxTokens).toBe(50);
    } finally {
      await t.close();
    }
  });

  it("prefers max_completion_tokens over max_tokens", async () => {
    await s.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 9, max_completion_tokens: 4 });
    expect(s.engine.submitted[0]!.maxTokens).toBe(4);
  });

  it("joins text content parts and keeps every message in order", async () => {
    await s.client.chat.completions.create({
      model: BASE_MODEL,
      max_tokens: 1,
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
      ],
    });
    expect(s.engine.submitted[0]!.prompt).toBe("<s><|system|>be brief\n<|user|>a\nb\n<|assistant|>");
  });

  it("returns chat logprobs with bytes and top_logprobs", async () => {
    const r = await s.client.chat.completions.create({
      model: BASE_MODEL,
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
      logprobs: true,
      top_logprobs: 3,
    });
    expect(s.engine.submitted[0]!.logprobs).toBe(3);
    const content = r.choices[0]!.logprobs!.content!;
    expect(content.map((c) => c.token)).toEqual(["<", "s"]);
    expect(content[0]).toMatchObject({ token: "<", logprob: -0.25, bytes: [60] });
    expect(content[0]!.top_logprobs).toHaveLength(3);
    expect(content[0]!.top_logprobs[0]).toEqual({ token: "<", logprob: -0.25, bytes: [60] });
  });

  it("asks the engine for logprobs with zero alternatives when only logprobs: true is given", async () => {
    await s.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 1, logprobs: true });
    expect(s.engine.submitted[0]!.logprobs).toBe(0);
  });
});

describe("POST /v1/chat/completions, streaming", () => {
  it("starts with the assistant role, streams content and ends with finish_reason and usage", async () => {
    const stream = await s.client.chat.completions.create({
      model: "alpha",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.object).toBe("chat.completion.chunk");
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    expect(chunks.every((c) => c.model === "alpha" && c.id === chunks[0]!.id)).toBe(true);
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(content).toBe(RENDERED_HI.slice(0, 6));
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finishes).toHaveLength(1);
    expect(finishes[0]!.choices[0]!.finish_reason).toBe("length");
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: RENDERED_HI.length, completion_tokens: 6, total_tokens: RENDERED_HI.length + 6 });
  });

  it("streams logprobs with each content chunk", async () => {
    const stream = await s.client.chat.completions.create({
      model: BASE_MODEL,
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 3,
      stream: true,
      logprobs: true,
      top_logprobs: 1,
    });
    const tokens: string[] = [];
    for await (const c of stream) {
      for (const lp of c.choices[0]?.logprobs?.content ?? []) {
        expect(lp.top_logprobs).toHaveLength(1);
        tokens.push(lp.token);
      }
    }
    expect(tokens).toEqual(["<", "s", ">"]);
  });
});

describe("chat template errors", () => {
  it("rejects chat for a model without a chat template", async () => {
    const t = await startTestServer(new FakeEngine({ chatTemplate: undefined }));
    try {
      const e = await expectError(t.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }] }), 400, "INVALID_ARGUMENT");
      expect(e.message).toMatch(/chat template/);
      expect(t.engine.submitted).toEqual([]);
    } finally {
      await t.close();
    }
  });

  it("turns a template's raise_exception into a 400", async () => {
    const template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}{{ messages[0]['content'] }}";
    const t = await startTestServer(new FakeEngine({ chatTemplate: template }));
    try {
      const e = await expectError(
        t.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "assistant", content: "hi" }] }),
        400,
        "INVALID_ARGUMENT",
        "messages",
      );
      expect(e.message).toMatch(/first message must be from the user/);
      const ok = await t.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "yes" }], max_tokens: 3 });
      expect(ok.choices[0]!.message.content).toBe("yes");
    } finally {
      await t.close();
    }
  });

  it("answers 413 CONTEXT_OVERFLOW when the rendered prompt fills the context", async () => {
    const t = await startTestServer(new FakeEngine({ contextLength: 20 }));
    try {
      await expectError(t.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "x".repeat(30) }] }), 413, "CONTEXT_OVERFLOW");
    } finally {
      await t.close();
    }
  });

  it("rejects top_logprobs without logprobs and non-text content parts", async () => {
    await expectError(
      s.client.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }], top_logprobs: 2 }),
      400,
      "INVALID_ARGUMENT",
      "top_logprobs",
    );
    await expectError(
      s.client.chat.completions.create({
        model: BASE_MODEL,
        messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x/y.png" } }] }],
      }),
      400,
      "INVALID_ARGUMENT",
      "messages",
    );
    expect(s.engine.submitted).toEqual([]);
  });
});
