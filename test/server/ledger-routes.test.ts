/**
 * The economics endpoints over a real Ledger (temp SQLite file) behind the real server
 * (buildServer registers them over the slot's attribution; its error handler maps ledger errors
 * to OpenAI-style bodies), with a recording AttributionContext (FakeEngine's tokenizer), and
 * `openlora ledger …` run in-process against it.
 */
import { join } from "node:path";
import { hashTypedData, keccak256, recoverTypedDataAddress, stringToHex, type Hex } from "viem";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { canonicalJson } from "../../src/attribution/canonical.js";
import { checkpointSignedBy, parseSignedCheckpoint } from "../../src/attribution/checkpoints.js";
import { merkleRoot, verifyMerkleProof } from "../../src/attribution/merkle.js";
import { receiptDigest, receiptFromJSON, verifyReceiptSignature } from "../../src/attribution/receipts.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import { runLedger } from "../../src/cli/ledger.js";
import { isOpenLoraError } from "../../src/errors.js";
import { Ledger } from "../../src/ledger/index.js";
import { buildServer, type EngineSlot } from "../../src/server/app.js";
import type { AttributionContext } from "../../src/server/ledger-routes.js";
import { tempDir } from "../helpers/tmp.js";
import { FakeEngine } from "./fake-engine.js";

const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const dir = tempDir("openlora-ledger-routes-");
const h = (s: string): Hex => keccak256(stringToHex(s));
let files = 0;

interface Harness {
  ledger: Ledger;
  engine: FakeEngine;
  indexed: Array<[string, number]>;
  root: string;
  /** API keys of the accounts created through `account()`. */
  keys: Record<string, string>;
  close(): Promise<void>;
}

const OPERATOR = "olo_ledger-routes-test-operator-token-0123456789";
const SERVED_HASH: Hex = `0x${"5e".repeat(32)}`;

let s: Harness;

