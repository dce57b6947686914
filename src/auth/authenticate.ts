/**
 * Signed requests on the server, in three steps of Fastify's lifecycle (installed by
 * src/server/access.ts):
 *   onRequest    the headers are parsed (SIGNATURE_INVALID), the expiry checked (SIGNATURE_EXPIRED)
 *                and the route's rule applied to the address claimed — all before the body is read;
 *   preParsing   the raw body bytes are kept while Fastify reads them (within its body limit);
 *   preValidation the signature over method, path, body hash, nonce and expiry is checked, a
 *                session key's registration looked up, and only then the nonce recorded and
 *                `request.principal` set.
 * Anything refused before the nonce is recorded writes nothing.
 */
import { Transform, pipeline, type Readable } from "node:stream";
import type { FastifyRequest } from "fastify";
import { OpenLoraError } from "../errors.js";
import type { SignedRequestStore } from "../ledger/nonces.js";
import { checkExpiry, MAX_SIGNATURE_LIFETIME_S, readSignedHeaders, verifySignedRequest, type SignedHeaders } from "./signed-request.js";

/** What the server needs to check signed requests. */
export interface SignedContext {
  store: SignedRequestStore;
  chainId: number;
  /** Unix milliseconds. */
  now(): number;
}

export type SignedPrincipal = { kind: "account"; id: string; signed: "agent" | "session" };

interface Pending {
  claim: SignedHeaders;
  chunks: Buffer[];
  overflow: boolean;
}

const pending = new WeakMap<FastifyRequest, Pending>();

export function principalClaimed(claim: SignedHeaders): SignedPrincipal {
  return { kind: "account", id: claim.agent, signed: claim.session ? "session" : "agent" };
}

/**
 * The claim of a signed request, checked as far as the headers allow (format and expiry), or
 * undefined when the request is not signed. `ctx` undefined: the server keeps no ledger.
 */
export function beginSigned(request: FastifyRequest, ctx: SignedContext | undefined): SignedHeaders | undefined {
  const claim = readSignedHeaders(request.headers);
  if (!claim) return undefined;
  if (!ctx) throw new OpenLoraError("UNAUTHENTICATED", "This server keeps no ledger, so it cannot remember nonces: signed requests are not accepted here.");
  checkExpiry(claim.expiry, ctx.now() / 1000, MAX_SIGNATURE_LIFETIME_S);
  pending.set(request, { claim, chunks: [], overflow: false });
  return claim;
}

/** preParsing: a signed request's body stream, with its bytes kept (up to the route's body limit). */
export function captureBody(request: FastifyRequest, payload: Readable): Readable {
  const p = pending.get(request);
  // Fastify reads no body for GET and HEAD: the signature is over the empty body.
  if (!p || request.method === "GET" || request.method === "HEAD") return payload;
  const limit = request.routeOptions.bodyLimit ?? Infinity;
  let seen = 0;
  const tee = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      // Past the limit Fastify refuses the body; keep nothing more while the socket drains.
      if (seen <= limit) p.chunks.push(chunk);
      else p.overflow = true;
      done(null, chunk);
    },
  });
  pipeline(payload, tee, () => {});
  return tee;
}

/**
 * preValidation: verifies the signature over the body read, the session key's registration,
 * then records the nonce; returns the principal.
 */
export function completeSigned(request: FastifyRequest, ctx: SignedContext | undefined): SignedPrincipal | undefined {
  const p = pending.get(request);
  if (!p) return undefined;
  pending.delete(request);
  if (!ctx) throw new OpenLoraError("NOT_READY", "The ledger is not open.");
  if (p.overflow) throw new OpenLoraError("REQUEST_TOO_LARGE", "The request body is larger than the server accepts.");
  const { claim } = p;
  const nowS = ctx.now() / 1000;
  const body = Buffer.concat(p.chunks);
  verifySignedRequest(claim, { chainId: ctx.chainId, method: request.method, path: request.raw.url ?? request.url, body }, nowS);
  if (claim.session) {
    const state = ctx.store.session(claim.agent, claim.session, nowS);
    if (state === "none") throw new OpenLoraError("SIGNATURE_INVALID", `${claim.session} is not a session key of ${claim.agent} (never registered, or revoked).`);
    if (state === "expired") throw new OpenLoraError("SIGNATURE_EXPIRED", `The session of key ${claim.session} for ${claim.agent} has expired.`);
  }
  ctx.store.claimNonce(claim.agent, claim.nonce, claim.expiry, nowS);
  return principalClaimed(claim);
}
