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

export interface RetryDefaults {
  queueFullSeconds: number;
  notReadySeconds: number;
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
      return new OpenLoraError("INVALID_ARGUMENT", `Malformed JSON body: ${e.message}`);
  }
  const status = typeof e.statusCode === "number" ? e.statusCode : undefined;
  if (e instanceof SyntaxError && status === 400) return new OpenLoraError("INVALID_ARGUMENT", `Malformed JSON body: ${e.message}`);
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
    message,
    param: typeof details?.param === "string" ? details.param : null,
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
  return reply.code(e.status).type("application/json; charset=utf-8").send(errorBody(e));
}
