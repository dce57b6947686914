/**
 * Terms in force after the Registry's delay, as a node lives it: a node learns of a terms change
 * before it applies, keeps the old terms until the change's `from` and the new ones from then — so
 * proveBadTerms finds its receipts on both sides consistent — keeps what it learnt across a restart,
 * reserves the higher of the prices in force and waiting, and stops admitting requests when its
 * view of the chain grows older than half the delay (CHAIN_VIEW_STALE), signing none after the
 * view's end. The ledger's clock is set by hand (no test waits for the delay to pass).
 */
import { join } from "node:path";
import type { Address, Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { proveBadTermsArgs, type RegistryTerms } from "../../src/attribution/receipts.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import { ReceiptCourtAbi, RegistryAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { ChainNode } from "../../src/chain/node.js";
import { partyOf } from "../../src/ledger/chain-book.js";
import { Ledger } from "../../src/ledger/index.js";
import { expectRevert, nameId, startTestChain, testTerms, type TestChain } from "../helpers/chain.js";
import { tempDir } from "../helpers/tmp.js";

const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const NODE_KEY = ANVIL_KEYS[1]! as Hex;
const [OWNER, AGENT] = [2, 3];
const DELAY = 600n;
const dir = tempDir("openlora-terms-delay-");

let t: TestChain;
let node: Address, owner: Address, agent: Address;
let clock = 0;
let ledger: Ledger;
let chainNode: ChainNode;
let v1: RegistryTerms, v2: RegistryTerms;
let from1 = 0, from2 = 0;

const open = () => new Ledger({
  path: join(dir, "node.sqlite"), nodeKey: NODE_KEY, policy: POLICY, treasury: partyOf(t.addresses[9]!), operator: partyOf(node),
  chainId: t.deployment.chainId, verifyingContract: t.deployment.court!, onChain: true, now: () => clock,
});
const start = () => ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, ledger);
const registry = (fn: string, args: readonly unknown[]) => t.send(t.wallets[OWNER]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: fn, args });
const prove = (r: Awaited<ReturnType<typeof settle>>, terms: RegistryTerms) =>
  t.send(t.wallets[6]!, { address: t.deployment.court!, abi: ReceiptCourtAbi, functionName: "proveBadTerms", args: proveBadTermsArgs(r.receipt, r.signature, "base", terms) });

async function settle(at: number) {
  clock = at;
  const worst = ledger.worstCaseFee({ baseModel: "base", tokensIn: 3, maxTokens: 4 });
  const r = ledger.reserve(partyOf(agent), worst);
  return ledger.settle(r, { baseModel: "base", promptTokens: [1, 2, 3], outputTokens: [5, 6, 7, 8], sampling: { seed: 1 }, finish: "length" });
}

/** `from` (ms) of the TermsSet in a transaction's receipt. */
async function fromOf(r: { blockNumber: bigint }): Promise<number> {
  return (Number((await t.publicClient.getBlock({ blockNumber: r.blockNumber })).timestamp) + Number(DELAY)) * 1000;
}

beforeAll(async () => {
  t = await startTestChain({ termsDelay: DELAY });
  [node, owner, agent] = [t.addresses[1]!, t.addresses[OWNER]!, t.addresses[AGENT]!];
  v1 = testTerms(owner, { priceIn: 3n, priceOut: 7n });
  v2 = testTerms(owner, { priceIn: 4n, priceOut: 9n });
  from1 = await fromOf(await registry("registerModel", ["base", 0, `0x${"0".repeat(64)}`, v1]));
  const s = t.deployment.settlement;
  await t.send(t.wallets[AGENT]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [agent, 10n ** 9n] });
  await t.send(t.wallets[AGENT]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [s, 10n ** 9n] });
  clock = Date.now();
  ledger = open();
  chainNode = await start();
  await t.send(t.wallets[AGENT]!, { address: s, abi: SettlementAbi, functionName: "deposit", args: [node, 100_000n] });
  await chainNode.flush();
}, 120_000);

afterAll(async () => {
  await chainNode?.stop();
  ledger?.close();
  await t?.stop();
});

