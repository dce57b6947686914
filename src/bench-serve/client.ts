/**
 * Drives an OpenAI-compatible server with a trace over streaming HTTP (the official `openai`
 * client, so every system is measured through the same wire protocol) and records, per request,
 * when it was sent, when each token arrived and how it ended. Times are milliseconds after the
 * trace started (performance.now() based).
 */
import OpenAI from "openai";
import type { Trace, TraceRequest } from "./workload.js";

export interface RequestRecord {
  index: number;
  model: string;
  /** The trace's adapter index; null when the system serves the base model for every request. */
  adapterIndex: number | null;
  promptTokens: number;
  maxTokens: number;
  /** Open loop: when the trace wanted it sent. */
  scheduledMs: number | null;
  startMs: number;
  firstTokenMs: number | null;
  /** Arrival time of every streamed chunk that carried a choice (one per token on these servers). */
  tokenTimesMs: number[];
  endMs: number;
  status: "ok" | "error";
  httpStatus?: number;
  error?: string;
  /** usage.completion_tokens when the server sends usage, else the number of chunks. */
  outputTokens: number;
  finishReason?: string | null;
}

export interface DriveOptions {
  /** e.g. http://127.0.0.1:8080/v1 */
  baseURL: string;
  /** The `model` each request names: an adapter id, or the base model's id. */
  modelFor: (req: TraceRequest) => string;
  /** Whether records keep the trace's adapter index (false for base-only systems). */
  usesAdapters?: boolean;
  requestTimeoutMs?: number;
  /** Token ids (exact prompt lengths) or words (for servers that only take text). */
  promptFormat?: "tokens" | "text";
  onDone?: (rec: RequestRecord, done: number, total: number) => void;
}

export interface DriveResult {
  records: RequestRecord[];
  /** Date.now() when the trace started, to place the run in logs. */
  startedAt: number;
  wallMs: number;
}

const WORDS = ["the", "model", "of", "and", "adapter", "serves", "many", "small", "weights", "on", "one", "shared", "base", "with", "every", "request"];

/** A text prompt of about `tokens.length` tokens (common words are one token in the vocabularies used here). */
export function promptText(tokens: number[]): string {
  return tokens.map((t) => WORDS[t % WORDS.length]).join(" ");
}

function errorOf(e: unknown): { status?: number; message: string } {
  if (e instanceof OpenAI.APIError) return { ...(e.status !== undefined ? { status: e.status } : {}), message: e.message };
  return { message: e instanceof Error ? e.message : String(e) };
}

async function sendOne(client: OpenAI, req: TraceRequest, opts: DriveOptions, t0: number): Promise<RequestRecord> {
  const model = opts.modelFor(req);
  const rec: RequestRecord = {
    index: req.index, model, adapterIndex: opts.usesAdapters === false ? null : req.adapterIndex,
    promptTokens: req.prompt.length, maxTokens: req.maxTokens, scheduledMs: req.arrivalMs ?? null,
    startMs: performance.now() - t0, firstTokenMs: null, tokenTimesMs: [], endMs: 0, status: "ok", outputTokens: 0,
  };
  let usageTokens: number | undefined;
  try {
    // ignore_eos is the vLLM-style extension every system here takes; the client sends extra keys as they are.
    const body = {
      model, prompt: opts.promptFormat === "text" ? promptText(req.prompt) : req.prompt, max_tokens: req.maxTokens,
      temperature: 0, stream: true as const, stream_options: { include_usage: true }, ignore_eos: true,
    };
    const stream = await client.completions.create(body, { timeout: opts.requestTimeoutMs ?? 600_000 });
    for await (const chunk of stream) {
      const now = performance.now() - t0;
      const choice = chunk.choices?.[0];
      // A trailing chunk that only carries finish_reason (no text) is not a token.
      if (choice && !(choice.text === "" && choice.finish_reason)) {
        rec.firstTokenMs ??= now;
        rec.tokenTimesMs.push(now);
      }
      if (choice?.finish_reason) rec.finishReason = choice.finish_reason;
      if (chunk.usage) usageTokens = chunk.usage.completion_tokens;
    }
  } catch (e) {
    const err = errorOf(e);
    rec.status = "error";
    rec.error = err.message;
    if (err.status !== undefined) rec.httpStatus = err.status;
  }
  rec.endMs = performance.now() - t0;
  rec.outputTokens = usageTokens ?? rec.tokenTimesMs.length;
  return rec;
}

export async function driveTrace(trace: Trace, opts: DriveOptions): Promise<DriveResult> {
  const client = new OpenAI({ baseURL: opts.baseURL, apiKey: "openlora-bench", maxRetries: 0 });
  const total = trace.requests.length;
  const records: RequestRecord[] = new Array(total);
  let done = 0;
  const finish = (rec: RequestRecord) => {
    records[rec.index] = rec;
    opts.onDone?.(rec, ++done, total);
  };
  const startedAt = Date.now();
  const t0 = performance.now();
  const arrival = trace.spec.arrival;
  if (arrival.mode === "gamma") {
    await Promise.all(trace.requests.map((req) => new Promise<void>((resolve) => {
      const wait = Math.max(0, (req.arrivalMs ?? 0) - (performance.now() - t0));
      setTimeout(() => { void sendOne(client, req, opts, t0).then(finish).then(resolve); }, wait);
    })));
  } else {
    let next = 0;
    const worker = async () => {
      while (next < total) finish(await sendOne(client, trace.requests[next++]!, opts, t0));
    };
    await Promise.all(Array.from({ length: Math.max(1, arrival.concurrency) }, worker));
  }
  return { records, startedAt, wallMs: performance.now() - t0 };
}
