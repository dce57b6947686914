/**
 * A scriptable EngineHandle for server tests, and a helper that starts a real server on a free
 * port with an `openai` client pointed at it.
 *
 * Tokens are characters: tokenize(text) = char codes (BOS = 1 first with addSpecial). Generation
 * echoes the prompt's text one character per token: it ends with "eos" when the echo is complete,
 * "length" at maxTokens, or "stop" (text cut before the match) when a stop string appears.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import OpenAI, { APIError } from "openai";
import { expect } from "vitest";
import type {
  AdapterInfo,
  CompletionRequest,
  EngineEvent,
  EngineHandle,
  EngineInfo,
  EngineStats,
  Hex,
  RequestHandle,
  TokenLogprob,
  WireError,
} from "../../src/engine/protocol.js";
import { OpenLoraError } from "../../src/errors.js";
import { buildServer, type EngineSlot, type ServerOptions } from "../../src/server/index.js";

export const BASE_MODEL = "tiny-base";
export const BOS = 1;
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

export interface FailPlan {
  error: WireError;
  /** Fail after this many tokens were streamed; absent = before "accepted". */
  afterTokens?: number;
}

function utf8(s: string): number[] {
  return [...Buffer.from(s, "utf8")];
}

function logprobFor(ch: string, alternatives: number): TokenLogprob {
  const top = [{ token: ch, logprob: -0.25, bytes: utf8(ch) }];
  for (let i = 1; i < alternatives; i++) {
    const alt = String.fromCharCode(0x61 + (i % 26)) + String(i);
    top.push({ token: alt, logprob: -1 - i, bytes: utf8(alt) });
  }
  return { token: ch, logprob: -0.25, bytes: utf8(ch), top: top.slice(0, alternatives) };
}

/** The fixed content hash the fake engine reports for an adapter: SHA-256 of its id. */
export function fakeContentHash(id: string): Hex {
  return `0x${createHash("sha256").update(id).digest("hex")}`;
}

export class FakeEngine implements EngineHandle {
  readonly info: EngineInfo;
  readonly submitted: CompletionRequest[] = [];
  readonly cancelled: number[] = [];
  readonly adapters = new Map<string, AdapterInfo>();
  /** Consumed by the next submit. */
  nextFailure: FailPlan | undefined;
  /** Wait between tokens; 0 = all at once (still asynchronous). */
  tokenDelayMs = 0;
  /** Counts, as the engine reports them cumulatively. */
  statsValue: Omit<EngineStats, "newLoadLatenciesMs"> = {
    waiting: 3,
    running: 2,
    kvBlocksUsed: 10,
    kvBlocksFree: 54,
    promptTokens: 0,
    completionTokens: 0,
    steps: 0,
    preemptions: 1,
    adapters: { registered: 2, resident: 1, residentBytes: 4096, budgetBytes: 1 << 20, hits: 5, misses: 2, loads: 2, evictions: 1, failures: 0 },
  };
  pendingLoadLatenciesMs: number[] = [];
  private nextId = 1;

  constructor(info: Partial<EngineInfo> = {}, adapterIds: string[] = ["alpha", "beta"]) {
    this.info = {
      modelId: BASE_MODEL,
      modelContentHash: `0x${"ab".repeat(32)}`,
      contextLength: 256,
      vocabSize: 1000,
      chatTemplate: CHAT_TEMPLATE,
      bosToken: "<s>",
      eosToken: "</s>",
      created: 1_700_000_000,
      kvBlocks: 64,
      blockSize: 16,
      threads: 2,
      maxQueue: 16,
      ...info,
    };
    for (const id of adapterIds) this.adapters.set(id, this.adapterInfo(id));
  }

  private adapterInfo(id: string): AdapterInfo {
    return { id, path: `/adapters/${id}`, format: "peft", state: "ready", bytes: 2048, refCount: 0, pinned: false, created: 1_700_000_100 };
  }

