/**
 * Agents as chain addresses, over HTTP: the official `openai` client with signingFetch pays from
 * the account whose id is the signer's lowercase address; a replayed, expired, altered or
 * misattributed signature is refused with its typed code and writes nothing (every table
 * compared before and after); session keys act for their agent until expiry or revocation and
 * cannot mint further sessions; nonces outlive a restart; bearer credentials work as before.
 */
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import OpenAI, { APIError } from "openai";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterEach, describe, expect, it, vi } from "vitest";
import { registerSession, revokeSession, signingFetch } from "../../src/auth/client.js";
import { SIGNED_HEADERS, signRequest, signSession } from "../../src/auth/signed-request.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import { runLedger } from "../../src/cli/ledger.js";
import { Ledger } from "../../src/ledger/index.js";
import { buildServer, type EngineSlot } from "../../src/server/app.js";
import { AttributionService } from "../../src/server/attribution.js";
import { tempDir } from "../helpers/tmp.js";
import { BASE_MODEL, FakeEngine } from "./fake-engine.js";

const dir = tempDir("openlora-signed-");
const NODE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const POLICY: FeePolicy = { protocolBps: 100, operatorBps: 900, developerBps: 4000, stakerBps: 2000, dataBps: 4000, lambdaBps: 5000 };
const OPERATOR = "olo_signed-test-operator-token-abcdefghijklmnopqrstuvwxyz";
const CHAIN_ID = 31337;
const ALICE_KEY = generatePrivateKey();
const BOB_KEY = generatePrivateKey();
const alice = privateKeyToAccount(ALICE_KEY);
const bob = privateKeyToAccount(BOB_KEY);
const ALICE = alice.address.toLowerCase();
const BOB = bob.address.toLowerCase();
const FUNDS = 1_000_000n;

const closers: Array<() => Promise<unknown> | void> = [];
afterEach(async () => { for (const c of closers.splice(0).reverse()) await c(); });

interface World {
  app: FastifyInstance;
  ledger: Ledger;
  engine: FakeEngine;
  root: string;
  clock: { ms: number };
  bobKey: string;
  /** Closes server and ledger (as a process exit would). */
  stop(): Promise<void>;
}

async function world(opts: { path?: string; fresh?: boolean; bodyLimitBytes?: number } = {}): Promise<World> {
  const path = opts.path ?? join(dir, `l-${Math.random()}.sqlite`);
  const ledger = new Ledger({ path, nodeKey: NODE_KEY, policy: POLICY, treasury: "treasury", operator: "op", chainId: CHAIN_ID });
  const engine = new FakeEngine();
  let bobKey = "";
  if (opts.fresh !== false) {
    ledger.registerModel({ id: BASE_MODEL, kind: "base", owner: "dev", priceIn: 1n, priceOut: 1n, contentHash: engine.info.modelContentHash, developers: [{ party: "dev", share: 1n }] });
    ledger.createAccount(ALICE);
    bobKey = ledger.createAccount(BOB).apiKey;
    ledger.deposit(ALICE, FUNDS);
    ledger.deposit(BOB, FUNDS);
  }
  const service = new AttributionService(ledger, engine, { id: BASE_MODEL, contentHash: engine.info.modelContentHash }, "op");
  await service.start();
  const clock = { ms: Date.now() };
  const slot: EngineSlot = { state: "ready", engine, attribution: service };
  const app = await buildServer(slot, { operatorToken: OPERATOR, now: () => clock.ms, ...(opts.bodyLimitBytes ? { bodyLimitBytes: opts.bodyLimitBytes } : {}) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  const root = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  let stopped = false;
  const stop = async () => { if (stopped) return; stopped = true; await app.close(); ledger.close(); };
  closers.push(stop);
  return { app, ledger, engine, root, clock, bobKey, stop };
}

function snapshot(l: Ledger): string {
  const tables = (l.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
  return JSON.stringify(tables.map((t) => [t, l.db.prepare(`SELECT * FROM "${t}"`).all()]), (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("hex") : v));
}

/** What a signing fetch put on the wire, to send again (or altered) by hand. */
interface Sent { url: string; method: string; headers: Record<string, string>; body: string | undefined }

/** deliver false: the request is signed and recorded but never sent. */
function recorder(deliver = true): { fetch: typeof fetch; sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    fetch: async (input, init) => {
      const req = new Request(input, init);
      const body = req.body === null ? undefined : await req.clone().text();
      sent.push({ url: req.url, method: req.method, headers: Object.fromEntries(req.headers), body });
      return deliver ? globalThis.fetch(req) : new Response("{}");
    },
  };
}

async function resend(s: Sent, change: Partial<Sent> = {}): Promise<{ status: number; code: string | undefined; json: unknown }> {
  const r = { ...s, ...change };
  const res = await fetch(r.url, { method: r.method, headers: r.headers, ...(r.body === undefined ? {} : { body: r.body }) });
  const json = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, code: json.error?.code, json };
}

function client(w: World, f: typeof fetch): OpenAI {
  return new OpenAI({ baseURL: `${w.root}/v1`, apiKey: "unused", fetch: f, maxRetries: 0 });
}

async function refusal(p: Promise<unknown>): Promise<{ status: number | undefined; code: unknown }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof APIError) return { status: e.status, code: (e.error as { code?: unknown } | undefined)?.code };
    throw e;
  }
  throw new Error("the request was accepted");
}

