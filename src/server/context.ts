/** What every route shares: the engine slot, the resolved options and the metrics. */
import type { ChainNode } from "../chain/node.js";
import type { FastifyBaseLogger, FastifyServerOptions } from "fastify";
import type { AttributionService } from "./attribution.js";
import type { EngineHandle } from "../engine/protocol.js";
import type { OutputTokenFault } from "./fault-injection.js";
import { OpenLoraError } from "../errors.js";
import { realpathSync } from "node:fs";
import { pathRedactor, type RetryDefaults } from "./http-errors.js";
import type { ServerMetrics } from "./metrics.js";
import type { RequestLimits } from "./request-parse.js";

/**
 * The engine as the serve command holds it: the server listens at once while the model loads
 * ("loading"), gets its engine when ready ("ready"), and refuses new work on SIGTERM ("draining").
 */
export interface EngineSlot {
  state: "loading" | "ready" | "draining";
  engine: EngineHandle | undefined;
  /** Shown in 503 bodies, e.g. what is loading. */
  message?: string;
  /** Receipts, fees and the ledger; absent = inference without attribution. */
  attribution?: AttributionService;
  /** The node's chain connection (docs/chain.md); absent = the ledger holds the money. */
  chain?: ChainNode;
}

export interface ServerOptions {
  /** Largest request body in bytes; larger → 413 REQUEST_TOO_LARGE. Default 4 MiB. */
  bodyLimitBytes?: number;
  /** Most stop strings per request. Default 4 (OpenAI's). */
  maxStopStrings?: number;
  /** Largest max_tokens a request may ask for. Default: none (the context length bounds it). */
  maxTokensLimit?: number;
  /** Fastify's (pino) logger option. Default false. */
  logger?: FastifyServerOptions["logger"];
  /** Retry-After for QUEUE_FULL when the engine gives no retryAfterSeconds. Default 1. */
  maxQueueRetryAfterSeconds?: number;
  /** Retry-After while the model loads. Default 5. */
  notReadyRetryAfterSeconds?: number;
  /**
   * The operator's credential (src/server/access.ts), required by every endpoint that changes the
   * node's state. Default: a random one nobody holds (those endpoints are then closed).
   */
  operatorToken?: string;
  /** The EIP-712 chain id of signed requests (src/auth/signed-request.ts). Default: the ledger's (1 unless on a chain). */
  chainId?: number;
  /** Unix milliseconds, for signature and session expiry; injectable for tests. Default Date.now. */
  now?: () => number;
  /** Server paths that error bodies must not show, with the placeholder shown instead (e.g. the adapters folder → "<adapters>"). */
  redactPaths?: { path: string; label: string }[];
}

export interface ServerContext {
  slot: EngineSlot;
  limits: RequestLimits;
  retry: RetryDefaults;
  metrics: ServerMetrics;
  log?: FastifyBaseLogger;
  /** Tests only (src/server/fault-injection.ts): OPENLORA_FAULT_INJECTION with NODE_ENV=test. */
  fault?: OutputTokenFault;
}

export const DEFAULT_BODY_LIMIT_BYTES = 4 * 1024 * 1024;

export function resolveLimits(opts: ServerOptions): { limits: RequestLimits; retry: RetryDefaults } {
  const redact = opts.redactPaths?.length ? pathRedactor(opts.redactPaths, realpathOrUndefined) : undefined;
  return {
    limits: { maxStopStrings: opts.maxStopStrings ?? 4, maxTokensLimit: opts.maxTokensLimit },
    retry: { queueFullSeconds: opts.maxQueueRetryAfterSeconds ?? 1, notReadySeconds: opts.notReadyRetryAfterSeconds ?? 5, ...(redact ? { redact } : {}) },
  };
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

/** The engine, or NOT_READY / SHUTTING_DOWN (503): also while its thread restarts after a failure. */
export function requireEngine(slot: EngineSlot): EngineHandle {
  if (slot.state === "draining") {
    throw new OpenLoraError("SHUTTING_DOWN", slot.message ?? "The server is shutting down and accepts no new requests.");
  }
  if (slot.state !== "ready" || slot.engine === undefined) {
    throw new OpenLoraError("NOT_READY", slot.message ?? "The model is still loading.");
  }
  const state = slot.engine.state ?? "ready";
  if (state !== "ready") {
    throw new OpenLoraError("NOT_READY", state === "restarting" ? "The engine thread failed and is restarting." : "The engine thread failed.");
  }
  return slot.engine;
}
