/**
 * Every failure the HTTP side answers with goes through here, so clients always get an
 * OpenAI-style body: `{"error": {"message", "type", "param", "code"}}`.
 *   - `code` is our registry code (src/errors.ts), e.g. "MODEL_NOT_SERVED", "QUEUE_FULL".
 *   - `type` is "invalid_request_error" for 4xx and "server_error" for 5xx.
 *   - `param` names the offending request field when there is one, else null.
 * The status comes from ERROR_TABLE; QUEUE_FULL and NOT_READY carry a Retry-After header.
 */
import type { FastifyReply } from "fastify";
import { ERROR_TABLE, OpenLoraError, type ErrorCode } from "../errors.js";

/** An unknown route (404): so that every error body carries a registry code. */
export const ROUTE_NOT_FOUND: ErrorCode = "ROUTE_NOT_FOUND";
export type HttpErrorCode = ErrorCode;

export interface HttpError {
  status: number;
  code: HttpErrorCode;
  message: string;
  param: string | null;
  /** Whole seconds for the Retry-After header. */
  retryAfterSeconds?: number;
}

export interface OpenAIErrorBody {
  error: {
    message: string;
    type: "invalid_request_error" | "server_error";
    param: string | null;
    code: string;
  };
}

/** How errors are answered: Retry-After defaults, and how a message is cleaned before it leaves. */
export interface RetryDefaults {
  queueFullSeconds: number;
  notReadySeconds: number;
  /** Replaces server paths in a message (see pathRedactor); default: none. */
  redact?: (message: string) => string;
}

/** The longest message an error body carries; longer ones are cut (an error never echoes a large input). */
export const MAX_ERROR_MESSAGE_CHARS = 400;

/**
 * A function that replaces each of `paths` (as given and as its real path, longest first) in a
 * message with its label, so error bodies name "<adapters>/x/adapter_config.json", never where the
 * server keeps its files.
 */
export function pathRedactor(paths: readonly { path: string; label: string }[], realpath: (p: string) => string | undefined): (message: string) => string {
  const pairs: [string, string][] = [];
  for (const { path, label } of paths) {
    for (const p of new Set([path, realpath(path)])) if (p && p.length > 1) pairs.push([p.replace(/\/+$/, ""), label]);
  }
  pairs.sort((a, b) => b[0].length - a[0].length);
  return (message) => {
    let out = message;
    for (const [p, label] of pairs) out = out.split(p).join(label);
    return out;
  };
}

function cleanMessage(message: string, retry: RetryDefaults): string {
  const m = retry.redact ? retry.redact(message) : message;
  return m.length > MAX_ERROR_MESSAGE_CHARS ? `${m.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : m;
}

/** V8's JSON.parse messages quote the input; keep only where it failed. */
function jsonParseMessage(e: { message: string }): string {
  const at = /position (\d+)/.exec(e.message);
  return `Malformed JSON body${at ? ` (at byte ${at[1]})` : ""}.`;
}

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === "string" && Object.hasOwn(ERROR_TABLE, x);
}

/** An INVALID_ARGUMENT naming the request field at fault. */
export function invalidArgument(param: string | null, message: string): OpenLoraError {
  return new OpenLoraError("INVALID_ARGUMENT", message, param === null ? undefined : { param });
}

/** Maps fastify's own errors (thrown before our handlers run) to registry codes. */
function fromFastifyError(e: { code?: unknown; statusCode?: unknown; message: string }): OpenLoraError | undefined {
  switch (e.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new OpenLoraError("REQUEST_TOO_LARGE", "The request body is larger than the server accepts.");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new OpenLoraError("INVALID_ARGUMENT", "Unsupported Content-Type: send the body as application/json.");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new OpenLoraError("INVALID_ARGUMENT", "The request body is empty; expected a JSON object.");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new OpenLoraError("INVALID_ARGUMENT", jsonParseMessage(e));
  }
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  if (e instanceof SyntaxError && status === 400) return new OpenLoraError("INVALID_ARGUMENT", jsonParseMessage(e));
  if (status === 413) return new OpenLoraError("REQUEST_TOO_LARGE", "The request body is larger than the server accepts.");
  if (status !== undefined && status >= 400 && status < 500) return new OpenLoraError("INVALID_ARGUMENT", e.message);
  return undefined;
}

function wholeSeconds(x: unknown, fallback: number): number {
  const s = typeof x === "number" && Number.isFinite(x) && x > 0 ? x : fallback;
  return Math.max(1, Math.ceil(s));
}

/**
 * Normalizes anything thrown or received: OpenLoraError, the engine's WireError (plain
 * `{code, message, details}` after structured clone), fastify errors, or a bug (→ INTERNAL,
 * without leaking its message).
 */
export function toHttpError(e: unknown, retry: RetryDefaults): HttpError {
  let code: ErrorCode = "INTERNAL";
  let message = "Internal server error.";
  let details: Record<string, unknown> | undefined;
  if (e instanceof OpenLoraError) {
    ({ code, message, details } = e);
  } else if (typeof e === "object" && e !== null && isErrorCode((e as { code?: unknown }).code)) {
    const w = e as { code: ErrorCode; message?: unknown; details?: unknown };
    code = w.code;
    message = typeof w.message === "string" ? w.message : ERROR_TABLE[code].summary;
    details = typeof w.details === "object" && w.details !== null ? (w.details as Record<string, unknown>) : undefined;
  } else if (e instanceof Error) {
    const mapped = fromFastifyError(e as Error & { code?: unknown; statusCode?: unknown });
    if (mapped) ({ code, message, details } = mapped);
  }
  const out: HttpError = {
    status: ERROR_TABLE[code].status,
    code,
    message: cleanMessage(message, retry),
    param: typeof details?.param === "string" ? details.param.slice(0, 128) : null,
  };
  if (code === "QUEUE_FULL") out.retryAfterSeconds = wholeSeconds(details?.retryAfterSeconds, retry.queueFullSeconds);
  if (code === "NOT_READY") out.retryAfterSeconds = wholeSeconds(details?.retryAfterSeconds, retry.notReadySeconds);
  return out;
}

export function errorBody(e: HttpError): OpenAIErrorBody {
  return {
    error: {
      message: e.message,
      type: e.status >= 500 ? "server_error" : "invalid_request_error",
      param: e.param,
      code: e.code,
    },
  };
}

export function sendHttpError(reply: FastifyReply, e: HttpError): FastifyReply {
  if (e.retryAfterSeconds !== undefined) reply.header("retry-after", String(e.retryAfterSeconds));
  if (e.status === 401) reply.header("www-authenticate", 'Bearer realm="openlora"');
  return reply.code(e.status).type("application/json; charset=utf-8").send(errorBody(e));
}