  submit(req: CompletionRequest, onEvent: (e: EngineEvent) => void): RequestHandle {
    const id = this.nextId++;
    this.submitted.push(req);
    const plan = this.nextFailure;
    this.nextFailure = undefined;
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const emit = (e: EngineEvent): void => {
      if (finished) return;
      if (e.type === "done" || e.type === "error") finished = true;
      onEvent(e);
    };
    const unknown = req.adapters.find((a) => !this.adapters.has(a.id));
    const prompt = typeof req.prompt === "string" ? (req.addSpecial ? [BOS] : []).concat([...req.prompt].map((c) => c.codePointAt(0)!)) : req.prompt;
    const source = prompt.filter((t) => t !== BOS).map((t) => String.fromCodePoint(t)).join("");

    setImmediate(() => {
      if (unknown) return emit({ type: "error", error: { code: "ADAPTER_NOT_FOUND", message: `no adapter ${unknown.id}`, details: { id: unknown.id } } });
      if (plan && plan.afterTokens === undefined) return emit({ type: "error", error: plan.error });
      emit({ type: "accepted", promptTokens: prompt.length, promptTokenIds: [...prompt] });
      emit({ type: "admitted", adapters: req.adapters.map((a) => ({ id: a.id, contentHash: fakeContentHash(a.id) })) });
      let text = "";
      let produced = 0;
      const step = (): void => {
        if (finished) return;
        if (plan && plan.afterTokens === produced) return emit({ type: "error", error: plan.error });
        const finishReason = produced >= req.maxTokens ? "length" : !req.ignoreEos && produced >= source.length ? "eos" : undefined;
        if (finishReason) {
          return emit({ type: "done", finishReason, promptTokens: prompt.length, completionTokens: produced, timings: { queuedMs: 0, firstTokenMs: 1, totalMs: 2 } });
        }
        const ch = source[produced % source.length] ?? "x";
        produced++;
        const before = text;
        text += ch;
        const hit = req.stop.map((s) => text.indexOf(s)).filter((i) => i >= 0).sort((a, b) => a - b)[0];
        if (hit !== undefined) {
          emit({ type: "delta", tokens: [ch.codePointAt(0)!], text: text.slice(before.length, Math.max(before.length, hit)) });
          return emit({ type: "done", finishReason: "stop", promptTokens: prompt.length, completionTokens: produced, timings: { queuedMs: 0, firstTokenMs: 1, totalMs: 2 } });
        }
        const delta: EngineEvent = { type: "delta", tokens: [ch.codePointAt(0)!], text: ch };
        if (req.logprobs !== undefined) delta.logprobs = [logprobFor(ch, req.logprobs)];
        emit(delta);
        timer = this.tokenDelayMs > 0 ? setTimeout(step, this.tokenDelayMs) : setTimeout(step, 0);
      };
      step();
    });
    return {
      id,
      cancel: () => {
        this.cancelled.push(id);
        if (timer) clearTimeout(timer);
        emit({ type: "error", error: { code: "REQUEST_CANCELLED", message: "cancelled" } });
      },
    };
  }

  async tokenize(text: string, addSpecial: boolean): Promise<number[]> {
    return (addSpecial ? [BOS] : []).concat([...text].map((c) => c.codePointAt(0)!));
  }

  async listAdapters(): Promise<AdapterInfo[]> {
    return [...this.adapters.values()];
  }

  async loadAdapter(id: string, path: string): Promise<AdapterInfo> {
    if (this.adapters.has(id)) throw new OpenLoraError("ADAPTER_ALREADY_EXISTS", `adapter ${id} exists`);
    if (path.includes("broken")) throw new OpenLoraError("ADAPTER_INVALID", `no adapter_config.json in ${path}`);
    const a = this.adapterInfo(id);
    this.adapters.set(id, a);
    return a;
  }

  async unloadAdapter(id: string): Promise<void> {
    if (!this.adapters.delete(id)) throw new OpenLoraError("ADAPTER_NOT_FOUND", `no adapter ${id}`);
  }

  async stats(): Promise<EngineStats> {
    const newLoadLatenciesMs = this.pendingLoadLatenciesMs;
    this.pendingLoadLatenciesMs = [];
    return structuredClone({ ...this.statsValue, newLoadLatenciesMs });
  }

  async drain(): Promise<void> {}
  async close(): Promise<void> {}
}

export interface TestServer {
  app: FastifyInstance;
  slot: EngineSlot;
  engine: FakeEngine;
  baseURL: string;
  client: OpenAI;
  close(): Promise<void>;
}

export async function startTestServer(engine = new FakeEngine(), opts: ServerOptions = {}, state: EngineSlot["state"] = "ready"): Promise<TestServer> {
  const slot: EngineSlot = { state, engine: state === "ready" ? engine : undefined };
  const app = await buildServer(slot, opts);
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  if (typeof address !== "object" || address === null) throw new Error("no address");
  const baseURL = `http://127.0.0.1:${address.port}/v1`;
  const client = new OpenAI({ baseURL, apiKey: "x", maxRetries: 0 });
  // The client may hold a fresh keep-alive connection after an abort; do not wait for it.
  const close = async (): Promise<void> => {
    const closing = app.close();
    app.server.closeAllConnections();
    await closing;
  };
  return { app, slot, engine, baseURL, client, close };
}

/** Polls until `cond` holds (events cross the loopback asynchronously). */
export async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Awaits a client call that must fail with this status and error code (and param, if given). */
export async function expectError(p: Promise<unknown>, status: number, code: string, param?: string | null): Promise<APIError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(OpenAI.APIError);
  const api = e as APIError;
  expect(api.status).toBe(status);
  expect(api.code).toBe(code);
  expect(api.type).toBe(status >= 500 ? "server_error" : "invalid_request_error");
  if (param !== undefined) expect(api.param).toBe(param);
  return api;
}
