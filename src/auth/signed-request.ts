/**
 * Signed requests: an agent is a chain address and proves it on every request with an EIP-712
 * signature over what the request does (method, path + query as sent, keccak256 of the raw body
 * bytes), a nonce the server remembers until the signature's expiry (no replay), and that expiry.
 * A session key (another secp256k1 key) may sign instead once the agent signed a `Session` for it.
 * Pure functions: the client side builds and signs, the server side parses and verifies; the
 * nonce and session bookkeeping is src/ledger/nonces.ts, the HTTP glue src/auth/authenticate.ts.
 *
 * Wire format (all headers lowercase-insensitive, each exactly once):
 *   x-openlora-address    the agent: 0x + 40 hex (any case); the account id is its lowercase form
 *   x-openlora-nonce      0x + 64 hex (bytes32; random per request)
 *   x-openlora-expiry     unix seconds, decimal (uint64); now ≤ expiry ≤ now + MAX_SIGNATURE_LIFETIME_S
 *   x-openlora-signature  0x + 130 hex: r ‖ s ‖ v, v ∈ {27, 28}, low s
 *   x-openlora-session    (optional) the session key's address when the session key signed
 *
 * The struct carries the agent's address too, so a session key registered by several agents
 * signs for exactly one of them per request (the header alone would be swappable).
 */
import { hashTypedData, hexToBytes, keccak256, toBytes, type Address, type Hex, type LocalAccount } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { isHighS, secp256k1 } from "../crypto/secp256k1.js";
import { OpenLoraError } from "../errors.js";

/** How long a request signature may live: its expiry at most this far ahead of the server's clock. */
export const MAX_SIGNATURE_LIFETIME_S = 300;
/** What signingFetch uses when not told otherwise. */
export const DEFAULT_SIGNATURE_LIFETIME_S = 60;
/** How long a session key may act for its agent. */
export const MAX_SESSION_LIFETIME_S = 24 * 60 * 60;

export const SIGNED_HEADERS = {
  address: "x-openlora-address",
  nonce: "x-openlora-nonce",
  expiry: "x-openlora-expiry",
  signature: "x-openlora-signature",
  session: "x-openlora-session",
} as const;

export const REQUEST_TYPES = {
  Request: [
    { name: "agent", type: "address" },
    { name: "method", type: "string" },
    { name: "path", type: "string" },
    { name: "bodyHash", type: "bytes32" },
    { name: "nonce", type: "bytes32" },
    { name: "expiry", type: "uint64" },
  ],
} as const;

export const SESSION_TYPES = {
  Session: [
    { name: "agent", type: "address" },
    { name: "key", type: "address" },
    { name: "expiry", type: "uint64" },
  ],
} as const;

export function authDomain(chainId: number): { name: "openlora"; version: "1"; chainId: number } {
  return { name: "openlora", version: "1", chainId };
}

export interface RequestMessage {
  agent: Address;
  /** Uppercase HTTP method. */
  method: string;
  /** Path and query exactly as in the request line. */
  path: string;
  bodyHash: Hex;
  nonce: Hex;
  expiry: bigint;
}

export interface SessionMessage {
  agent: Address;
  key: Address;
  expiry: bigint;
}

/** keccak256 of the raw body bytes; keccak256(0x) for none. */
export function bodyHash(body: Uint8Array | string | undefined): Hex {
  if (body === undefined) return keccak256(new Uint8Array(0));
  return keccak256(typeof body === "string" ? toBytes(body) : body);
}

export function requestDigest(chainId: number, m: RequestMessage): Hex {
  return hashTypedData({ domain: authDomain(chainId), types: REQUEST_TYPES, primaryType: "Request", message: m });
}

export function sessionDigest(chainId: number, m: SessionMessage): Hex {
  return hashTypedData({ domain: authDomain(chainId), types: SESSION_TYPES, primaryType: "Session", message: m });
}

