/**
 * Stakes and the node's fee policy in force after the terms delay, on the real deployment (Registry,
 * Settlement, ReceiptCourt):
 * Settlement keeps each model's stakes as histories keyed by when they count (block time + delay);
 * a node following the chain queues each StakeChanged until then (across a restart), so every
 * receipt it signs lists exactly the stakers Settlement.stakeAt has at the receipt's time, which
 * proveBadStakers upholds before and after a change; a receipt whose stakers are not those slashes
 * the node's bond. The node declares its configured fee policy at its first start (in force at once) and
 * follows a change the operator declares later (in force after the delay): proveBadPolicy upholds the
 * receipts on either side of it. The ledger's clock is set by hand; the chain's is moved by evm_increaseTime.
 */
import { join } from "node:path";
import { parseEventLogs, type Address, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { proveBadPolicyArgs, proveBadStakersArgs, receiptDigest, type Receipt } from "../../src/attribution/receipts.js";
import { nodeSigner } from "../../src/attribution/signing.js";
import type { FeePolicy } from "../../src/attribution/types.js";
import { ReceiptCourtAbi, RegistryAbi, RegistryCourtAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { ChainNode } from "../../src/chain/node.js";
import { partyOf } from "../../src/ledger/chain-book.js";
import { Ledger } from "../../src/ledger/index.js";
import { expectRevert, nameId, registryCourtOf, startTestChain, testTerms, type TestChain } from "../helpers/chain.js";
import { tempDir } from "../helpers/tmp.js";

const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const NODE_KEY = ANVIL_KEYS[1]! as Hex;
const [OWNER, AGENT, S1, S2, CHALLENGER] = [2, 3, 4, 5, 6];
const DELAY = 600n;
const dir = tempDir("openlora-stakers-proof-");

let t: TestChain;
let node: Address, agent: Address, s1: Address, s2: Address;
let clock = 0;
let ledger: Ledger;
let chainNode: ChainNode;
const base = nameId("base");

const open = () => new Ledger({
  path: join(dir, "node.sqlite"), nodeKey: NODE_KEY, policy: POLICY, treasury: partyOf(t.addresses[9]!), operator: partyOf(node),
  chainId: t.deployment.chainId, verifyingContract: t.deployment.court!, onChain: true, now: () => clock,
});
const start = () => ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0 }, ledger);
const settlement = (i: number, fn: string, args: readonly unknown[]) => t.send(t.wallets[i]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: fn, args });
const read = (fn: string, args: readonly unknown[]) => t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: fn, args } as never) as Promise<bigint>;
const prove = (r: Receipt, sig: Hex) =>
  t.send(t.wallets[CHALLENGER]!, { address: t.deployment.court!, abi: ReceiptCourtAbi, functionName: "proveBadStakers", args: proveBadStakersArgs(r, sig, "base") });

async function settle(at: number) {
  clock = at;
  const r = ledger.reserve(partyOf(agent), ledger.worstCaseFee({ baseModel: "base", tokensIn: 3, maxTokens: 4 }));
  return ledger.settle(r, { baseModel: "base", promptTokens: [1, 2, 3], outputTokens: [5, 6, 7, 8], sampling: { seed: 1 }, finish: "length" });
}

/** The `from` (ms) of the StakeChanged log in a transaction's receipt, checked against its block's time + DELAY. */
async function stakeFrom(r: { logs: unknown[]; blockNumber: bigint }): Promise<number> {
  const [ev] = parseEventLogs({ abi: SettlementAbi, eventName: "StakeChanged", logs: r.logs as never });
  const ts = (await t.publicClient.getBlock({ blockNumber: r.blockNumber })).timestamp;
  expect(ev!.args.from).toBe(ts + DELAY);
  return Number(ev!.args.from) * 1000;
}

/** Moves the chain past `ms` and lets the node follow, so its view covers a receipt at `ms`. */
async function chainPast(ms: number): Promise<void> {
  const now = Number(await t.now()) * 1000;
  if (now < ms) await t.increaseTime(Math.ceil((ms - now) / 1000) + 1);
  await t.publicClient.request({ method: "anvil_mine", params: ["0x1"] } as never);
  await chainNode.flush();
}

const stakersOf = (r: Receipt) => r.inputs!.models[0]!.stakers.map((s) => [s.party, s.stake]);

