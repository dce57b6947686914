/**
 * POST /v1/completions and /v1/chat/completions: validate, build the engine request, then either
 * collect the whole answer or stream it as server-sent events.
 *
 * Streaming sends its 200 headers once the engine accepts the request, not before: an error the
 * engine raises up front (queue full, unknown adapter, prompt too long) still gets its own HTTP
 * status. After that, an engine error becomes a `data: {"error": …}` event before [DONE].
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { CompletionRequest, EngineEvent, EngineHandle, EngineInfo, FinishReason, WireError } from "../engine/protocol.js";
import type { Admission } from "./attribution.js";
import { OpenLoraError, quoted } from "../errors.js";
import { renderChatPrompt } from "./chat-template.js";
import { requireEngine, type ServerContext } from "./context.js";
import { EngineRequest, type TerminalEvent } from "./engine-stream.js";
import { errorBody, toHttpError } from "./http-errors.js";
import type { ServerMetrics } from "./metrics.js";
import {
  appendCompletionLogprobs,
  chatChunk,
  chatLogprobs,
  chatResponse,
  completionChunk,
  completionLogprobs,
  completionResponse,
  newCompletionId,
  openAIFinishReason,
  usage,
  usageChunk,
  type ChatTokenLogprob,
  type CompletionLogprobs,
  type Endpoint,
  type ResponseHead,
} from "./openai-format.js";
import { parseChatBody, parseCompletionBody, type GenerationParams } from "./request-parse.js";

const DEFAULT_COMPLETION_MAX_TOKENS = 16;

export function registerGenerationRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/completions", (request, reply) => generate(ctx, "completion", request, reply));
  app.post("/v1/chat/completions", (request, reply) => generate(ctx, "chat", request, reply));
}

function engineRequest(p: GenerationParams, prompt: string | number[], addSpecial: boolean, maxTokens: number): CompletionRequest {
  const req: CompletionRequest = {
    prompt,
    addSpecial,
    adapters: p.adapters,
    maxTokens,
    sampling: p.sampling,
    stop: p.stop,
    ignoreEos: p.ignoreEos,
    fairKey: p.fairKey,
  };
  if (p.logprobs !== undefined) req.logprobs = p.logprobs;
  return req;
}

async function prepare(engine: EngineHandle, kind: Endpoint, body: unknown, ctx: ServerContext): Promise<{ params: GenerationParams; req: CompletionRequest }> {
  const info = engine.info;
  if (kind === "completion") {
    const p = parseCompletionBody(body, info, ctx.limits);
    return { params: p, req: engineRequest(p, p.prompt, true, p.maxTokens ?? DEFAULT_COMPLETION_MAX_TOKENS) };
  }
  const p = parseChatBody(body, info, ctx.limits);
  const text = renderChatPrompt(info, p.messages);
  if (p.maxTokens !== undefined) return { params: p, req: engineRequest(p, text, false, p.maxTokens) };
  // Default: the rest of the context, which needs the prompt's length; submit the ids so the
  // engine does not tokenize twice.
  const ids = await engine.tokenize(text, false);
  const rest = info.contextLength - ids.length;
  if (rest <= 0) {
    throw new OpenLoraError("CONTEXT_OVERFLOW", `The prompt has ${ids.length} tokens and the context holds ${info.contextLength}: no room to generate.`);
  }
  return { params: p, req: engineRequest(p, ids, false, Math.min(rest, ctx.limits.maxTokensLimit ?? rest)) };
}

/** An adapter the client named as `model` that the engine does not know is a model we do not serve. */
function fromEngine(e: WireError, p: GenerationParams, info: EngineInfo): WireError | OpenLoraError {
  if (p.modelIsAdapter && (e.code === "ADAPTER_NOT_FOUND" || e.code === "ADAPTER_ID_INVALID")) {
    return new OpenLoraError(
      "MODEL_NOT_SERVED",
      `The model ${quoted(p.model)} does not exist: it is neither the base model '${info.modelId}' nor a registered adapter.`,
      { param: "model" },
    );
  }
  return e;
}

/** TTFT, TPOT and end-to-end latency from event arrival times on this side. */
class LatencyRecorder {
  private firstTokenAt: number | undefined;
  constructor(
    private readonly arrival: number,
    private readonly metrics: ServerMetrics,
  ) {}

