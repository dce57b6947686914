/**
 * Who may call what: every route's requirement in one table (ENDPOINTS), enforced by one hook
 * before the body is read, and rendered into docs/api-access.md (a test keeps the two equal and
 * checks that every registered route has a row).
 *
 * Credentials travel as `Authorization: Bearer <token>`:
 *   - the operator's token ("olo_…", generated at first start into a 0600 file, src/cli/credentials.ts);
 *   - an account's API key ("olk_…", issued when the operator creates the account; the ledger keeps
 *     only its SHA-256, src/ledger/keys.ts).
 * Or the request is signed (src/auth/signed-request.ts): the x-openlora-address, -nonce, -expiry and
 * -signature headers carry an EIP-712 signature over method, path + query, keccak256 of the body,
 * nonce and expiry (at most MAX_SIGNATURE_LIFETIME_S ahead) by that address — or by a session key
 * the address registered (x-openlora-session) — and the request acts as the account whose id is the
 * lowercase address. The format and expiry, and the route's rule for the address claimed, are
 * checked before the body is read; the signature once the body is (its hash needs the bytes), and
 * the nonce is recorded only when everything holds (src/auth/authenticate.ts). A signed request
 * that also sends one of our bearer tokens is refused: one credential per request.
 * A request without a credential, or with a bearer value that is neither (clients that must send
 * *some* key send "EMPTY", "unused", …), is anonymous. A token in our formats that matches nothing
 * (wrong, revoked) is refused with 401 wherever it is sent: a client holding a dead key learns it.
 * Identities that reach receipts, URLs and logs are public account ids, never credentials.
 *
 * Anything that reads is public (the ledger is transparent: receipts, balances, stakes and events
 * are meant to be checked by anyone), except the whole-ledger verification, which costs a
 * signature recovery per entry and is the operator's. Anything that writes needs a credential.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { OpenLoraError } from "../errors.js";
import { beginSigned, captureBody, completeSigned, principalClaimed, type SignedContext } from "../auth/authenticate.js";
import { looksLikeApiKey } from "../ledger/keys.js";

export const OPERATOR_TOKEN_PREFIX = "olo_";

export type Principal =
  | { kind: "anonymous" }
  | { kind: "operator" }
  /** signed: how a signed request authenticated (absent for an API key). */
  | { kind: "account"; id: string; signed?: "agent" | "session" };

/**
 * public             anyone
 * inference          anyone for free requests; a paid request needs an account's key (it pays)
 * operator           the operator's token
 * account            any account's key; the account acts as itself (staker, contributor, owner)
 * self               the key of the account named by :id
 * self-or-operator   that, or the operator's token
 * party-or-operator  the key of the account named by :party, or the operator's token for the operator's own party
 * agent-signed       a request signed by the agent's own key (not a session key, not an API key)
 * An account's key is its API key or a request signed by it (or by a session key it registered).
 */
export type Access = "public" | "inference" | "operator" | "account" | "self" | "self-or-operator" | "party-or-operator" | "agent-signed";

export interface EndpointRule {
  method: "GET" | "POST" | "PUT";
  url: string;
  access: Access;
  /** What the route does, and any rule beyond `access` that its handler enforces. */
  what: string;
}

