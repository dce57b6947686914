/**
 * The client against a fake OpenAI streaming server: what it sends, per-token times, usage counts,
 * and failures (an HTTP error, a stream cut short) recorded as such.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driveTrace } from "../../src/bench-serve/client.js";
import type { Trace } from "../../src/bench-serve/workload.js";

const bodies: Array<Record<string, unknown>> = [];
let server: Server;
let baseURL: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => { raw += c; });
    req.on("end", async () => {
      const body = JSON.parse(raw) as { model: string; max_tokens: number };
      bodies.push(body);
      if (body.model === "broken") {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "engine failed", type: "server_error", code: "ENGINE_FAILED" } }));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        `data: ${JSON.stringify({ id: "c", object: "text_completion", created: 0, model: body.model, choices, ...extra })}\n\n`;
      for (let i = 0; i < body.max_tokens; i++) {
        await sleep(20);
        if (body.model === "cut" && i === 1) {
          res.destroy();
          return;
        }
        res.write(chunk([{ index: 0, text: ` t${i}`, logprobs: null, finish_reason: null }]));
      }
      // A finish-only chunk (as some servers send) and the usage chunk.
      res.write(chunk([{ index: 0, text: "", logprobs: null, finish_reason: "length" }]));
      res.write(chunk([], { usage: { prompt_tokens: 3, completion_tokens: body.max_tokens, total_tokens: 3 + body.max_tokens } }));
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((ok) => server.close(ok));
});

const models = ["a0000", "a0001", "broken", "cut"];

function trace(mode: "open" | "closed"): Trace {
  return {
    spec: {
      seed: 1, requests: 4, adapters: 4, popularity: { pattern: "distinct" }, promptLen: [3, 4], outputLen: [3, 4],
      arrival: mode === "open" ? { mode: "gamma", rate: 100, cv: 1 } : { mode: "closed", concurrency: 2 },
    },
    requests: models.map((_, i) => ({ index: i, arrivalMs: mode === "open" ? i * 5 : undefined, adapterIndex: i, prompt: [11, 12, 13], maxTokens: 3 })),
  };
}

describe.each(["open", "closed"] as const)("client (%s loop) against a fake streaming server", (mode) => {
  it("sends greedy, ignore_eos, streaming requests and records every token's time", async () => {
    bodies.length = 0;
    const done: number[] = [];
    const { records } = await driveTrace(trace(mode), { baseURL, modelFor: (r) => models[r.adapterIndex]!, onDone: (_r, n) => done.push(n) });
    expect(done).toEqual([1, 2, 3, 4]);
    expect(bodies).toHaveLength(4);
    for (const b of bodies) {
      expect(b).toMatchObject({ prompt: [11, 12, 13], max_tokens: 3, temperature: 0, stream: true, ignore_eos: true, stream_options: { include_usage: true } });
    }
    expect(records.map((r) => r.model)).toEqual(models);
    for (const r of records.slice(0, 2)) {
      expect(r.status).toBe("ok");
      expect(r.outputTokens).toBe(3);
      expect(r.tokenTimesMs).toHaveLength(3);
      expect(r.firstTokenMs).toBe(r.tokenTimesMs[0]);
      expect(r.firstTokenMs!).toBeGreaterThan(r.startMs);
      expect([...r.tokenTimesMs].sort((a, b) => a - b)).toEqual(r.tokenTimesMs);
      expect(r.endMs).toBeGreaterThanOrEqual(r.tokenTimesMs[2]!);
      expect(r.finishReason).toBe("length");
      expect(r.promptTokens).toBe(3);
    }
    const broken = records[2]!;
    expect(broken.status).toBe("error");
    expect(broken.httpStatus).toBe(500);
    expect(broken.firstTokenMs).toBeNull();
    const cut = records[3]!;
    expect(cut.status).toBe("error");
    expect(cut.tokenTimesMs).toHaveLength(1);
    if (mode === "open") expect(records.map((r) => r.scheduledMs)).toEqual([0, 5, 10, 15]);
  });
});

it("text prompts for servers that take only text", async () => {
  bodies.length = 0;
  await driveTrace({ ...trace("closed"), requests: trace("closed").requests.slice(0, 1) }, { baseURL, modelFor: () => "a0000", promptFormat: "text" });
  expect(typeof bodies[0]!.prompt).toBe("string");
  expect((bodies[0]!.prompt as string).split(" ")).toHaveLength(3);
});
