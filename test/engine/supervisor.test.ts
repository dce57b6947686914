/**
 * The engine supervisor with a real worker thread on a tiny generated model, behind the real HTTP
 * server: the worker is killed mid-request; the request fails with ENGINE_FAILED, /health and every
 * route answer 503 NOT_READY (Retry-After) during the restart, and then serving resumes with the
 * same output as before, the adapter loaded at run time still served and the one unloaded still
 * gone. The backoff against crash loops is tested over a scripted worker.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { WorkerEngine } from "../../src/engine/engine-client.js";
import type { EngineInfo, WireError } from "../../src/engine/protocol.js";
import { EngineSupervisor } from "../../src/engine/supervisor.js";
import { OpenLoraError } from "../../src/errors.js";
import { buildServer, type EngineSlot } from "../../src/server/index.js";

const OPERATOR = "olo_supervisor-test-operator-token-000000000000";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-supervisor-");
const adaptersDir = join(dir, "adapters");

describe("a supervised engine thread that dies", () => {
  let supervisor: EngineSupervisor;
  let app: FastifyInstance;
  let base: string;
  const logs: string[] = [];

  beforeAll(async () => {
    const modelPath = join(dir, "tiny.gguf");
    writeGgufModel(modelPath, "tiny-llama3", { seed: 11, type: "q8_0" });
    mkdirSync(join(adaptersDir, "extra"), { recursive: true });
    for (const id of ["a0", "a1"]) writeGgufLora(join(adaptersDir, `${id}.gguf`), "tiny-llama3", { seed: id.charCodeAt(1), rank: 8, alpha: 16, targets: ["q", "v"], type: "f16", strength: 0.1 });
    // Not found by the start-up scan (a subfolder without adapter_config.json): only a runtime load serves it.
    writeGgufLora(join(adaptersDir, "extra", "late.gguf"), "tiny-llama3", { seed: 77, rank: 8, alpha: 16, targets: ["q", "v"], type: "f32", strength: 0.1 });
    supervisor = await EngineSupervisor.start({ modelPath, adaptersDir, threads: 1, core: { kvBlocks: 160 } }, { initialBackoffMs: 300, log: (m) => logs.push(m) });
    const slot: EngineSlot = { state: "ready", engine: supervisor };
    app = await buildServer(slot, { operatorToken: OPERATOR });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const address = app.server.address();
    base = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  });

  afterAll(async () => {
    await app?.close();
    await supervisor?.close();
  });

  const post = (path: string, body: unknown): Promise<Response> =>
    fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${OPERATOR}` }, body: JSON.stringify(body) });
  type Body = { choices?: Array<{ text: string }>; usage?: unknown; error?: { code: string } };
  const complete = async (model: string, maxTokens = 12): Promise<{ status: number; body: Body }> => {
    const res = await post("/v1/completions", { model, prompt: "Once upon a time", max_tokens: maxTokens, temperature: 0 });
    return { status: res.status, body: await res.json() };
  };
  /** What must not change across a restart (ids and timestamps do). */
  const output = (r: { status: number; body: Body }): unknown => ({ status: r.status, choices: r.body.choices, usage: r.body.usage });
  const models = async (): Promise<string[]> => ((await (await fetch(`${base}/v1/models`)).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);

  it("fails what is in flight with ENGINE_FAILED, answers 503 NOT_READY while restarting, then serves as before", async () => {
    const modelId = supervisor.info.modelId;
    expect(supervisor.info.modelContentHash).toMatch(/^0x[0-9a-f]{64}$/);
    expect((await post("/v1/load_lora_adapter", { lora_name: "late", lora_path: "extra/late.gguf" })).status).toBe(200);
    expect((await post("/v1/unload_lora_adapter", { lora_name: "a1" })).status).toBe(200);
    expect(await models()).toEqual([modelId, "a0", "late"]);
    const before = { base: await complete(modelId), a0: await complete("a0"), late: await complete("late") };
    for (const r of Object.values(before)) expect(r.status).toBe(200);
    expect(before.late.body.choices![0]!.text).not.toBe(before.base.body.choices![0]!.text);

    const inflight = complete(modelId, 2000);
    const worker = supervisor.current!;
    // The request is running once the engine reports a sequence (or tokens) for it.
    for (let i = 0; i < 500 && (await worker.stats()).running === 0; i++) await new Promise((r) => setTimeout(r, 5));
    await worker.kill();
    const failed = await inflight;
    expect(failed.status).toBe(500);
    expect(failed.body.error?.code).toBe("ENGINE_FAILED");

    expect(supervisor.state).toBe("restarting");
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(503);
    expect(health.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(((await health.json()) as { error: { code: string } }).error.code).toBe("NOT_READY");
    expect((await fetch(`${base}/v1/models`)).status).toBe(503);
    const during = await complete(modelId);
    expect(during.status).toBe(503);
    expect(during.body.error?.code).toBe("NOT_READY");
    await expect(supervisor.stats()).rejects.toMatchObject({ code: "NOT_READY" });

    for (let i = 0; i < 600 && (await fetch(`${base}/health`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50));
    expect(supervisor.state).toBe("ready");
    expect(supervisor.restarts).toBe(1);
    expect(supervisor.current).not.toBe(worker);
    expect(await models()).toEqual([modelId, "a0", "late"]);
    const after = { base: await complete(modelId), a0: await complete("a0"), late: await complete("late") };
    for (const k of ["base", "a0", "late"] as const) expect(output(after[k]), k).toEqual(output(before[k]));
    expect((await complete("a1")).body.error?.code).toBe("MODEL_NOT_SERVED");
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^openlora_engine_restarts_total 1$/m);
    expect(logs.some((l) => l.includes("restarted"))).toBe(true);
  });
});

