/**
 * The llama.cpp baseline as an OpenAI-compatible server, so the harness measures it through the
 * same HTTP API as openlora: POST /v1/completions (streaming or not; `model` = the base model's id
 * or an adapter id; `ignore_eos`; always greedy), GET /v1/models, GET /health, GET /metrics (its
 * adapter loads/evictions/hits/misses under openlora's metric names). Adapters are the *.gguf LoRA
 * files of --lora-dir, named by file stem like openlora's registry names them.
 *
 *   npx tsx src/bench-serve/llamacpp-server.ts --model X.gguf --lora-dir D --threads N --port P
 *        [--host 127.0.0.1] [--max-contexts 16] [--sequences 4] [--base-sequences 16] [--context-size 1024]
 */
import { readdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, type LlamaModel, type Token } from "node-llama-cpp";
import { isEntryPoint } from "./entry-point.js";
import { ContextPool, generateGreedy, type PoolOptions } from "./llamacpp-pool.js";

export interface LlamaCppServerOptions extends PoolOptions {
  modelPath: string;
  loraDir?: string;
  /** 0 picks a free port. */
  port: number;
  host?: string;
}

export interface RunningLlamaCppServer {
  origin: string;
  port: number;
  baseModelId: string;
  pool: ContextPool;
  close(): Promise<void>;
}

const PLAIN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function scanLoraDir(dir: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!dir) return out;
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith(".gguf")) continue;
    const id = name.slice(0, -".gguf".length);
    if (PLAIN_ID.test(id) && !id.includes("..")) out.set(id, resolve(dir, name));
  }
  return out;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code: string) {
    super(message);
  }
}

interface CompletionBody {
  model: string;
  prompt: number[] | string;
  maxTokens: number;
  stream: boolean;
  includeUsage: boolean;
  ignoreEos: boolean;
}