beforeAll(async () => {
  t = await startTestChain({ termsDelay: DELAY });
  [node, agent, s1, s2] = [t.addresses[1]!, t.addresses[AGENT]!, t.addresses[S1]!, t.addresses[S2]!];
  await t.send(t.wallets[OWNER]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: "registerModel", args: ["base", 0, `0x${"0".repeat(64)}`, testTerms(t.addresses[OWNER]!, { priceIn: 3n, priceOut: 7n })] });
  for (const i of [AGENT, S1, S2, 1]) {
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [t.addresses[i]!, 10n ** 9n] });
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.settlement, 10n ** 9n] });
  }
  clock = Date.now();
  ledger = open();
  chainNode = await start();
  await settlement(AGENT, "deposit", [node, 100_000n]);
  await settlement(1, "bond", [1_000n]);
  await chainPast(Number(await t.now()) * 1000 + Number(DELAY) * 1000); // the terms are in force
}, 120_000);

afterAll(async () => {
  await chainNode?.stop();
  ledger?.close();
  await t?.stop();
});

describe("stakers in force after the terms delay", () => {
  let from1 = 0;
  let from2 = 0;

  it("Settlement keeps stakes by the time they count from; the node queues them until then, across a restart", async () => {
    expect(await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "termsDelay" })).toBe(DELAY);
    from1 = await stakeFrom(await settlement(S1, "stake", [base, 300n]));
    const f2 = await stakeFrom(await settlement(S2, "stake", [base, 100n]));
    const sec = (ms: number) => BigInt(ms / 1000);
    expect(await read("stakeAt", [base, s1, sec(from1) - 1n])).toBe(0n);
    expect(await read("stakeAt", [base, s1, sec(from1)])).toBe(300n);
    expect(await read("modelStakeAt", [base, sec(from1) - 1n])).toBe(0n);
    expect(await read("modelStakeAt", [base, sec(f2)])).toBe(400n);
    expect(await read("stakeOf", [base, s1])).toBe(300n);
    expect(await read("modelStake", [base])).toBe(400n);
    await chainNode.flush();
    expect(chainNode.status().pendingStakes).toBe(2);
    await chainNode.stop();
    ledger.close();
    ledger = open();
    chainNode = await start();
    expect(chainNode.status().pendingStakes).toBe(2);
    // Before their time the receipt lists nobody, and that is what Settlement says.
    const early = await settle(from1 - 1);
    expect(stakersOf(early.receipt)).toEqual([]);
    await expectRevert(prove(early.receipt, early.signature), "StakersConsistent");
    from1 = Math.max(from1, f2);
  });

  it("from their time the receipts list both stakers in address order, as stakeAt has them", async () => {
    await chainPast(from1);
    const r = await settle(from1);
    expect(chainNode.status().pendingStakes).toBe(0);
    const want = [[partyOf(s1), 300n], [partyOf(s2), 100n]].sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1));
    expect(stakersOf(r.receipt)).toEqual(want);
    expect(r.receipt.lines.filter((l) => l.role === "staker").map((l) => l.party).sort()).toEqual(want.map((w) => w[0]).sort());
    await expectRevert(prove(r.receipt, r.signature), "StakersConsistent");
  });

  it("an unstake request counts at its time too: receipts before and after it are both consistent", async () => {
    from2 = await stakeFrom(await settlement(S1, "requestUnstake", [base, 120n]));
    await chainNode.flush();
    const before = await settle(from2 - 1);
    expect(stakersOf(before.receipt)).toContainEqual([partyOf(s1), 300n]);
    await chainPast(from2);
    const after = await settle(from2);
    expect(stakersOf(after.receipt)).toContainEqual([partyOf(s1), 180n]);
    await expectRevert(prove(before.receipt, before.signature), "StakersConsistent");
    await expectRevert(prove(after.receipt, after.signature), "StakersConsistent");
    // The earlier receipt, with the stake of the later time: not Settlement's at its time.
    const bondBefore = await read("bondOf", [node]);
    expect(bondBefore).toBe(1_000n);
    const lie: Receipt = { ...before.receipt, inputs: { ...before.receipt.inputs!, models: before.receipt.inputs!.models.map((m) => ({ ...m, stakers: after.receipt.inputs!.models[0]!.stakers })) } };
    const sig = nodeSigner(NODE_KEY).sign(receiptDigest(lie, ledger.domainOptions));
    const rc = await prove(lie, sig);
    const [ev] = parseEventLogs({ abi: ReceiptCourtAbi, eventName: "FraudProven", logs: rc.logs });
    expect(ev!.args.reason).toBe(6); // StakersMismatch
    expect(await read("bondOf", [node])).toBe(0n);
  });
});

