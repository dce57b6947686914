/**
 * The ledger's signed record beyond receipts: every movement of money is a signed account event,
 * so every balance is a sum of signed entries; stakes move funds and only what is staked comes
 * back; a forfeited reservation is charged whole; API keys are kept as hashes; every epoch root is
 * signed in a checkpoint, and a checkpoint kept outside the file exposes a truncated chain; legacy
 * (schema 2) files are brought over; the file is readable by its owner only.
 */
import { copyFileSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { keccak256, stringToHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { checkpointDigest, checkpointSignedBy } from "../../src/attribution/checkpoints.js";
import { eventDigest, eventFromJSON, eventToJSON } from "../../src/attribution/ledger-events.js";
import { signedBy, nodeSigner } from "../../src/attribution/signing.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import type { ErrorCode } from "../../src/errors.js";
import { checkAgainstCheckpoint } from "../../src/ledger/audit.js";
import { Ledger, MIGRATIONS } from "../../src/ledger/index.js";
import { tempDir } from "../helpers/tmp.js";

const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const OTHER_KEY: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const dir = tempDir("openlora-signed-");
let files = 0;
const h = (s: string): Hex => keccak256(stringToHex(s));

function open(path = join(dir, `l${files++}.sqlite`), nodeKey: Hex = KEY): Ledger {
  let t = 1_700_000_000_000;
  return new Ledger({ path, nodeKey, policy: POLICY, treasury: "treasury", operator: "op", now: () => t++ });
}

function code(f: () => unknown): ErrorCode | undefined {
  try { f(); } catch (e) { return (e as { code?: ErrorCode }).code; }
  return undefined;
}

function withModels(l: Ledger): Ledger {
  l.registerModel({ id: "base", kind: "base", owner: "m", priceIn: 1n, priceOut: 2n, contentHash: h("base"), developers: [{ party: "m", share: 1n }] });
  l.registerModel({ id: "lora", kind: "adapter", owner: "d", baseModel: "base", priceIn: 3n, priceOut: 5n, contentHash: h("lora"), developers: [{ party: "d", share: 1n }] });
  return l;
}

async function settleOne(l: Ledger, agent: string, out = [1, 2, 3]): Promise<void> {
  const r = l.reserve(agent, 100n);
  await l.settle(r, { baseModel: "base", adapters: [{ id: "lora", weightPpm: 1_000_000 }], promptTokens: [9, 9], outputTokens: out, sampling: { seed: 1 }, finish: "length" });
}

describe("signing", () => {
  it("signs digests synchronously exactly as viem's signTypedData does", async () => {
    const td = { domain: { name: "openlora", version: "1", chainId: 1 }, types: { T: [{ name: "x", type: "uint256" }] }, primaryType: "T", message: { x: 42n } } as const;
    const { hashTypedData } = await import("viem");
    const sig = nodeSigner(KEY).sign(hashTypedData(td));
    expect(sig).toBe(await privateKeyToAccount(KEY).signTypedData(td));
    expect(await signedBy(hashTypedData(td), sig, privateKeyToAccount(KEY).address)).toBe(true);
    expect(await signedBy(hashTypedData(td), sig, privateKeyToAccount(OTHER_KEY).address)).toBe(false);
  });
});

describe("account events", () => {
  it("records every movement as a signed, chained event and audits balances from signed entries only", async () => {
    const l = withModels(open());
    l.createAgent("ann");
    l.deposit("ann", 1_000n);
    l.agentStake("ann", 100n);
    l.stake("ann", "lora", 200n);
    await settleOne(l, "ann");
    l.unstake("ann", "lora", 50n);
    l.agentUnstake("ann", 40n);
    l.withdraw("ann", 10n);
    l.payout("d", 1n);
    const kinds = l.events.list().map((e) => e.event.kind);
    expect(kinds).toEqual(["deposit", "agent_stake", "stake", "unstake", "agent_unstake", "withdraw", "payout"]);
    const fee = l.getReceipt(1).receipt.fee;
    expect(l.getAgent("ann")).toMatchObject({ balance: 1_000n - 100n - 200n - fee + 50n + 40n - 10n, stake: 60n, reserved: 0n });
    expect(l.accounts.stakeOf("ann", "lora")).toBe(150n);
    const events = l.events.list();
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      expect(e.hash).toBe(eventDigest(e.event));
      expect(e.event.prevHash).toBe(i === 0 ? `0x${"0".repeat(64)}` : events[i - 1]!.hash);
      expect(await signedBy(e.hash, e.signature, l.nodeAddress)).toBe(true);
      expect(eventFromJSON(eventToJSON(e.event))).toEqual(e.event);
    }
    expect(l.auditBalances()).toMatchObject({ ok: true, mismatches: [] });
    expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: 1, events: 7 });
    // A balance edited without a signed entry behind it is caught; so is an edited event.
    l.db.prepare("UPDATE agents SET balance = CAST(balance AS INTEGER) + 5 WHERE id = 'ann'").run();
    expect(l.auditBalances().mismatches).toEqual([expect.objectContaining({ kind: "agent", id: "ann" })]);
    l.db.prepare("UPDATE agents SET balance = CAST(balance AS INTEGER) - 5 WHERE id = 'ann'").run();
    l.db.prepare("UPDATE events SET amount = '2000', body = replace(body, '\"amount\":\"1000\"', '\"amount\":\"2000\"') WHERE id = 1").run();
    expect(await l.verifyChain()).toMatchObject({ ok: false, badEventId: 1 });
    l.close();
  });

  it("moves only funds that exist: stakes come from the balance, unstakes return at most what is staked", () => {
    const l = withModels(open());
    l.createAgent("bo");
    expect(code(() => l.stake("bo", "lora", 1n))).toBe("INSUFFICIENT_BALANCE");
    l.deposit("bo", 30n);
    expect(code(() => l.stake("bo", "lora", 31n))).toBe("INSUFFICIENT_BALANCE");
    expect(code(() => l.stake("bo", "nope", 1n))).toBe("LEDGER_NOT_FOUND");
    expect(code(() => l.stake("nobody", "lora", 1n))).toBe("LEDGER_NOT_FOUND");
    l.stake("bo", "lora", 30n);
    expect(code(() => l.unstake("bo", "lora", 31n))).toBe("INSUFFICIENT_BALANCE");
    expect(code(() => l.agentStake("bo", 1n))).toBe("INSUFFICIENT_BALANCE");
    expect(code(() => l.agentUnstake("bo", 1n))).toBe("INSUFFICIENT_BALANCE");
    expect(code(() => l.withdraw("bo", 1n))).toBe("INSUFFICIENT_BALANCE");
    expect(code(() => l.payout("bo", 1n))).toBe("INSUFFICIENT_BALANCE");
    for (const bad of [0n, -1n]) expect(code(() => l.deposit("bo", bad))).toBe("INVALID_ARGUMENT");
    expect(l.events.list()).toHaveLength(2);
    expect(l.auditBalances().ok).toBe(true);
    for (const reserved of ["treasury", "op"]) expect(code(() => l.createAgent(reserved))).toBe("LEDGER_CONFLICT");
    l.close();
  });

  it("forfeits a reservation whose settlement failed: the whole reservation is charged to the treasury, signed", () => {
    const l = withModels(open());
    l.createAgent("cy");
    l.deposit("cy", 500n);
    const r = l.reserve("cy", 120n);
    const e = l.forfeit(r, "INTERNAL")!;
    expect(e.event).toMatchObject({ kind: "forfeit", account: "cy", subject: "treasury", amount: 120n, memo: `reservation ${r}: INTERNAL` });
    expect(l.getAgent("cy")).toMatchObject({ balance: 380n, reserved: 0n });
    expect(l.balanceOf("treasury")).toBe(120n);
    expect(code(() => l.release(r))).toBe("LEDGER_CONFLICT");
    expect(code(() => l.forfeit(r, "AGAIN"))).toBe("LEDGER_CONFLICT");
    const free = l.reserve("cy", 0n);
    expect(l.forfeit(free, "INTERNAL")).toBeNull();
    expect(l.auditBalances()).toMatchObject({ ok: true });
    l.db.prepare("UPDATE reservations SET event_id = NULL WHERE id = ?").run(r);
    expect(l.auditBalances().mismatches).toEqual([expect.objectContaining({ kind: "reservation" })]);
    l.close();
  });
});

