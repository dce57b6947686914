/**
 * Who may call what, tested as an attacker would: the documented table is the enforced one; every
 * route has a rule; every state-changing endpoint refuses the anonymous, an account's public id
 * used as a token, a revoked key, another account's key and (where an account must act) the
 * operator's token, and writes nothing when it refuses; paid inference needs the paying account's
 * key; credentials never reach logs, receipts or events.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import type { FeePolicy } from "../../src/attribution/types.js";
import { Ledger } from "../../src/ledger/index.js";
import { accessTableMarkdown, ENDPOINTS, principalOf, type EndpointRule } from "../../src/server/access.js";
import { buildServer, type EngineSlot } from "../../src/server/app.js";
import { AttributionService } from "../../src/server/attribution.js";
import { tempDir } from "../helpers/tmp.js";
import { BASE_MODEL, FakeEngine } from "./fake-engine.js";

const dir = tempDir("openlora-access-");
const KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const POLICY: FeePolicy = { protocolBps: 100, operatorBps: 900, developerBps: 4000, stakerBps: 2000, dataBps: 4000, lambdaBps: 5000 };
const OPERATOR = "olo_access-test-operator-token-abcdefghijklmnopqrstuvwxyz";
const closers: Array<() => Promise<unknown> | void> = [];
afterEach(async () => { for (const c of closers.splice(0)) await c(); });

interface World {
  app: FastifyInstance;
  ledger: Ledger;
  engine: FakeEngine;
  keys: { victim: string; mallory: string; revoked: string };
  logs: () => string;
}

async function world(): Promise<World> {
  const baseFile = join(dir, `base-${Math.random()}.bin`);
  const { writeFileSync } = await import("node:fs");
  writeFileSync(baseFile, "base model bytes");
  const ledger = new Ledger({ path: join(dir, `l-${Math.random()}.sqlite`), nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op" });
  closers.push(() => ledger.close());
  const engine = new FakeEngine();
  ledger.registerModel({ id: BASE_MODEL, kind: "base", owner: "dev", priceIn: 1n, priceOut: 1n, contentHash: engine.info.modelContentHash, developers: [{ party: "dev", share: 1n }] });
  const victim = ledger.createAccount("victim").apiKey;
  const mallory = ledger.createAccount("mallory").apiKey;
  const revoked = ledger.createAccount("gone").apiKey;
  ledger.rotateApiKey("gone");
  ledger.deposit("victim", 1_000_000n);
  ledger.stake("victim", BASE_MODEL, 10n);
  ledger.createDatanet("dn", "victim");
  ledger.contribute("dn", { contributor: "victim", content: "a record", tokenIds: [1, 2] });
  const service = new AttributionService(ledger, engine, { id: BASE_MODEL, contentHash: engine.info.modelContentHash }, "op");
  await service.start();
  let logged = "";
  const stream = new Writable({ write(chunk, _enc, done) { logged += String(chunk); done(); } });
  const slot: EngineSlot = { state: "ready", engine, attribution: service };
  const app = await buildServer(slot, { operatorToken: OPERATOR, logger: { level: "trace", stream } });
  closers.push(() => app.close());
  return { app, ledger, engine, keys: { victim, mallory, revoked }, logs: () => logged };
}

/** Every table's rows: what "nothing was written" is checked against. */
function snapshot(l: Ledger): string {
  const tables = (l.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
  return JSON.stringify(tables.map((t) => [t, l.db.prepare(`SELECT * FROM "${t}"`).all()]), (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("hex") : v));
}

const PARAMS: Record<string, string> = { id: "victim", party: "victim", record: "1", model: BASE_MODEL };
function urlOf(rule: EndpointRule): string {
  return rule.url.replace(/:(\w+)/g, (_m, k: string) => (rule.url.startsWith("/v1/datanets/") && k === "id" ? "dn" : PARAMS[k]!));
}
const BODIES: Record<string, unknown> = {
  "/v1/load_lora_adapter": { lora_name: "x", lora_path: "x.gguf" },
  "/v1/unload_lora_adapter": { lora_name: "alpha" },
  "/v1/ledger/models": { id: "m2", kind: "adapter", owner: "mallory", baseModel: BASE_MODEL, priceIn: "1", priceOut: "1", contentHash: `0x${"22".repeat(32)}`, developers: [{ party: "mallory", share: "1" }] },
  "/v1/datanets": { id: "dn2", owner: "mallory" },
  "/v1/datanets/:id/records": { content: "spam" },
  "/v1/accounts/agents": { id: "sock" },
  "/v1/stakes": { model: BASE_MODEL, amount: "1" },
  "/v1/stakes/unstake": { staker: "victim", model: BASE_MODEL, amount: "10" },
};
function bodyOf(rule: EndpointRule): unknown {
  if (rule.method === "GET") return undefined;
  return BODIES[rule.url] ?? (/(deposit|withdraw|stake|unstake|payout)$/.test(rule.url) ? { amount: "1" } : {});
}

async function send(w: World, rule: EndpointRule, authorization: string | undefined) {
  const body = bodyOf(rule);
  return w.app.inject({
    method: rule.method, url: urlOf(rule),
    headers: { ...(authorization ? { authorization } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
}

describe("the access table", () => {
  it("is the one docs/api-access.md shows, and every row is a registered route", async () => {
    const doc = readFileSync(join(import.meta.dirname, "..", "..", "docs", "api-access.md"), "utf8");
    expect(doc).toContain(accessTableMarkdown());
    const w = await world();
    for (const e of ENDPOINTS) expect(w.app.hasRoute({ method: e.method, url: e.url }), `${e.method} ${e.url}`).toBe(true);
    expect(new Set(ENDPOINTS.map((e) => `${e.method} ${e.url}`)).size).toBe(ENDPOINTS.length);
  });

  it("refuses at startup a route that has no row", async () => {
    const app = await buildServer({ state: "ready", engine: new FakeEngine() });
    closers.push(() => app.close());
    expect(() => app.post("/v1/unguarded", async () => ({}))).toThrow(/no row in ENDPOINTS/);
  });

  it("parses credentials: the operator's token, live keys, anonymous for foreign bearer values, 401 for dead tokens of ours", () => {
    const auth = { resolveApiKey: (k: string) => (k === "olk_live" ? "ann" : undefined) };
    expect(principalOf(undefined, OPERATOR, auth)).toEqual({ kind: "anonymous" });
    expect(principalOf(`Bearer ${OPERATOR}`, OPERATOR, auth)).toEqual({ kind: "operator" });
    expect(principalOf(`bearer   ${OPERATOR}`, OPERATOR, auth)).toEqual({ kind: "operator" });
    expect(principalOf("Bearer olk_live", OPERATOR, auth)).toEqual({ kind: "account", id: "ann" });
    for (const foreign of ["Bearer EMPTY", "Bearer ann", "Basic b2s=", "Bearer", "olk_live"]) expect(principalOf(foreign, OPERATOR, auth)).toEqual({ kind: "anonymous" });
    for (const dead of ["Bearer olk_dead", `Bearer ${OPERATOR}x`, "Bearer olo_guess"]) expect(() => principalOf(dead, OPERATOR, auth)).toThrow(expect.objectContaining({ code: "UNAUTHENTICATED" }));
  });
});

describe("every state-changing endpoint, attacked", () => {
  it("refuses the anonymous, a public id as token, foreign bearers, revoked keys, other accounts' keys — and writes nothing", async () => {
    const w = await world();
    const guarded = ENDPOINTS.filter((e) => e.access !== "public" && e.access !== "inference");
    expect(guarded.length).toBe(22);
    for (const rule of guarded) {
      const before = snapshot(w.ledger);
      const adaptersBefore = (await w.engine.listAdapters()).map((a) => a.id);
      const attempts: Array<[string | undefined, number]> = [
        [undefined, 401],
        ["Bearer victim", 401], // the public id is not a credential
        ["Bearer EMPTY", 401],
        [`Bearer ${w.keys.revoked}`, 401],
        ["Bearer olk_forged0000000000000000000000000000000000000", 401],
      ];
      if (rule.access === "operator") attempts.push([`Bearer ${w.keys.victim}`, 403], [`Bearer ${w.keys.mallory}`, 403]);
      if (rule.access === "self" || rule.access === "self-or-operator" || rule.access === "party-or-operator") attempts.push([`Bearer ${w.keys.mallory}`, 403]);
      if (rule.access === "self" || rule.access === "account") attempts.push([`Bearer ${OPERATOR}`, 403]);
      if (rule.access === "agent-signed") attempts.push([`Bearer ${w.keys.victim}`, 403], [`Bearer ${OPERATOR}`, 403]); // only a signature by the agent's own key
      if (rule.access === "party-or-operator") attempts.push([`Bearer ${OPERATOR}`, 403]); // :party is not the operator's party
      for (const [auth, status] of attempts) {
        const res = await send(w, rule, auth);
        expect(res.statusCode, `${rule.method} ${rule.url} as ${auth ?? "nobody"}: ${res.body}`).toBe(status);
        expect(res.json().error.code).toBe(status === 401 ? "UNAUTHENTICATED" : "PERMISSION_DENIED");
        if (status === 401) expect(res.headers["www-authenticate"]).toMatch(/^Bearer/);
      }
      expect(snapshot(w.ledger), `${rule.method} ${rule.url} wrote something`).toBe(before);
      expect((await w.engine.listAdapters()).map((a) => a.id)).toEqual(adaptersBefore);
    }
  });

  it("lets an account act only as itself: its stake, its contribution, its Datanet", async () => {
    const w = await world();
    const as = (key: string) => ({ authorization: `Bearer ${key}`, "content-type": "application/json" });
    // Mallory cannot unstake the victim's stake by naming her, nor contribute or approve in her name.
    const unstake = await w.app.inject({ method: "POST", url: "/v1/stakes/unstake", headers: as(w.keys.mallory), payload: { staker: "victim", model: BASE_MODEL, amount: "10" } });
    expect(unstake.statusCode).toBe(403);
    expect(unstake.json().error).toMatchObject({ code: "PERMISSION_DENIED", param: "staker" });
    const contribute = await w.app.inject({ method: "POST", url: "/v1/datanets/dn/records", headers: as(w.keys.mallory), payload: { contributor: "victim", content: "x" } });
    expect(contribute.statusCode).toBe(403);
    const approve = await w.app.inject({ method: "POST", url: "/v1/datanets/dn/records/1/approve", headers: as(w.keys.mallory), payload: {} });
    expect(approve.json().error.code).toBe("LEDGER_FORBIDDEN");
    // Mallory stakes only what she has; her own unstake returns only her own stake.
    expect((await w.app.inject({ method: "POST", url: "/v1/stakes", headers: as(w.keys.mallory), payload: { model: BASE_MODEL, amount: "1" } })).json().error.code).toBe("INSUFFICIENT_BALANCE");
    expect((await w.app.inject({ method: "POST", url: "/v1/stakes/unstake", headers: as(w.keys.mallory), payload: { model: BASE_MODEL, amount: "1" } })).json().error.code).toBe("INSUFFICIENT_BALANCE");
    expect(w.ledger.accounts.stakeOf("victim", BASE_MODEL)).toBe(10n);
    // The victim herself may.
    const own = await w.app.inject({ method: "POST", url: "/v1/stakes/unstake", headers: as(w.keys.victim), payload: { model: BASE_MODEL, amount: "10" } });
    expect(own.json()).toEqual({ staker: "victim", model: BASE_MODEL, amount: "0" });
    expect(w.ledger.auditBalances().ok).toBe(true);
  });
});

describe("paid inference", () => {
  it("needs the paying account's key: not its public id, not a revoked key, not the operator's token", async () => {
    const w = await world();
    const ask = (authorization?: string) => w.app.inject({
      method: "POST", url: "/v1/completions", headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
      payload: { model: BASE_MODEL, prompt: "hello", max_tokens: 3 },
    });
    for (const [auth, code] of [[undefined, "UNAUTHENTICATED"], ["Bearer victim", "UNAUTHENTICATED"], [`Bearer ${w.keys.revoked}`, "UNAUTHENTICATED"], [`Bearer ${OPERATOR}`, "PERMISSION_DENIED"]] as const) {
      const res = await ask(auth);
      expect(res.json().error.code, String(auth)).toBe(code);
    }
    expect(w.engine.submitted).toEqual([]);
    expect(w.ledger.getAgent("victim").balance).toBe(1_000_000n - 10n);
    const paid = await ask(`Bearer ${w.keys.victim}`);
    expect(paid.statusCode).toBe(200);
    const { receipt } = w.ledger.getReceipt(Number(paid.headers["openlora-receipt"]));
    expect(receipt.agent).toBe("victim");
    expect(w.ledger.getAgent("victim").balance).toBe(1_000_000n - 10n - receipt.fee);
  });
});

describe("credentials stay secret", () => {
  it("never appear in logs, receipts, events or any GET answer", async () => {
    const w = await world();
    const key = w.keys.victim;
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const done = await w.app.inject({ method: "POST", url: "/v1/completions", headers, payload: { model: BASE_MODEL, prompt: "hi", max_tokens: 2 } });
    expect(done.statusCode).toBe(200);
    await w.app.inject({ method: "POST", url: "/v1/accounts/agents/victim/withdraw", headers, payload: { amount: "1" } });
    await w.app.inject({ method: "POST", url: "/v1/epochs/close", headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" }, payload: {} });
    await w.app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: `Bearer ${w.keys.revoked}`, "content-type": "application/json" }, payload: { model: BASE_MODEL, prompt: "hi", max_tokens: 2 } });
    let seen = w.logs();
    for (const rule of ENDPOINTS.filter((e) => e.method === "GET")) seen += (await send(w, rule, `Bearer ${key}`)).body;
    const big = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);
    seen += JSON.stringify(w.ledger.events.list(), big) + JSON.stringify(w.ledger.getReceipt(1), big);
    expect(w.logs().length).toBeGreaterThan(1000); // the logger did log these requests
    for (const secret of [key, w.keys.revoked, OPERATOR]) expect(seen.includes(secret), secret.slice(0, 8)).toBe(false);
  });
});