function parseBody(raw: unknown): CompletionBody {
  const b = raw as Record<string, unknown> | null;
  if (!b || typeof b !== "object") throw new HttpError(400, "body must be a JSON object", "invalid_request");
  if (typeof b.model !== "string") throw new HttpError(400, "model must be a string", "invalid_request");
  let prompt = b.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === "string" || Array.isArray(prompt[0]))) prompt = prompt[0];
  const tokens = Array.isArray(prompt) && prompt.every((t) => Number.isInteger(t) && (t as number) >= 0);
  if (typeof prompt !== "string" && !tokens) throw new HttpError(400, "prompt must be a string or an array of token ids (one prompt)", "invalid_request");
  if ((b.n ?? 1) !== 1) throw new HttpError(400, "only n = 1 is supported", "invalid_request");
  const maxTokens = b.max_tokens ?? 16;
  if (!Number.isInteger(maxTokens) || (maxTokens as number) < 1) throw new HttpError(400, "max_tokens must be a positive integer", "invalid_request");
  const so = b.stream_options as { include_usage?: unknown } | undefined;
  return {
    model: b.model, prompt: prompt as number[] | string, maxTokens: maxTokens as number, stream: b.stream === true,
    includeUsage: so?.include_usage === true, ignoreEos: b.ignore_eos === true,
  };
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        resolveBody(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        reject(new HttpError(400, "body is not valid JSON", "invalid_json"));
      }
    });
    req.on("error", reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function errorBody(e: HttpError): unknown {
  return { error: { message: e.message, type: e.status >= 500 ? "server_error" : "invalid_request_error", code: e.code } };
}

function metricsText(pool: ContextPool, served: { requests: number; tokens: number }): string {
  const c = pool.counters;
  const lines = [
    ["openlora_adapter_loads_total", "counter", "Adapter contexts created (LoRA file read and context allocated).", c.loads],
    ["openlora_adapter_evictions_total", "counter", "Adapter contexts disposed to stay under --max-contexts.", c.evictions],
    ["openlora_adapter_hits_total", "counter", "Adapter requests that found their context alive.", c.hits],
    ["openlora_adapter_misses_total", "counter", "Adapter requests that had to create their context.", c.misses],
    ["openlora_adapter_load_failures_total", "counter", "Adapter contexts that failed to create.", c.loadFailures],
    ["openlora_adapters_resident", "gauge", "Adapter contexts alive now.", pool.resident],
    ["openlora_requests_total", "counter", "Completion requests finished.", served.requests],
    ["openlora_generated_tokens_total", "counter", "Tokens generated.", served.tokens],
  ] as const;
  return lines.map(([name, type, help, v]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${v}\n`).join("");
}

export async function startLlamaCppServer(opts: LlamaCppServerOptions): Promise<RunningLlamaCppServer> {
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: opts.threads, progressLogs: false, logLevel: "error" as never });
  const model: LlamaModel = await llama.loadModel({ modelPath: opts.modelPath, gpuLayers: 0, useMmap: true });
  const vocabSize = (model.fileInfo.metadata as unknown as { tokenizer?: { ggml?: { tokens?: unknown[] } } }).tokenizer?.ggml?.tokens?.length ?? Infinity;
  const pool = new ContextPool(model, scanLoraDir(opts.loraDir), opts);
  await pool.init();
  const baseModelId = basename(opts.modelPath).replace(/\.gguf$/i, "");
  const served = { requests: 0, tokens: 0 };
  let nextId = 1;

  async function complete(body: CompletionBody, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const adapter = body.model === baseModelId ? null : body.model;
    if (adapter !== null && !pool.adapters.has(adapter)) {
      throw new HttpError(404, `model ${JSON.stringify(body.model)} is neither the base model (${baseModelId}) nor an adapter`, "model_not_found");
    }
    const prompt = typeof body.prompt === "string"
      ? model.tokenize(body.prompt).map(Number)
      : body.prompt;
    if (typeof body.prompt === "string" && model.tokens.shouldPrependBosToken && model.tokens.bos !== null) prompt.unshift(model.tokens.bos);
    if (prompt.length === 0) throw new HttpError(400, "empty prompt", "invalid_request");
    if (prompt.some((t) => t >= vocabSize)) throw new HttpError(400, `token ids must be below ${vocabSize}`, "invalid_request");
    if (prompt.length + body.maxTokens > opts.contextSize) {
      throw new HttpError(400, `prompt (${prompt.length}) + max_tokens (${body.maxTokens}) exceed the context size ${opts.contextSize}`, "context_length_exceeded");
    }
    const id = `cmpl-${nextId++}`;
    const created = Math.floor(Date.now() / 1000);
    let cancelled = false;
    res.on("close", () => { cancelled = true; });
    const lease = await pool.acquire(adapter);
    const tokens: number[] = [];
    let text = "";
    let finish: "length" | "stop" = "length";
    try {
      if (body.stream) res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
      for await (const token of generateGreedy(model, lease.sequence, prompt, body.maxTokens, body.ignoreEos, () => cancelled)) {
        const piece = model.detokenize([token as Token], false, tokens.slice(-4) as Token[]);
        tokens.push(token);
        text += piece;
        const last = tokens.length === body.maxTokens || (!body.ignoreEos && model.isEogToken(token as Token));
        if (last && tokens.length < body.maxTokens) finish = "stop";
        if (body.stream && !cancelled) {
          const chunk = { id, object: "text_completion", created, model: body.model, choices: [{ index: 0, text: piece, logprobs: null, finish_reason: last ? finish : null }] };
          res.write(`data: ${JSON.stringify(chunk)}\n\n`);
        }
      }
    } catch (e) {
      if (!body.stream) throw e;
      if (!cancelled) res.end(`data: ${JSON.stringify(errorBody(new HttpError(500, (e as Error).message, "generation_failed")))}\n\n`);
      return;
    } finally {
      lease.release();
      served.requests++;
      served.tokens += tokens.length;
    }
    const usage = { prompt_tokens: prompt.length, completion_tokens: tokens.length, total_tokens: prompt.length + tokens.length };
    if (!body.stream) {
      sendJson(res, 200, { id, object: "text_completion", created, model: body.model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage });
      return;
    }
    if (cancelled) return;
    if (body.includeUsage) res.write(`data: ${JSON.stringify({ id, object: "text_completion", created, model: body.model, choices: [], usage })}\n\n`);
    res.end("data: [DONE]\n\n");
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/health") return sendJson(res, 200, { status: "ok" });
    if (req.method === "GET" && path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      res.end(metricsText(pool, served));
      return;
    }
    if (req.method === "GET" && path === "/v1/models") {
      const data = [baseModelId, ...pool.adapters.keys()].map((mid) => ({ id: mid, object: "model", created: 0, owned_by: "llamacpp-baseline" }));
      return sendJson(res, 200, { object: "list", data });
    }
    if (req.method === "POST" && path === "/v1/completions") return complete(parseBody(await readJson(req)), req, res);
    throw new HttpError(404, `no route ${req.method} ${path}`, "not_found");
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const err = e instanceof HttpError ? e : new HttpError(500, (e as Error)?.message ?? String(e), "internal");
      if (!res.headersSent) sendJson(res, err.status, errorBody(err));
      else res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((ok) => server.listen(opts.port, opts.host ?? "127.0.0.1", ok));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://${opts.host ?? "127.0.0.1"}:${port}`, port, baseModelId, pool,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      await pool.dispose();
      await model.dispose();
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, "lora-dir": { type: "string" }, threads: { type: "string" }, port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" }, "max-contexts": { type: "string", default: "16" }, sequences: { type: "string", default: "4" },
      "base-sequences": { type: "string", default: "16" }, "context-size": { type: "string", default: "1024" },
    },
  });
  if (!values.model || !values.threads) throw new Error("--model and --threads are required (threads explicitly: llama.cpp's default oversubscribes small machines)");
  const int = (v: string, name: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
    return n;
  };
  const server = await startLlamaCppServer({
    modelPath: values.model, ...(values["lora-dir"] ? { loraDir: values["lora-dir"] } : {}), threads: int(values.threads, "threads"),
    port: int(values.port!, "port"), host: values.host!, maxContexts: Math.max(1, int(values["max-contexts"]!, "max-contexts")),
    sequencesPerContext: Math.max(1, int(values.sequences!, "sequences")), baseSequences: Math.max(1, int(values["base-sequences"]!, "base-sequences")),
    contextSize: int(values["context-size"]!, "context-size"),
  });
  process.stdout.write(`llama.cpp baseline listening on ${server.origin} (base model ${server.baseModelId}, ${server.pool.adapters.size} adapters)\n`);
  const stop = () => { void server.close().finally(() => process.exit(0)); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}


if (isEntryPoint(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`llamacpp-server: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  });
}