function invalid(message: string, details?: Record<string, unknown>): OpenLoraError {
  return new OpenLoraError("SIGNATURE_INVALID", message, details);
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;
const UINT = /^[0-9]{1,20}$/;
const UINT64_MAX = (1n << 64n) - 1n;

/** An address as the ledger names it: lowercase hex. SIGNATURE_INVALID when `v` is not one. */
export function parseAddress(v: unknown, what: string): Address {
  if (typeof v !== "string" || !ADDRESS.test(v)) throw invalid(`${what} must be an address: 0x and 40 hex digits.`, { field: what });
  return v.toLowerCase() as Address;
}

export function parseSignature(v: unknown, what: string): Hex {
  if (typeof v !== "string" || !SIGNATURE.test(v)) throw invalid(`${what} must be a 65-byte signature: 0x and 130 hex digits.`, { field: what });
  return v.toLowerCase() as Hex;
}

/** A uint64 from a decimal string or a safe integer; SIGNATURE_INVALID otherwise. */
export function parseUint64(v: unknown, what: string): bigint {
  const s = typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? String(v) : v;
  if (typeof s !== "string" || !UINT.test(s) || BigInt(s) > UINT64_MAX) throw invalid(`${what} must be a uint64 in decimal.`, { field: what });
  return BigInt(s);
}

export interface SignedHeaders {
  /** Lowercase. */
  agent: Address;
  nonce: Hex;
  expiry: bigint;
  signature: Hex;
  /** Lowercase; present when a session key signed. */
  session?: Address;
}

type HeaderBag = Record<string, string | string[] | undefined>;

/**
 * The signed-request headers of `headers`, or undefined when it carries none of them. Any of
 * them present makes it a signed request: a missing, repeated or malformed one is SIGNATURE_INVALID.
 */
export function readSignedHeaders(headers: HeaderBag): SignedHeaders | undefined {
  const names = Object.values(SIGNED_HEADERS);
  if (!names.some((n) => headers[n] !== undefined)) return undefined;
  const one = (n: string, optional = false): string | undefined => {
    const v = headers[n];
    if (v === undefined && optional) return undefined;
    if (typeof v !== "string") throw invalid(v === undefined ? `A signed request needs the ${n} header.` : `The ${n} header must appear once.`, { header: n });
    return v.trim();
  };
  const agent = parseAddress(one(SIGNED_HEADERS.address), SIGNED_HEADERS.address);
  const nonce = one(SIGNED_HEADERS.nonce)!;
  if (!BYTES32.test(nonce)) throw invalid(`${SIGNED_HEADERS.nonce} must be 32 bytes: 0x and 64 hex digits.`, { header: SIGNED_HEADERS.nonce });
  const expiry = parseUint64(one(SIGNED_HEADERS.expiry), SIGNED_HEADERS.expiry);
  const signature = parseSignature(one(SIGNED_HEADERS.signature), SIGNED_HEADERS.signature);
  const s = one(SIGNED_HEADERS.session, true);
  const session = s === undefined ? undefined : parseAddress(s, SIGNED_HEADERS.session);
  return { agent, nonce: nonce.toLowerCase() as Hex, expiry, signature, ...(session ? { session } : {}) };
}

/** SIGNATURE_EXPIRED unless now ≤ expiry ≤ now + maxLifetime (unix seconds). */
export function checkExpiry(expiry: bigint, nowS: number, maxLifetimeS: number, what = "The request signature"): void {
  const now = BigInt(Math.floor(nowS));
  if (expiry < now) throw new OpenLoraError("SIGNATURE_EXPIRED", `${what} expired at ${expiry}; the server's clock says ${now}.`, { expiry: expiry.toString(), now: now.toString() });
  if (expiry > now + BigInt(maxLifetimeS)) {
    throw new OpenLoraError("SIGNATURE_EXPIRED", `${what} expires at ${expiry}, more than ${maxLifetimeS} s after the server's ${now}.`, { expiry: expiry.toString(), now: now.toString(), maxLifetimeS });
  }
}

/** The lowercase address whose key made `signature` over `digest`; SIGNATURE_INVALID when none can. */
export function recoverSigner(digest: Hex, signature: Hex): Address {
  const bytes = hexToBytes(parseSignature(signature, "signature"));
  const v = bytes[64]!;
  if (v !== 27 && v !== 28) throw invalid("The signature's v must be 27 or 28.");
  const rs = bytes.subarray(0, 64);
  if (isHighS(rs)) throw invalid("The signature's s must be in the lower half of the curve order.");
  const pub = secp256k1.recover(hexToBytes(digest), rs, (v - 27) as 0 | 1);
  if (!pub) throw invalid("The signature does not recover to any key.");
  return `0x${keccak256(pub.subarray(1)).slice(-40)}` as Address;
}

export interface RequestFacts {
  chainId: number;
  method: string;
  path: string;
  body: Uint8Array;
}

/**
 * Who signed the request: the agent's address (signed by the agent itself) or the session key's
 * (x-openlora-session, which must be the key that signed). Checks expiry and signature only: the
 * nonce and the session's registration are the caller's to check.
 */
export function verifySignedRequest(h: SignedHeaders, facts: RequestFacts, nowS: number): Address {
  checkExpiry(h.expiry, nowS, MAX_SIGNATURE_LIFETIME_S);
  const digest = requestDigest(facts.chainId, { agent: h.agent, method: facts.method.toUpperCase(), path: facts.path, bodyHash: bodyHash(facts.body), nonce: h.nonce, expiry: h.expiry });
  const signer = recoverSigner(digest, h.signature);
  const expected = h.session ?? h.agent;
  if (signer !== expected) {
    throw invalid(`The signature is not ${h.session ? "the session key's" : "the agent's"}: it does not recover to ${expected} for this method, path, body, nonce and expiry.`);
  }
  return signer;
}

/** True when the agent signed `session`. */
export function verifySession(chainId: number, session: SessionMessage, signature: Hex): boolean {
  try {
    return recoverSigner(sessionDigest(chainId, session), signature) === session.agent.toLowerCase();
  } catch {
    return false;
  }
}

// ---- client side

/** Anything that signs EIP-712 typed data as an address: a viem local account. */
export type RequestSigner = Pick<LocalAccount, "address" | "signTypedData">;

export function toSigner(key: Hex | RequestSigner): RequestSigner {
  return typeof key === "string" ? privateKeyToAccount(key) : key;
}

export function randomNonce(): Hex {
  return `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}` as Hex;
}

export interface SignRequestInput {
  chainId: number;
  method: string;
  /** Path and query exactly as the request line will carry them. */
  path: string;
  body?: Uint8Array | string;
  /** The agent acted for; default the signer (else the signer is a session key of `agent`). */
  agent?: Address;
  nonce?: Hex;
  /** Unix seconds; default now + DEFAULT_SIGNATURE_LIFETIME_S. */
  expiry?: bigint;
  /** Unix milliseconds; default Date.now(). */
  now?: number;
}

/** The headers that make the request a signed one. */
export async function signRequest(signer: RequestSigner, r: SignRequestInput): Promise<Record<string, string>> {
  const agent = (r.agent ?? signer.address).toLowerCase() as Address;
  const asSession = agent !== signer.address.toLowerCase();
  const expiry = r.expiry ?? BigInt(Math.floor((r.now ?? Date.now()) / 1000) + DEFAULT_SIGNATURE_LIFETIME_S);
  const nonce = r.nonce ?? randomNonce();
  const signature = await signer.signTypedData({
    domain: authDomain(r.chainId), types: REQUEST_TYPES, primaryType: "Request",
    message: { agent, method: r.method.toUpperCase(), path: r.path, bodyHash: bodyHash(r.body), nonce, expiry },
  });
  return {
    [SIGNED_HEADERS.address]: agent,
    [SIGNED_HEADERS.nonce]: nonce,
    [SIGNED_HEADERS.expiry]: expiry.toString(),
    [SIGNED_HEADERS.signature]: signature,
    ...(asSession ? { [SIGNED_HEADERS.session]: signer.address.toLowerCase() } : {}),
  };
}

/** The agent's signature of a Session for `key` (the body of POST /v1/auth/sessions carries it). */
export async function signSession(agent: RequestSigner, chainId: number, key: Address, expiry: bigint): Promise<Hex> {
  return agent.signTypedData({ domain: authDomain(chainId), types: SESSION_TYPES, primaryType: "Session", message: { agent: agent.address, key, expiry } });
}
