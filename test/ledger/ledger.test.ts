import Database from "better-sqlite3";
import { join } from "node:path";
import { keccak256, stringToHex, type Hex } from "viem";
import { describe, expect, it } from "vitest";
import { splitFee } from "../../src/attribution/fees.js";
import { merkleRoot, verifyMerkleProof } from "../../src/attribution/merkle.js";
import { receiptDigest, verifyReceiptSignature } from "../../src/attribution/receipts.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import type { ErrorCode } from "../../src/errors.js";
import { Ledger, type SettleInput } from "../../src/ledger/index.js";
import { tempDir } from "../helpers/tmp.js";

const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const dir = tempDir("openlora-ledger-");
let files = 0;
const h = (s: string): Hex => keccak256(stringToHex(s));

function open(path = join(dir, `l${files++}.sqlite`), extra: Partial<ConstructorParameters<typeof Ledger>[0]> = {}): Ledger {
  let t = 1_700_000_000_000;
  return new Ledger({ path, nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op", minAgentStake: 100n, now: () => t++, ...extra });
}

/** A ledger with two Datanets, a base model, two adapters and a merged one, an agent with money. */
function populated(path?: string): Ledger {
  const l = open(path);
  l.createDatanet("legal", "olivia");
  const r1 = l.contribute("legal", { contributor: "carol", content: "the party of the first part", tokenIds: [10, 11, 12, 13, 14, 15, 16, 17] });
  const r2 = l.contribute("legal", { contributor: "dave", content: "hereinafter", tokenIds: [20, 21] });
  const r3 = l.contribute("legal", { contributor: "eve", content: "spam", tokenCount: 5 });
  l.approveRecord("legal", r1.id, "olivia");
  l.approveRecord("legal", r2.id, "olivia");
  l.rejectRecord("legal", r3.id, "olivia");
  l.publishVersion("legal", "olivia");
  l.createDatanet("cases", "olivia");
  l.approveRecord("cases", l.contribute("cases", { contributor: "frank", content: "Roe", tokenIds: [30, 31, 32] }).id, "olivia");
  l.publishVersion("cases", "olivia");
  l.registerModel({ id: "llama", kind: "base", owner: "meta", priceIn: 1n, priceOut: 2n, contentHash: h("llama"), developers: [{ party: "meta", share: 1n }] });
  l.registerModel({
    id: "legal-lora", kind: "adapter", owner: "alice", baseModel: "llama", priceIn: 10n, priceOut: 40n, contentHash: h("legal-lora"),
    developers: [{ party: "alice", share: 2n }, { party: "bob", share: 1n }],
    lineage: [{ datanet: "legal", version: 1, weight: 7n }, { datanet: "cases", version: 1, weight: 3n }],
  });
  l.registerModel({
    id: "case-lora", kind: "adapter", owner: "gina", baseModel: "llama", priceIn: 5n, priceOut: 5n, contentHash: h("case-lora"),
    developers: [{ party: "gina", share: 1n }], lineage: [{ datanet: "cases", version: 1, weight: 1n }],
  });
  for (const [staker, amount] of [["sam", 30n], ["tess", 10n]] as const) {
    l.createAgent(staker);
    l.deposit(staker, amount);
    l.stake(staker, "legal-lora", amount);
  }
  l.createAgent("agent");
  l.deposit("agent", 1_000_100n);
  l.agentStake("agent", 100n);
  return l;
}

const request = (over: Partial<SettleInput> = {}): SettleInput => ({
  baseModel: "llama", adapters: [{ id: "legal-lora", weightPpm: 1_000_000 }],
  promptTokens: [1, 2, 3, 4, 5], outputTokens: [10, 11, 12, 13, 14, 15, 16, 17, 99],
  sampling: { temperature: 0, seed: 7 }, finish: "eos",
  spans: [{ datanet: "legal@1", recordId: 1, contributor: "carol", start: 0, end: 8 }], ...over,
});

function code(f: () => unknown): ErrorCode | undefined {
  try { f(); } catch (e) { return (e as { code?: ErrorCode }).code; }
  return undefined;
}

async function serve(l: Ledger, over: Partial<SettleInput> = {}) {
  const worst = l.worstCaseFee({ baseModel: "llama", adapters: (over.adapters ?? request().adapters!).map((a) => a.id), tokensIn: 5, maxTokens: 16 });
  const id = l.reserve("agent", worst);
  return l.settle(id, request(over));
}

describe("ledger: registry and Datanets", () => {
  it("publishes versions as Merkle roots of approved records and keeps token ids", () => {
    const l = populated();
    const [v] = l.listVersions("legal");
    const recs = l.versionRecords("legal", 1);
    expect(recs.map((r) => r.contributor)).toEqual(["carol", "dave"]);
    expect(v!.root).toBe(merkleRoot(recs.map((r) => r.recordHash)));
    expect(v!.tokenCount).toBe(10);
    expect([...recs[1]!.tokenIds!]).toEqual([20, 21]);
    expect(code(() => l.approveRecord("legal", 3, "olivia"))).toBe("LEDGER_CONFLICT");
    expect(code(() => l.approveRecord("legal", 3, "mallory"))).toBe("LEDGER_FORBIDDEN");
    expect(code(() => l.publishVersion("legal", "mallory"))).toBe("LEDGER_FORBIDDEN");
    expect(code(() => l.contribute("nope", { contributor: "x", content: "y", tokenCount: 1 }))).toBe("LEDGER_NOT_FOUND");
    expect(code(() => l.createDatanet("a@b", "o"))).toBe("INVALID_ARGUMENT");
    l.close();
  });

  it("computes a merged adapter's lineage as the weighted union of its parents'", () => {
    const l = populated();
    const m = l.registerModel({
      id: "merged", kind: "adapter", owner: "alice", baseModel: "llama", priceIn: 1n, priceOut: 1n, contentHash: h("merged"),
      developers: [{ party: "alice", share: 1n }], parents: [{ model: "legal-lora", weight: 1n }, { model: "case-lora", weight: 1n }],
    });
    // ½·(0.7 legal, 0.3 cases) + ½·(1.0 cases) = 0.35 legal, 0.65 cases = 7 : 13.
    expect(m.kind).toBe("merged");
    expect(m.lineage).toEqual([{ datanet: "cases", version: 1, weight: 13n }, { datanet: "legal", version: 1, weight: 7n }]);
    expect(code(() => l.registerModel({ id: "nodev", kind: "adapter", owner: "x", baseModel: "llama", priceIn: 0n, priceOut: 0n, contentHash: h("x"), developers: [] }))).toBe("INVALID_ARGUMENT");
    expect(code(() => l.registerModel({ id: "both", kind: "adapter", owner: "x", baseModel: "llama", priceIn: 0n, priceOut: 0n, contentHash: h("x"), developers: [{ party: "x", share: 1n }], parents: [{ model: "case-lora", weight: 1n }], lineage: [{ datanet: "legal", version: 1, weight: 1n }] }))).toBe("INVALID_ARGUMENT");
    expect(code(() => l.registerModel({ id: "llama", kind: "base", owner: "x", priceIn: 0n, priceOut: 0n, contentHash: h("x"), developers: [{ party: "x", share: 1n }] }))).toBe("LEDGER_CONFLICT");
    expect(code(() => l.registerModel({ id: "ghost", kind: "adapter", owner: "x", baseModel: "llama", priceIn: 0n, priceOut: 0n, contentHash: h("x"), developers: [{ party: "x", share: 1n }], lineage: [{ datanet: "legal", version: 9, weight: 1n }] }))).toBe("LEDGER_NOT_FOUND");
    l.close();
  });
});

describe("ledger: admission", () => {
  it("refuses unknown agents, low stakes and low balances before writing anything", () => {
    const l = open();
    l.registerModel({ id: "llama", kind: "base", owner: "meta", priceIn: 1n, priceOut: 1n, contentHash: h("llama"), developers: [{ party: "meta", share: 1n }] });
    const count = () => (l.db.prepare("SELECT COUNT(*) AS n FROM reservations").get() as { n: number }).n;
    expect(code(() => l.reserve("stranger", 10n))).toBe("PAYMENT_REQUIRED");
    l.createAgent("agent");
    l.deposit("agent", 150n);
    expect(code(() => l.reserve("agent", 10n))).toBe("STAKE_REQUIRED");
    l.agentStake("agent", 100n);
    expect(code(() => l.reserve("agent", 51n))).toBe("INSUFFICIENT_BALANCE");
    expect(count()).toBe(0);
    expect(l.getAgent("agent")).toMatchObject({ balance: 50n, reserved: 0n, stake: 100n });
    l.agentUnstake("agent", 100n);
    expect(typeof l.reserve("agent", 0n)).toBe("number"); // free requests need no stake
    l.agentStake("agent", 100n);
    const id = l.reserve("agent", 50n);
    expect(l.getAgent("agent")).toMatchObject({ balance: 0n, reserved: 50n });
    l.release(id);
    expect(l.getAgent("agent")).toMatchObject({ balance: 50n, reserved: 0n });
    expect(code(() => l.release(id))).toBe("LEDGER_CONFLICT");
    expect(l.auditBalances().ok).toBe(true);
    l.close();
  });
});

describe("ledger: settle", () => {
  it("charges the actual fee, credits every line, and conserves on every settle", async () => {
    const l = populated();
    let credited = 0n;
    for (let i = 0; i < 6; i++) {
      const before = l.balances().reduce((s, b) => s + b.amount, 0n);
      const agentBefore = l.getAgent("agent").balance;
      const { receipt } = await serve(l, { outputTokens: Array.from({ length: 9 + i }, (_, k) => k), spans: [] });
      const after = l.balances().reduce((s, b) => s + b.amount, 0n);
      expect(receipt.lines.reduce((s, x) => s + x.amount, 0n)).toBe(receipt.fee);
      expect(after - before).toBe(receipt.fee);
      expect(agentBefore - l.getAgent("agent").balance).toBe(receipt.fee);
      credited += receipt.fee;
    }
    expect(l.getAgent("agent")).toMatchObject({ balance: 1_000_000n - credited, reserved: 0n });
    expect(l.auditBalances()).toMatchObject({ ok: true, mismatches: [] });
    expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: 6, epochs: 0 });
    l.close();
  });

  it("pays the contributors of matched spans, the stakers and the developers as the formula says", async () => {
    const l = populated();
    const { receipt, hash, signature } = await serve(l);
    // F_llama = 5·1 + 9·2 = 23, F_legal = 5·10 + 9·40 = 410.
    expect(receipt.fee).toBe(433n);
    expect(receipt.tokensIn).toBe(5);
    expect(receipt.tokensOut).toBe(9);
    const expected = splitFee({
      tokensIn: 5, tokensOut: 9, policy: POLICY, treasury: "treasury", operator: "op",
      spans: [{ datanet: "legal@1", contributor: "carol", matchedTokens: 8 }],
      models: [
        { model: "llama", priceIn: 1n, priceOut: 2n, developers: [{ party: "meta", share: 1n }], stakers: [], lineage: [] },
        {
          model: "legal-lora", priceIn: 10n, priceOut: 40n,
          developers: [{ party: "alice", share: 2n }, { party: "bob", share: 1n }],
          stakers: [{ party: "sam", stake: 30n }, { party: "tess", stake: 10n }],
          lineage: [
            { datanet: "cases@1", weight: 3n, contributors: [{ party: "frank", approvedTokens: 3 }] },
            { datanet: "legal@1", weight: 7n, contributors: [{ party: "carol", approvedTokens: 8 }, { party: "dave", approvedTokens: 2 }] },
          ],
        },
      ],
    });
    expect(receipt.lines).toEqual(expected.lines);
    expect(receipt.lines.find((x) => x.party === "frank")).toBeDefined();
    expect(receipt.attribution.map((a) => a.datanet)).toEqual(["cases@1", "legal@1"]);
    expect(receipt.spans).toHaveLength(1);
    expect(receiptDigest(receipt, { chainId: 1 })).toBe(hash);
    expect(await verifyReceiptSignature(receipt, signature)).toBe(true);
    expect(receipt.node).toBe(l.nodeAddress);
    l.close();
  });

  it("uses the span module's credits when given, and records them in the receipt", async () => {
    const l = populated();
    const spans = [
      { datanet: "legal@1", recordId: 1, contributor: "carol", start: 0, end: 2 },
      { datanet: "legal@1", recordId: 2, contributor: "dave", start: 0, end: 2 },
    ];
    const spanCredits = [{ datanet: "legal@1", contributor: "carol", matchedTokens: 1 }, { datanet: "legal@1", contributor: "dave", matchedTokens: 1 }];
    const { receipt } = await serve(l, { spans, spanCredits });
    expect(receipt.credits).toEqual(spanCredits);
    const { receipt: dflt } = await serve(l, { spans });
    expect(dflt.credits).toEqual([{ datanet: "legal@1", contributor: "carol", matchedTokens: 2 }, { datanet: "legal@1", contributor: "dave", matchedTokens: 2 }]);
    const id = l.reserve("agent", 10_000n);
    await expect(l.settle(id, request({ spans, spanCredits: [{ datanet: "legal@1", contributor: "frank", matchedTokens: 1 }] }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    l.release(id);
    expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: 2 });
    l.close();
  });

  it("charges a cancelled request for the tokens it generated, and nothing when released", async () => {
    const l = populated();
    const { receipt } = await serve(l, { outputTokens: [5, 6], finish: "cancelled", spans: [] });
    expect(receipt.finish).toBe("cancelled");
    expect(receipt.fee).toBe(5n * 11n + 2n * 42n);
    const id = l.reserve("agent", 1000n);
    const before = l.getAgent("agent").balance;
    l.release(id);
    expect(l.getAgent("agent").balance).toBe(before + 1000n);
    expect(l.auditBalances().ok).toBe(true);
    l.close();
  });

  it("refuses bad settles and leaves the reservation active to release", async () => {
    const l = populated();
    const small = l.reserve("agent", 10n);
    await expect(l.settle(small, request())).rejects.toMatchObject({ code: "LEDGER_FEE_EXCEEDS_RESERVATION" });
    await expect(l.settle(small, request({ spans: [{ datanet: "legal@1", recordId: 1, contributor: "dave", start: 0, end: 2 }] }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(l.settle(small, request({ adapters: [{ id: "nope", weightPpm: 1 }] }))).rejects.toMatchObject({ code: "LEDGER_NOT_FOUND" });
    expect(l.activeReservations().map((r) => r.id)).toEqual([small]);
    expect(l.head().id).toBe(0);
    l.release(small);
    const ok = l.reserve("agent", 10_000n);
    await l.settle(ok, request());
    await expect(l.settle(ok, request())).rejects.toMatchObject({ code: "LEDGER_CONFLICT" });
    expect(l.auditBalances().ok).toBe(true);
    l.close();
  });

  it("chains concurrent settles one after another", async () => {
    const l = populated();
    const ids = Array.from({ length: 8 }, () => l.reserve("agent", 10_000n));
    const done = await Promise.all(ids.map((id, i) => l.settle(id, request({ outputTokens: [i + 1], spans: [] }))));
    expect(done.map((d) => d.receipt.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (let i = 1; i < done.length; i++) expect(done[i]!.receipt.prevHash).toBe(done[i - 1]!.hash);
    expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: 8 });
    l.close();
  });
});

describe("ledger: epochs and proofs", () => {
  it("closes epochs over new receipts and proves each receipt against its root", async () => {
    const l = populated();
    for (let i = 0; i < 5; i++) await serve(l, { spans: [] });
    expect(l.receiptWithProof(2).proof).toBeNull();
    const e1 = l.closeEpoch()!;
    expect(e1).toMatchObject({ id: 1, firstReceipt: 1, lastReceipt: 5, count: 5 });
    expect(l.closeEpoch()).toBeNull();
    for (let i = 0; i < 3; i++) await serve(l, { spans: [] });
    const e2 = l.closeEpoch()!;
    expect(e2).toMatchObject({ id: 2, firstReceipt: 6, lastReceipt: 8 });
    for (let id = 1; id <= 8; id++) {
      const p = l.receiptWithProof(id);
      expect(p.proof!.root).toBe(id <= 5 ? e1.root : e2.root);
      expect(verifyMerkleProof(p.proof!.proof, p.proof!.root, p.hash)).toBe(true);
      expect(await verifyReceiptSignature(p.receipt, p.signature, { chainId: p.typedData.domain.chainId as number })).toBe(true);
      expect(p.typedData.domain).toEqual({ name: "openlora", version: "2", chainId: 1 });
    }
    expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: 8, epochs: 2, unsignedEpochs: 0 });
    l.close();
  });
});

describe("ledger: tampering and reopening", () => {
  async function withReceipts(n: number): Promise<{ l: Ledger; path: string }> {
    const path = join(dir, `t${files++}.sqlite`);
    const l = populated(path);
    for (let i = 0; i < n; i++) await serve(l, { spans: [] });
    return { l, path };
  }

  it("detects a receipt body edited in place", async () => {
    const { l } = await withReceipts(4);
    l.db.prepare("UPDATE receipts SET body = replace(body, '\"agent\":\"agent\"', '\"agent\":\"other\"') WHERE id = 3").run();
    expect(await l.verifyChain()).toMatchObject({ ok: false, badReceiptId: 3 });
    l.close();
  });

  it("detects an edit whose hash was recomputed (the signature no longer matches)", async () => {
    const { l } = await withReceipts(4);
    const r = l.getReceipt(2).receipt;
    const forged = { ...r, sampling: { ...r.sampling, seed: 8 } };
    const { receiptToJSON } = await import("../../src/attribution/receipts.js");
    l.db.prepare("UPDATE receipts SET body = ?, hash = ? WHERE id = 2").run(receiptToJSON(forged), receiptDigest(forged));
    expect(await l.verifyChain()).toMatchObject({ ok: false, badReceiptId: 2, reason: "signature does not recover to the node" });
    l.close();
  });

  it("refuses receipts signed by a key the ledger never used, however well-formed", async () => {
    const { l } = await withReceipts(2);
    const { privateKeyToAccount } = await import("viem/accounts");
    const { signReceipt, receiptToJSON } = await import("../../src/attribution/receipts.js");
    const mallory: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    const orig = l.getReceipt(2).receipt;
    // Free models in its inputs, so its empty split is what they make: well-formed through and through.
    const inputs = { ...orig.inputs!, models: orig.inputs!.models.map((m) => ({ ...m, priceIn: 0n, priceOut: 0n })) };
    const r = { ...orig, node: privateKeyToAccount(mallory).address, fee: 0n, lines: [], inputs };
    l.db.prepare("DELETE FROM receipt_lines WHERE receipt_id = 2").run();
    l.db.prepare("UPDATE receipts SET body = ?, hash = ?, signer = ?, signature = ?, fee = '0' WHERE id = 2")
      .run(receiptToJSON(r), receiptDigest(r), r.node, await signReceipt(r, mallory));
    expect(await l.verifyChain()).toMatchObject({ ok: false, badReceiptId: 2, reason: expect.stringContaining("not a trusted signer") });
    expect(await l.verifyChain([l.nodeAddress, r.node])).toMatchObject({ ok: true });
    l.close();
  });

  it("detects edited lines, balances, deleted receipts and edited epoch roots", async () => {
    const { l } = await withReceipts(4);
    l.closeEpoch();
    l.db.prepare("UPDATE receipt_lines SET amount = CAST(amount AS INTEGER) + 1 WHERE receipt_id = 2 AND idx = 0").run();
    expect(await l.verifyChain()).toMatchObject({ ok: false, badReceiptId: 2 });
    expect(l.auditBalances().ok).toBe(false);
    l.db.prepare("UPDATE receipt_lines SET amount = CAST(amount AS INTEGER) - 1 WHERE receipt_id = 2 AND idx = 0").run();
    expect(await l.verifyChain()).toMatchObject({ ok: true });
    l.db.prepare("UPDATE balances SET amount = '1' WHERE party = 'meta'").run();
    expect(l.auditBalances().mismatches).toEqual([expect.objectContaining({ kind: "party", id: "meta", actual: "1" })]);
    l.db.prepare("UPDATE epochs SET root = ? WHERE id = 1").run(h("fake"));
    expect(await l.verifyChain()).toMatchObject({ ok: false, badEpochId: 1 });
    l.db.pragma("foreign_keys = OFF");
    l.db.prepare("DELETE FROM receipt_lines WHERE receipt_id = 3").run();
    l.db.prepare("DELETE FROM receipts WHERE id = 3").run();
    expect(await l.verifyChain()).toMatchObject({ ok: false, badReceiptId: 4 });
    l.close();
  });

  it("reopens with its data, continues the chain, and keeps its EIP-712 domain and schema", async () => {
    const { l, path } = await withReceipts(2);
    const head = l.head();
    l.close();
    const again = open(path);
    expect(again.head()).toEqual(head);
    const { receipt } = await serve(again, { spans: [] });
    expect(receipt.id).toBe(3);
    expect(receipt.prevHash).toBe(head.hash);
    expect(await again.verifyChain()).toMatchObject({ ok: true, receipts: 3 });
    expect((again.db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    again.close();
    expect(code(() => open(path, { chainId: 5 }))).toBe("LEDGER_CONFLICT");
    const raw = new Database(path);
    raw.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)").run();
    raw.close();
    expect(code(() => open(path))).toBe("LEDGER_SCHEMA_TOO_NEW");
  });
});

describe("ledger: version 2 receipts", () => {
  it("settles v2 receipts whose inputs recompute their split; v1 receipts of older files still verify beside them", async () => {
    const { receiptToJSON, receiptSplitProblem } = await import("../../src/attribution/receipts.js");
    const { nodeSigner } = await import("../../src/attribution/signing.js");
    const signer = nodeSigner(KEY);
    const l = populated();
    const first = await serve(l);
    expect(first.receipt.v).toBe(2);
    expect(first.receipt.inputs!.models.map((m) => m.model)).toEqual(["llama", "legal-lora"]);
    expect(first.receipt.inputs!.models[1]!.stakers).toEqual([{ party: "sam", stake: 30n }, { party: "tess", stake: 10n }]);
    expect(Object.keys(first.receipt.inputs!.models[0]!)).not.toContain("info");
    expect(receiptSplitProblem(first.receipt)).toBeNull();
    // Receipt 1 as an older build wrote it: no v, no inputs, hashed and signed by version 1's rule.
    const { v: _v, inputs: _i, ...v1 } = first.receipt;
    const v1Hash = receiptDigest(v1);
    l.db.prepare("UPDATE receipts SET body = ?, hash = ?, signature = ? WHERE id = 1").run(receiptToJSON(v1), v1Hash, signer.sign(v1Hash));
    const second = await serve(l);
    expect(second.receipt.prevHash).toBe(v1Hash);
    expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: 2 });

    // The node re-signs receipt 2 with one unit moved between two lines: signed, but not its inputs' split.
    const lines = second.receipt.lines.map((x, i) => (i === 0 ? { ...x, amount: x.amount - 1n } : i === 1 ? { ...x, amount: x.amount + 1n } : x));
    const lie = { ...second.receipt, lines };
    const hash = receiptDigest(lie);
    l.db.prepare("UPDATE receipts SET body = ?, hash = ?, signature = ? WHERE id = 2").run(receiptToJSON(lie), hash, signer.sign(hash));
    lines.slice(0, 2).forEach((x, i) => l.db.prepare("UPDATE receipt_lines SET amount = ? WHERE receipt_id = 2 AND idx = ?").run(x.amount.toString(), i));
    expect(await l.verifyChain()).toMatchObject({ ok: false, badReceiptId: 2, reason: expect.stringMatching(/split does not follow/) });
    l.close();
  });
});