  delta(tokens: number): void {
    if (tokens > 0 && this.firstTokenAt === undefined) {
      this.firstTokenAt = performance.now();
      this.metrics.ttft.observe((this.firstTokenAt - this.arrival) / 1000);
    }
  }

  done(e: Extract<EngineEvent, { type: "done" }>): void {
    const now = performance.now();
    this.metrics.e2e.observe((now - this.arrival) / 1000);
    if (this.firstTokenAt !== undefined && e.completionTokens > 1) {
      this.metrics.tpot.observe((now - this.firstTokenAt) / 1000 / (e.completionTokens - 1));
    }
    this.metrics.promptTokens.inc(e.promptTokens);
    this.metrics.generationTokens.inc(e.completionTokens);
  }
}

interface Generation {
  ctx: ServerContext;
  kind: Endpoint;
  params: GenerationParams;
  info: EngineInfo;
  head: ResponseHead;
  run: EngineRequest;
  latency: LatencyRecorder;
  /** The client closed the connection before the end. */
  gone: () => boolean;
  req: CompletionRequest;
  /** The ledger reservation, when attribution is on. */
  adm: Admission | undefined;
}

/** Ends the request in the ledger: a receipt id, or undefined (nothing produced, or attribution off). */
async function settle(g: Generation, finish: FinishReason | "failed"): Promise<number | undefined> {
  // Tests only (src/server/fault-injection.ts): the tokens a lying node would sign, for a completed request.
  const completed = finish === "eos" || finish === "stop" || finish === "length";
  const outputTokens = g.ctx.fault && completed && g.run.outputTokens.length > 0 ? g.ctx.fault.completedOutput(g.run.outputTokens, g.info.vocabSize) : g.run.outputTokens;
  const attr = g.ctx.slot.attribution;
  if (!attr || !g.adm) return undefined;
  try {
    const stored = await attr.finish(g.adm, { promptTokenIds: g.run.promptTokenIds, outputTokens, sampling: g.req.sampling, finish });
    return stored?.receipt.id;
  } catch (e) {
    // The answer stands; the missing receipt is logged and counted, never silent.
    g.ctx.metrics.errors.inc({ code: "RECEIPT_FAILED" });
    g.ctx.log?.error({ err: e }, "settling the receipt failed");
    return undefined;
  }
}

function terminalFinish(e: Extract<EngineEvent, { type: "error" }>): "cancelled" | "failed" {
  return e.error.code === "REQUEST_CANCELLED" ? "cancelled" : "failed";
}

async function generate(ctx: ServerContext, kind: Endpoint, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const arrival = performance.now();
  const engine = requireEngine(ctx.slot);
  const { params, req } = await prepare(engine, kind, request.body, ctx);
  const head: ResponseHead = { id: newCompletionId(kind), created: Math.floor(Date.now() / 1000), model: params.model };
  reply.header("openlora-request-id", head.id);
  const adm = ctx.slot.attribution?.admit(request.principal, req.adapters, req.prompt, req.maxTokens);

  const run = new EngineRequest(engine, req);
  let gone = false;
  reply.raw.on("close", () => {
    if (run.ended) return;
    gone = true;
    run.abandon();
  });
  const g: Generation = { ctx, kind, params, info: engine.info, head, run, latency: new LatencyRecorder(arrival, ctx.metrics), gone: () => gone, req, adm };

  const first = await nextEvent(g);
  if (first.type === "error") return answerError(g, first, reply);
  return params.stream ? stream(g, first, reply) : collect(g, first, reply);
}

/**
 * The request's next event. The engine's "admitted" (before any token) is where the ledger checks
 * that the request can be settled with the files actually served; if it cannot, the request ends
 * here with that error, before a token is sent (and is released, not charged).
 */
async function nextEvent(g: Generation): Promise<EngineEvent> {
  const ev = await g.run.next();
  if (ev.type !== "admitted" || !g.adm) return ev;
  try {
    g.ctx.slot.attribution!.confirm(g.adm, ev.adapters);
  } catch (e) {
    g.run.stop(e instanceof OpenLoraError ? { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } : { code: "INTERNAL", message: "Internal server error." });
    if (!(e instanceof OpenLoraError)) g.ctx.log?.error({ err: e }, "checking an admitted request against the ledger failed");
    return g.run.next();
  }
  return ev;
}

