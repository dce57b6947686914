/**
 * The node on a chain, end to end below HTTP: a real ledger follows real contracts on anvil —
 * deposits, stakes, a model registered by its owner — settles requests, posts its epochs, and every
 * party claims exactly its ledger lines; a restart applies nothing twice and posts nothing twice;
 * an RPC outage during a post loses no epoch; a withdrawal that would leave spend unfunded is refused;
 * a merged model is listed by its parents and its receipts are checked by `openlora chain check-receipt`.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { getAddress, parseEventLogs, type Address, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FeePolicy } from "../../src/attribution/types.js";
import { ReceiptCourtAbi, RegistryAbi, RegistryCourtAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { checkReceipt } from "../../src/chain/challenger.js";
import { writeDeployment } from "../../src/chain/deploy.js";
import { ChainNode } from "../../src/chain/node.js";
import { COMMITTED, EARNINGS } from "../../src/chain/payout-tree.js";
import { partyOf } from "../../src/ledger/chain-book.js";
import { Ledger } from "../../src/ledger/index.js";
import { proveBadMergedLineageArgs, receiptCourtArgs, receiptDigest, receiptToJSON, type Receipt } from "../../src/attribution/receipts.js";
import { nodeSigner } from "../../src/attribution/signing.js";
import { expectRevert, nameId, registryCourtOf, rpcProxy, startTestChain, testTerms, TEST_PARAMS, type RpcProxy, type TestChain } from "../helpers/chain.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const NODE_KEY = ANVIL_KEYS[1]! as Hex;
const dir = tempDir("openlora-chain-node-");

let t: TestChain;
let node: Address, owner: Address, agent: Address, staker: Address, treasury: Address;
const [, , OWNER, AGENT, STAKER] = [0, 1, 2, 3, 4];

let proxy: RpcProxy;

function openLedger(path: string): Ledger {
  return new Ledger({ path, nodeKey: NODE_KEY, policy: POLICY, treasury: partyOf(treasury), operator: partyOf(node), chainId: t.deployment.chainId, verifyingContract: t.deployment.court!, onChain: true, now: () => t.clock() });
}

async function settleOne(l: Ledger, out = [5, 6, 7, 8]): Promise<void> {
  const r = l.reserve(partyOf(agent), 1000n);
  await l.settle(r, { baseModel: "base", promptTokens: [1, 2, 3], outputTokens: out, sampling: { seed: 1 }, finish: "length" });
}

const token = () => t.deployment.token;
const balanceOf = (a: Address) => t.publicClient.readContract({ address: token(), abi: TestTokenAbi, functionName: "balanceOf", args: [a] });

async function claim(l: Ledger, who: Address): Promise<bigint> {
  const p = l.chain.claimProof(who, EARNINGS);
  const before = await balanceOf(who);
  await t.send(t.wallets[0]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "claim", args: [node, BigInt(p.epoch), who, p.cumulative, p.proof] });
  return (await balanceOf(who)) - before;
}

beforeAll(async () => {
  t = await startTestChain();
  [node, owner, agent, staker, treasury] = [t.addresses[1]!, t.addresses[OWNER]!, t.addresses[AGENT]!, t.addresses[STAKER]!, t.addresses[9]!];
  proxy = await rpcProxy(t.anvil.url);

  const s = t.deployment.settlement;
  await t.send(t.wallets[OWNER]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: "registerModel", args: ["base", 0, `0x${"0".repeat(64)}`, testTerms(owner, { priceIn: 3n, priceOut: 7n })] });
  for (const i of [AGENT, STAKER]) {
    await t.send(t.wallets[i]!, { address: token(), abi: TestTokenAbi, functionName: "mint", args: [t.addresses[i]!, 10n ** 21n] });
    await t.send(t.wallets[i]!, { address: token(), abi: TestTokenAbi, functionName: "approve", args: [s, 10n ** 21n] });
  }
  await t.send(t.wallets[STAKER]!, { address: s, abi: SettlementAbi, functionName: "stake", args: [nameId("base"), 400n] });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await t?.stop();
});

describe("a node on a chain", () => {
  const path = join(dir, "node.sqlite");
  let ledger: Ledger;
  let chainNode: ChainNode;

  it("registers as an operator, mirrors the model and the stake, and follows a deposit made afterwards", async () => {
    ledger = openLedger(path);
    chainNode = await ChainNode.start({ url: proxy.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, ledger);
    expect(await t.publicClient.readContract({ address: t.deployment.registry, abi: RegistryAbi, functionName: "isOperator", args: [node] })).toBe(true);
    await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [node, 50_000n] });
    await chainNode.flush();
    const m = ledger.getModel("base");
    expect([m.priceIn, m.priceOut, m.owner]).toEqual([3n, 7n, partyOf(owner)]);
    expect(ledger.getAgent(partyOf(agent)).balance).toBe(50_000n);
    expect(ledger.accounts.stakeOf(partyOf(staker), "base")).toBe(400n);
    expect(ledger.auditBalances().ok).toBe(true);
  });

  it("posts an epoch, and every party claims exactly its ledger lines", async () => {
    await settleOne(ledger);
    await settleOne(ledger, [9, 9]);
    const earned = new Map(ledger.balances().map((b) => [b.party, b.amount]));
    await chainNode.closeAndPost();
    expect(await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "lastEpoch", args: [node] })).toBe(1n);
    await expectRevert(claim(ledger, owner), "ChallengeWindowOpen");
    await t.increaseTime(TEST_PARAMS.challengeWindow + 1n);
    for (const who of [owner, staker, node, treasury]) {
      const want = earned.get(partyOf(who)) ?? 0n;
      expect(want).toBeGreaterThan(0n);
      expect(await claim(ledger, who)).toBe(want);
    }
    await expectRevert(claim(ledger, owner), "NothingToClaim");
  });

  it("a restart applies no log twice and posts no epoch twice", async () => {
    const before = ledger.getAgent(partyOf(agent));
    const events = ledger.events.head().id;
    await chainNode.stop();
    ledger.close();
    ledger = openLedger(path);
    chainNode = await ChainNode.start({ url: proxy.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, ledger);
    expect(ledger.getAgent(partyOf(agent))).toEqual(before);
    expect(ledger.events.head().id).toBe(events);
    await chainNode.flush();
    expect(ledger.chain.sealed().map((e) => [e.epoch, e.status])).toEqual([[1, "posted"]]);
  });

  it("an RPC outage during a post loses no epoch and posts it once when the chain is back", async () => {
    await settleOne(ledger);
    proxy.down = "sends";
    ledger.closeEpoch();
    await expect(chainNode.flush()).rejects.toThrow();
    expect(ledger.chain.sealed()[1]!.attempts).toBe(1);
    proxy.down = "all";
    await expect(chainNode.flush()).rejects.toThrow();
    await settleOne(ledger); // serving goes on meanwhile
    expect(ledger.chain.sealed({ status: "pending" }).map((e) => e.epoch)).toEqual([2]);
    proxy.down = false;
    await chainNode.flush();
    await chainNode.flush();
    expect(ledger.chain.sealed().map((e) => e.status)).toEqual(["posted", "posted"]);
    expect(await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "lastEpoch", args: [node] })).toBe(2n);
  });

  it("a cumulative claim on a later epoch pays only the difference", async () => {
    await chainNode.closeAndPost();
    await t.increaseTime(TEST_PARAMS.challengeWindow + 1n);
    const earned = ledger.balances().find((b) => b.party === partyOf(owner))!.amount;
    const claimed = await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "claimed", args: [node, owner] });
    expect(await claim(ledger, owner)).toBe(earned - claimed);
  });

  it("a restart mid-epoch loses none of its receipts: the next epoch posted holds them", async () => {
    await settleOne(ledger);
    const last = ledger.head().id;
    await chainNode.stop();
    ledger.close();
    ledger = openLedger(path);
    chainNode = await ChainNode.start({ url: proxy.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, ledger);
    await chainNode.closeAndPost();
    const posted = await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "epochOf", args: [node, 4n] });
    expect(posted.lastReceipt).toBe(BigInt(last));
    expect(posted.payoutRoot).toBe(ledger.chain.sealed().at(-1)!.payoutRoot);
  });

  it("refuses a withdrawal that would leave the agent's committed spend unfunded; pays the unspent rest", async () => {
    const s = t.deployment.settlement;
    const committed = ledger.chain.claimProof(agent, COMMITTED);
    expect(committed.cumulative).toBeGreaterThan(0n);
    await t.send(t.wallets[AGENT]!, { address: s, abi: SettlementAbi, functionName: "requestWithdrawal", args: [node, 50_000n] });
    await chainNode.flush();
    // The node stops reserving against money on its way out at once.
    expect(ledger.getAgent(partyOf(agent)).balance).toBe(0n);
    await t.increaseTime(TEST_PARAMS.withdrawDelay + 1n);
    await settleOneExpectRefused(ledger);
    // An epoch after the request states the agent's committed spend.
    await settleEmptyEpoch();
    const p = ledger.chain.claimProof(agent, COMMITTED);
    await expectRevert(t.send(t.wallets[AGENT]!, { address: s, abi: SettlementAbi, functionName: "withdraw", args: [node, p.cumulative, p.proof] }), "WithdrawalExceedsUnspent");
    const unspent = 50_000n - p.cumulative;
    await t.send(t.wallets[AGENT]!, { address: s, abi: SettlementAbi, functionName: "requestWithdrawal", args: [node, unspent] });
    await t.increaseTime(TEST_PARAMS.withdrawDelay + 1n);
    await settleEmptyEpoch();
    const q = ledger.chain.claimProof(agent, COMMITTED);
    const before = await balanceOf(agent);
    await t.send(t.wallets[AGENT]!, { address: s, abi: SettlementAbi, functionName: "withdraw", args: [node, q.cumulative, q.proof] });
    expect((await balanceOf(agent)) - before).toBe(unspent);
    expect(ledger.auditBalances().ok).toBe(true);
  });

  it("a fraud proof against one of its honest receipts fails; against a receipt whose lines it falsified, it slashes the bond", async () => {
    const s = t.deployment.settlement;
    const w = t.wallets[1]!;
    await t.send(w, { address: token(), abi: TestTokenAbi, functionName: "mint", args: [node, 10_000n] });
    await t.send(w, { address: token(), abi: TestTokenAbi, functionName: "approve", args: [s, 10_000n] });
    await t.send(w, { address: s, abi: SettlementAbi, functionName: "bond", args: [10_000n] });
    const honest = ledger.getReceipt(1);
    const challenger = t.wallets[6]!;
    const args = (r: Receipt) => receiptCourtArgs(r);
    await expectRevert(t.send(challenger, { address: t.deployment.court!, abi: ReceiptCourtAbi, functionName: "proveBadSplit", args: [...args(honest.receipt), honest.signature] }), "ReceiptConsistent");
    // The operator signs a receipt that moves one line's amount to another party.
    const lines = honest.receipt.lines.map((l, i) => (i === 0 ? { ...l, amount: 0n } : i === 1 ? { ...l, amount: l.amount + honest.receipt.lines[0]!.amount } : l));
    const lie: Receipt = { ...honest.receipt, lines };
    const sig = nodeSigner(NODE_KEY).sign(receiptDigest(lie, ledger.domainOptions));
    const before = await balanceOf(challenger.account.address);
    await t.send(challenger, { address: t.deployment.court!, abi: ReceiptCourtAbi, functionName: "proveBadSplit", args: [...args(lie), sig] });
    expect(await t.publicClient.readContract({ address: s, abi: SettlementAbi, functionName: "bondOf", args: [node] })).toBe(0n);
    expect((await balanceOf(challenger.account.address)) - before).toBe((10_000n * BigInt(TEST_PARAMS.slashRewardBps)) / 10_000n);
  });

  it("proves equivocation (two receipts with one id, a successor that does not link) and an epoch that does not end with the receipt signed as its last", async () => {
    const s = t.deployment.settlement;
    const court = t.deployment.court!;
    const w = t.wallets[1]!;
    const challenger = t.wallets[6]!;
    const bonded = async () => {
      await t.send(w, { address: token(), abi: TestTokenAbi, functionName: "mint", args: [node, 1_000n] });
      await t.send(w, { address: token(), abi: TestTokenAbi, functionName: "approve", args: [s, 1_000n] });
      await t.send(w, { address: s, abi: SettlementAbi, functionName: "bond", args: [1_000n] });
    };
    const bond = () => t.publicClient.readContract({ address: s, abi: SettlementAbi, functionName: "bondOf", args: [node] });
    const struct = (r: Receipt) => receiptCourtArgs(r)[0];
    const signed = (r: Receipt) => nodeSigner(NODE_KEY).sign(receiptDigest(r, ledger.domainOptions));
    const prove = (fn: string, args: unknown[]) => t.send(challenger, { address: court, abi: ReceiptCourtAbi, functionName: fn, args });
    const [one, two] = [ledger.getReceipt(1), ledger.getReceipt(2)];
    await bonded();
    // The honest chain: consecutive receipts that link, one receipt per id.
    await expectRevert(prove("proveEquivocation", [struct(one.receipt), one.signature, struct(two.receipt), two.signature]), "NoEquivocation");
    await expectRevert(prove("proveEquivocation", [struct(one.receipt), one.signature, struct(one.receipt), one.signature]), "NoEquivocation");
    // A second receipt 2 (another output) signed by the node: a fork of its chain.
    const other: Receipt = { ...two.receipt, outputHash: `0x${"42".repeat(32)}` };
    await prove("proveEquivocation", [struct(two.receipt), two.signature, struct(other), signed(other)]);
    expect(await bond()).toBe(0n);
    await expectRevert(prove("proveEquivocation", [struct(other), signed(other), struct(two.receipt), two.signature]), "AlreadyProven");
    // A successor of receipt 1 that does not link to it.
    await bonded();
    const unlinked: Receipt = { ...two.receipt, prevHash: `0x${"0".repeat(64)}`, outputHash: `0x${"43".repeat(32)}` };
    await prove("proveEquivocation", [struct(one.receipt), one.signature, struct(unlinked), signed(unlinked)]);
    expect(await bond()).toBe(0n);
    // Epoch 1 ends with the receipt the ledger signed with its last id; another receipt with that id is not posted.
    await bonded();
    const e1 = await t.publicClient.readContract({ address: s, abi: SettlementAbi, functionName: "epochOf", args: [node, 1n] });
    const last = ledger.getReceipt(Number(e1.lastReceipt));
    await expectRevert(prove("proveNotPosted", [struct(last.receipt), last.signature, 1n]), "ReceiptPosted");
    await expectRevert(prove("proveNotPosted", [struct(one.receipt), one.signature, 1n]), "ReceiptPosted");
    const swapped: Receipt = { ...last.receipt, outputHash: `0x${"44".repeat(32)}` };
    await prove("proveNotPosted", [struct(swapped), signed(swapped), 1n]);
    expect(await bond()).toBe(0n);
    await expectRevert(prove("proveNotPosted", [struct(swapped), signed(swapped), 1n]), "AlreadyProven");
  });

  async function settleOneExpectRefused(l: Ledger): Promise<void> {
    expect(() => l.reserve(partyOf(agent), 1000n)).toThrow(expect.objectContaining({ code: "INSUFFICIENT_BALANCE" }));
  }

  /** Posts an epoch with no receipt (what a node does when withdrawals wait on a post). */
  async function settleEmptyEpoch(): Promise<void> {
    await chainNode.closeAndPost();
  }

  afterAll(async () => {
    await chainNode?.stop();
    ledger?.close();
  });
});