async function start(): Promise<Harness> {
  let t = 1_700_000_000_000;
  const ledger = new Ledger({ path: join(dir, `l${files++}.sqlite`), nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op", minAgentStake: 100n, now: () => t++ });
  const engine = new FakeEngine();
  const indexed: Array<[string, number]> = [];
  const attribution: AttributionContext = {
    ledger,
    tokenize: (text) => engine.tokenize(text, false),
    indexVersion: (datanet, version) => { indexed.push([datanet, version]); },
    // This node serves one adapter, "served-lora", whose files hash to SERVED_HASH.
    servedContentHash: async (id) => (id === "served-lora" ? SERVED_HASH : undefined),
  };
  // buildServer registers the ledger routes itself, over whatever attribution the slot holds.
  const slot: EngineSlot = { state: "ready", engine, attribution: attribution as EngineSlot["attribution"] };
  const app = await buildServer(slot, { operatorToken: OPERATOR });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  if (typeof address !== "object" || address === null) throw new Error("no address");
  return {
    ledger, engine, indexed, root: `http://127.0.0.1:${address.port}`, keys: {},
    close: async () => {
      const closing = app.close();
      app.server.closeAllConnections();
      await closing;
      ledger.close();
    },
  };
}

beforeEach(async () => { s = await start(); });
afterEach(async () => { await s.close(); });

type Json = any;

/** `as`: the credential sent — the operator's token (default), an account id (its key), or null (none). */
async function call(method: string, path: string, body?: unknown, rawBody?: string, as: string | null = OPERATOR): Promise<{ status: number; json: Json }> {
  const headers: Record<string, string> = {};
  if (as !== null) headers.authorization = `Bearer ${as === OPERATOR ? OPERATOR : s.keys[as] ?? as}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined || rawBody !== undefined) {
    headers["content-type"] = "application/json";
    init.body = rawBody ?? JSON.stringify(body);
  }
  const res = await fetch(s.root + path, init);
  return { status: res.status, json: await res.json() };
}
const get = (path: string) => call("GET", path, undefined, undefined, null);
const post = (path: string, body?: unknown, as: string | null = OPERATOR) => call("POST", path, body, undefined, as);

/** Creates an account through the operator endpoint and keeps its key for `post(…, id)`. */
async function account(id: string): Promise<Json> {
  const r = await ok(post("/v1/accounts/agents", { id }));
  s.keys[id] = r.apiKey;
  return r;
}

/** Creates an account and funds it (operator deposit). */
async function funded(id: string, amount: string): Promise<void> {
  await account(id);
  await ok(post(`/v1/accounts/agents/${id}/deposit`, { amount }));
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
  expect(r.json.error.type).toBe(status >= 500 ? "server_error" : "invalid_request_error");
  expect(typeof r.json.error.message).toBe("string");
  if (param !== undefined) expect(r.json.error.param).toBe(param);
  return r.json;
}

const BASE = "meta/llama"; // a slash in an id: path segments are percent-encoded
const baseModel = { id: BASE, kind: "base", owner: "meta", priceIn: "1", priceOut: "2", contentHash: h("llama"), developers: [{ party: "meta", share: "1" }] };
const adapter = {
  id: "legal-lora", kind: "adapter", owner: "alice", baseModel: BASE, priceIn: "10", priceOut: "40", contentHash: h("legal-lora"),
  developers: [{ party: "alice", share: "2" }, { party: "bob", share: "1" }],
  lineage: [{ datanet: "legal", version: 1, weight: "7" }],
  shares: { developerBps: 5000, stakerBps: 2000, dataBps: 3000 },
};
const CONTENT = ["the party of the first part", "hereinafter", "spam"];

/** A Datanet "legal" with version 1 (carol's and dave's records approved, eve's rejected), both models, a funded agent. */
async function populate(): Promise<void> {
  await ok(post("/v1/ledger/models", baseModel));
  for (const who of ["olivia", "carol", "dave", "eve", "sam"]) await account(who);
  await ok(post("/v1/datanets", { id: "legal", owner: "olivia" }));
  const ids: number[] = [];
  for (const [i, who] of ["carol", "dave", "eve"].entries()) ids.push((await ok(post("/v1/datanets/legal/records", { content: CONTENT[i] }, who))).id);
  await ok(post(`/v1/datanets/legal/records/${ids[0]}/approve`, {}, "olivia"));
  await ok(post(`/v1/datanets/legal/records/${ids[1]}/approve`, { by: "olivia" }, "olivia"));
  await ok(post(`/v1/datanets/legal/records/${ids[2]}/reject`, {}, "olivia"));
  await ok(post("/v1/datanets/legal/publish", {}, "olivia"));
  await ok(post("/v1/ledger/models", adapter));
  await funded("agent", "1000100");
  await ok(post("/v1/accounts/agents/agent/stake", { amount: "100" }, "agent"));
}

/** One request settled through the ledger directly (reserve + settle), as the completions path will. */
async function settleOne(l: Ledger) {
  const worst = l.worstCaseFee({ baseModel: BASE, adapters: ["legal-lora"], tokensIn: 5, maxTokens: 16 });
  const reservation = l.reserve("agent", worst);
  const carol = [...CONTENT[0]!].map((c) => c.codePointAt(0)!);
  return l.settle(reservation, {
    baseModel: BASE, adapters: [{ id: "legal-lora", weightPpm: 1_000_000 }],
    promptTokens: [1, 2, 3, 4, 5], outputTokens: carol.slice(0, 8).concat([99]),
    sampling: { temperature: 0, seed: 7 }, finish: "eos",
    spans: [{ datanet: "legal@1", recordId: 1, contributor: "carol", start: 0, end: 8 }],
  });
}

describe("ledger routes: the whole flow", () => {
  it("registers models, runs a Datanet to a published (indexed) version, funds an agent, stakes, and shows the payouts", async () => {
    const base = await ok(post("/v1/ledger/models", baseModel));
    expect(base).toMatchObject({ id: BASE, kind: "base", baseModel: null, priceIn: "1", priceOut: "2", contentHash: h("llama"), developers: [{ party: "meta", share: "1" }], lineage: [], parents: [], shares: null });

    for (const who of ["olivia", "carol", "dave", "eve"]) await account(who);
    expect(await ok(post("/v1/datanets", { id: "legal", owner: "olivia" }))).toEqual({ id: "legal", owner: "olivia", versions: [] });
    const recs: Json[] = [];
    for (const [i, who] of ["carol", "dave", "eve"].entries()) recs.push(await ok(post("/v1/datanets/legal/records", { content: CONTENT[i] }, who)));
    expect(recs.map((r) => [r.contributor, r.status, r.tokenCount])).toEqual([["carol", "pending", 27], ["dave", "pending", 11], ["eve", "pending", 4]]);
    expect((await ok(get("/v1/datanets/legal/records?status=pending"))).data).toHaveLength(3);
    expect(await ok(post(`/v1/datanets/legal/records/${recs[0].id}/approve`, { by: "olivia" }, "olivia"))).toMatchObject({ id: recs[0].id, status: "approved" });
    await ok(post(`/v1/datanets/legal/records/${recs[1].id}/approve`, {}, "olivia"));
    expect(await ok(post(`/v1/datanets/legal/records/${recs[2].id}/reject`, {}, "olivia"))).toMatchObject({ status: "rejected" });
    expect(s.indexed).toEqual([]);

    const v1 = await ok(post("/v1/datanets/legal/publish", {}, "olivia"));
    expect(v1).toMatchObject({ datanet: "legal", version: 1, key: "legal@1", recordCount: 2, tokenCount: 38 });
    expect(s.indexed).toEqual([["legal", 1]]);
    // The content was tokenized with the served model's tokenizer and the ids stored for the span index.
    const stored = s.ledger.versionRecords("legal", 1);
    expect(stored.map((r) => Array.from(r.tokenIds!))).toEqual([await s.engine.tokenize(CONTENT[0]!, false), await s.engine.tokenize(CONTENT[1]!, false)]);
    expect(v1.root).toBe(merkleRoot(stored.map((r) => r.recordHash)));
    expect((await ok(get("/v1/datanets/legal/versions"))).data).toEqual([v1]);
    expect(await ok(get("/v1/datanets/legal"))).toEqual({ id: "legal", owner: "olivia", versions: [v1] });

    const lora = await ok(post("/v1/ledger/models", adapter));
    expect(lora).toMatchObject({ kind: "adapter", baseModel: BASE, lineage: [{ datanet: "legal", version: 1, weight: "7" }], shares: adapter.shares });
    expect((await ok(get("/v1/ledger/models"))).data.map((m: Json) => m.id)).toEqual(["legal-lora", BASE]);
    expect(await ok(get(`/v1/ledger/models/${encodeURIComponent(BASE)}`))).toEqual(base);

    const created = await account("agent");
    expect(created).toMatchObject({ id: "agent", stake: "0", balance: "0", reserved: "0", apiKey: expect.stringMatching(/^olk_/) });
    expect(await ok(post("/v1/accounts/agents/agent/deposit", { amount: "1000100" }))).toMatchObject({ balance: "1000100" });
    expect(await ok(post("/v1/accounts/agents/agent/stake", { amount: "100" }, "agent"))).toMatchObject({ stake: "100", balance: "1000000" });

    await funded("sam", "50");
    expect(await ok(post("/v1/stakes", { model: "legal-lora", amount: "30" }, "sam"))).toEqual({ staker: "sam", model: "legal-lora", amount: "30" });
    expect(await ok(post("/v1/stakes", { staker: "sam", model: "legal-lora", amount: "10" }, "sam"))).toMatchObject({ amount: "40" });
    expect(await ok(post("/v1/stakes/unstake", { model: "legal-lora", amount: "15" }, "sam"))).toMatchObject({ amount: "25" });
    expect(await ok(get("/v1/accounts/agents/sam"))).toMatchObject({ balance: "25" });

    const receipt = await settleOne(s.ledger);
    const agent = await ok(get("/v1/accounts/agents/agent"));
    expect(agent).toMatchObject({ balance: (1_000_000n - receipt.receipt.fee).toString(), reserved: "0" });
    const balances = (await ok(get("/v1/balances"))).data as { party: string; amount: string }[];
    expect(balances).toEqual(s.ledger.balances().map((b) => ({ party: b.party, amount: b.amount.toString() })));
    expect(balances.map((b) => b.party)).toEqual(expect.arrayContaining(["treasury", "op", "meta", "alice", "bob", "sam", "carol"]));
    expect(balances.reduce((t, b) => t + BigInt(b.amount), 0n)).toBe(receipt.receipt.fee);
    expect(await ok(get("/v1/balances/carol"))).toEqual({ party: "carol", amount: s.ledger.balanceOf("carol").toString() });
    expect(await ok(get("/v1/balances/nobody"))).toEqual({ party: "nobody", amount: "0" });

    // Earnings are paid out by their owner; the operator's own by the operator.
    const carol = s.ledger.balanceOf("carol");
    expect(await ok(post("/v1/balances/carol/payout", { amount: carol.toString() }, "carol"))).toEqual({ party: "carol", amount: "0" });
    expect(await ok(post("/v1/balances/op/payout", { amount: "1" }))).toEqual({ party: "op", amount: (s.ledger.balanceOf("op")).toString() });
    await ok(post("/v1/accounts/agents/agent/withdraw", { amount: "7" }, "agent"));
    const events = (await ok(get("/v1/ledger/events?account=agent"))).data as Json[];
    expect(events.map((e) => [e.kind, e.amount])).toEqual([["deposit", "1000100"], ["agent_stake", "100"], ["withdraw", "7"]]);
    expect(events.every((e) => /^0x[0-9a-f]{130}$/.test(e.signature))).toBe(true);
    expect(s.ledger.auditBalances().ok).toBe(true);
  });

  it("takes a served model's content hash from the node's own files, and refuses a different one", async () => {
    await ok(post("/v1/ledger/models", baseModel));
    const served = { ...adapter, id: "served-lora", lineage: undefined, contentHash: undefined };
    await fails(post("/v1/ledger/models", { ...served, contentHash: h("something else") }), 409, "MODEL_CONTENT_MISMATCH", "contentHash");
    expect(await ok(post("/v1/ledger/models", served))).toMatchObject({ id: "served-lora", contentHash: SERVED_HASH });
    await ok(post("/v1/ledger/models", { ...served, id: "served-twice", contentHash: SERVED_HASH }));
    // A model the node does not serve needs the hash of its files in the body.
    await fails(post("/v1/ledger/models", { ...served, id: "elsewhere" }), 400, "INVALID_ARGUMENT", "contentHash");
  });

  it("carries amounts above 2^53 exactly, as strings both ways", async () => {
    const big = "123456789012345678901234567890";
    const m = await ok(post("/v1/ledger/models", { ...baseModel, priceIn: "9007199254740993", priceOut: big, developers: [{ party: "meta", share: big }] }));
    expect(m).toMatchObject({ priceIn: "9007199254740993", priceOut: big, developers: [{ party: "meta", share: big }] });
    expect((await ok(get(`/v1/ledger/models/${encodeURIComponent(BASE)}`))).priceOut).toBe(big);
    expect(s.ledger.getModel(BASE).priceOut).toBe(BigInt(big));
    await funded("whale", big);
    await ok(post("/v1/accounts/agents/whale/stake", { amount: big }, "whale"));
    await ok(post("/v1/accounts/agents/whale/deposit", { amount: "9007199254740993" }));
    const a = await ok(post("/v1/accounts/agents/whale/deposit", { amount: "9007199254740993" }));
    expect(a).toMatchObject({ stake: big, balance: "18014398509481986" });
    expect(s.ledger.getAgent("whale").balance).toBe(18014398509481986n);
    expect(await ok(post("/v1/stakes", { model: BASE, amount: "18014398509481986" }, "whale"))).toMatchObject({ amount: "18014398509481986" });
    // A JSON number is refused even when it is small: the rule is strings, always.
    await fails(post("/v1/accounts/agents/whale/deposit", { amount: 5 }), 400, "INVALID_ARGUMENT", "amount");
    await fails(post("/v1/accounts/agents/whale/deposit", { amount: (2n ** 256n).toString() }), 400, "INVALID_ARGUMENT", "amount");
  });
});

describe("ledger routes: errors", () => {
  it("validates every field with INVALID_ARGUMENT naming it (400)", async () => {
    await ok(post("/v1/ledger/models", baseModel));
    const bad: Array<[Record<string, unknown>, string | null]> = [
      [{ ...baseModel, id: undefined }, "id"],
      [{ ...baseModel, id: "" }, "id"],
      [{ ...baseModel, kind: "lora" }, "kind"],
      [{ ...baseModel, priceIn: 1 }, "priceIn"],
      [{ ...baseModel, priceIn: "-1" }, "priceIn"],
      [{ ...baseModel, priceOut: "01" }, "priceOut"],
      [{ ...baseModel, priceOut: "1.5" }, "priceOut"],
      [{ ...baseModel, contentHash: "0x12" }, "contentHash"],
      [{ ...baseModel, developers: [] }, "developers"],
      [{ ...baseModel, developers: undefined }, "developers"],
      [{ ...baseModel, developers: [{ party: "meta", share: 1 }] }, "developers[0].share"],
      [{ ...baseModel, developers: [{ party: "meta" }] }, "developers[0].share"],
      [{ ...baseModel, developers: [{ party: "meta", share: "1", extra: true }] }, "developers[0].extra"],
      [{ ...baseModel, developers: ["meta"] }, "developers[0]"],
      [{ ...baseModel, price_in: "1" }, "price_in"],
      [{ ...baseModel, baseModel: BASE }, "baseModel"],
      [{ ...adapter, id: "x", baseModel: undefined }, "baseModel"],
      [{ ...adapter, id: "x", lineage: [{ datanet: "legal", version: 0, weight: "1" }] }, "lineage[0].version"],
      [{ ...adapter, id: "x", lineage: [{ datanet: "le@gal", version: 1, weight: "1" }] }, "lineage[0].datanet"],
      [{ ...adapter, id: "x", lineage: {} }, "lineage"],
      [{ ...adapter, id: "x", parents: [{ model: "legal-lora", weight: "-2" }] }, "parents[0].weight"],
      [{ ...adapter, id: "x", shares: { developerBps: 5000, stakerBps: 2000, dataBps: 2000 } }, "shares"],
      [{ ...adapter, id: "x", shares: { developerBps: 5000, stakerBps: 2000, dataBps: "3000" } }, "shares.dataBps"],
    ];
    for (const [body, param] of bad) await fails(post("/v1/ledger/models", body), 400, "INVALID_ARGUMENT", param);
    // What only the ledger can check still comes back as INVALID_ARGUMENT.
    await fails(post("/v1/ledger/models", { ...baseModel, id: "zero", developers: [{ party: "meta", share: "0" }] }), 400, "INVALID_ARGUMENT");

    await fails(post("/v1/datanets", { id: "a@b", owner: "o" }), 400, "INVALID_ARGUMENT", "id");
    await fails(post("/v1/datanets", { id: "d" }), 400, "INVALID_ARGUMENT", "owner");
    await fails(post("/v1/datanets", ["d", "o"]), 400, "INVALID_ARGUMENT", null);
    await fails(post("/v1/datanets"), 400, "INVALID_ARGUMENT", "id");
    await fails(call("POST", "/v1/datanets", undefined, "{not json"), 400, "INVALID_ARGUMENT");
    await account("o");
    await ok(post("/v1/datanets", { id: "d", owner: "o" }));
    await fails(post("/v1/datanets/d/records", { content: "" }, "o"), 400, "INVALID_ARGUMENT", "content");
    await fails(post("/v1/datanets/d/records", { contributor: "c\n", content: "x" }, "o"), 400, "INVALID_ARGUMENT", "contributor");
    await fails(post("/v1/datanets/d/records/abc/approve", {}, "o"), 400, "INVALID_ARGUMENT", "record");
    await fails(post("/v1/datanets/d/records/1/approve", { by: 5 }, "o"), 400, "INVALID_ARGUMENT", "by");
    await fails(get("/v1/datanets/d/records?status=done"), 400, "INVALID_ARGUMENT", "status");

    await fails(post("/v1/accounts/agents", { id: "a", stake: "5" }), 400, "INVALID_ARGUMENT", "stake");
    await account("a");
    await fails(post("/v1/accounts/agents/a/deposit", { amount: "0" }), 400, "INVALID_ARGUMENT", "amount");
    await fails(post("/v1/accounts/agents/a/deposit", {}), 400, "INVALID_ARGUMENT", "amount");
    await fails(post("/v1/stakes", { model: BASE, amount: "0" }, "a"), 400, "INVALID_ARGUMENT", "amount");
    await fails(post("/v1/stakes/unstake", { amount: "1" }, "a"), 400, "INVALID_ARGUMENT", "model");
    await fails(get("/v1/ledger/events?after=-1"), 400, "INVALID_ARGUMENT", "after");
    await fails(get("/v1/ledger/events?limit=100000"), 400, "INVALID_ARGUMENT", "limit");
    await fails(get("/v1/receipts/0"), 400, "INVALID_ARGUMENT", "id");
    await fails(get("/v1/receipts/1e3"), 400, "INVALID_ARGUMENT", "id");
    await fails(post("/v1/epochs/close", { force: true }), 400, "INVALID_ARGUMENT", "force");
  });

  it("answers 404 LEDGER_NOT_FOUND for unknown ids, 409 LEDGER_CONFLICT for conflicts, 403 for non-owners", async () => {
    await populate();
    await fails(get("/v1/ledger/models/nope"), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/ledger/models", { ...adapter, id: "x", baseModel: "nope" }), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/ledger/models", { ...adapter, id: "x", lineage: [{ datanet: "legal", version: 9, weight: "1" }] }), 404, "LEDGER_NOT_FOUND");
    await fails(get("/v1/datanets/nope"), 404, "LEDGER_NOT_FOUND");
    await fails(get("/v1/datanets/nope/versions"), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/datanets/nope/records", { content: "x" }, "carol"), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/datanets/legal/records/999/approve", {}, "olivia"), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/datanets/nope/publish", {}, "olivia"), 404, "LEDGER_NOT_FOUND");
    await fails(get("/v1/accounts/agents/nope"), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/accounts/agents/nope/deposit", { amount: "1" }), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/accounts/agents/nope/keys", {}), 404, "LEDGER_NOT_FOUND");
    await fails(post("/v1/stakes", { model: "nope", amount: "1" }, "agent"), 404, "LEDGER_NOT_FOUND");
    await fails(get("/v1/receipts/1"), 404, "LEDGER_NOT_FOUND");
    await fails(get("/v1/ledger/nope"), 404, "ROUTE_NOT_FOUND");

    await fails(post("/v1/ledger/models", baseModel), 409, "LEDGER_CONFLICT");
    await fails(post("/v1/datanets", { id: "legal", owner: "x" }), 409, "LEDGER_CONFLICT");
    await fails(post("/v1/accounts/agents", { id: "agent" }), 409, "LEDGER_CONFLICT");
    await fails(post("/v1/accounts/agents", { id: "treasury" }), 409, "LEDGER_CONFLICT");
    await fails(post("/v1/datanets/legal/records/1/approve", {}, "olivia"), 409, "LEDGER_CONFLICT");
    await fails(post("/v1/datanets/legal/records/3/approve", {}, "olivia"), 409, "LEDGER_CONFLICT");
    await fails(post("/v1/stakes/unstake", { model: "legal-lora", amount: "1" }, "sam"), 402, "INSUFFICIENT_BALANCE");
    await fails(post("/v1/stakes", { model: "legal-lora", amount: "1" }, "sam"), 402, "INSUFFICIENT_BALANCE");
    await ok(post("/v1/datanets", { id: "empty", owner: "olivia" }));
    await fails(post("/v1/datanets/empty/publish", {}, "olivia"), 409, "LEDGER_CONFLICT");
    expect(s.indexed).toEqual([["legal", 1]]);

    await account("mallory");
    const rec = await ok(post("/v1/datanets/legal/records", { content: "mine" }, "mallory"));
    await fails(post(`/v1/datanets/legal/records/${rec.id}/approve`, {}, "mallory"), 403, "LEDGER_FORBIDDEN");
    await fails(post("/v1/datanets/legal/publish", {}, "mallory"), 403, "LEDGER_FORBIDDEN");
    // Naming the owner in `by` does not make mallory the owner.
    await fails(post(`/v1/datanets/legal/records/${rec.id}/approve`, { by: "olivia" }, "mallory"), 403, "PERMISSION_DENIED", "by");
    expect(s.indexed).toEqual([["legal", 1]]);
  });
});

describe("ledger routes: without attribution", () => {
  it("answer 503 NOT_READY while the slot holds no ledger", async () => {
    const app = await buildServer({ state: "ready", engine: new FakeEngine() });
    try {
      const res = await app.inject({ method: "GET", url: "/v1/balances" });
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe("NOT_READY");
    } finally {
      await app.close();
    }
  });
});

describe("ledger routes: receipts, epochs, verification", () => {
  it("serves a receipt with everything needed to check it, and its Merkle proof once the epoch closes", async () => {
    await populate();
    const first = await settleOne(s.ledger);
    const pending = await ok(get("/v1/receipts/1"));
    expect(pending).toMatchObject({ id: 1, hash: first.hash, signature: first.signature, signer: s.ledger.nodeAddress, epoch: null, proof: null });
    expect(typeof pending.receipt.fee).toBe("string");
    expect(pending.receipt.fee).toBe(first.receipt.fee.toString());
    expect(canonicalJson(pending.receipt)).toBe(pending.json);
    const parsed = receiptFromJSON(pending.json);
    expect(parsed).toEqual(first.receipt);
    expect(receiptDigest(parsed, { chainId: pending.typedData.domain.chainId })).toBe(pending.hash);
    expect(await verifyReceiptSignature(parsed, pending.signature, { chainId: pending.typedData.domain.chainId })).toBe(true);
    // The served typed data alone is enough for a third party (uints as decimal strings).
    const { domain, types, primaryType, message } = pending.typedData;
    expect(domain).toEqual({ name: "openlora", version: "2", chainId: 1 });
    const typed = { domain, types, primaryType, message: { ...message, id: BigInt(message.id), time: BigInt(message.time), fee: BigInt(message.fee) } };
    expect(hashTypedData(typed)).toBe(pending.hash);
    expect(await recoverTypedDataAddress({ ...typed, signature: pending.signature })).toBe(pending.signer);

    await settleOne(s.ledger);
    await settleOne(s.ledger);
    expect((await ok(get("/v1/epochs"))).data).toEqual([]);
    const closed = await ok(post("/v1/epochs/close"));
    expect(closed.epoch).toMatchObject({ id: 1, firstReceipt: 1, lastReceipt: 3, count: 3 });
    expect(await ok(post("/v1/epochs/close", {}))).toEqual({ epoch: null });
    expect((await ok(get("/v1/epochs"))).data).toEqual([closed.epoch]);

    for (const id of [1, 2, 3]) {
      const r = await ok(get(`/v1/receipts/${id}`));
      expect(r.epoch).toBe(1);
      expect(r.proof).toMatchObject({ epoch: 1, root: closed.epoch.root, index: id - 1 });
      expect(r.proof.proof.length).toBeGreaterThan(0);
      expect(verifyMerkleProof(r.proof.proof, r.proof.root, r.hash)).toBe(true);
      expect(verifyMerkleProof(r.proof.proof, r.proof.root, first.hash)).toBe(id === 1);
    }

    const verify = await ok(call("GET", "/v1/ledger/verify"));
    expect(verify).toEqual({ chain: { ok: true, receipts: 3, events: 2, epochs: 1, unsignedEpochs: 0 }, balances: { ok: true, parties: expect.any(Number), agents: 6, mismatches: [] } });
    const cp = await ok(get("/v1/ledger/checkpoint"));
    expect(cp.checkpoint).toMatchObject({ node: s.ledger.nodeAddress, receipts: 3, events: 2, epoch: 1, epochRoot: closed.epoch.root });
    expect(await checkpointSignedBy(parseSignedCheckpoint(cp), s.ledger.nodeAddress)).toBe(true);
    expect(await checkpointSignedBy(parseSignedCheckpoint(closed.epoch.checkpoint), s.ledger.nodeAddress)).toBe(true);
    // A tampered balance shows up in the audit, amounts as strings.
    s.ledger.db.prepare("UPDATE balances SET amount = '1' WHERE party = 'alice'").run();
    const broken = await ok(call("GET", "/v1/ledger/verify"));
    expect(broken.balances.ok).toBe(false);
    expect(broken.balances.mismatches).toEqual([{ kind: "party", id: "alice", expected: expect.stringMatching(/^[0-9]+$/), actual: "1" }]);
  });
});

describe("openlora ledger (in-process, over HTTP)", () => {
  /** Runs the command with `as`'s credential in OPENLORA_API_KEY (the operator's by default). */
  async function cli(args: string[], as: string | null = OPERATOR): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const o = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => { out += String(chunk); return true; });
    const e = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => { err += String(chunk); return true; });
    const saved = { key: process.env.OPENLORA_API_KEY, file: process.env.OPENLORA_OPERATOR_TOKEN_FILE };
    if (as === null) delete process.env.OPENLORA_API_KEY;
    else process.env.OPENLORA_API_KEY = as === OPERATOR ? OPERATOR : s.keys[as]!;
    process.env.OPENLORA_OPERATOR_TOKEN_FILE = join(dir, "no-such-operator-token");
    try {
      const code = await runLedger([...args, "--url", s.root]);
      return { code, out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
      for (const [k, v] of [["OPENLORA_API_KEY", saved.key], ["OPENLORA_OPERATOR_TOKEN_FILE", saved.file]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }
  const json = async (args: string[], as: string | null = OPERATOR): Promise<Json> => {
    const r = await cli(args, as);
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out);
  };
  const newAccount = async (id: string): Promise<void> => {
    const r = await json(["agents", "create", id]);
    expect(r.apiKey).toMatch(/^olk_/);
    s.keys[id] = r.apiKey;
  };

  it("drives the whole flow, prints JSON, and reports server and usage errors", async () => {
    expect(await json(["models", "add", "--id", BASE, "--kind", "base", "--owner", "meta", "--price-in", "1", "--price-out", "2",
      "--content-hash", h("llama"), "--developer", "meta=1"])).toMatchObject({ id: BASE, kind: "base" });
    for (const who of ["olivia", "carol"]) await newAccount(who);
    expect(await json(["datanets", "create", "legal", "--owner", "olivia"])).toMatchObject({ id: "legal" });
    const rec = await json(["datanets", "contribute", "legal", "--content", CONTENT[0]!], "carol");
    expect(rec).toMatchObject({ contributor: "carol", status: "pending", tokenCount: CONTENT[0]!.length });
    expect((await json(["datanets", "records", "legal", "--status", "pending"], null)).data).toHaveLength(1);
    expect(await json(["datanets", "approve", "legal", String(rec.id)], "olivia")).toMatchObject({ status: "approved" });
    expect(await json(["datanets", "publish", "legal"], "olivia")).toMatchObject({ version: 1, recordCount: 1 });
    expect(s.indexed).toEqual([["legal", 1]]);
    expect((await json(["datanets", "versions", "legal"], null)).data).toHaveLength(1);
    expect(await json(["models", "add", "--id", "legal-lora", "--kind", "adapter", "--owner", "alice", "--base-model", BASE,
      "--price-in", "10", "--price-out", "40", "--content-hash", h("legal-lora"), "--developer", "alice=2", "--developer", "bob=1",
      "--lineage", "legal@1=7", "--shares", "5000,2000,3000"])).toMatchObject({ lineage: [{ datanet: "legal", version: 1, weight: "7" }], shares: { developerBps: 5000 } });
    expect((await json(["models", "list"], null)).data).toHaveLength(2);
    expect(await json(["models", "show", BASE], null)).toMatchObject({ id: BASE });
    await newAccount("agent");
    expect(await json(["agents", "deposit", "agent", "9007199254740993"])).toMatchObject({ balance: "9007199254740993" });
    await json(["agents", "stake", "agent", "100"], "agent");
    expect(await json(["agents", "show", "agent"], null)).toMatchObject({ stake: "100", balance: "9007199254740893" });
    await newAccount("sam");
    await json(["agents", "deposit", "sam", "40"]);
    expect(await json(["stake", "legal-lora", "30"], "sam")).toEqual({ staker: "sam", model: "legal-lora", amount: "30" });
    expect(await json(["unstake", "legal-lora", "10"], "sam")).toMatchObject({ amount: "20" });
    const rotated = await json(["agents", "key", "sam"], "sam");
    expect(rotated.apiKey).not.toBe(s.keys.sam);
    expect((await cli(["stake", "legal-lora", "1"], "sam")).err).toMatch(/^error \[UNAUTHENTICATED\]/);
    s.keys.sam = rotated.apiKey;

    const settled = await settleOne(s.ledger);
    expect((await json(["balances"], null)).data.length).toBeGreaterThan(3);
    expect(await json(["balances", "alice"], null)).toEqual({ party: "alice", amount: s.ledger.balanceOf("alice").toString() });
    expect(await json(["receipt", "1"], null)).toMatchObject({ hash: settled.hash, proof: null });
    expect((await json(["epoch", "close"])).epoch).toMatchObject({ id: 1, count: 1 });
    expect((await json(["epoch", "list"], null)).data).toHaveLength(1);
    expect((await json(["receipt", "1"], null)).proof).toMatchObject({ epoch: 1, index: 0 });
    expect((await json(["events", "--account", "sam"], null)).data.map((e: Json) => e.kind)).toEqual(["deposit", "stake", "unstake"]);
    expect((await json(["checkpoint"], null)).checkpoint).toMatchObject({ receipts: 1, epoch: 1 });
    expect((await json(["verify"])).chain).toMatchObject({ ok: true, receipts: 1, epochs: 1 });

    // Server errors: `error [CODE]: message` on stderr, exit 1 (INVALID_ARGUMENT from the server included).
    const missing = await cli(["agents", "show", "nobody"], null);
    expect(missing).toMatchObject({ code: 1, out: "" });
    expect(missing.err).toMatch(/^error \[LEDGER_NOT_FOUND\]: no such agent: nobody\n$/);
    const badAmount = await cli(["agents", "deposit", "agent", "12.5"]);
    expect(badAmount.code).toBe(1);
    expect(badAmount.err).toMatch(/^error \[INVALID_ARGUMENT\]: amount must be/);
    expect((await cli(["datanets", "publish", "legal"], "carol")).err).toMatch(/^error \[LEDGER_FORBIDDEN\]/);
    expect((await cli(["agents", "deposit", "agent", "5"], "agent")).err).toMatch(/^error \[PERMISSION_DENIED\]/);
    expect((await cli(["epoch", "close"], null)).err).toMatch(/^error \[UNAUTHENTICATED\]/);
    // A failed check makes `verify` exit 1 while still printing the report.
    s.ledger.db.prepare("UPDATE balances SET amount = '1' WHERE party = 'alice'").run();
    const failed = await cli(["verify"]);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.out).balances.ok).toBe(false);

    // Usage errors throw INVALID_ARGUMENT (main.ts exits 2); an unreachable server is NOT_READY (exit 1).
    for (const args of [["stake", "sam"], ["models", "add", "--id", "x"], ["datanets", "frobnicate"], ["nope"], ["agents", "show", "a", "--bogus"],
      ["datanets", "contribute", "legal"], ["models", "add", "--lineage", "legal=1"], ["agents", "create", "x", "--stake", "5"]]) {
      const e = await cli(args).then(() => undefined, (x: unknown) => x);
      expect(isOpenLoraError(e, "INVALID_ARGUMENT") || (e as { code?: string })?.code?.startsWith("ERR_PARSE_ARGS"), `${args.join(" ")}: ${String(e)}`).toBe(true);
    }
    const down = await runLedger(["balances", "--url", "http://127.0.0.1:1"]).then(() => undefined, (x: unknown) => x);
    expect(isOpenLoraError(down, "NOT_READY")).toBe(true);
  });
});