export const ENDPOINTS: readonly EndpointRule[] = [
  { method: "POST", url: "/v1/completions", access: "inference", what: "text completion (SSE with stream: true)" },
  { method: "POST", url: "/v1/chat/completions", access: "inference", what: "chat completion (SSE with stream: true)" },
  { method: "GET", url: "/v1/models", access: "public", what: "the base model and every adapter" },
  { method: "GET", url: "/v1/models/:model", access: "public", what: "one model" },
  { method: "POST", url: "/v1/load_lora_adapter", access: "operator", what: "register and load an adapter from a path inside --adapters" },
  { method: "POST", url: "/v1/unload_lora_adapter", access: "operator", what: "unregister an adapter" },
  { method: "GET", url: "/health", access: "public", what: "200 when the engine can serve, else 503" },
  { method: "GET", url: "/metrics", access: "public", what: "Prometheus metrics" },
  { method: "POST", url: "/v1/ledger/models", access: "operator", what: "list a base model or adapter with prices, developers, lineage" },
  { method: "GET", url: "/v1/ledger/models", access: "public", what: "listed models" },
  { method: "GET", url: "/v1/ledger/models/:id", access: "public", what: "one listed model" },
  { method: "POST", url: "/v1/datanets", access: "operator", what: "create a Datanet for an owner account" },
  { method: "GET", url: "/v1/datanets/:id", access: "public", what: "a Datanet and its versions" },
  { method: "POST", url: "/v1/datanets/:id/records", access: "account", what: "contribute a record; the caller is the contributor; 409 if it repeats an approved record verbatim" },
  { method: "GET", url: "/v1/datanets/:id/records", access: "public", what: "records and their status (no contents)" },
  { method: "POST", url: "/v1/datanets/:id/records/:record/approve", access: "account", what: "approve a pending record: the owner decides, an approver votes (k of n); 409 if it repeats an approved record verbatim" },
  { method: "POST", url: "/v1/datanets/:id/records/:record/reject", access: "account", what: "reject a pending record: the owner decides, an approver votes" },
  { method: "GET", url: "/v1/datanets/:id/records/:record/votes", access: "public", what: "a record's status and its approvers' votes (who, which, when, counted)" },
  { method: "GET", url: "/v1/datanets/:id/approvers", access: "public", what: "the Datanet's approval committee: approvers and threshold k" },
  { method: "PUT", url: "/v1/datanets/:id/approvers", access: "account", what: "replace the approval committee (k of n, n ≤ 32) and re-evaluate pending votes; the caller must own the Datanet" },
  { method: "POST", url: "/v1/datanets/:id/publish", access: "account", what: "publish the next version; the caller must own the Datanet" },
  { method: "GET", url: "/v1/datanets/:id/versions", access: "public", what: "published versions" },
  { method: "POST", url: "/v1/accounts/agents", access: "operator", what: "create an account; answers its API key, once" },
  { method: "GET", url: "/v1/accounts/agents/:id", access: "public", what: "an account's balance, reserve and own stake" },
  { method: "POST", url: "/v1/accounts/agents/:id/keys", access: "self-or-operator", what: "a new API key for the account; its earlier keys stop working" },
  { method: "POST", url: "/v1/accounts/agents/:id/deposit", access: "operator", what: "credit a deposit the operator received (signed event)" },
  { method: "POST", url: "/v1/accounts/agents/:id/withdraw", access: "self-or-operator", what: "pay out of the available balance (signed event)" },
  { method: "POST", url: "/v1/accounts/agents/:id/stake", access: "self", what: "move balance into the account's own stake (signed event)" },
  { method: "POST", url: "/v1/accounts/agents/:id/unstake", access: "self", what: "move own stake back to the balance (signed event)" },
  { method: "POST", url: "/v1/stakes", access: "account", what: "stake from the caller's balance on a model (signed event)" },
  { method: "POST", url: "/v1/stakes/unstake", access: "account", what: "return the caller's stake on a model to its balance (signed event)" },
  { method: "GET", url: "/v1/chain", access: "public", what: "the node's chain, contracts, followed block and posted epochs" },
  { method: "GET", url: "/v1/chain/claims/:account", access: "public", what: "the account's leaves and Merkle proofs in the latest posted payout root (the claimant sends the transaction)" },
  { method: "GET", url: "/v1/balances", access: "public", what: "every party's earned balance" },
  { method: "GET", url: "/v1/balances/:party", access: "public", what: "one party's earned balance" },
  { method: "POST", url: "/v1/balances/:party/payout", access: "party-or-operator", what: "pay out of a party's earned balance (signed event)" },
  { method: "GET", url: "/v1/receipts/:id", access: "public", what: "a signed receipt with its EIP-712 inputs and Merkle proof" },
  { method: "GET", url: "/v1/ledger/events", access: "public", what: "signed account events (?account=, ?after=, ?limit=)" },
  { method: "GET", url: "/v1/ledger/checkpoint", access: "public", what: "a checkpoint of the current chain heads, signed now" },
  { method: "POST", url: "/v1/epochs/close", access: "operator", what: "close an epoch: Merkle root of new receipts and a signed checkpoint" },
  { method: "GET", url: "/v1/epochs", access: "public", what: "closed epochs with their signed checkpoints" },
  { method: "GET", url: "/v1/ledger/verify", access: "operator", what: "verify both chains and audit every balance (costly: one signature recovery per entry)" },
  { method: "POST", url: "/v1/auth/sessions", access: "agent-signed", what: "register a session key that acts for the caller until its expiry (a Session signed by the agent)" },
  { method: "POST", url: "/v1/auth/sessions/revoke", access: "agent-signed", what: "end a session key of the caller" },
];

const RULES = new Map<string, EndpointRule>(ENDPOINTS.map((e) => [`${e.method} ${e.url}`, e]));

export function ruleFor(method: string, url: string | undefined): EndpointRule | undefined {
  return url === undefined ? undefined : RULES.get(`${method === "HEAD" ? "GET" : method} ${url}`);
}

export interface Authenticator {
  /** The account a live API key names, or undefined (no ledger, unknown or revoked key). */
  resolveApiKey(key: string): string | undefined;
}

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal;
  }
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

