/**
 * Datanet validators over HTTP, through the real server and AttributionService (FakeEngine's
 * tokenizer: one token per character): the owner (an API key) sets a k-of-n committee of chain
 * addresses, approvers vote by signed request, and verbatim duplicates of approved records are
 * refused with 409 when contributed and when approved. Refusals write nothing but the signed
 * request's nonce.
 */
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterEach, describe, expect, it } from "vitest";
import type { Hex } from "viem";
import { signingFetch } from "../../src/auth/client.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import { Ledger } from "../../src/ledger/index.js";
import { buildServer, type EngineSlot } from "../../src/server/app.js";
import { AttributionService } from "../../src/server/attribution.js";
import { tempDir } from "../helpers/tmp.js";
import { BASE_MODEL, FakeEngine } from "./fake-engine.js";

const dir = tempDir("openlora-validators-http-");
const NODE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const POLICY: FeePolicy = { protocolBps: 100, operatorBps: 900, developerBps: 4000, stakerBps: 2000, dataBps: 4000, lambdaBps: 5000 };
const OPERATOR = "olo_validators-test-operator-token-abcdefghijklmnopqrstuvw";
const CHAIN_ID = 31337;

const KEYS = { a: generatePrivateKey(), b: generatePrivateKey(), c: generatePrivateKey(), mallory: generatePrivateKey() };
type Signer = keyof typeof KEYS;
const ADDRESS = Object.fromEntries(Object.entries(KEYS).map(([k, pk]) => [k, privateKeyToAccount(pk).address])) as Record<Signer, Hex>;
const ID = Object.fromEntries(Object.entries(ADDRESS).map(([k, a]) => [k, a.toLowerCase()])) as Record<Signer, string>;

const closers: Array<() => Promise<unknown> | void> = [];
afterEach(async () => { for (const c of closers.splice(0).reverse()) await c(); });

type Json = any;
type Credential = Signer | "olivia" | "carol" | "operator" | null;

interface World {
  app: FastifyInstance;
  ledger: Ledger;
  root: string;
  call(as: Credential, method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }>;
}

async function world(): Promise<World> {
  const ledger = new Ledger({ path: join(dir, `l-${Math.random()}.sqlite`), nodeKey: NODE_KEY, policy: POLICY, treasury: "treasury", operator: "op", chainId: CHAIN_ID });
  const engine = new FakeEngine();
  ledger.registerModel({ id: BASE_MODEL, kind: "base", owner: "dev", priceIn: 0n, priceOut: 0n, contentHash: engine.info.modelContentHash, developers: [{ party: "dev", share: 1n }] });
  const apiKeys = { olivia: ledger.createAccount("olivia").apiKey, carol: ledger.createAccount("carol").apiKey };
  ledger.createDatanet("dn", "olivia");
  const service = new AttributionService(ledger, engine, { id: BASE_MODEL, contentHash: engine.info.modelContentHash }, "op");
  await service.start();
  const slot: EngineSlot = { state: "ready", engine, attribution: service };
  const app = await buildServer(slot, { operatorToken: OPERATOR });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  const root = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  closers.push(async () => { await app.close(); ledger.close(); });
  const call = async (as: Credential, method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = {};
    let f: typeof fetch = globalThis.fetch;
    if (as === "operator") headers.authorization = `Bearer ${OPERATOR}`;
    else if (as === "olivia" || as === "carol") headers.authorization = `Bearer ${apiKeys[as]}`;
    else if (as !== null) f = signingFetch(KEYS[as], { chainId: CHAIN_ID });
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await f(root + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, json: await res.json() };
  };
  return { app, ledger, root, call };
}

