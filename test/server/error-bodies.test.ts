/**
 * What an error body may carry: never where the server keeps its files (configured roots become
 * placeholders), never more than a short quote of the input, never the input of a malformed JSON
 * body, and never more than a bounded message.
 */
import { afterEach, describe, expect, it } from "vitest";
import { MAX_QUOTED_CHARS } from "../../src/errors.js";
import { MAX_ERROR_MESSAGE_CHARS } from "../../src/server/http-errors.js";
import { BASE_MODEL, FakeEngine, startTestServer, type TestServer } from "./fake-engine.js";

let s: TestServer | undefined;
afterEach(async () => { await s?.close(); s = undefined; });

async function post(path: string, raw: string): Promise<{ status: number; body: { error: { message: string; param: string | null; code: string } } }> {
  const res = await fetch(`${s!.baseURL}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: raw });
  return { status: res.status, body: (await res.json()) as { error: { message: string; param: string | null; code: string } } };
}

describe("error bodies", () => {
  it("name files by placeholders, never by the server's paths", async () => {
    const engine = new FakeEngine();
    s = await startTestServer(engine, { redactPaths: [{ path: "/srv/openlora/adapters", label: "<adapters>" }, { path: "/home/op", label: "~" }] });
    engine.nextFailure = {
      error: { code: "ADAPTER_LOAD_FAILED", message: "adapter alpha failed to load: /srv/openlora/adapters/alpha/adapter_config.json: not valid JSON (in /home/op/x)" },
    };
    const r = await post("/completions", JSON.stringify({ model: "alpha", prompt: "x", max_tokens: 2 }));
    expect(r.status).toBe(500);
    expect(r.body.error.message).toBe("adapter alpha failed to load: <adapters>/alpha/adapter_config.json: not valid JSON (in ~/x)");
  });

  it("quote at most a short prefix of a hostile input, and a bounded message", async () => {
    s = await startTestServer();
    const huge = "A".repeat(100_000);
    const cases: Array<[string, unknown]> = [
      ["/completions", { model: BASE_MODEL, prompt: "x", temperature: huge }],
      ["/completions", { model: BASE_MODEL, prompt: "x", top_p: { nested: huge } }],
      ["/completions", { model: huge, prompt: "x" }],
      ["/completions", { model: BASE_MODEL, prompt: "x", adapters: [{ id: huge, weight: 1 }] }],
      ["/chat/completions", { model: BASE_MODEL, messages: [{ role: huge, content: 5 }] }],
    ];
    for (const [path, body] of cases) {
      const r = await post(path, JSON.stringify(body));
      expect(r.status, JSON.stringify(r.body).slice(0, 200)).toBeGreaterThanOrEqual(400);
      const text = JSON.stringify(r.body);
      expect(text.includes("A".repeat(MAX_QUOTED_CHARS + 1)), text.slice(0, 300)).toBe(false);
      expect(r.body.error.message.length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS + 1);
      expect((r.body.error.param ?? "").length).toBeLessThanOrEqual(128);
      expect(text.length).toBeLessThan(2_000);
    }
  });

  it("do not echo a malformed JSON body", async () => {
    s = await startTestServer();
    const secret = `{"model": "${BASE_MODEL}", "prompt": "root:x:0:0:root:/root:/bin/bash" oops`;
    const r = await post("/completions", secret);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("INVALID_ARGUMENT");
    expect(r.body.error.message).toMatch(/^Malformed JSON body( \(at byte \d+\))?\.$/);
    expect(JSON.stringify(r.body).includes("root:x")).toBe(false);
  });

  it("answer a URL fastify cannot route (a huge path segment, a bad percent-encoding) in our shape, without echoing it", async () => {
    s = await startTestServer();
    const long = await fetch(`${s.baseURL}/chain/claims/0x${"f".repeat(4000)}`);
    expect(long.status).toBe(413);
    const lb = (await long.json()) as { error: { code: string; message: string } };
    expect(lb.error.code).toBe("REQUEST_TOO_LARGE");
    expect(JSON.stringify(lb)).not.toContain("ffffffffff");
    const bad = await fetch(`${s.baseURL}/models/%zz-secret`);
    expect(bad.status).toBe(400);
    const bb = (await bad.json()) as { error: { code: string } };
    expect(bb.error.code).toBe("INVALID_ARGUMENT");
    expect(JSON.stringify(bb)).not.toContain("secret");
  });

  it("answer an unknown field of the ledger API without repeating a huge field name", async () => {
    s = await startTestServer(new FakeEngine(), { operatorToken: "olo_error-bodies-test-token-000000000000000000" });
    const res = await fetch(`${s.baseURL}/datanets`, {
      method: "POST", headers: { "content-type": "application/json", authorization: "Bearer olo_error-bodies-test-token-000000000000000000" },
      body: JSON.stringify({ ["k".repeat(50_000)]: 1 }),
    });
    const text = await res.text();
    expect(res.status).toBe(400);
    expect(text.length).toBeLessThan(2_000);
  });
});