describe("API keys", () => {
  it("issues keys shown once and stored only as hashes; a rotation revokes the old key", () => {
    const path = join(dir, `keys${files++}.sqlite`);
    const l = open(path);
    const { account, apiKey } = l.createAccount("dee");
    expect(account.id).toBe("dee");
    expect(apiKey).toMatch(/^olk_[A-Za-z0-9_-]{43}$/);
    expect(l.resolveApiKey(apiKey)).toBe("dee");
    expect(l.resolveApiKey(`${apiKey}x`)).toBeUndefined();
    expect(l.resolveApiKey("dee")).toBeUndefined();
    const next = l.rotateApiKey("dee");
    expect(l.resolveApiKey(apiKey)).toBeUndefined();
    expect(l.resolveApiKey(next)).toBe("dee");
    expect(code(() => l.rotateApiKey("ghost"))).toBe("LEDGER_NOT_FOUND");
    l.db.pragma("wal_checkpoint(TRUNCATE)");
    l.close();
    const bytes = readFileSync(path).toString("latin1");
    expect(bytes.includes(next)).toBe(false);
    expect(bytes.includes(apiKey)).toBe(false);
  });
});

describe("checkpoints", () => {
  it("signs each epoch's root in a checkpoint and verifies it as part of the chain", async () => {
    const l = withModels(open());
    l.createAgent("ed");
    l.deposit("ed", 10n ** 9n);
    for (let i = 0; i < 3; i++) await settleOne(l, "ed");
    const e = l.closeEpoch()!;
    expect(e.checkpoint!.checkpoint).toMatchObject({ node: l.nodeAddress, receipts: 3, receiptsHead: l.head().hash, events: 1, epoch: 1, epochRoot: e.root });
    expect(await checkpointSignedBy(e.checkpoint!, l.nodeAddress)).toBe(true);
    expect(l.epochs()[0]!.checkpoint).toEqual(e.checkpoint);
    expect(await l.verifyChain()).toMatchObject({ ok: true, epochs: 1, unsignedEpochs: 0 });
    // A checkpoint whose statement was edited no longer carries the node's signature.
    l.db.prepare("UPDATE epochs SET checkpoint = replace(checkpoint, '\"receipts\":3', '\"receipts\":2') WHERE id = 1").run();
    expect(await l.verifyChain()).toMatchObject({ ok: false, badEpochId: 1 });
    l.close();
  });

  it("exposes a truncated file: the remaining chain verifies, but no longer reaches a checkpoint kept outside it", async () => {
    const path = join(dir, `trunc${files++}.sqlite`);
    const l = withModels(open(path));
    l.createAgent("fi");
    l.deposit("fi", 10n ** 9n);
    for (let i = 0; i < 3; i++) await settleOne(l, "fi");
    l.closeEpoch();
    for (let i = 0; i < 2; i++) await settleOne(l, "fi");
    l.closeEpoch();
    l.withdraw("fi", 5n);
    const kept = l.checkpoint();
    expect(kept.checkpoint).toMatchObject({ receipts: 5, events: 2, epoch: 2 });
    expect(kept.signature).toBe(nodeSigner(KEY).sign(checkpointDigest(kept.checkpoint)));
    expect(checkAgainstCheckpoint(l.db, kept)).toEqual({ ok: true });
    l.close();

    // Delete the last epoch with its receipts, and the last event: every remaining link still holds.
    const cut = join(dir, `cut${files++}.sqlite`);
    copyFileSync(path, cut);
    const raw = new Database(cut);
    raw.pragma("foreign_keys = OFF");
    for (const t of ["receipt_lines", "receipt_tokens"]) raw.prepare(`DELETE FROM ${t} WHERE receipt_id > 3`).run();
    raw.prepare("DELETE FROM reservations WHERE receipt_id > 3").run();
    raw.prepare("DELETE FROM receipts WHERE id > 3").run();
    raw.prepare("DELETE FROM epochs WHERE id = 2").run();
    raw.prepare("DELETE FROM events WHERE id = 2").run();
    raw.close();
    const t = open(cut);
    expect(await t.verifyChain()).toMatchObject({ ok: true, receipts: 3, events: 1, epochs: 1 });
    expect(checkAgainstCheckpoint(t.db, kept)).toMatchObject({ ok: false, reason: expect.stringContaining("truncated") });
    t.close();
  });

  it("does not let another key re-sign the chain into something a verifier of this node accepts", async () => {
    const path = join(dir, `resign${files++}.sqlite`);
    const l = withModels(open(path));
    l.createAgent("gus");
    l.deposit("gus", 10n ** 9n);
    await settleOne(l, "gus");
    const honest = l.nodeAddress;
    l.close();
    // Mallory opens the same file with her own key: her new entries are signed, chained, valid — by her.
    const m = open(path, OTHER_KEY);
    await settleOne(m, "gus");
    expect(await m.verifyChain()).toMatchObject({ ok: true });
    expect(await m.verifyChain([honest])).toMatchObject({ ok: false, badReceiptId: 2, reason: expect.stringContaining("not a trusted signer") });
    m.close();
  });
});

