import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildServer } from "../../src/server/index.js";
import { BASE_MODEL, FakeEngine, expectError, startTestServer, type TestServer } from "./fake-engine.js";

const OPERATOR = "olo_admin-test-operator-token-0123456789abcdef";
let s: TestServer;
beforeEach(async () => {
  s = await startTestServer(undefined, { operatorToken: OPERATOR });
});
afterEach(async () => {
  await s.close();
});

async function post(path: string, body: unknown, token: string | null = OPERATOR): Promise<{ status: number; type: string | null; text: string }> {
  const auth: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  const res = await fetch(`${s.baseURL}${path}`, { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

describe("GET /v1/models", () => {
  it("lists the base model and every adapter, vLLM style", async () => {
    const page = await s.client.models.list();
    expect(page.data).toEqual([
      { id: BASE_MODEL, object: "model", created: 1_700_000_000, owned_by: "openlora", root: BASE_MODEL, parent: null },
      { id: "alpha", object: "model", created: 1_700_000_100, owned_by: "openlora", root: "alpha", parent: BASE_MODEL },
      { id: "beta", object: "model", created: 1_700_000_100, owned_by: "openlora", root: "beta", parent: BASE_MODEL },
    ]);
  });

  it("retrieves one model, or 404 MODEL_NOT_SERVED", async () => {
    // vLLM's `parent` is not in the openai client's Model type.
    expect(await s.client.models.retrieve("beta")).toMatchObject({ id: "beta", parent: BASE_MODEL });
    expect(await s.client.models.retrieve(BASE_MODEL)).toMatchObject({ id: BASE_MODEL, parent: null });
    await expectError(s.client.models.retrieve("gamma"), 404, "MODEL_NOT_SERVED");
  });
});

describe("adapter loading (vLLM API)", () => {
  it("loads an adapter that then serves as a model, and unloads it", async () => {
    const loaded = await post("/load_lora_adapter", { lora_name: "gamma", lora_path: "/adapters/gamma" });
    expect(loaded).toEqual({ status: 200, type: "text/plain; charset=utf-8", text: "Success: LoRA adapter 'gamma' added successfully." });
    expect((await s.client.models.list()).data.map((m) => m.id)).toContain("gamma");
    const r = await s.client.completions.create({ model: "gamma", prompt: "ok", max_tokens: 2 });
    expect(r.choices[0]!.text).toBe("ok");

    const unloaded = await post("/unload_lora_adapter", { lora_name: "gamma", lora_int_id: 3 });
    expect(unloaded).toMatchObject({ status: 200, text: "Success: LoRA adapter 'gamma' removed successfully." });
    expect((await s.client.models.list()).data.map((m) => m.id)).not.toContain("gamma");
    await expectError(s.client.completions.create({ model: "gamma", prompt: "ok" }), 404, "MODEL_NOT_SERVED");
  });

  it("maps load and unload failures to OpenAI error bodies", async () => {
    const cases: [string, unknown, number, string][] = [
      ["/load_lora_adapter", { lora_name: "alpha", lora_path: "/a" }, 409, "ADAPTER_ALREADY_EXISTS"],
      ["/load_lora_adapter", { lora_name: BASE_MODEL, lora_path: "/a" }, 409, "ADAPTER_ALREADY_EXISTS"],
      ["/load_lora_adapter", { lora_name: "delta", lora_path: "/broken" }, 400, "ADAPTER_INVALID"],
      ["/load_lora_adapter", { lora_name: "delta" }, 400, "INVALID_ARGUMENT"],
      ["/load_lora_adapter", { lora_name: 5, lora_path: "/a" }, 400, "INVALID_ARGUMENT"],
      ["/unload_lora_adapter", { lora_name: "nope" }, 404, "ADAPTER_NOT_FOUND"],
      ["/unload_lora_adapter", {}, 400, "INVALID_ARGUMENT"],
      ["/unload_lora_adapter", { lora_name: "alpha", lora_int_id: "x" }, 400, "INVALID_ARGUMENT"],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await post(path, body);
      expect([path, r.status]).toEqual([path, status]);
      expect(JSON.parse(r.text).error).toMatchObject({ code, type: status >= 500 ? "server_error" : "invalid_request_error" });
    }
    expect([...s.engine.adapters.keys()]).toEqual(["alpha", "beta"]);
  });
});

describe("GET /health", () => {
  it("is ok when ready and 503 SHUTTING_DOWN when draining", async () => {
    const url = `${s.baseURL.replace("/v1", "")}/health`;
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ status: "ok" });
    s.slot.state = "draining";
    const draining = await fetch(url);
    expect(draining.status).toBe(503);
    expect((await draining.json()).error.code).toBe("SHUTTING_DOWN");
  });
});

function metricValue(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("GET /metrics", () => {
  it("counts requests, tokens and latencies on the HTTP side", async () => {
    const engine = new FakeEngine();
    const app = await buildServer({ state: "ready", engine });
    const body = { model: BASE_MODEL, prompt: "Hello", max_tokens: 3 };
    expect((await app.inject({ method: "POST", url: "/v1/completions", payload: body })).statusCode).toBe(200);
    expect((await app.inject({ method: "POST", url: "/v1/completions", payload: { ...body, model: "nope" } })).statusCode).toBe(404);
    const res = await app.inject({ method: "GET", url: "/metrics" });
    await app.close();
    expect(res.headers["content-type"]).toMatch(/^text\/plain/);
    const m = res.body;
    expect(metricValue(m, 'openlora_requests_total{route="/v1/completions",status="200"}')).toBe(1);
    expect(metricValue(m, 'openlora_requests_total{route="/v1/completions",status="404"}')).toBe(1);
    expect(metricValue(m, 'openlora_request_errors_total{code="MODEL_NOT_SERVED"}')).toBe(1);
    expect(metricValue(m, "openlora_prompt_tokens_total")).toBe(6);
    expect(metricValue(m, "openlora_generation_tokens_total")).toBe(3);
    expect(metricValue(m, "openlora_ttft_seconds_count")).toBe(1);
    expect(metricValue(m, "openlora_time_per_output_token_seconds_count")).toBe(1);
    expect(metricValue(m, "openlora_e2e_request_latency_seconds_count")).toBe(1);
    expect(metricValue(m, 'openlora_e2e_request_latency_seconds_bucket{le="+Inf"}')).toBe(1);
  });

  it("counts streamed requests once they end", async () => {
    const stream = await s.client.completions.create({ model: BASE_MODEL, prompt: "abc", stream: true });
    for await (const _ of stream);
    const m = await (await fetch(`${s.baseURL.replace("/v1", "")}/metrics`)).text();
    expect(metricValue(m, 'openlora_requests_total{route="/v1/completions",status="200"}')).toBe(1);
    expect(metricValue(m, "openlora_generation_tokens_total")).toBe(3);
  });

  it("mirrors engine stats at scrape time without double counting", async () => {
    const engine = new FakeEngine();
    engine.pendingLoadLatenciesMs = [20, 400];
    const app = await buildServer({ state: "ready", engine });
    const scrape = async () => (await app.inject({ method: "GET", url: "/metrics" })).body;
    const first = await scrape();
    expect(metricValue(first, "openlora_requests_waiting")).toBe(3);
    expect(metricValue(first, "openlora_sequences_running")).toBe(2);
    expect(metricValue(first, "openlora_kv_blocks_used")).toBe(10);
    expect(metricValue(first, "openlora_kv_blocks_free")).toBe(54);
    expect(metricValue(first, "openlora_adapters_resident")).toBe(1);
    expect(metricValue(first, "openlora_adapter_resident_bytes")).toBe(4096);
    expect(metricValue(first, "openlora_adapters_registered")).toBe(2);
    expect(metricValue(first, "openlora_adapter_loads_total")).toBe(2);
    expect(metricValue(first, "openlora_adapter_evictions_total")).toBe(1);
    expect(metricValue(first, "openlora_adapter_cache_hits_total")).toBe(5);
    expect(metricValue(first, "openlora_adapter_cache_misses_total")).toBe(2);
    expect(metricValue(first, "openlora_preemptions_total")).toBe(1);
    expect(metricValue(first, "openlora_adapter_load_seconds_count")).toBe(2);
    expect(metricValue(first, 'openlora_adapter_load_seconds_bucket{le="0.025"}')).toBe(1);

    engine.statsValue.adapters.loads = 5;
    engine.statsValue.waiting = 0;
    const second = await scrape();
    await app.close();
    expect(metricValue(second, "openlora_adapter_loads_total")).toBe(5);
    expect(metricValue(second, "openlora_requests_waiting")).toBe(0);
    expect(metricValue(second, "openlora_adapter_load_seconds_count")).toBe(2);
    expect(metricValue(second, "openlora_preemptions_total")).toBe(1);
  });

  it("keeps one registry per server and serves HTTP metrics while loading", async () => {
    const a = await buildServer({ state: "ready", engine: new FakeEngine() });
    const b = await buildServer({ state: "loading", engine: undefined });
    await a.inject({ method: "GET", url: "/v1/models" });
    const ma = (await a.inject({ method: "GET", url: "/metrics" })).body;
    const mb = await b.inject({ method: "GET", url: "/metrics" });
    await a.close();
    await b.close();
    expect(metricValue(ma, 'openlora_requests_total{route="/v1/models",status="200"}')).toBe(1);
    expect(mb.statusCode).toBe(200);
    expect(metricValue(mb.body, 'openlora_requests_total{route="/v1/models",status="200"}')).toBeUndefined();
    expect(metricValue(mb.body, "openlora_kv_blocks_free")).toBe(0);
  });
});
