/**
 * The HTTP server: OpenAI-compatible completions and chat, vLLM-style adapter management,
 * health and Prometheus metrics, over an engine that may still be loading.
 *
 *   const slot: EngineSlot = { state: "loading", engine: undefined };
 *   const app = await buildServer(slot);
 *   await app.listen({ port: 8000 });
 *   slot.engine = await startEngine(...); slot.state = "ready";
 */
import { randomBytes } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { SignedContext } from "../auth/authenticate.js";
import { registerAuthRoutes } from "../auth/routes.js";
import { OpenLoraError } from "../errors.js";
import type { Ledger } from "../ledger/ledger.js";
import { SignedRequestStore } from "../ledger/nonces.js";
import { installAccess, OPERATOR_TOKEN_PREFIX } from "./access.js";
import { registerAdminRoutes } from "./admin-routes.js";
import { registerChainRoutes } from "./chain-routes.js";
import { registerGenerationRoutes } from "./completions.js";
import { faultInjectionFromEnv } from "./fault-injection.js";
import { DEFAULT_BODY_LIMIT_BYTES, resolveLimits, type EngineSlot, type ServerContext, type ServerOptions } from "./context.js";
import { ROUTE_NOT_FOUND, sendHttpError, toHttpError } from "./http-errors.js";
import { registerLedgerRoutes, type AttributionContext } from "./ledger-routes.js";
import { ServerMetrics } from "./metrics.js";

export type { EngineSlot, ServerOptions } from "./context.js";
export { ROUTE_NOT_FOUND } from "./http-errors.js";

export async function buildServer(slot: EngineSlot, opts: ServerOptions = {}): Promise<FastifyInstance> {
  // Tests only; refused (FAULT_INJECTION_REFUSED) unless NODE_ENV=test, before anything starts.
  const fault = faultInjectionFromEnv(process.env);
  // forceCloseConnections: idle keep-alive sockets would otherwise hold close() (and a drain) for seconds.
  const app = Fastify({
    logger: withRedaction(opts.logger ?? false), bodyLimit: opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES, forceCloseConnections: true,
    // Fastify's own answers to a URL it cannot route (a path segment over maxParamLength, a bad
    // percent-encoding) quote the whole URL: answer them in our shape, without echoing it.
    frameworkErrors: (error, _request, reply) => {
      const tooLong = error.code === "FST_ERR_MAX_PARAM_LENGTH";
      return sendHttpError(reply, tooLong
        ? { status: 413, code: "REQUEST_TOO_LARGE", message: "A path segment of the URL is longer than the server accepts.", param: null }
        : { status: 400, code: "INVALID_ARGUMENT", message: "The URL is not valid (e.g. a malformed percent-encoding).", param: null });
    },
  });
  const ctx: ServerContext = { slot, ...resolveLimits(opts), metrics: new ServerMetrics(), log: app.log, ...(fault ? { fault } : {}) };
  if (fault) app.log.warn(`fault injection on (tests only): one output token altered in ${fault.describe()} before its receipt is signed`);
  const signed = signedContext(slot, opts);
  installAccess(app, opts.operatorToken ?? `${OPERATOR_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`,
    () => slot.attribution?.ledger, () => slot.attribution?.ledger.operatorParty, signed);

  // Counted when the response ends or the connection drops, whichever comes first, so
  // hijacked streams and abandoned requests are counted too (499 = client went away unanswered).
  app.addHook("onRequest", async (request, reply) => {
    let counted = false;
    const count = (): void => {
      if (counted) return;
      counted = true;
      const res = reply.raw;
      const status = res.writableFinished || res.headersSent ? res.statusCode : 499;
      ctx.metrics.requests.inc({ route: request.routeOptions.url ?? "unmatched", status: String(status) });
    };
    reply.raw.once("finish", count);
    reply.raw.once("close", count);
  });

  app.setErrorHandler((error, request, reply) => {
    const he = toHttpError(error, ctx.retry);
    if (he.status >= 500) request.log.error({ err: error }, "request failed");
    ctx.metrics.errors.inc({ code: he.code });
    return sendHttpError(reply, he);
  });

  app.setNotFoundHandler((request, reply) => {
    ctx.metrics.errors.inc({ code: ROUTE_NOT_FOUND });
    return sendHttpError(reply, {
      status: 404,
      code: ROUTE_NOT_FOUND,
      message: `No route ${request.method} ${request.url.split("?")[0]}.`,
      param: null,
    });
  });

  registerGenerationRoutes(app, ctx);
  registerAdminRoutes(app, ctx);
  registerLedgerRoutes(app, lazyAttribution(slot));
  registerChainRoutes(app, slot);
  registerAuthRoutes(app, signed);
  return app;
}

/** Signed requests keep their nonces in the ledger's file; without a ledger there are none. */
function signedContext(slot: EngineSlot, opts: ServerOptions): () => SignedContext | undefined {
  const stores = new WeakMap<Ledger, SignedRequestStore>();
  return () => {
    const ledger = slot.attribution?.ledger;
    if (!ledger) return undefined;
    let store = stores.get(ledger);
    if (!store) stores.set(ledger, (store = new SignedRequestStore(ledger.db)));
    return { store, chainId: opts.chainId ?? ledger.domainOptions.chainId ?? 1, now: opts.now ?? Date.now };
  };
}

/** Request logs never carry credentials, whatever serializers a caller configures. */
function withRedaction(logger: FastifyServerOptions["logger"]): FastifyServerOptions["logger"] {
  if (logger === false || logger === undefined) return false;
  const base = logger === true ? {} : (logger as Record<string, unknown>);
  return { ...base, redact: { paths: ["req.headers.authorization", "req.headers.cookie", "headers.authorization"], censor: "[redacted]" } } as FastifyServerOptions["logger"];
}

/** The ledger routes exist from the start; until the engine and ledger are up they answer 503. */
function lazyAttribution(slot: EngineSlot): AttributionContext {
  const need = () => {
    if (!slot.attribution) throw new OpenLoraError("NOT_READY", slot.state === "ready" ? "Attribution is off on this server." : "The ledger is not open yet.");
    return slot.attribution;
  };
  // A stand-in whose every member is looked up on the real ledger at use, so routes may hold it.
  const ledger = new Proxy({} as Ledger, {
    get: (_target, prop) => {
      const real = need().ledger;
      const v = Reflect.get(real, prop, real) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(real) : v;
    },
  });
  return {
    ledger,
    tokenize: (text) => need().tokenize(text),
    indexVersion: (datanet, version) => need().indexVersion(datanet, version),
    servedContentHash: (id) => need().servedContentHash(id),
  };
}