/** Every table but the signed requests' nonces: what a refusal must leave as it was. */
function snapshot(l: Ledger): string {
  const tables = (l.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'request_nonces' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
  return JSON.stringify(tables.map((t) => [t, l.db.prepare(`SELECT * FROM "${t}"`).all()]), (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("hex") : v));
}

async function ok(p: Promise<{ status: number; json: Json }>): Promise<Json> {
  const r = await p;
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json;
}

async function fails(p: Promise<{ status: number; json: Json }>, status: number, code: string, param?: string | null): Promise<Json> {
  const r = await p;
  expect(r.status, JSON.stringify(r.json)).toBe(status);
  expect(r.json.error.code).toBe(code);
  if (param !== undefined) expect(r.json.error.param).toBe(param);
  return r.json.error;
}

const committee = (w: World, approvers: string[], threshold: number, as: Credential = "olivia") =>
  w.call(as, "PUT", "/v1/datanets/dn/approvers", { approvers, threshold });
const contribute = async (w: World, content: string): Promise<number> => (await ok(w.call("carol", "POST", "/v1/datanets/dn/records", { content }))).id;
const vote = (w: World, as: Credential, record: number, action: "approve" | "reject", body: unknown = {}) =>
  w.call(as, "POST", `/v1/datanets/dn/records/${record}/${action}`, body);

describe("a k-of-n committee over HTTP", () => {
  it("is set by the owner, shown to anyone, and approves a record at exactly k signed votes", async () => {
    const w = await world();
    // Checksummed addresses are kept as the lowercase ids signed requests act as.
    const set = await ok(committee(w, [ADDRESS.c, ADDRESS.a, ADDRESS.b], 2));
    const expected = { datanet: "dn", approvers: [ID.a, ID.b, ID.c].sort(), threshold: 2, updated: expect.any(Number) };
    expect(set).toEqual({ ...expected, approved: [], rejected: [], held: [] });
    expect(await ok(w.call(null, "GET", "/v1/datanets/dn/approvers"))).toEqual(expected);

    const r = await contribute(w, "alpha beta gamma");
    const first = await ok(vote(w, "a", r, "approve"));
    expect(first).toMatchObject({ id: r, status: "pending", votes: { approvals: 1, rejections: 0, threshold: 2, members: 3 } });
    expect(first.votes.votes).toEqual([{ account: ID.a, vote: "approve", at: expect.any(Number), counted: true }]);
    // The same approver again counts once.
    expect((await ok(vote(w, "a", r, "approve"))).votes.approvals).toBe(1);
    const second = await ok(vote(w, "b", r, "approve", { by: ID.b }));
    expect(second).toMatchObject({ status: "approved", votes: { approvals: 2 } });
    expect(w.ledger.datanets.record("dn", r).status).toBe("approved");
    const shown = await ok(w.call(null, "GET", `/v1/datanets/dn/records/${r}/votes`));
    expect(shown.votes.votes.map((v: Json) => v.account)).toEqual([ID.a, ID.b]);
    await fails(vote(w, "c", r, "approve"), 409, "LEDGER_CONFLICT");
    await fails(w.call(null, "GET", "/v1/datanets/nope/approvers"), 404, "LEDGER_NOT_FOUND");
    await fails(w.call(null, "GET", "/v1/datanets/dn/records/999/votes"), 404, "LEDGER_NOT_FOUND");
  });

  it("refuses non-approvers, a `by` naming another account, and committees set by anyone but the owner — writing nothing", async () => {
    const w = await world();
    await ok(committee(w, [ID.a, ID.b, ID.c], 2));
    const r = await contribute(w, "a pending record");
    const before = snapshot(w.ledger);
    await fails(vote(w, "mallory", r, "approve"), 403, "LEDGER_FORBIDDEN");
    await fails(vote(w, "mallory", r, "reject"), 403, "LEDGER_FORBIDDEN");
    await fails(vote(w, "carol", r, "approve"), 403, "LEDGER_FORBIDDEN");
    // Naming an approver (or the owner) in the body makes no one that account.
    await fails(vote(w, "mallory", r, "approve", { by: ID.a }), 403, "PERMISSION_DENIED", "by");
    await fails(vote(w, "a", r, "approve", { by: "olivia" }), 403, "PERMISSION_DENIED", "by");
    await fails(w.call("a", "PUT", "/v1/datanets/dn/approvers", { approvers: [ID.a], threshold: 1, by: "olivia" }), 403, "PERMISSION_DENIED", "by");
    await fails(committee(w, [ID.a, ID.mallory], 1, "a"), 403, "LEDGER_FORBIDDEN");
    await fails(committee(w, [ID.mallory], 1, "mallory"), 403, "LEDGER_FORBIDDEN");
    await fails(committee(w, [ID.mallory], 1, "operator"), 403, "PERMISSION_DENIED");
    await fails(committee(w, [ID.mallory], 1, null), 401, "UNAUTHENTICATED");
    await fails(w.call(null, "POST", `/v1/datanets/dn/records/${r}/approve`, {}), 401, "UNAUTHENTICATED");
    // Bodies the owner may not send.
    const many = Array.from({ length: 33 }, (_, i) => `v${i}`);
    await fails(committee(w, [ID.a, ID.b], 0), 400, "INVALID_ARGUMENT", "threshold");
    await fails(committee(w, [ID.a, ID.b], 3), 400, "INVALID_ARGUMENT", "threshold");
    await fails(w.call("olivia", "PUT", "/v1/datanets/dn/approvers", { approvers: [ID.a], threshold: "1" }), 400, "INVALID_ARGUMENT", "threshold");
    await fails(committee(w, many, 1), 400, "INVALID_ARGUMENT", "approvers");
    await fails(committee(w, [ID.a, ADDRESS.a], 1), 400, "INVALID_ARGUMENT", "approvers");
    await fails(committee(w, [ID.a, "olivia"], 1), 400, "INVALID_ARGUMENT", "approvers");
    await fails(committee(w, [ID.a, 7 as unknown as string], 1), 400, "INVALID_ARGUMENT", "approvers[1]");
    await fails(w.call("olivia", "PUT", "/v1/datanets/dn/approvers", { approvers: ID.a, threshold: 1 }), 400, "INVALID_ARGUMENT", "approvers");
    await fails(w.call("olivia", "PUT", "/v1/datanets/dn/approvers", { approvers: [ID.a], threshold: 1, quorum: 1 }), 400, "INVALID_ARGUMENT", "quorum");
    await fails(w.call("olivia", "PUT", "/v1/datanets/nope/approvers", { approvers: [ID.a], threshold: 1 }), 404, "LEDGER_NOT_FOUND");
    expect(snapshot(w.ledger)).toBe(before);
  });

  it("rejects past n − k, re-evaluates on a committee change, and leaves the owner deciding alone", async () => {
    const w = await world();
    await ok(committee(w, [ID.a, ID.b, ID.c], 2));
    const r = await contribute(w, "to be rejected");
    expect((await ok(vote(w, "c", r, "reject"))).status).toBe("pending");
    expect(await ok(vote(w, "b", r, "reject"))).toMatchObject({ status: "rejected", votes: { approvals: 0, rejections: 2 } });
    await fails(vote(w, "b", r, "approve"), 409, "LEDGER_CONFLICT");

    const s = await contribute(w, "one approval so far");
    await ok(vote(w, "a", s, "approve"));
    const t = await contribute(w, "approved by a removed approver");
    await ok(vote(w, "c", t, "approve"));
    const change = await ok(committee(w, [ID.a, ID.b], 1));
    expect(change).toMatchObject({ approvers: [ID.a, ID.b].sort(), threshold: 1, approved: [s], rejected: [], held: [] });
    const after = await ok(w.call(null, "GET", `/v1/datanets/dn/records/${t}/votes`));
    expect(after).toMatchObject({ status: "pending", votes: { approvals: 0, members: 2, votes: [{ account: ID.c, counted: false }] } });
    await fails(vote(w, "c", t, "approve"), 403, "LEDGER_FORBIDDEN");

    // The owner decides at once, whatever the votes.
    expect(await ok(vote(w, "olivia", t, "approve"))).toMatchObject({ status: "approved", votes: { approvals: 0 } });
    const u = await contribute(w, "the owner rejects");
    expect((await ok(vote(w, "olivia", u, "reject", { by: "olivia" }))).status).toBe("rejected");
    // Removed, the committee votes no more.
    expect(await ok(committee(w, [], 0))).toMatchObject({ approvers: [], threshold: 0 });
    await fails(vote(w, "a", await contribute(w, "after the committee"), "approve"), 403, "LEDGER_FORBIDDEN");
  });
});

describe("verbatim duplicates over HTTP", () => {
  it("refuses a contribution identical to or inside an approved record with 409 naming it, and writes nothing", async () => {
    const w = await world();
    const approved = await contribute(w, "the party of the first part");
    await ok(vote(w, "olivia", approved, "approve"));
    const before = snapshot(w.ledger);
    for (const content of ["the party of the first part", "party of the"]) {
      const err = await fails(w.call("carol", "POST", "/v1/datanets/dn/records", { content }), 409, "DATANET_DUPLICATE_RECORD");
      expect(err.message).toContain(`approved record ${approved}`);
    }
    expect(snapshot(w.ledger)).toBe(before);
    // More than the approved record, or another Datanet: accepted.
    await contribute(w, "the party of the first part, hereinafter the party");
    await ok(w.call("operator", "POST", "/v1/datanets", { id: "other", owner: "olivia" }));
    await ok(w.call("carol", "POST", "/v1/datanets/other/records", { content: "the party of the first part" }));
  });

  it("refuses to approve, by owner or vote, a pending record that an approval since has made a duplicate", async () => {
    const w = await world();
    await ok(committee(w, [ID.a, ID.b], 1));
    const first = await contribute(w, "hereinafter");
    const copy = await contribute(w, "hereinafter");
    const part = await contribute(w, "inafter");
    await ok(vote(w, "a", first, "approve"));
    const before = snapshot(w.ledger);
    for (const [as, record] of [["olivia", copy], ["b", copy], ["b", part]] as const) {
      const err = await fails(vote(w, as, record, "approve"), 409, "DATANET_DUPLICATE_RECORD");
      expect(err.message).toContain(`approved record ${first}`);
    }
    expect(snapshot(w.ledger)).toBe(before);
    expect(w.ledger.datanets.record("dn", copy).status).toBe("pending");
    expect((await ok(vote(w, "olivia", copy, "reject"))).status).toBe("rejected");
  });
});