function bearer(header: string | string[] | undefined): string | undefined {
  if (typeof header !== "string") return undefined;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[1] : undefined;
}

/** Who the request's credential names; UNAUTHENTICATED for a token in our formats that matches nothing. */
export function principalOf(header: string | string[] | undefined, operatorToken: string, auth: Authenticator | undefined): Principal {
  const token = bearer(header);
  if (token === undefined) return { kind: "anonymous" };
  if (token.length === operatorToken.length && timingSafeEqual(sha256(token), sha256(operatorToken))) return { kind: "operator" };
  if (looksLikeApiKey(token)) {
    const id = auth?.resolveApiKey(token);
    if (id !== undefined) return { kind: "account", id };
  }
  if (looksLikeApiKey(token) || token.startsWith(OPERATOR_TOKEN_PREFIX)) {
    throw new OpenLoraError("UNAUTHENTICATED", "The credential is not valid (unknown, mistyped or revoked).");
  }
  return { kind: "anonymous" };
}

function need(p: Principal, ok: boolean, what: string): void {
  if (ok) return;
  if (p.kind === "anonymous") throw new OpenLoraError("UNAUTHENTICATED", `This endpoint needs ${what}: send it as Authorization: Bearer <token>, or sign the request (docs/api-access.md).`);
  throw new OpenLoraError("PERMISSION_DENIED", `This endpoint needs ${what}; the credential sent is not it.`);
}

/** Enforces `rule` for principal `p` (params: the route's path parameters). */
export function authorize(rule: EndpointRule, p: Principal, params: Record<string, string>, operatorParty: string | undefined): void {
  switch (rule.access) {
    case "public":
    case "inference":
      return;
    case "operator":
      return need(p, p.kind === "operator", "the operator's token");
    case "account":
      return need(p, p.kind === "account", "an account's API key");
    case "self":
      return need(p, p.kind === "account" && p.id === params.id, `the API key of account ${params.id ?? "?"}`);
    case "self-or-operator":
      return need(p, p.kind === "operator" || (p.kind === "account" && p.id === params.id), `the API key of account ${params.id ?? "?"} or the operator's token`);
    case "party-or-operator":
      return need(p, (p.kind === "account" && p.id === params.party) || (p.kind === "operator" && params.party === operatorParty),
        `the API key of ${params.party ?? "?"}${params.party === operatorParty ? " or the operator's token" : ""}`);
    case "agent-signed":
      return need(p, p.kind === "account" && p.signed === "agent", "a request signed by the agent's own key (not a session key or an API key)");
    default:
      rule.access satisfies never;
  }
}

/**
 * Installs the access hook: every request gets `request.principal` and is authorized by its
 * route's row. Registering a route without a row fails at startup, so no route ships unguarded.
 * Call before any route is registered.
 */
export function installAccess(
  app: FastifyInstance, operatorToken: string, auth: () => Authenticator | undefined, operatorParty: () => string | undefined,
  signed: () => SignedContext | undefined = () => undefined,
): void {
  app.addHook("onRoute", (route) => {
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) {
      if (!ruleFor(m, route.url)) throw new OpenLoraError("INTERNAL", `route ${m} ${route.url} has no row in ENDPOINTS (src/server/access.ts)`);
    }
  });
  app.decorateRequest("principal", null as never);
  app.addHook("onRequest", async (request: FastifyRequest) => {
    request.principal = { kind: "anonymous" };
    const url = request.routeOptions.url;
    if (url === undefined) return; // no route: the not-found handler answers
    const rule = ruleFor(request.method, url);
    if (!rule) throw new OpenLoraError("INTERNAL", `Route ${request.method} ${url} has no access rule.`);
    const params = (request.params ?? {}) as Record<string, string>;
    const bearerPrincipal = principalOf(request.headers.authorization, operatorToken, auth());
    const claim = beginSigned(request, signed());
    if (claim) {
      if (bearerPrincipal.kind !== "anonymous") throw new OpenLoraError("UNAUTHENTICATED", "Send one credential: a signed request or a bearer token, not both.");
      return authorize(rule, principalClaimed(claim), params, operatorParty());
    }
    request.principal = bearerPrincipal;
    authorize(rule, request.principal, params, operatorParty());
  });
  app.addHook("preParsing", async (request, _reply, payload) => captureBody(request, payload));
  app.addHook("preValidation", async (request) => {
    const p = completeSigned(request, signed());
    if (p) request.principal = p;
  });
}

/** The table as markdown (docs/api-access.md holds exactly this; a test checks). */
export function accessTableMarkdown(): string {
  const rows = ENDPOINTS.map((e) => `| \`${e.method} ${e.url}\` | ${e.access} | ${e.what} |`);
  return ["| endpoint | who may call | what |", "|---|---|---|", ...rows].join("\n");
}