describe("the node's fee policy, declared on chain", () => {
  const policyAt = (ms: number) =>
    t.publicClient.readContract({ address: t.deployment.registry, abi: RegistryAbi, functionName: "policyAt", args: [node, BigInt(Math.floor(ms / 1000))] });
  const provePolicy = async (r: Receipt, sig: Hex) => t.send(t.wallets[CHALLENGER]!, { address: await registryCourtOf(t), abi: RegistryCourtAbi, functionName: "proveBadPolicy", args: proveBadPolicyArgs(r, sig) });

  it("the node declared its configured policy once, at its first start (not again at the restart); its receipts split by it", async () => {
    const logs = await t.publicClient.getContractEvents({ address: t.deployment.registry, abi: RegistryAbi, eventName: "OperatorPolicySet", fromBlock: 0n });
    expect(logs.map((l) => [l.args.operator, l.args.version, l.args.policy])).toEqual([[node, 1, POLICY]]);
    expect(chainNode.status().feePolicy).toMatchObject({ version: 1, policy: POLICY });
    const r = await settle(clock + 1);
    expect(r.receipt.inputs!.policy).toEqual(POLICY);
    expect([r.receipt.inputs!.treasury, r.receipt.inputs!.operator]).toEqual([partyOf(t.addresses[9]!), partyOf(node)]);
    await expectRevert(provePolicy(r.receipt, r.signature), "PolicyConsistent");
  });

  it("a change counts from its block's time + the delay: receipts before it split by the old policy, after it by the new, both upheld", async () => {
    const P2 = { ...POLICY, operatorBps: 3000, developerBps: 4000, stakerBps: 3000, lambdaBps: 2500 };
    const rc = await t.send(t.wallets[1]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: "setOperatorPolicy", args: [P2] });
    const [ev] = parseEventLogs({ abi: RegistryAbi, eventName: "OperatorPolicySet", logs: rc.logs });
    const ts = (await t.publicClient.getBlock({ blockNumber: rc.blockNumber })).timestamp;
    expect(ev!.args).toMatchObject({ version: 2, from: ts + DELAY });
    const from = Number(ev!.args.from) * 1000;
    await chainNode.flush();
    expect(chainNode.status().pendingFeePolicies).toEqual([{ version: 2, from: new Date(from).toISOString(), policy: P2 }]);
    const before = await settle(from - 1);
    await chainPast(from);
    const after = await settle(from);
    expect(chainNode.status().feePolicy).toMatchObject({ version: 2, policy: P2 });
    expect(before.receipt.inputs!.policy).toEqual(POLICY);
    expect(after.receipt.inputs!.policy).toEqual(P2);
    expect((await policyAt(from - 1000))[1]).toBe(1);
    expect((await policyAt(from))[1]).toBe(2);
    await expectRevert(provePolicy(before.receipt, before.signature), "PolicyConsistent");
    await expectRevert(provePolicy(after.receipt, after.signature), "PolicyConsistent");
    // The later receipt under the old policy, re-signed: what a node that ignores the change signs.
    await settlement(1, "bond", [1_000n]);
    const lie: Receipt = { ...after.receipt, inputs: { ...after.receipt.inputs!, policy: POLICY } };
    const proof = await provePolicy(lie, nodeSigner(NODE_KEY).sign(receiptDigest(lie, ledger.domainOptions)));
    expect(parseEventLogs({ abi: ReceiptCourtAbi, eventName: "FraudProven", logs: proof.logs })[0]!.args.reason).toBe(8); // PolicyMismatch
    expect(await read("bondOf", [node])).toBe(0n);
  });

  it("a restart whose configured policy is not the chain's warns, declares nothing and splits by the chain's", async () => {
    await chainNode.stop();
    ledger.close();
    ledger = open();
    const warnings: string[] = [];
    const log = { info: () => {}, warn: (_d: unknown, msg: string) => { warnings.push(msg); } };
    chainNode = await ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0, log: log as never }, ledger);
    expect(warnings.filter((w) => /fee policy on chain is not the configured one/.test(w))).toHaveLength(1);
    const logs = await t.publicClient.getContractEvents({ address: t.deployment.registry, abi: RegistryAbi, eventName: "OperatorPolicySet", fromBlock: 0n });
    expect(logs.map((l) => l.args.version)).toEqual([1, 2]);
    const r = await settle(clock + 1);
    expect(r.receipt.inputs!.policy.operatorBps).toBe(3000);
    await expectRevert(provePolicy(r.receipt, r.signature), "PolicyConsistent");
  });
});