describe("the ledger file", () => {
  it("is created readable by its owner only, with its WAL companions", () => {
    const path = join(dir, `mode${files++}.sqlite`);
    const l = withModels(open(path));
    l.createAgent("hal");
    l.deposit("hal", 1n);
    for (const p of [path, `${path}-wal`, `${path}-shm`]) expect(statSync(p).mode & 0o777, p).toBe(0o600);
    l.close();
  });

  it("brings a schema-2 file over: deposits become signed events, unfunded stakes are voided", async () => {
    const path = join(dir, `legacy${files++}.sqlite`);
    const raw = new Database(path);
    raw.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
    for (const m of MIGRATIONS.filter((x) => x.version <= 2)) {
      raw.exec(m.sql);
      raw.prepare("INSERT INTO schema_migrations VALUES (?, ?, 0)").run(m.version, m.name);
    }
    raw.prepare("INSERT INTO models (id, kind, owner, price_in, price_out, content_hash, created) VALUES ('base', 'base', 'm', '1', '1', ?, 0)").run(h("base"));
    raw.prepare("INSERT INTO model_developers VALUES ('base', 'm', '1')").run();
    raw.prepare("INSERT INTO agents (id, stake, balance, reserved, created) VALUES ('old', '999', '70', '0', 0)").run();
    raw.prepare("INSERT INTO deposits (agent, amount, time) VALUES ('old', '50', 11), ('old', '20', 12)").run();
    raw.prepare("INSERT INTO stakes VALUES ('old', 'base', '5')").run();
    raw.close();
    const l = open(path);
    expect(l.events.list().map((e) => [e.event.kind, e.event.amount, e.event.time])).toEqual([["deposit", 50n, 11], ["deposit", 20n, 12]]);
    expect(l.getAgent("old")).toMatchObject({ balance: 70n, stake: 0n });
    expect(l.accounts.stakeOf("old", "base")).toBe(0n);
    expect(l.auditBalances()).toMatchObject({ ok: true });
    expect(await l.verifyChain()).toMatchObject({ ok: true, events: 2 });
    l.close();
    const again = open(path);
    expect(again.events.list()).toHaveLength(2);
    again.close();
  });
});
