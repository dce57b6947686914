/**
 * ReceiptCourt.proveBadTerms on the real deployment (Registry, Settlement, ReceiptCourt): a node that
 * follows the chain signs receipts by the registry's terms of their time, which no proof can slash —
 * also after the terms change; a node that serves a registered model at its own price (its split
 * consistent with that price, so proveBadSplit finds nothing) loses its bond; the challenger must
 * supply the registry's terms of the receipt's time, and a model without terms then is not provable.
 */
import { join } from "node:path";
import { parseEventLogs, type Address, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FeePolicy, ModelUse } from "../../src/attribution/types.js";
import { proveBadTermsArgs, receiptCourtArgs, receiptDigest, type Receipt, type RegistryTerms } from "../../src/attribution/receipts.js";
import { nodeSigner } from "../../src/attribution/signing.js";
import { ReceiptCourtAbi, RegistryAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { ChainNode } from "../../src/chain/node.js";
import { partyOf } from "../../src/ledger/chain-book.js";
import { Ledger } from "../../src/ledger/index.js";
import { expectRevert, nameId, startTestChain, testTerms, type TestChain } from "../helpers/chain.js";
import { tempDir } from "../helpers/tmp.js";

const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const NODE_KEY = ANVIL_KEYS[1]! as Hex;
const [OWNER, AGENT, DEV, CHALLENGER] = [2, 3, 4, 6];
const dir = tempDir("openlora-terms-proof-");

let t: TestChain;
let node: Address, owner: Address, agent: Address, dev: Address, treasury: Address;
let ledger: Ledger;
let chainNode: ChainNode;
/** Receipt time of the ledgers (ms): set from the chain's clock before each request. */
let clock = 0;
let oldTerms: RegistryTerms, newTerms: RegistryTerms, linTerms: RegistryTerms;

const court = () => t.deployment.court!;
const send = (fn: string, args: readonly unknown[]) => t.send(t.wallets[CHALLENGER]!, { address: court(), abi: ReceiptCourtAbi, functionName: fn, args });
const bondOf = () => t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "bondOf", args: [node] });
const sign = (r: Receipt) => nodeSigner(NODE_KEY).sign(receiptDigest(r, ledger.domainOptions));
const proveTerms = (r: Receipt, sig: Hex, model: number | string, terms: RegistryTerms) => send("proveBadTerms", proveBadTermsArgs(r, sig, model, terms));

async function tick(): Promise<void> {
  clock = Number(await t.now()) * 1000 + 500;
}

async function bond(amount = 1_000n): Promise<void> {
  const w = t.wallets[1]!;
  await t.send(w, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [node, amount] });
  await t.send(w, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.settlement, amount] });
  await t.send(w, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "bond", args: [amount] });
}

async function settle(l: Ledger, model = "base", who = partyOf(agent)) {
  const r = l.reserve(who, 1000n);
  return l.settle(r, { baseModel: model, promptTokens: [1, 2, 3], outputTokens: [5, 6, 7, 8], sampling: { seed: 1 }, finish: "length" });
}

/** A ledger of the same node key that does not follow the chain: it lists models at terms of its own. */
function rogueLedger(name: string): Ledger {
  const l = new Ledger({
    path: join(dir, name), nodeKey: NODE_KEY, policy: POLICY, treasury: partyOf(treasury), operator: partyOf(node),
    chainId: t.deployment.chainId, verifyingContract: court(), now: () => clock,
  });
  l.createAgent("agent");
  l.deposit("agent", 10n ** 9n);
  return l;
}

/** The registry's developers of "base", in the order the owner registered them (not the ledger's). */
const developers = () => [{ party: dev, share: 1n }, { party: owner, share: 2n }].sort((a, b) => (a.party.toLowerCase() < b.party.toLowerCase() ? 1 : -1));