const PROMPT = { model: BASE_MODEL, prompt: "hello", max_tokens: 3 };

describe("a paid completion signed by an agent", () => {
  it("works through the openai client and charges the account named by the signer's address", async () => {
    const w = await world();
    const openai = client(w, signingFetch(ALICE_KEY, { chainId: CHAIN_ID, now: () => w.clock.ms }));
    const { data, response } = await openai.completions.create(PROMPT).withResponse();
    expect(data.choices[0]!.text).toBe("hel");
    const { receipt } = w.ledger.getReceipt(Number(response.headers.get("openlora-receipt")));
    expect(receipt.agent).toBe(ALICE);
    expect(receipt.fee).toBeGreaterThan(0n);
    expect(w.ledger.getAgent(ALICE).balance).toBe(FUNDS - receipt.fee);
    expect(w.ledger.getAgent(BOB).balance).toBe(FUNDS);
    const chat = await openai.chat.completions.create({ model: BASE_MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    expect(chat.choices[0]!.message.content).not.toBe("");
  });

  it("refuses the same request replayed, expired, or too far ahead — writing nothing", async () => {
    const w = await world();
    const rec = recorder();
    await client(w, signingFetch(alice, { chainId: CHAIN_ID, fetch: rec.fetch, now: () => w.clock.ms })).completions.create(PROMPT);
    const before = snapshot(w.ledger);
    const submitted = w.engine.submitted.length;
    expect(await resend(rec.sent[0]!)).toMatchObject({ status: 401, code: "SIGNATURE_REPLAYED" });
    const old = client(w, signingFetch(alice, { chainId: CHAIN_ID, now: () => w.clock.ms - 120_000 }));
    expect(await refusal(old.completions.create(PROMPT))).toEqual({ status: 401, code: "SIGNATURE_EXPIRED" });
    const far = client(w, signingFetch(alice, { chainId: CHAIN_ID, now: () => w.clock.ms, lifetimeS: 301 }));
    expect(await refusal(far.completions.create(PROMPT))).toEqual({ status: 401, code: "SIGNATURE_EXPIRED" });
    expect(snapshot(w.ledger)).toBe(before);
    expect(w.engine.submitted.length).toBe(submitted);
  });

  it("refuses a body changed after signing, and A's signature under B's address (B keeps its funds)", async () => {
    const w = await world();
    const rec = recorder(false);
    const signed = signingFetch(alice, { chainId: CHAIN_ID, fetch: rec.fetch, now: () => w.clock.ms });
    const capture = async (path: string, body: string): Promise<Sent> => {
      await signed(`${w.root}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
      return rec.sent.at(-1)!;
    };
    const before = snapshot(w.ledger);
    const s = await capture("/v1/completions", JSON.stringify(PROMPT));
    expect(await resend(s, { body: JSON.stringify({ ...PROMPT, max_tokens: 4 }) })).toMatchObject({ status: 401, code: "SIGNATURE_INVALID" });
    expect(await resend({ ...s, headers: { ...s.headers, [SIGNED_HEADERS.address]: BOB } })).toMatchObject({ status: 401, code: "SIGNATURE_INVALID" });
    const w2 = await capture("/v1/accounts/agents/" + BOB + "/withdraw", '{"amount":"5"}');
    expect(await resend({ ...w2, headers: { ...w2.headers, [SIGNED_HEADERS.address]: BOB } })).toMatchObject({ status: 401, code: "SIGNATURE_INVALID" });
    // Signed as herself, Alice may not withdraw Bob's funds either.
    expect(await resend(w2)).toMatchObject({ status: 403, code: "PERMISSION_DENIED" });
    expect(w.ledger.getAgent(BOB).balance).toBe(FUNDS);
    expect(snapshot(w.ledger)).toBe(before);
    expect(w.engine.submitted).toEqual([]);
  });

  it("answers malformed headers with SIGNATURE_INVALID: bad hex, wrong length, missing parts", async () => {
    const w = await world();
    const good = await signRequest(alice, { chainId: CHAIN_ID, method: "POST", path: "/v1/completions", body: JSON.stringify(PROMPT), now: w.clock.ms });
    const before = snapshot(w.ledger);
    const variants: Record<string, string | undefined>[] = [
      { [SIGNED_HEADERS.signature]: `0x${"zz".repeat(65)}` },
      { [SIGNED_HEADERS.signature]: good[SIGNED_HEADERS.signature]!.slice(0, 100) },
      { [SIGNED_HEADERS.nonce]: "0x1234" },
      { [SIGNED_HEADERS.address]: "alice" },
      { [SIGNED_HEADERS.expiry]: "soon" },
      { [SIGNED_HEADERS.nonce]: undefined },
      { [SIGNED_HEADERS.signature]: undefined },
      { [SIGNED_HEADERS.address]: undefined },
      { [SIGNED_HEADERS.session]: "0x12" },
    ];
    for (const v of variants) {
      const headers = Object.fromEntries(Object.entries({ ...good, ...v, "content-type": "application/json" }).filter(([, x]) => x !== undefined)) as Record<string, string>;
      const res = await w.app.inject({ method: "POST", url: "/v1/completions", headers, payload: JSON.stringify(PROMPT) });
      expect(res.statusCode, JSON.stringify(v)).toBe(401);
      expect(res.json().error.code, JSON.stringify(v)).toBe("SIGNATURE_INVALID");
    }
    expect(snapshot(w.ledger)).toBe(before);
    expect(w.engine.submitted).toEqual([]);
  });

  it("checks the address's access before the body: an operator endpoint is 403 with a valid signature", async () => {
    const w = await world();
    const before = snapshot(w.ledger);
    const f = signingFetch(alice, { chainId: CHAIN_ID, now: () => w.clock.ms });
    const res = await f(`${w.root}/v1/accounts/agents/${ALICE}/deposit`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"amount":"1000"}' });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("PERMISSION_DENIED");
    expect(snapshot(w.ledger)).toBe(before);
  });

  it("refuses a signed body over the limit without keeping it", async () => {
    const w = await world({ bodyLimitBytes: 1024 });
    const before = snapshot(w.ledger);
    const big = JSON.stringify({ ...PROMPT, prompt: "x".repeat(4096) });
    const f = signingFetch(alice, { chainId: CHAIN_ID, now: () => w.clock.ms });
    const res = await f(`${w.root}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: big });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("REQUEST_TOO_LARGE");
    expect(snapshot(w.ledger)).toBe(before);
  });
});

describe("session keys", () => {
  it("act for the agent once registered, until revoked; cannot register more sessions", async () => {
    const w = await world();
    const sessionKey = generatePrivateKey();
    const session = privateKeyToAccount(sessionKey);
    const opts = { chainId: CHAIN_ID, baseURL: w.root, now: () => w.clock.ms };
    const asSession = client(w, signingFetch(sessionKey, { chainId: CHAIN_ID, agent: alice.address, now: () => w.clock.ms }));
    // Not registered yet.
    expect(await refusal(asSession.completions.create(PROMPT))).toEqual({ status: 401, code: "SIGNATURE_INVALID" });
    expect(await registerSession(ALICE_KEY, session.address, { ...opts, lifetimeS: 3600 })).toMatchObject({ agent: ALICE, key: session.address.toLowerCase() });
    const { response } = await asSession.completions.create(PROMPT).withResponse();
    const { receipt } = w.ledger.getReceipt(Number(response.headers.get("openlora-receipt")));
    expect(receipt.agent).toBe(ALICE);
    expect(w.ledger.getAgent(ALICE).balance).toBe(FUNDS - receipt.fee);

    // The session key cannot extend itself or mint another key, even with a grant Alice signed.
    const before = snapshot(w.ledger);
    const other = privateKeyToAccount(generatePrivateKey());
    const grant = await signSession(alice, CHAIN_ID, other.address, BigInt(Math.floor(w.clock.ms / 1000) + 60));
    const res = await signingFetch(sessionKey, { chainId: CHAIN_ID, agent: alice.address, now: () => w.clock.ms })(`${w.root}/v1/auth/sessions`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: other.address, expiry: String(Math.floor(w.clock.ms / 1000) + 60), signature: grant }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("PERMISSION_DENIED");
    const revoke = await signingFetch(sessionKey, { chainId: CHAIN_ID, agent: alice.address, now: () => w.clock.ms })(`${w.root}/v1/auth/sessions/revoke`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key: session.address }),
    });
    expect(revoke.status).toBe(403);
    expect(snapshot(w.ledger)).toBe(before);

    // Bob cannot use Alice's session key for himself, nor revoke it.
    const asBob = client(w, signingFetch(sessionKey, { chainId: CHAIN_ID, agent: bob.address, now: () => w.clock.ms }));
    expect(await refusal(asBob.completions.create(PROMPT))).toEqual({ status: 401, code: "SIGNATURE_INVALID" });
    expect(await revokeSession(BOB_KEY, session.address, opts)).toMatchObject({ revoked: false });
    expect(w.ledger.getAgent(BOB).balance).toBe(FUNDS);

    expect(await revokeSession(ALICE_KEY, session.address, opts)).toMatchObject({ revoked: true });
    expect(await refusal(asSession.completions.create(PROMPT))).toEqual({ status: 401, code: "SIGNATURE_INVALID" });
  });

  it("expire: a session is refused once its expiry passed on the server's clock", async () => {
    const w = await world();
    const sessionKey = generatePrivateKey();
    await registerSession(alice, privateKeyToAccount(sessionKey).address, { chainId: CHAIN_ID, baseURL: w.root, now: () => w.clock.ms, lifetimeS: 600 });
    const asSession = client(w, signingFetch(sessionKey, { chainId: CHAIN_ID, agent: alice.address, now: () => w.clock.ms }));
    await asSession.completions.create(PROMPT);
    w.clock.ms += 601_000;
    expect(await refusal(asSession.completions.create(PROMPT))).toEqual({ status: 401, code: "SIGNATURE_EXPIRED" });
  });

  it("need the agent's own Session signature, for at most a day", async () => {
    const w = await world();
    const key = privateKeyToAccount(generatePrivateKey()).address;
    const nowS = Math.floor(w.clock.ms / 1000);
    const f = signingFetch(alice, { chainId: CHAIN_ID, now: () => w.clock.ms });
    const post = async (body: unknown) => {
      const res = await f(`${w.root}/v1/auth/sessions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      return ((await res.json()) as { error?: { code: string } }).error?.code;
    };
    const before = snapshot(w.ledger);
    expect(await post({ key, expiry: String(nowS + 60), signature: await signSession(bob, CHAIN_ID, key, BigInt(nowS + 60)) })).toBe("SIGNATURE_INVALID");
    expect(await post({ key, expiry: String(nowS + 60), signature: "0x12" })).toBe("SIGNATURE_INVALID");
    expect(await post({ key, expiry: String(nowS + 60), signature: await signSession(alice, CHAIN_ID, key, BigInt(nowS + 61)) })).toBe("SIGNATURE_INVALID");
    expect(await post({ key, expiry: String(nowS + 86_401), signature: await signSession(alice, CHAIN_ID, key, BigInt(nowS + 86_401)) })).toBe("SIGNATURE_EXPIRED");
    expect(await post({ key: "0x12", expiry: String(nowS + 60), signature: "0x" })).toBe("INVALID_ARGUMENT");
    const tables = (s: string) => (JSON.parse(s) as [string, unknown[]][]).filter(([t]) => t !== "request_nonces");
    expect(tables(snapshot(w.ledger))).toEqual(tables(before)); // only the requests' nonces were recorded
  });
});

describe("nonces and a restart", () => {
  it("a request accepted before the restart is refused as a replay after it", async () => {
    const path = join(dir, "restart.sqlite");
    const first = await world({ path });
    const rec = recorder();
    const f = signingFetch(alice, { chainId: CHAIN_ID, fetch: rec.fetch, now: () => first.clock.ms });
    const ok = await f(`${first.root}/v1/accounts/agents/${ALICE}/withdraw`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"amount":"7"}' });
    expect(ok.status).toBe(200);
    await first.stop();
    const second = await world({ path, fresh: false });
    const balance = second.ledger.getAgent(ALICE).balance;
    expect(balance).toBe(FUNDS - 7n);
    expect(await resend({ ...rec.sent[0]!, url: `${second.root}/v1/accounts/agents/${ALICE}/withdraw` })).toMatchObject({ status: 401, code: "SIGNATURE_REPLAYED" });
    expect(second.ledger.getAgent(ALICE).balance).toBe(balance);
  });
});

describe("openlora ledger --agent-key-file", () => {
  async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const o = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => { out += String(chunk); return true; });
    const e = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => { err += String(chunk); return true; });
    try {
      return { code: await runLedger(args), out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  }

  it("signs as the key's address instead of sending a bearer token; refuses a key file others can read", async () => {
    const w = await world();
    const file = join(dir, "alice.key");
    writeFileSync(file, `${ALICE_KEY}\n`, { mode: 0o600 });
    const r = await cli(["agents", "withdraw", ALICE, "3", "--agent-key-file", file, "--chain-id", String(CHAIN_ID), "--url", w.root]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ id: ALICE });
    expect(w.ledger.getAgent(ALICE).balance).toBe(FUNDS - 3n);
    const wrongChain = await cli(["agents", "withdraw", ALICE, "3", "--agent-key-file", file, "--url", w.root]);
    expect(wrongChain).toMatchObject({ code: 1, err: expect.stringContaining("SIGNATURE_INVALID") });
    const bobs = await cli(["agents", "withdraw", BOB, "3", "--agent-key-file", file, "--chain-id", String(CHAIN_ID), "--url", w.root]);
    expect(bobs).toMatchObject({ code: 1, err: expect.stringContaining("PERMISSION_DENIED") });
    expect(w.ledger.getAgent(BOB).balance).toBe(FUNDS);
    const open = join(dir, "open.key");
    writeFileSync(open, ALICE_KEY, { mode: 0o644 });
    chmodSync(open, 0o644);
    await expect(cli(["agents", "show", ALICE, "--agent-key-file", open, "--url", w.root])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(cli(["agents", "show", ALICE, "--agent-key-file", file, "--token-file", file, "--url", w.root])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("bearer credentials, unchanged", () => {
  it("an API key still pays, the operator's token still operates; a signature with one of them is refused", async () => {
    const w = await world();
    const byKey = new OpenAI({ baseURL: `${w.root}/v1`, apiKey: w.bobKey, maxRetries: 0 });
    const { response } = await byKey.completions.create(PROMPT).withResponse();
    expect(w.ledger.getReceipt(Number(response.headers.get("openlora-receipt"))).receipt.agent).toBe(BOB);
    const dep = await fetch(`${w.root}/v1/accounts/agents/${ALICE}/deposit`, { method: "POST", headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" }, body: '{"amount":"5"}' });
    expect(dep.status).toBe(200);
    expect(w.ledger.getAgent(ALICE).balance).toBe(FUNDS + 5n);
    const headers = await signRequest(alice, { chainId: CHAIN_ID, method: "GET", path: `/v1/accounts/agents/${ALICE}`, now: w.clock.ms });
    const both = await fetch(`${w.root}/v1/accounts/agents/${ALICE}`, { headers: { ...headers, authorization: `Bearer ${w.bobKey}` } });
    expect(both.status).toBe(401);
    expect(((await both.json()) as { error: { code: string } }).error.code).toBe("UNAUTHENTICATED");
    const signedGet = await fetch(`${w.root}/v1/accounts/agents/${ALICE}`, { headers });
    expect(signedGet.status).toBe(200);
  });

  it("without a ledger, signed requests are refused (no nonce can be remembered)", async () => {
    const app = await buildServer({ state: "ready", engine: new FakeEngine() }, { operatorToken: OPERATOR });
    closers.push(() => app.close());
    const headers = await signRequest(alice, { chainId: 1, method: "GET", path: "/v1/models" });
    const res = await app.inject({ method: "GET", url: "/v1/models", headers });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe("UNAUTHENTICATED");
    expect((await app.inject({ method: "GET", url: "/v1/models" })).statusCode).toBe(200);
  });
});
