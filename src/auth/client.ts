/**
 * The client side of signed requests: a `fetch` that signs every request it sends, e.g. for the
 * official `openai` client —
 *
 *   const openai = new OpenAI({ baseURL: "http://127.0.0.1:8000/v1", apiKey: "unused", fetch: signingFetch(key, { chainId: 1 }) });
 *
 * — and session-key registration. `key` is a 0x private key or a viem local account.
 */
import type { Address, Hex } from "viem";
import { ERROR_TABLE, OpenLoraError, type ErrorCode } from "../errors.js";
import { DEFAULT_SIGNATURE_LIFETIME_S, MAX_SESSION_LIFETIME_S, signRequest, signSession, toSigner, type RequestSigner } from "./signed-request.js";

export interface SigningFetchOptions {
  /** The server's chain id (its ledger's; 1 off chain). */
  chainId: number;
  /** The agent acted for when `key` is a session key of it; default the key's own address. */
  agent?: Address;
  /** Seconds each signature lives; default DEFAULT_SIGNATURE_LIFETIME_S. */
  lifetimeS?: number;
  /** The fetch that sends; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Unix milliseconds; default Date.now. */
  now?: () => number;
}

export function signingFetch(key: Hex | RequestSigner, opts: SigningFetchOptions): typeof fetch {
  const signer = toSigner(key);
  const send = opts.fetch ?? globalThis.fetch;
  const now = opts.now ?? Date.now;
  const lifetime = opts.lifetimeS ?? DEFAULT_SIGNATURE_LIFETIME_S;
  return async (input, init) => {
    const req = new Request(input, init);
    const body = req.body === null ? undefined : new Uint8Array(await req.arrayBuffer());
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    // The signature is the credential: a bearer value (the openai client always sends one) would be a second.
    headers.delete("authorization");
    const signed = await signRequest(signer, {
      chainId: opts.chainId, method: req.method, path: url.pathname + url.search, body,
      ...(opts.agent ? { agent: opts.agent } : {}), expiry: BigInt(Math.floor(now() / 1000) + lifetime),
    });
    for (const [k, v] of Object.entries(signed)) headers.set(k, v);
    return send(req.url, { method: req.method, headers, body, signal: req.signal, redirect: req.redirect });
  };
}

export interface SessionOptions {
  chainId: number;
  /** The server's root, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine). */
  baseURL: string;
  fetch?: typeof fetch;
  now?: () => number;
}

function root(baseURL: string): string {
  return baseURL.replace(/\/+$/, "").replace(/\/v1$/, "");
}

async function post(f: typeof fetch, url: string, body: unknown): Promise<unknown> {
  const res = await f(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = (await res.json()) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    const code = json.error?.code;
    const known = typeof code === "string" && Object.hasOwn(ERROR_TABLE, code) ? (code as ErrorCode) : "INTERNAL";
    throw new OpenLoraError(known, json.error?.message ?? `HTTP ${res.status}`, { status: res.status });
  }
  return json;
}

/** Registers `sessionKey` to act for the agent (`agentKey`) for `lifetimeS` seconds (default and most: 24 h). */
export async function registerSession(agentKey: Hex | RequestSigner, sessionKey: Address, opts: SessionOptions & { lifetimeS?: number }): Promise<{ agent: string; key: string; expiry: string }> {
  const agent = toSigner(agentKey);
  const expiry = BigInt(Math.floor((opts.now ?? Date.now)() / 1000) + (opts.lifetimeS ?? MAX_SESSION_LIFETIME_S));
  const signature = await signSession(agent, opts.chainId, sessionKey, expiry);
  const f = signingFetch(agent, { chainId: opts.chainId, ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.now ? { now: opts.now } : {}) });
  return post(f, `${root(opts.baseURL)}/v1/auth/sessions`, { key: sessionKey, expiry: expiry.toString(), signature }) as Promise<{ agent: string; key: string; expiry: string }>;
}

/** Ends `sessionKey`'s session for the agent. */
export async function revokeSession(agentKey: Hex | RequestSigner, sessionKey: Address, opts: SessionOptions): Promise<{ revoked: boolean }> {
  const f = signingFetch(agentKey, { chainId: opts.chainId, ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.now ? { now: opts.now } : {}) });
  return post(f, `${root(opts.baseURL)}/v1/auth/sessions/revoke`, { key: sessionKey }) as Promise<{ revoked: boolean }>;
}