beforeAll(async () => {
  t = await startTestChain();
  [node, owner, agent, dev, treasury] = [t.addresses[1]!, t.addresses[OWNER]!, t.addresses[AGENT]!, t.addresses[DEV]!, t.addresses[9]!];
  const reg = (fn: string, args: readonly unknown[]) => t.send(t.wallets[OWNER]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: fn, args });
  oldTerms = testTerms(owner, { priceIn: 3n, priceOut: 7n, developers: developers(), hasShares: true, developerBps: 6000, stakerBps: 1000, dataBps: 3000 });
  newTerms = { ...oldTerms, priceIn: 4n, priceOut: 9n };
  await reg("registerModel", ["base", 0, `0x${"0".repeat(64)}`, oldTerms]);
  // An adapter with a lineage (the node does not list it: its Datanet is not in the ledger; receipts of it are made by hand below).
  await reg("createDatanet", ["legal"]);
  await reg("createDatanet", ["cases"]);
  await reg("publishVersion", [nameId("legal"), `0x${"11".repeat(32)}`, [dev], [100n]]);
  await reg("publishVersion", [nameId("cases"), `0x${"22".repeat(32)}`, [dev], [50n]]);
  await reg("publishVersion", [nameId("cases"), `0x${"33".repeat(32)}`, [dev], [60n]]);
  linTerms = testTerms(owner, { lineage: [{ datanet: nameId("legal"), version: 1, weight: 7n }, { datanet: nameId("cases"), version: 2, weight: 3n }] });
  await reg("registerModel", ["lin", 1, nameId("base"), linTerms]);
  await t.send(t.wallets[AGENT]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [agent, 10n ** 18n] });
  await t.send(t.wallets[AGENT]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.settlement, 10n ** 18n] });

  ledger = new Ledger({
    path: join(dir, "node.sqlite"), nodeKey: NODE_KEY, policy: POLICY, treasury: partyOf(treasury), operator: partyOf(node),
    chainId: t.deployment.chainId, verifyingContract: court(), onChain: true, now: () => clock,
  });
  chainNode = await ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, ledger);
  await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [node, 100_000n] });
  await chainNode.flush();
  await bond();
}, 120_000);

afterAll(async () => {
  await chainNode?.stop();
  ledger?.close();
  await t?.stop();
});

