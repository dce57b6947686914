/**
 * The pure parts of signed requests: what the client signs is what the server recovers (and
 * what viem recovers), every malformed header is a typed SIGNATURE_INVALID naming it, expiry is
 * bounded both ways, and the nonce store refuses a second use, also after reopening the file.
 */
import { join } from "node:path";
import { hexToBytes, recoverTypedDataAddress, toHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { signingFetch } from "../../src/auth/client.js";
import {
  authDomain, bodyHash, checkExpiry, MAX_SIGNATURE_LIFETIME_S, readSignedHeaders, recoverSigner, REQUEST_TYPES, requestDigest,
  SIGNED_HEADERS, signRequest, signSession, verifySession, verifySignedRequest, type SignedHeaders,
} from "../../src/auth/signed-request.js";
import { openDb } from "../../src/ledger/db.js";
import { SignedRequestStore } from "../../src/ledger/nonces.js";
import { tempDir } from "../helpers/tmp.js";

const A = privateKeyToAccount("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
const B = privateKeyToAccount("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a");
const NOW_MS = 1_700_000_000_000;
const NOW_S = NOW_MS / 1000;
const dir = tempDir("openlora-auth-");

function code(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

async function signed(body = '{"a":1}', over: Partial<Parameters<typeof signRequest>[1]> = {}) {
  const headers = await signRequest(A, { chainId: 1, method: "post", path: "/v1/completions?x=1", body, now: NOW_MS, ...over });
  return { headers, claim: readSignedHeaders(headers)! };
}

const facts = (body: string, path = "/v1/completions?x=1", method = "POST", chainId = 1) => ({ chainId, method, path, body: new TextEncoder().encode(body) });

describe("signing and verifying a request", () => {
  it("recovers the agent's lowercase address, as viem does from the same typed data", async () => {
    const { headers, claim } = await signed();
    expect(Object.keys(headers).sort()).toEqual([SIGNED_HEADERS.address, SIGNED_HEADERS.expiry, SIGNED_HEADERS.nonce, SIGNED_HEADERS.signature].sort());
    expect(claim.agent).toBe(A.address.toLowerCase());
    expect(claim.expiry).toBe(BigInt(NOW_S + 60));
    expect(verifySignedRequest(claim, facts('{"a":1}'), NOW_S)).toBe(A.address.toLowerCase());
    const message = { agent: claim.agent, method: "POST", path: "/v1/completions?x=1", bodyHash: bodyHash('{"a":1}'), nonce: claim.nonce, expiry: claim.expiry };
    expect(await recoverTypedDataAddress({ domain: authDomain(1), types: REQUEST_TYPES, primaryType: "Request", message, signature: claim.signature })).toBe(A.address);
    expect(recoverSigner(requestDigest(1, message), claim.signature)).toBe(A.address.toLowerCase());
  });

  it("refuses the request changed after signing: body, path, query, method, chain", async () => {
    const { claim } = await signed();
    for (const f of [facts('{"a":2}'), facts('{"a":1} '), facts('{"a":1}', "/v1/completions"), facts('{"a":1}', "/v1/completions?x=2"), facts('{"a":1}', undefined, "PUT"), facts('{"a":1}', undefined, undefined, 5)]) {
      expect(code(() => verifySignedRequest(claim, f, NOW_S))).toBe("SIGNATURE_INVALID");
    }
  });

  it("refuses A's signature presented under B's address, and a session key not named as such", async () => {
    const { claim } = await signed();
    expect(code(() => verifySignedRequest({ ...claim, agent: B.address.toLowerCase() as Hex }, facts('{"a":1}'), NOW_S))).toBe("SIGNATURE_INVALID");
    const bySession = readSignedHeaders(await signRequest(B, { chainId: 1, method: "POST", path: "/p", body: "", agent: A.address, now: NOW_MS }))!;
    expect(bySession.session).toBe(B.address.toLowerCase());
    expect(verifySignedRequest(bySession, facts("", "/p"), NOW_S)).toBe(B.address.toLowerCase());
    const { session: _dropped, ...withoutSession } = bySession;
    expect(code(() => verifySignedRequest(withoutSession, facts("", "/p"), NOW_S))).toBe("SIGNATURE_INVALID");
    // The agent is inside the signed struct: the session key's signature for A is not one for B.
    expect(code(() => verifySignedRequest({ ...bySession, agent: "0x00000000000000000000000000000000000000aa" }, facts("", "/p"), NOW_S))).toBe("SIGNATURE_INVALID");
  });

  it("bounds the expiry: not passed, at most MAX_SIGNATURE_LIFETIME_S ahead", async () => {
    expect(code(() => checkExpiry(BigInt(NOW_S), NOW_S, MAX_SIGNATURE_LIFETIME_S))).toBeUndefined();
    expect(code(() => checkExpiry(BigInt(NOW_S + MAX_SIGNATURE_LIFETIME_S), NOW_S, MAX_SIGNATURE_LIFETIME_S))).toBeUndefined();
    expect(code(() => checkExpiry(BigInt(NOW_S - 1), NOW_S, MAX_SIGNATURE_LIFETIME_S))).toBe("SIGNATURE_EXPIRED");
    expect(code(() => checkExpiry(BigInt(NOW_S + MAX_SIGNATURE_LIFETIME_S + 1), NOW_S, MAX_SIGNATURE_LIFETIME_S))).toBe("SIGNATURE_EXPIRED");
    const { claim } = await signed('{"a":1}', { expiry: BigInt(NOW_S - 10) });
    expect(code(() => verifySignedRequest(claim, facts('{"a":1}'), NOW_S))).toBe("SIGNATURE_EXPIRED");
  });

  it("signs no body as keccak256 of nothing", async () => {
    expect(bodyHash(undefined)).toBe(bodyHash(""));
    expect(bodyHash(new Uint8Array([1]))).not.toBe(bodyHash(""));
    const { claim } = await signed("", { method: "GET", path: "/v1/models" });
    expect(verifySignedRequest(claim, { chainId: 1, method: "GET", path: "/v1/models", body: new Uint8Array(0) }, NOW_S)).toBe(A.address.toLowerCase());
  });
});

describe("malformed headers", () => {
  it("is no signed request when none of the headers is there", () => {
    expect(readSignedHeaders({ authorization: "Bearer x" })).toBeUndefined();
  });

  it("are SIGNATURE_INVALID naming the header: missing, repeated, bad hex, wrong length, bad v, high s", async () => {
    const { headers } = await signed();
    const sig = headers[SIGNED_HEADERS.signature]!;
    const cases: Array<[string, Record<string, string | string[] | undefined>]> = [
      [SIGNED_HEADERS.address, { [SIGNED_HEADERS.address]: undefined }],
      [SIGNED_HEADERS.nonce, { [SIGNED_HEADERS.nonce]: undefined }],
      [SIGNED_HEADERS.expiry, { [SIGNED_HEADERS.expiry]: undefined }],
      [SIGNED_HEADERS.signature, { [SIGNED_HEADERS.signature]: undefined }],
      [SIGNED_HEADERS.address, { [SIGNED_HEADERS.address]: [headers[SIGNED_HEADERS.address]!, headers[SIGNED_HEADERS.address]!] }],
      [SIGNED_HEADERS.address, { [SIGNED_HEADERS.address]: "0x" + "g".repeat(40) }],
      [SIGNED_HEADERS.address, { [SIGNED_HEADERS.address]: "0x1234" }],
      [SIGNED_HEADERS.nonce, { [SIGNED_HEADERS.nonce]: "0x" + "ab".repeat(31) }],
      [SIGNED_HEADERS.nonce, { [SIGNED_HEADERS.nonce]: "ab".repeat(32) }],
      [SIGNED_HEADERS.expiry, { [SIGNED_HEADERS.expiry]: "-5" }],
      [SIGNED_HEADERS.expiry, { [SIGNED_HEADERS.expiry]: "1e9" }],
      [SIGNED_HEADERS.expiry, { [SIGNED_HEADERS.expiry]: "18446744073709551616" }],
      [SIGNED_HEADERS.signature, { [SIGNED_HEADERS.signature]: sig.slice(0, -2) }],
      [SIGNED_HEADERS.signature, { [SIGNED_HEADERS.signature]: sig.slice(0, -1) + "z" }],
      [SIGNED_HEADERS.session, { [SIGNED_HEADERS.session]: "0xnope" }],
    ];
    for (const [header, change] of cases) {
      try {
        readSignedHeaders({ ...headers, ...change });
        expect.fail(`${JSON.stringify(change)} was accepted`);
      } catch (e) {
        expect(e, JSON.stringify(change)).toMatchObject({ code: "SIGNATURE_INVALID", httpStatus: 401 });
        expect(JSON.stringify((e as { details?: unknown }).details)).toContain(header);
      }
    }
    // Only the signature alone: the rest is missing.
    expect(code(() => readSignedHeaders({ [SIGNED_HEADERS.signature]: sig }))).toBe("SIGNATURE_INVALID");
  });

  it("refuses signatures that do not recover: v not 27/28, high s, zero r", async () => {
    const { claim } = await signed();
    const bytes = hexToBytes(claim.signature);
    const withV = (v: number) => { const b = bytes.slice(); b[64] = v; return toHex(b); };
    const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const s = BigInt(toHex(bytes.slice(32, 64)));
    const high = bytes.slice();
    high.set(hexToBytes(`0x${(N - s).toString(16).padStart(64, "0")}`), 32);
    high[64] = bytes[64] === 27 ? 28 : 27;
    const zeroR = bytes.slice();
    zeroR.fill(0, 0, 32);
    for (const bad of [withV(0), withV(1), withV(29), toHex(high), toHex(zeroR)] as Hex[]) {
      const c: SignedHeaders = { ...claim, signature: bad };
      expect(code(() => verifySignedRequest(c, facts('{"a":1}'), NOW_S)), bad).toBe("SIGNATURE_INVALID");
    }
  });
});

describe("session grants", () => {
  it("verify only as the agent's signature of that key and expiry", async () => {
    const key = B.address;
    const sig = await signSession(A, 1, key, 123n);
    expect(verifySession(1, { agent: A.address, key, expiry: 123n }, sig)).toBe(true);
    expect(verifySession(1, { agent: A.address, key, expiry: 124n }, sig)).toBe(false);
    expect(verifySession(2, { agent: A.address, key, expiry: 123n }, sig)).toBe(false);
    expect(verifySession(1, { agent: B.address, key, expiry: 123n }, sig)).toBe(false);
    expect(verifySession(1, { agent: A.address, key, expiry: 123n }, "0x1234")).toBe(false);
  });
});

describe("signingFetch", () => {
  it("sends the body it signed, drops the bearer token, signs path and query as sent", async () => {
    const sent: Request[] = [];
    const f = signingFetch("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", {
      chainId: 7, now: () => NOW_MS, fetch: async (input, init) => { sent.push(new Request(input, init)); return new Response("{}"); },
    });
    await f("http://node.example:8000/v1/completions?stream=false&a=%20b", { method: "POST", headers: { authorization: "Bearer olk_x", "content-type": "application/json" }, body: '{"prompt":"hé"}' });
    await f(new URL("http://node.example:8000/v1/models"));
    const [post, get] = sent as [Request, Request];
    expect(post.headers.get("authorization")).toBeNull();
    expect(post.headers.get("content-type")).toBe("application/json");
    const body = new Uint8Array(await post.arrayBuffer());
    expect(new TextDecoder().decode(body)).toBe('{"prompt":"hé"}');
    const claim = readSignedHeaders(Object.fromEntries(post.headers))!;
    expect(verifySignedRequest(claim, { chainId: 7, method: "POST", path: "/v1/completions?stream=false&a=%20b", body }, NOW_S)).toBe(A.address.toLowerCase());
    const getClaim = readSignedHeaders(Object.fromEntries(get.headers))!;
    expect(getClaim.nonce).not.toBe(claim.nonce);
    expect(verifySignedRequest(getClaim, { chainId: 7, method: "GET", path: "/v1/models", body: new Uint8Array(0) }, NOW_S)).toBe(A.address.toLowerCase());
  });
});

describe("the nonce and session store", () => {
  it("accepts a nonce once per address, also after the file is reopened; prunes only expired nonces", () => {
    const path = join(dir, "nonces.sqlite");
    let db = openDb(path, NOW_MS);
    let store = new SignedRequestStore(db);
    const n1 = `0x${"11".repeat(32)}`;
    store.claimNonce("0xa", n1, BigInt(NOW_S + 100), NOW_S);
    expect(code(() => store.claimNonce("0xa", n1, BigInt(NOW_S + 100), NOW_S))).toBe("SIGNATURE_REPLAYED");
    store.claimNonce("0xb", n1, BigInt(NOW_S + 100), NOW_S); // another address's nonce space
    db.close();
    db = openDb(path, NOW_MS);
    store = new SignedRequestStore(db);
    expect(code(() => store.claimNonce("0xa", n1, BigInt(NOW_S + 100), NOW_S))).toBe("SIGNATURE_REPLAYED");
    store.claimNonce("0xa", `0x${"22".repeat(32)}`, BigInt(NOW_S + 500), NOW_S + 200);
    const left = (db.prepare("SELECT address, nonce FROM request_nonces ORDER BY address, nonce").all() as { address: string; nonce: string }[]).map((r) => `${r.address}:${r.nonce.slice(2, 4)}`);
    expect(left).toEqual(["0xa:22"]);
    db.close();
  });

  it("tells live, expired, revoked and unknown sessions apart", () => {
    const db = openDb(join(dir, "sessions.sqlite"), NOW_MS);
    const store = new SignedRequestStore(db);
    store.addSession("0xa", "0xk", BigInt(NOW_S + 10), "0xsig", NOW_S);
    expect(store.session("0xa", "0xk", NOW_S + 10)).toBe("live");
    expect(store.session("0xa", "0xk", NOW_S + 11)).toBe("expired");
    expect(store.session("0xb", "0xk", NOW_S)).toBe("none");
    expect(store.revokeSession("0xa", "0xk", NOW_S)).toBe(true);
    expect(store.revokeSession("0xa", "0xk", NOW_S)).toBe(false);
    expect(store.session("0xa", "0xk", NOW_S)).toBe("none");
    store.addSession("0xa", "0xk", BigInt(NOW_S + 20), "0xsig2", NOW_S);
    expect(store.session("0xa", "0xk", NOW_S + 15)).toBe("live");
    db.close();
  });
});