describe("terms in force after the Registry's delay", () => {
  it("before its terms' time a model registered on chain is the node's own, free, and its receipts are not provable", async () => {
    expect(ledger.getModel("base").priceIn).toBe(0n);
    expect(ledger.chain.pendingTerms("base").map((p) => [p.version, p.fromMs])).toEqual([[1, from1]]);
    // The reservation covers the terms waiting: a request admitted now may be settled after their time.
    expect(ledger.worstCaseFee({ baseModel: "base", tokensIn: 3, maxTokens: 4 })).toBe(3n * 3n + 4n * 7n);
    const free = await settle(from1 - 1);
    expect(free.receipt.fee).toBe(0n);
    await expectRevert(prove(free, v1), "NoTermsAtTime", [nameId("base"), BigInt(Math.floor((from1 - 1) / 1000))]);
  });

  it("lists the terms at their time, kept across a restart; the receipt is consistent with them", async () => {
    await chainNode.stop();
    ledger.close();
    ledger = open();
    chainNode = await start();
    const r = await settle(from1);
    expect(r.receipt.fee).toBe(3n * 3n + 4n * 7n);
    expect(ledger.chain.pendingTerms()).toEqual([]);
    await expectRevert(prove(r, v1), "TermsConsistent");
  });

  it("a change is learnt ahead and applied at its `from`: receipts on both sides are consistent", async () => {
    await t.increaseTime(5); // v1 in force before v2's `from` - 1 s
    from2 = await fromOf(await registry("setTerms", [nameId("base"), v2]));
    clock = from2 - DELAY_MS + 1000;
    await chainNode.flush();
    expect(ledger.chain.pendingTerms("base").map((p) => p.version)).toEqual([2]);
    expect(ledger.worstCaseFee({ baseModel: "base", tokensIn: 3, maxTokens: 4 })).toBe(3n * 4n + 4n * 9n);
    const before = await settle(from2 - 1);
    expect(before.receipt.fee).toBe(3n * 3n + 4n * 7n);
    await expectRevert(prove(before, v1), "TermsConsistent");
    const after = await settle(from2);
    expect(after.receipt.fee).toBe(3n * 4n + 4n * 9n);
    await expectRevert(prove(after, v2), "TermsConsistent");
    expect(ledger.getModel("base").priceIn).toBe(4n);
  });

  it("a view older than half the delay admits nothing; one past its end signs nothing; following again serves", async () => {
    clock = Date.now();
    await chainNode.flush();
    const view = ledger.chain.viewState()!;
    expect(view.delayMs).toBe(DELAY_MS);
    expect(view.safeUntilMs).toBeGreaterThanOrEqual(clock + DELAY_MS);
    const admitsUntil = view.safeUntilMs - DELAY_MS / 2;
    expect(() => ledger.chain.checkFresh("admission", admitsUntil)).not.toThrow();
    expect(() => ledger.chain.checkFresh("admission", admitsUntil + 1)).toThrow(expect.objectContaining({ code: "CHAIN_VIEW_STALE" }));
    expect(chainNode.status().admitsUntil).toBe(new Date(admitsUntil).toISOString());
    // Admitted in time, settled within the view: signed. Settled past the view's end: refused, nothing written.
    clock = admitsUntil;
    const res = ledger.reserve(partyOf(agent), 100n);
    clock = view.safeUntilMs + 1;
    const receipts = ledger.db.prepare("SELECT COUNT(*) AS n FROM receipts").get() as { n: number };
    await expect(ledger.settle(res, { baseModel: "base", promptTokens: [1], outputTokens: [2], sampling: { seed: 1 }, finish: "length" }))
      .rejects.toMatchObject({ code: "CHAIN_VIEW_STALE" });
    expect(ledger.db.prepare("SELECT COUNT(*) AS n FROM receipts").get()).toEqual(receipts);
    await chainNode.flush();
    expect(() => ledger.chain.checkFresh("admission")).not.toThrow();
    const r = await ledger.settle(res, { baseModel: "base", promptTokens: [1], outputTokens: [2], sampling: { seed: 1 }, finish: "length" });
    expect(r.receipt.fee).toBe(4n + 9n);
  });
});

const DELAY_MS = Number(DELAY) * 1000;