describe("Datanet lineage from the chain", () => {
  it("lists a model whose lineage is a version the chain published as this node holds it, not one whose root differs; a merge by its parents' listings", async () => {
    const l = openLedger(join(dir, "lineage.sqlite"));
    const n = await ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, l);
    const contributor = t.addresses[5]!;
    for (const name of ["tales", "forged"]) {
      l.createDatanet(name, partyOf(owner));
      const rec = l.contribute(name, { contributor: partyOf(contributor), content: `a record of ${name}`, tokenIds: [4, 5, 6] });
      l.approveRecord(name, rec.id, partyOf(owner));
      const v = l.publishVersion(name, partyOf(owner));
      const reg = t.deployment.registry;
      await t.send(t.wallets[OWNER]!, { address: reg, abi: RegistryAbi, functionName: "createDatanet", args: [name] });
      const root = name === "tales" ? v.root : (`0x${"ee".repeat(32)}` as Hex);
      await t.send(t.wallets[OWNER]!, { address: reg, abi: RegistryAbi, functionName: "publishVersion", args: [nameId(name), root, [contributor], [3n]] });
      await t.send(t.wallets[OWNER]!, { address: reg, abi: RegistryAbi, functionName: "registerModel", args: [`${name}-lora`, 1, nameId("base"), testTerms(owner, { lineage: [{ datanet: nameId(name), version: v.version, weight: 1n }] })] });
    }
    await n.flush();
    expect(l.getModel("tales-lora").lineage).toEqual([{ datanet: "tales", version: 1, weight: 1n }]);
    // Listed free until its terms' time, then not served: those terms pay a version this node does not hold.
    expect(l.getModel("forged-lora").priceIn).toBe(0n);
    expect(() => l.chain.checkAccess("forged-lora", undefined)).toThrow(expect.objectContaining({ code: "CHAIN_TERMS_UNSUPPORTED" }));

    // Merged models: the lineage of their parents' listings; a parent not served makes the merge unservable too.
    const reg = t.deployment.registry;
    const merge = (name: string, parents: [string, bigint][]) => t.send(t.wallets[OWNER]!, {
      address: reg, abi: RegistryAbi, functionName: "registerModel", args: [name, 2, nameId("base"), testTerms(owner, { parents: parents.map(([m, w]) => ({ model: nameId(m), weight: w })) })],
    });
    // 2,100 empty blocks first: the merge's logs lie beyond one log range (MAX_RANGE) from the deployment.
    await t.publicClient.request({ method: "anvil_mine", params: ["0x834"] } as never);
    await t.send(t.wallets[OWNER]!, { address: reg, abi: RegistryAbi, functionName: "registerModel", args: ["tales-lora-2", 1, nameId("base"), testTerms(owner, { lineage: [{ datanet: nameId("tales"), version: 1, weight: 5n }] })] });
    await merge("tales-mix", [["tales-lora", 3n], ["tales-lora-2", 1n]]);
    await merge("forged-mix", [["tales-lora", 1n], ["forged-lora", 1n]]);
    await n.flush();
    expect(l.getModel("tales-mix")).toMatchObject({ kind: "merged", lineage: [{ datanet: "tales", version: 1, weight: 1n }] });
    expect(() => l.chain.checkAccess("tales-mix", undefined)).not.toThrow();
    expect(l.chain.unservable("forged-mix")).toMatch(/its parents forged-lora are not served/);
    expect(() => l.chain.checkAccess("forged-mix", undefined)).toThrow(expect.objectContaining({ code: "CHAIN_TERMS_UNSUPPORTED" }));

    // The court on the real deployment upholds a receipt of the merge and slashes one whose weights differ.
    const deputy = await registryCourtOf(t);
    await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [node, 50_000n] });
    await n.flush();
    const r = l.reserve(partyOf(agent), 10_000n);
    const mixed = await l.settle(r, { baseModel: "base", adapters: [{ id: "tales-mix", weightPpm: 1_000_000 }], promptTokens: [1, 2, 3], outputTokens: [4, 5], sampling: { seed: 1 }, finish: "length" });
    const lineageTerms = (w: bigint) => testTerms(owner, { lineage: [{ datanet: nameId("tales"), version: 1, weight: w }] });
    const mixTerms = testTerms(owner, { parents: [{ model: nameId("tales-lora"), weight: 3n }, { model: nameId("tales-lora-2"), weight: 1n }] });
    const proveMix = (rc: Receipt, sig: Hex) => t.send(t.wallets[6]!, {
      address: deputy, abi: RegistryCourtAbi, functionName: "proveBadMergedLineage", args: proveBadMergedLineageArgs(rc, sig, "tales-mix", mixTerms, [lineageTerms(1n), lineageTerms(5n)]),
    });
    await expectRevert(proveMix(mixed.receipt, mixed.signature), "MergedLineageConsistent");
    const lie: Receipt = { ...mixed.receipt, inputs: { ...mixed.receipt.inputs!, models: mixed.receipt.inputs!.models.map((m) => (m.model === "tales-mix" ? { ...m, lineage: m.lineage.map((e) => ({ ...e, weight: 2n })) } : m)) } };
    const lieSig = nodeSigner(NODE_KEY).sign(receiptDigest(lie, l.domainOptions));
    // checkReceipt gathers every proof's arguments from the chain: the honest receipt stands on all, the lie falls on one.
    const challenger = t.addresses[6]!;
    const honestChecks = await checkReceipt(t.publicClient, t.deployment, mixed.receipt, mixed.signature, challenger);
    expect(honestChecks.map((x) => [x.proof, x.verdict, x.detail])).toEqual([
      ["proveBadSplit", "stands", "ReceiptConsistent"],
      ["proveBadPolicy", "stands", "PolicyConsistent"],
      ["proveBadTerms(base)", "stands", "TermsConsistent"],
      ["proveBadStakers(base)", "stands", "StakersConsistent"],
      ["proveBadTerms(tales-mix)", "stands", "TermsConsistent"],
      ["proveBadStakers(tales-mix)", "stands", "StakersConsistent"],
      ["proveBadContributors(tales-mix, tales@1)", "stands", "ContributorsConsistent"],
      ["proveBadMergedLineage(tales-mix)", "stands", "MergedLineageConsistent"],
    ]);
    const lieChecks = await checkReceipt(t.publicClient, t.deployment, lie, lieSig, challenger);
    expect(lieChecks.filter((x) => x.verdict === "slashes").map((x) => [x.proof, x.detail])).toEqual([["proveBadMergedLineage(tales-mix)", "MergedLineageMismatch"]]);
    // `openlora chain check-receipt --send` with the lie served as a node serves receipts: exit 3, the slashing proof sent.
    const source = createServer((_req, res) => { res.setHeader("content-type", "application/json"); res.end(JSON.stringify({ json: receiptToJSON(lie), signature: lieSig })); });
    await new Promise<void>((r) => source.listen(0, "127.0.0.1", () => r()));
    const contracts = join(dir, "contracts.json");
    writeDeployment(contracts, t.deployment);
    try {
      const cli = await runCli(["chain", "check-receipt", "--rpc", t.anvil.url, "--contracts", contracts, "--server", `http://127.0.0.1:${(source.address() as AddressInfo).port}`, "--receipt", String(lie.id), "--send"], { OPENLORA_CHAIN_KEY: ANVIL_KEYS[6]! });
      expect(cli.code, cli.stderr).toBe(3);
      const sent = (JSON.parse(cli.stdout) as { sent: { proof: string; tx: Hex } }).sent;
      expect(sent.proof).toBe("proveBadMergedLineage(tales-mix)");
      const proof = await t.publicClient.getTransactionReceipt({ hash: sent.tx });
      expect(parseEventLogs({ abi: ReceiptCourtAbi, eventName: "FraudProven", logs: proof.logs })[0]!.args).toMatchObject({ reason: 9, challenger }); // MergedLineageMismatch
    } finally {
      source.close();
    }

    // A merge of merges: the ledger lists it from tales-mix's listing (itself a merge) and tales-lora-2's; the court
    // reads its whole ancestry, depth first, as checkReceipt gathers it from the chain.
    await merge("mix-of-mixes", [["tales-mix", 2n], ["tales-lora-2", 1n]]);
    await n.flush();
    expect(l.getModel("mix-of-mixes")).toMatchObject({ kind: "merged", lineage: [{ datanet: "tales", version: 1, weight: 1n }] });
    const nested = await l.settle(l.reserve(partyOf(agent), 10_000n), { baseModel: "base", adapters: [{ id: "mix-of-mixes", weightPpm: 1_000_000 }], promptTokens: [1, 2], outputTokens: [3], sampling: { seed: 1 }, finish: "length" });
    const nestedChecks = await checkReceipt(t.publicClient, t.deployment, nested.receipt, nested.signature, challenger);
    // (Only the lineage proofs are read: this ledger shares its node key with the first describe's, whose posted
    // epochs end at receipt ids this one reuses, so proveNotPosted rightly slashes some of its receipts.)
    const verdicts = (cs: typeof nestedChecks) => cs.filter((x) => /Merged|Contributors/.test(x.proof)).map((x) => [x.proof, x.detail]);
    expect(verdicts(nestedChecks)).toEqual([
      ["proveBadContributors(mix-of-mixes, tales@1)", "ContributorsConsistent"],
      ["proveBadMergedLineage(mix-of-mixes)", "MergedLineageConsistent"],
    ]);
    const nestedLie: Receipt = { ...nested.receipt, inputs: { ...nested.receipt.inputs!, models: nested.receipt.inputs!.models.map((m) => (m.model === "mix-of-mixes" ? { ...m, lineage: m.lineage.map((e) => ({ ...e, weight: 3n })) } : m)) } };
    const nestedLieChecks = await checkReceipt(t.publicClient, t.deployment, nestedLie, nodeSigner(NODE_KEY).sign(receiptDigest(nestedLie, l.domainOptions)), challenger);
    expect(verdicts(nestedLieChecks)).toEqual([
      ["proveBadContributors(mix-of-mixes, tales@1)", "ContributorsConsistent"],
      ["proveBadMergedLineage(mix-of-mixes)", "MergedLineageMismatch"],
    ]);

    // Versions due at one time: a parent's new lineage is listed before the merge that names it, whatever their order;
    // a merge of that merge after both.
    l.createDatanet("fables", partyOf(owner));
    l.approveRecord("fables", l.contribute("fables", { contributor: partyOf(contributor), content: "a fable", tokenIds: [7, 8] }).id, partyOf(owner));
    l.publishVersion("fables", partyOf(owner));
    const at = t.clock() + 1;
    l.chain.queueTerms({ model: "fable-mix", version: 1, fromMs: at, problem: null, input: { id: "fable-mix", kind: "adapter", owner: partyOf(owner), baseModel: "base", priceIn: 1n, priceOut: 1n, contentHash: `0x${"00".repeat(32)}`, developers: [{ party: partyOf(owner), share: 1n }], parents: [{ model: "tales-lora-2", weight: 1n }] } });
    l.chain.queueTerms({ model: "tales-lora-2", version: 2, fromMs: at, problem: null, input: { id: "tales-lora-2", kind: "adapter", owner: partyOf(owner), baseModel: "base", priceIn: 1n, priceOut: 1n, contentHash: `0x${"00".repeat(32)}`, developers: [{ party: partyOf(owner), share: 1n }], lineage: [{ datanet: "fables", version: 1, weight: 2n }] } });
    l.chain.queueTerms({ model: "fable-mix-2", version: 1, fromMs: at, problem: null, input: { id: "fable-mix-2", kind: "adapter", owner: partyOf(owner), baseModel: "base", priceIn: 1n, priceOut: 1n, contentHash: `0x${"00".repeat(32)}`, developers: [{ party: partyOf(owner), share: 1n }], parents: [{ model: "fable-mix", weight: 1n }, { model: "tales-lora", weight: 1n }] } });
    expect(l.chain.pendingTerms().filter((p) => p.fromMs === at).map((p) => p.model)).toEqual(["fable-mix", "fable-mix-2", "tales-lora-2"]);
    expect(l.chain.dueTerms(at).map((p) => p.model)).toEqual(["tales-lora-2", "fable-mix", "fable-mix-2"]);
    l.applyChainChanges(at);
    expect(l.getModel("fable-mix").lineage).toEqual([{ datanet: "fables", version: 1, weight: 1n }]);
    expect(l.getModel("fable-mix-2").lineage).toEqual([{ datanet: "fables", version: 1, weight: 1n }, { datanet: "tales", version: 1, weight: 1n }]);
    await n.stop();
    l.close();
  });
});