/** A stand-in worker: dies when told to; counts what it was asked to replay. */
class ScriptedWorker {
  readonly info = { modelId: "m", modelContentHash: `0x${"0".repeat(64)}` } as EngineInfo;
  failed = false;
  readonly replayed: string[] = [];
  private listener: ((e: WireError) => void) | undefined;
  onFailure(l: (e: WireError) => void): () => void { this.listener = l; return () => {}; }
  die(): void { this.failed = true; this.listener?.({ code: "ENGINE_FAILED", message: "gone" }); }
  async loadAdapter(id: string): Promise<{ id: string }> { this.replayed.push(`load ${id}`); return { id }; }
  async unloadAdapter(id: string): Promise<void> { this.replayed.push(`unload ${id}`); }
  async close(): Promise<void> {}
}

describe("restart backoff", () => {
  afterEach(() => { vi.useRealTimers(); });

  it("waits doubling delays between failed starts, resets after a healthy period, replays runtime adapter changes", async () => {
    // Fake timers and clock: the delays are checked exactly, whatever the machine's speed.
    vi.useFakeTimers();
    const starts: number[] = [];
    const workers: ScriptedWorker[] = [];
    let failNext = 0;
    const startWorker = async (): Promise<WorkerEngine> => {
      starts.push(Date.now());
      if (failNext > 0) { failNext--; throw new OpenLoraError("MODEL_NOT_FOUND", "model file gone"); }
      const w = new ScriptedWorker();
      workers.push(w);
      return w as unknown as WorkerEngine;
    };
    const s = await EngineSupervisor.start({ modelPath: "m", threads: 1 }, { startWorker, initialBackoffMs: 40, maxBackoffMs: 200, healthyMs: 400 });
    await s.loadAdapter("late", "x/late.gguf");
    await s.unloadAdapter("scanned");
    await s.loadAdapter("gone", "x/gone.gguf");
    await s.unloadAdapter("gone");

    failNext = 3;
    const died = Date.now();
    workers[0]!.die();
    expect(s.state).toBe("restarting");
    await vi.advanceTimersByTimeAsync(40 + 80 + 160 + 199);
    expect(s.state).toBe("restarting");
    await vi.advanceTimersByTimeAsync(1);
    expect(s.state).toBe("ready");
    // After the crash: 40, then 80, 160 and 200 (capped) between the starts.
    expect(starts.slice(1).map((t, i) => t - (i === 0 ? died : starts[i]!))).toEqual([40, 80, 160, 200]);
    expect(workers[1]!.replayed).toEqual(["unload scanned", "load late"]);
    expect(s.restarts).toBe(1);

    // A worker that served past healthyMs restarts after the first delay again.
    await vi.advanceTimersByTimeAsync(450);
    workers[1]!.die();
    await vi.advanceTimersByTimeAsync(39);
    expect(s.state).toBe("restarting");
    await vi.advanceTimersByTimeAsync(1);
    expect(s.state).toBe("ready");
    expect(s.restarts).toBe(2);

    // Submits while restarting fail fast; after close() nothing restarts.
    failNext = 100;
    workers[2]!.die();
    const events: string[] = [];
    s.submit({ prompt: "x", addSpecial: true, adapters: [], maxTokens: 1, sampling: {}, stop: [], ignoreEos: false, fairKey: "k" }, (e) => events.push(e.type === "error" ? e.error.code : e.type));
    await vi.advanceTimersByTimeAsync(0);
    expect(events).toEqual(["NOT_READY"]);
    await s.close();
    const n = starts.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(starts.length).toBe(n);
  });
});