/** Nothing was sent yet: the error gets its own HTTP status (unless nobody is listening). */
async function answerError(g: Generation, e: Extract<EngineEvent, { type: "error" }>, reply: FastifyReply): Promise<undefined> {
  await settle(g, terminalFinish(e));
  if (g.gone()) {
    reply.hijack();
    return undefined;
  }
  throw fromEngine(e.error, g.params, g.info);
}

async function collect(g: Generation, first: EngineEvent, reply: FastifyReply): Promise<unknown> {
  let text = "";
  const compLogprobs: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  const chatLps: ChatTokenLogprob[] = [];
  let offset = 0;
  for (let ev = first; ; ev = await nextEvent(g)) {
    if (ev.type === "delta") {
      g.latency.delta(ev.tokens.length);
      text += ev.text;
      if (ev.logprobs) {
        if (g.kind === "chat") chatLps.push(...chatLogprobs(ev.logprobs));
        else {
          const more = completionLogprobs(ev.logprobs, offset);
          appendCompletionLogprobs(compLogprobs, more);
          offset += ev.logprobs.reduce((n, lp) => n + lp.token.length, 0);
        }
      }
    } else if (ev.type === "done") {
      g.latency.done(ev);
      const receipt = await settle(g, ev.finishReason);
      if (receipt !== undefined) reply.header("openlora-receipt", String(receipt));
      const u = usage(ev.promptTokens, ev.completionTokens);
      const finish = openAIFinishReason(ev.finishReason);
      const wantLogprobs = g.params.logprobs !== undefined;
      return reply.send(
        g.kind === "chat"
          ? chatResponse(g.head, text, wantLogprobs ? chatLps : null, finish, u)
          : completionResponse(g.head, text, wantLogprobs ? compLogprobs : null, finish, u),
      );
    } else if (ev.type === "error") {
      return answerError(g, ev, reply);
    }
  }
}

async function stream(g: Generation, first: EngineEvent, reply: FastifyReply): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
    "openlora-request-id": g.head.id,
  });
  res.flushHeaders();
  const send = (data: object | string): void => {
    if (res.writableEnded || res.destroyed) return;
    res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  };
  const usageField = g.params.includeUsage;
  const wantLogprobs = g.params.logprobs !== undefined;
  if (g.kind === "chat") send(chatChunk(g.head, { role: "assistant", content: "" }, null, null, usageField));

  let offset = 0;
  let last: TerminalEvent | undefined;
  try {
    for (let ev = first; ; ev = await nextEvent(g)) {
      if (ev.type === "delta") {
        g.latency.delta(ev.tokens.length);
        const lps = wantLogprobs ? (ev.logprobs ?? []) : [];
        if (ev.text === "" && lps.length === 0) continue;
        if (g.kind === "chat") {
          send(chatChunk(g.head, { content: ev.text }, wantLogprobs ? chatLogprobs(lps) : null, null, usageField));
        } else {
          send(completionChunk(g.head, ev.text, wantLogprobs ? completionLogprobs(lps, offset) : null, null, usageField));
          offset += lps.reduce((n, lp) => n + lp.token.length, 0);
        }
      } else if (ev.type === "done" || ev.type === "error") {
        last = ev;
        break;
      }
    }
  } catch (e) {
    // A bug here must still end the stream with a structured error.
    last = { type: "error", error: { code: "INTERNAL", message: "Internal server error." } };
    reply.log.error({ err: e }, "streaming failed");
  }

  if (last.type === "done") {
    g.latency.done(last);
    const receipt = await settle(g, last.finishReason);
    const tag = receipt !== undefined ? { openlora_receipt: String(receipt) } : {};
    const finish = openAIFinishReason(last.finishReason);
    send({ ...(g.kind === "chat" ? chatChunk(g.head, {}, null, finish, usageField) : completionChunk(g.head, "", null, finish, usageField)), ...tag });
    if (g.params.includeUsage) send({ ...usageChunk(g.kind, g.head, usage(last.promptTokens, last.completionTokens)), ...tag });
  } else {
    await settle(g, terminalFinish(last));
    const he = toHttpError(fromEngine(last.error, g.params, g.info), g.ctx.retry);
    g.ctx.metrics.errors.inc({ code: he.code });
    send(errorBody(he));
  }
  send("[DONE]");
  if (!res.writableEnded) res.end();
}