describe("reorgs and restarts", () => {
  const mine = (n: number) => t.publicClient.request({ method: "anvil_mine", params: [`0x${n.toString(16)}`] } as never);

  it("a log in a block not yet `confirmations` deep is not applied, so a reorg of it changes nothing", async () => {
    const l = openLedger(join(dir, "reorg-shallow.sqlite"));
    const n = await ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 3 }, l);
    await mine(3);
    await n.flush();
    const balance = l.getAgent(partyOf(agent)).balance;
    const snap = await t.snapshot();
    await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [node, 777n] });
    await n.flush();
    expect(l.getAgent(partyOf(agent)).balance).toBe(balance);
    await t.revert(snap);
    await mine(5);
    await n.flush();
    expect(l.getAgent(partyOf(agent)).balance).toBe(balance);
    expect(l.auditBalances().ok).toBe(true);
    await n.stop();
    l.close();
  });

  it("an idle round asks for the head block only; a new block makes it check the cursor and read the logs", async () => {
    const l = openLedger(join(dir, "idle-round.sqlite"));
    const n = await ChainNode.start({ url: proxy.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 1 }, l);
    await mine(2);
    await n.flush();
    // flush() also reads lastEpoch (an eth_call) for its caller; the follower's part is the rest.
    const following = () => proxy.methods.filter((m) => m !== "eth_call");
    proxy.methods.length = 0;
    await n.flush();
    await n.flush();
    expect(following()).toEqual(["eth_getBlockByNumber", "eth_getBlockByNumber"]);
    const balance = l.getAgent(partyOf(agent)).balance;
    await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [node, 55n] });
    await mine(1);
    proxy.methods.length = 0;
    await n.flush();
    expect(following()).toContain("eth_getLogs");
    expect(l.getAgent(partyOf(agent)).balance).toBe(balance + 55n);
    // The first unread block's time is remembered with the head: the view ends where it did.
    const view = l.chain.viewState()!.safeUntilMs;
    proxy.methods.length = 0;
    await n.flush();
    expect(following()).toEqual(["eth_getBlockByNumber"]);
    expect(l.chain.viewState()!.safeUntilMs).toBe(view);
    await n.stop();
    l.close();
  });

  it("a reorg deeper than the confirmation depth stops following with CHAIN_REORG_TOO_DEEP", async () => {
    const l = openLedger(join(dir, "reorg-deep.sqlite"));
    const n = await ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, l);
    const snap = await t.snapshot();
    await mine(2);
    await n.flush();
    const cursor = l.chain.cursor()!;
    expect(cursor.block).toBe(await t.publicClient.getBlockNumber());
    await t.revert(snap);
    await t.increaseTime(7);
    await mine(3);
    const replaced = await t.publicClient.getBlock({ blockNumber: cursor.block });
    expect(replaced.hash).not.toBe(cursor.hash);
    await expect(n.flush()).rejects.toMatchObject({ code: "CHAIN_REORG_TOO_DEEP" });
    await n.stop();
    l.close();
  });
});
