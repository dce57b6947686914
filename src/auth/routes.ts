/**
 * Session keys: POST /v1/auth/sessions and /v1/auth/sessions/revoke, each a request signed by the
 * agent's own key (access "agent-signed": a session key cannot extend itself or mint others).
 *
 *   register  { key: 0x…address, expiry: unix seconds, signature: the agent's EIP-712 Session{agent, key, expiry} }
 *             → { agent, key, expiry }; registering a key again replaces its session
 *   revoke    { key } → { agent, key, revoked: true | false (no such session) }
 *
 * The Session signature is kept with the row: a session's grant can be shown to anyone, not only
 * asserted by this node.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { OpenLoraError } from "../errors.js";
import { invalidArgument } from "../server/http-errors.js";
import { objectOf } from "../server/ledger-routes-parse.js";
import type { SignedContext } from "./authenticate.js";
import { checkExpiry, MAX_SESSION_LIFETIME_S, verifySession, type SessionMessage } from "./signed-request.js";
import type { Address, Hex } from "viem";

function agentOf(request: FastifyRequest): Address {
  const p = request.principal;
  if (p.kind !== "account" || p.signed !== "agent") throw new OpenLoraError("INTERNAL", "session routes reached without an agent-signed principal");
  return p.id as Address;
}

function keyField(o: Record<string, unknown>): Address {
  const v = o.key;
  if (typeof v !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(v)) throw invalidArgument("key", "key must be the session key's address: 0x and 40 hex digits.");
  return v.toLowerCase() as Address;
}

function need(ctx: () => SignedContext | undefined): SignedContext {
  const c = ctx();
  if (!c) throw new OpenLoraError("NOT_READY", "The ledger is not open yet.");
  return c;
}

export function registerAuthRoutes(app: FastifyInstance, signed: () => SignedContext | undefined): void {
  app.post("/v1/auth/sessions", async (request) => {
    const ctx = need(signed);
    const agent = agentOf(request);
    const o = objectOf(request.body, ["key", "expiry", "signature"]);
    const key = keyField(o);
    if (key === agent) throw invalidArgument("key", "key must be another key than the agent's own.");
    const e = o.expiry;
    if (!((typeof e === "number" && Number.isSafeInteger(e) && e >= 0) || (typeof e === "string" && /^[0-9]{1,20}$/.test(e)))) {
      throw invalidArgument("expiry", "expiry must be unix seconds: a non-negative integer or a decimal string.");
    }
    const expiry = BigInt(e);
    const nowS = ctx.now() / 1000;
    checkExpiry(expiry, nowS, MAX_SESSION_LIFETIME_S, "The session");
    const sig = o.signature;
    if (typeof sig !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(sig)) throw new OpenLoraError("SIGNATURE_INVALID", "signature must be 0x and 130 hex digits: the agent's EIP-712 signature of Session{agent, key, expiry}.", { param: "signature" });
    const session: SessionMessage = { agent, key, expiry };
    if (!verifySession(ctx.chainId, session, sig as Hex)) throw new OpenLoraError("SIGNATURE_INVALID", `signature is not ${agent}'s signature of Session{agent, key, expiry}.`, { param: "signature" });
    ctx.store.addSession(agent, key, expiry, sig.toLowerCase(), nowS);
    return { agent, key, expiry: expiry.toString() };
  });

  app.post("/v1/auth/sessions/revoke", async (request) => {
    const ctx = need(signed);
    const agent = agentOf(request);
    const key = keyField(objectOf(request.body, ["key"]));
    return { agent, key, revoked: ctx.store.revokeSession(agent, key, ctx.now() / 1000) };
  });
}