describe("ReceiptCourt.proveBadTerms", () => {
  let before: { receipt: Receipt; signature: Hex };
  let after: { receipt: Receipt; signature: Hex };

  it("an honest receipt is consistent with the registry's terms of its time", async () => {
    await tick();
    before = await settle(ledger);
    const m = before.receipt.inputs!.models[0]!;
    expect([m.priceIn, m.priceOut, m.shares]).toEqual([3n, 7n, { developerBps: 6000, stakerBps: 1000, dataBps: 3000 }]);
    await expectRevert(proveTerms(before.receipt, before.signature, "base", oldTerms), "TermsConsistent");
  });

  it("the challenger must supply the registry's terms: other terms revert NotRegistryTerms", async () => {
    await expectRevert(proveTerms(before.receipt, before.signature, 0, newTerms), "NotRegistryTerms");
    const swapped = { ...oldTerms, developers: [...oldTerms.developers].reverse() };
    await expectRevert(proveTerms(before.receipt, before.signature, 0, swapped), "NotRegistryTerms");
  });

  it("after the terms change, an older receipt is judged by the old terms and a newer one by the new", async () => {
    await t.increaseTime(60);
    await t.send(t.wallets[OWNER]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: "setTerms", args: [nameId("base"), newTerms] });
    await tick();
    await chainNode.flush();
    expect(ledger.getModel("base").priceIn).toBe(4n);
    after = await settle(ledger);
    expect(after.receipt.inputs!.models[0]!.priceIn).toBe(4n);
    await expectRevert(proveTerms(before.receipt, before.signature, 0, oldTerms), "TermsConsistent");
    await expectRevert(proveTerms(before.receipt, before.signature, 0, newTerms), "NotRegistryTerms");
    await expectRevert(proveTerms(after.receipt, after.signature, 0, newTerms), "TermsConsistent");
    await expectRevert(proveTerms(after.receipt, after.signature, 0, oldTerms), "NotRegistryTerms");
    expect(await bondOf()).toBe(1_000n);
  });

  it("a receipt at a price of the node's own, split consistently, escapes proveBadSplit and is slashed by proveBadTerms", async () => {
    const rogue = rogueLedger("rogue.sqlite");
    // The old price after the change: the operator's own listing, same developers, shares and policy.
    rogue.registerModel({
      id: "base", kind: "base", owner: partyOf(owner), priceIn: 3n, priceOut: 7n, contentHash: oldTerms.contentHash,
      developers: oldTerms.developers.map((d) => ({ party: partyOf(d.party), share: d.share })), shares: { developerBps: 6000, stakerBps: 1000, dataBps: 3000 },
    });
    await tick();
    const lie = await settle(rogue, "base", "agent");
    rogue.close();
    await expectRevert(send("proveBadSplit", [...receiptCourtArgs(lie.receipt), lie.signature]), "ReceiptConsistent");
    const challenger = t.addresses[CHALLENGER]!;
    const balance = () => t.publicClient.readContract({ address: t.deployment.token, abi: TestTokenAbi, functionName: "balanceOf", args: [challenger] });
    const was = await balance();
    const rc = await proveTerms(lie.receipt, lie.signature, "base", newTerms);
    const [ev] = parseEventLogs({ abi: ReceiptCourtAbi, logs: rc.logs, eventName: "FraudProven" });
    expect(ev!.args).toMatchObject({ node, receiptDigest: receiptDigest(lie.receipt, ledger.domainOptions), reason: 3 });
    expect(await bondOf()).toBe(0n);
    expect((await balance()) - was).toBe(250n);
    await expectRevert(proveTerms(lie.receipt, lie.signature, "base", newTerms), "AlreadyProven");
  });

  it("a model without terms at the receipt's time is not provable: NoTermsAtTime", async () => {
    const rogue = rogueLedger("free.sqlite");
    rogue.registerModel({ id: "free", kind: "base", owner: partyOf(node), priceIn: 1n, priceOut: 1n, contentHash: oldTerms.contentHash, developers: [{ party: partyOf(node), share: 1n }] });
    rogue.registerModel({ id: "base", kind: "base", owner: partyOf(owner), priceIn: 3n, priceOut: 7n, contentHash: oldTerms.contentHash, developers: [{ party: partyOf(owner), share: 1n }] });
    const free = await settle(rogue, "free", "agent");
    clock = 1_000_000_000_000; // 2001: before "base" was registered
    const early = await settle(rogue, "base", "agent");
    rogue.close();
    await expectRevert(proveTerms(free.receipt, free.signature, 0, oldTerms), "NoTermsAtTime", [nameId("free"), BigInt(Math.floor(free.receipt.time / 1000))]);
    await expectRevert(proveTerms(early.receipt, early.signature, 0, oldTerms), "NoTermsAtTime", [nameId("base"), 1_000_000_000n]);
  });

  it("checks the inputs part and the model index", async () => {
    const [struct, parts] = receiptCourtArgs(after.receipt);
    const other = { ...parts.inputs, operator: "0xdead" };
    await expectRevert(send("proveBadTerms", [struct, other, after.signature, 0n, newTerms]), "PartMismatch", [1]);
    await expectRevert(send("proveBadTerms", [struct, parts.inputs, after.signature, 1n, newTerms]), "ModelIndexOutOfRange", [1n, 1n]);
    expect(() => proveBadTermsArgs(after.receipt, after.signature, "lin", newTerms)).toThrow(/no model lin/);
  });

  describe("lineage (a receipt of the adapter, inputs made by hand and signed by the node key)", () => {
    const use = (lineage: { datanet: string; weight: bigint }[], over: Partial<ModelUse> = {}): ModelUse => ({
      model: "lin", priceIn: 1n, priceOut: 2n, developers: [{ party: partyOf(owner), share: 1n }], stakers: [],
      lineage: lineage.map((l) => ({ ...l, contributors: [{ party: partyOf(dev), approvedTokens: 100 }] })), ...over,
    });
    const receiptOf = (m: ModelUse): { receipt: Receipt; signature: Hex } => {
      const receipt: Receipt = { ...after.receipt, id: after.receipt.id + 100, inputs: { ...after.receipt.inputs!, models: [after.receipt.inputs!.models[0]!, m] } };
      return { receipt, signature: sign(receipt) };
    };

    it("keys name@version in any order with equal weights are the registry's lineage", async () => {
      const r = receiptOf(use([{ datanet: "cases@2", weight: 3n }, { datanet: "legal@1", weight: 7n }]));
      await expectRevert(proveTerms(r.receipt, r.signature, "lin", linTerms), "TermsConsistent");
    });

    for (const [what, m] of [
      ["another version", () => use([{ datanet: "cases@1", weight: 3n }, { datanet: "legal@1", weight: 7n }])],
      ["a non-canonical version", () => use([{ datanet: "cases@02", weight: 3n }, { datanet: "legal@1", weight: 7n }])],
      ["another weight", () => use([{ datanet: "cases@2", weight: 4n }, { datanet: "legal@1", weight: 7n }])],
      ["an entry left out", () => use([{ datanet: "legal@1", weight: 7n }])],
      ["a developer's checksummed address", () => use([{ datanet: "cases@2", weight: 3n }, { datanet: "legal@1", weight: 7n }], { developers: [{ party: owner, share: 1n }] })],
      ["a shares override the terms lack", () => use([{ datanet: "cases@2", weight: 3n }, { datanet: "legal@1", weight: 7n }], { shares: { developerBps: 5000, stakerBps: 2000, dataBps: 3000 } })],
    ] as const) {
      it(`${what} is a TermsMismatch`, async () => {
        await bond();
        const r = receiptOf(m());
        const rc = await proveTerms(r.receipt, r.signature, "lin", linTerms);
        expect(parseEventLogs({ abi: ReceiptCourtAbi, logs: rc.logs, eventName: "FraudProven" })[0]!.args.reason).toBe(3);
        expect(await bondOf()).toBe(0n);
      });
    }
  });
});
