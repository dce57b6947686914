/**
 * Attribution through the real request path (server, AttributionService, a real SQLite ledger,
 * the span index) over the scriptable engine, whose output echoes the prompt: when the output
 * repeats a contributed record verbatim, the receipt carries the span evidence and the Datanet's
 * contributor is paid from the data share; the base model's lineage pays the other contributor;
 * everything conserves; and a stake below the minimum is refused (403) before any compute.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { FeePolicy } from "../../src/attribution/types.js";
import { Ledger } from "../../src/ledger/index.js";
import { buildServer, type EngineSlot } from "../../src/server/app.js";
import { AttributionService } from "../../src/server/attribution.js";
import { tempDir } from "../helpers/tmp.js";
import { OpenLoraError } from "../../src/errors.js";
import { BASE_MODEL, FakeEngine, fakeContentHash } from "./fake-engine.js";

const dir = tempDir();
const KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const POLICY: FeePolicy = { protocolBps: 100, operatorBps: 900, developerBps: 4000, stakerBps: 2000, dataBps: 4000, lambdaBps: 5000 };
const closers: Array<() => Promise<unknown> | void> = [];
afterEach(async () => { for (const c of closers.splice(0)) await c(); });

const POEM = "the river keeps the memory of every stone it carried";
const OTHER = "a quiet record about something else entirely";

async function setup(minAgentStake = 0n) {
  const baseFile = join(dir, `base-${closers.length}.bin`);
  writeFileSync(baseFile, "base model bytes");
  const ledger = new Ledger({ path: join(dir, `l-${Date.now()}-${Math.random()}.sqlite`), nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op", minAgentStake });
  closers.push(() => ledger.close());
  const engine = new FakeEngine();
  const tokens = (t: string) => [...t].map((c) => c.codePointAt(0)!);
  ledger.createDatanet("poems", "olga");
  const poem = ledger.contribute("poems", { contributor: "carol", content: POEM, tokenIds: tokens(POEM) });
  const other = ledger.contribute("poems", { contributor: "dave", content: OTHER, tokenIds: tokens(OTHER) });
  ledger.approveRecord("poems", poem.id, "olga");
  ledger.approveRecord("poems", other.id, "olga");
  const v = ledger.publishVersion("poems", "olga");
  ledger.registerModel({
    id: BASE_MODEL, kind: "base", owner: "dev", priceIn: 1_000n, priceOut: 1_000_000n, contentHash: engine.info.modelContentHash,
    developers: [{ party: "dev", share: 1n }], lineage: [{ datanet: "poems", version: v.version, weight: 1n }],
  });
  const alice = `Bearer ${ledger.createAccount("alice").apiKey}`;
  ledger.deposit("alice", 10n ** 12n + 500n);
  ledger.agentStake("alice", 500n);
  const service = new AttributionService(ledger, engine, { id: BASE_MODEL, contentHash: engine.info.modelContentHash }, "op");
  await service.start();
  const slot: EngineSlot = { state: "ready", engine, attribution: service };
  const app = await buildServer(slot);
  closers.push(() => app.close());
  return { ledger, app, engine, alice };
}

describe("attribution on the request path", () => {
  it("records span evidence of a verbatim record and pays its contributor from the data share", async () => {
    const { ledger, app, alice } = await setup();
    const res = await app.inject({
      method: "POST", url: "/v1/completions", headers: { authorization: alice },
      payload: { model: BASE_MODEL, prompt: POEM, max_tokens: POEM.length },
    });
    expect(res.statusCode).toBe(200);
    const id = Number(res.headers["openlora-receipt"]);
    const { receipt } = ledger.getReceipt(id);
    expect(receipt.agent).toBe("alice");
    expect(receipt.tokensOut).toBe(POEM.length);
    expect(receipt.spans.length).toBeGreaterThan(0);
    expect(receipt.spans.every((s) => s.contributor === "carol" && s.datanet === "poems@1")).toBe(true);
    expect(receipt.spans.reduce((a, s) => a + (s.end - s.start), 0)).toBe(POEM.length);
    const paid = (party: string) => receipt.lines.filter((l) => l.party === party && l.role === "data").reduce((a, l) => a + l.amount, 0n);
    // λ = 0.5: half of the data share by lineage (approved tokens: carol and dave), half by spans (carol only).
    expect(paid("carol")).toBeGreaterThan(paid("dave"));
    expect(paid("dave")).toBeGreaterThan(0n);
    expect(receipt.lines.reduce((a, l) => a + l.amount, 0n)).toBe(receipt.fee);
    expect(receipt.fee).toBe(BigInt(receipt.tokensIn) * 1_000n + BigInt(POEM.length) * 1_000_000n);
    expect(ledger.auditBalances().ok).toBe(true);
    expect(await ledger.verifyChain()).toMatchObject({ ok: true });
  });

  it("records no spans when the output matches nothing, and the lineage alone splits the data share", async () => {
    const { ledger, app, alice } = await setup();
    const res = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: alice }, payload: { model: BASE_MODEL, prompt: "zzzzqqqq xxxx wwww", max_tokens: 10 } });
    const { receipt } = ledger.getReceipt(Number(res.headers["openlora-receipt"]));
    expect(receipt.spans).toEqual([]);
    const data = receipt.lines.filter((l) => l.role === "data").map((l) => l.party).sort();
    expect(data).toEqual(["carol", "dave"]);
  });

  it("refuses an agent below the minimum stake (403) and one without balance (402), before the engine sees anything", async () => {
    const { ledger, app, engine, alice } = await setup(1_000n);
    const stake = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: alice }, payload: { model: BASE_MODEL, prompt: POEM, max_tokens: 4 } });
    expect(stake.statusCode).toBe(403);
    expect(stake.json()).toMatchObject({ error: { code: "STAKE_REQUIRED" } });
    const bob = ledger.createAccount("bob").apiKey;
    ledger.deposit("bob", 5_000n);
    ledger.agentStake("bob", 5_000n);
    const broke = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: `Bearer ${bob}` }, payload: { model: BASE_MODEL, prompt: POEM, max_tokens: 4 } });
    expect(broke.statusCode).toBe(402);
    expect(broke.json()).toMatchObject({ error: { code: "INSUFFICIENT_BALANCE" } });
    expect(ledger.activeReservations()).toEqual([]);
    expect(engine.submitted).toEqual([]);
    expect(ledger.getAgent("alice").balance).toBe(10n ** 12n);
  });
});

describe("what a receipt names is what was served", () => {
  it("lists an unlisted adapter on first use with the hash of the bytes the engine loaded, and names both hashes in the receipt", async () => {
    const { ledger, app, engine, alice } = await setup();
    const res = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: alice }, payload: { model: "alpha", prompt: "x", max_tokens: 3 } });
    expect(res.statusCode).toBe(200);
    expect(ledger.getModel("alpha")).toMatchObject({ kind: "adapter", owner: "op", priceIn: 0n, contentHash: fakeContentHash("alpha") });
    const { receipt } = ledger.getReceipt(Number(res.headers["openlora-receipt"]));
    expect(receipt.adapters).toEqual([{ id: "alpha", contentHash: fakeContentHash("alpha"), weightPpm: 1_000_000 }]);
    expect(receipt.base.contentHash).toBe(engine.info.modelContentHash);
  });

  it("refuses, before any token, an adapter whose served files are not the ones it was listed with — and charges nothing", async () => {
    const { ledger, app, alice } = await setup();
    ledger.registerModel({
      id: "beta", kind: "adapter", owner: "eve", baseModel: BASE_MODEL, priceIn: 1n, priceOut: 1n, contentHash: `0x${"0e".repeat(32)}`,
      developers: [{ party: "eve", share: 1n }],
    });
    const before = ledger.getAgent("alice");
    const plain = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: alice }, payload: { model: "beta", prompt: "x", max_tokens: 3 } });
    expect(plain.statusCode).toBe(409);
    expect(plain.json().error.code).toBe("MODEL_CONTENT_MISMATCH");
    const streamed = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: alice }, payload: { model: "beta", prompt: "x", max_tokens: 3, stream: true } });
    const events = streamed.body.split("\n\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2)!).error.code).toBe("MODEL_CONTENT_MISMATCH");
    expect(events.some((e) => e !== "[DONE]" && JSON.parse(e).choices?.[0]?.text)).toBe(false);
    expect(ledger.getAgent("alice")).toEqual(before);
    expect(ledger.head().id).toBe(0);
    expect(ledger.activeReservations()).toEqual([]);
    expect(ledger.auditBalances().ok).toBe(true);
  });

  it("refuses to start on a base model whose files are not the ones listed", async () => {
    const ledger = new Ledger({ path: join(dir, `mismatch-${Math.random()}.sqlite`), nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op" });
    closers.push(() => ledger.close());
    const engine = new FakeEngine();
    ledger.registerModel({ id: BASE_MODEL, kind: "base", owner: "dev", priceIn: 0n, priceOut: 0n, contentHash: `0x${"0f".repeat(32)}`, developers: [{ party: "dev", share: 1n }] });
    const service = new AttributionService(ledger, engine, { id: BASE_MODEL, contentHash: engine.info.modelContentHash }, "op");
    await expect(service.start()).rejects.toMatchObject({ code: "MODEL_CONTENT_MISMATCH" });
  });
});

describe("a settlement that fails after output was sent", () => {
  it("is never free: the whole reservation is charged to the treasury as a signed forfeit", async () => {
    const { ledger, app, alice } = await setup();
    const settle = vi.spyOn(ledger, "settle").mockRejectedValueOnce(new OpenLoraError("INTERNAL", "disk on fire"));
    const before = ledger.getAgent("alice").balance;
    const res = await app.inject({ method: "POST", url: "/v1/completions", headers: { authorization: alice }, payload: { model: BASE_MODEL, prompt: POEM, max_tokens: 4 } });
    expect(res.statusCode).toBe(200);
    expect(res.json().choices[0].text.length).toBeGreaterThan(0);
    expect(res.headers["openlora-receipt"]).toBeUndefined();
    expect(settle).toHaveBeenCalledTimes(1);
    const [forfeit] = ledger.events.list({ account: "alice" }).filter((e) => e.event.kind === "forfeit");
    expect(forfeit!.event).toMatchObject({ subject: "treasury", memo: expect.stringMatching(/^reservation \d+: INTERNAL$/) });
    // The worst case was reserved and is charged whole: prompt bytes + 8 at 1000, 4 output tokens at 10^6.
    const worst = BigInt(Buffer.byteLength(POEM) + 8) * 1_000n + 4n * 1_000_000n;
    expect(forfeit!.event.amount).toBe(worst);
    expect(ledger.getAgent("alice")).toMatchObject({ balance: before - worst, reserved: 0n });
    expect(ledger.balanceOf("treasury")).toBe(worst);
    expect(ledger.activeReservations()).toEqual([]);
    expect(ledger.auditBalances().ok).toBe(true);
    expect(await ledger.verifyChain()).toMatchObject({ ok: true });
  });
});
