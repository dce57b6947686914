/**
 * Settlement's side of the validator disputes, on a real anvil, with plain wallets as the court and
 * as the disputes contract: freeze, release, jail, slashFor, and what each does to posts, claims,
 * withdrawals and bonds. ValidatorCourt itself is test/chain/validator-court.test.ts.
 */
import { getContract, keccak256, parseEventLogs, toHex, zeroAddress, zeroHash, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { RegistryAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { buildPayoutTree, type PayoutEntry, type PayoutTree } from "../../src/chain/payout-tree.js";
import { SETTLEMENT_DISPUTE_ERRORS, TEST_PARAMS, expectRevert, seenErrors, startTestChain, type TestChain, type TestWallet } from "../helpers/chain.js";

let c: TestChain;
let snap: Hex;
let deployer: TestWallet, op: TestWallet, agentA: TestWallet, party: TestWallet, challenger: TestWallet, disputes: TestWallet, anyone: TestWallet;
const W = TEST_PARAMS.challengeWindow;
const MAX = (1n << 64n) - 1n;

const settle = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });
const token = (w: TestWallet) => getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });
const bal = (a: Address) => token(deployer).read.balanceOf([a]);
const addr = (w: TestWallet) => w.account.address;
const earn = (w: TestWallet, cumulative: bigint): PayoutEntry => ({ kind: 0, account: addr(w), cumulative });
const commit = (w: TestWallet, cumulative: bigint): PayoutEntry => ({ kind: 1, account: addr(w), cumulative });

async function post(entries: PayoutEntry[]): Promise<{ tree: PayoutTree; epoch: bigint }> {
  const s = settle(op);
  const epoch = (await s.read.lastEpoch([addr(op)])) + 1n;
  const first = (await s.read.lastReceiptOf([addr(op)])) + 1n;
  const tree = buildPayoutTree(entries);
  await c.mine(s.write.postEpoch([epoch, keccak256(toHex(`receipts ${epoch}`)), first, first + 9n, keccak256(toHex(`last ${epoch}`)), tree.root, zeroHash]));
  return { tree, epoch };
}

const claim = (tree: PayoutTree, epoch: bigint, who: TestWallet) => {
  const { cumulative, proof } = tree.proofOf(0, addr(who));
  return c.mine(settle(who).write.claim([addr(op), epoch, addr(who), cumulative, proof]));
};

beforeAll(async () => {
  c = await startTestChain({ court: async () => privateKeyToAccount(ANVIL_KEYS[6]!).address });
  [deployer, op, agentA, party, challenger, , , disputes, anyone] = c.wallets as TestWallet[];
  expect(c.deployment.validatorCourt).toBeNull();
  await c.mine(settle(deployer).write.setDisputes([addr(disputes)]));
  await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: op } }).write.registerOperator(["http://op"]));
  for (const w of [op, agentA]) {
    await c.mine(token(w).write.mint([addr(w), 1_000_000n]));
    await c.mine(token(w).write.approve([c.deployment.settlement, 1_000_000n]));
  }
});
afterAll(async () => c?.stop());
beforeEach(async () => { snap = await c.snapshot(); });
afterEach(async () => { await c.revert(snap); });

describe("freeze and release", () => {
  it("a frozen epoch and the later ones refuse claims (EpochDisputed), the operator posts nothing; release opens them at their window's end", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 1000n]));
    const e1 = await post([earn(party, 100n), commit(agentA, 100n)]);
    const e2 = await post([earn(party, 200n), commit(agentA, 200n)]);
    const e3 = await post([earn(party, 300n), commit(agentA, 300n)]);
    const r = await c.mine(settle(disputes).write.freeze([addr(op), 2n]));
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "EpochsFrozen", logs: r.logs })[0]!.args).toMatchObject({ operator: addr(op), fromEpoch: 2n, toEpoch: 3n });
    expect(await settle(op).read.frozenFrom([addr(op)])).toBe(2n);
    expect((await settle(op).read.epochOf([addr(op), 2n])).claimableAt).toBe(MAX);
    await expectRevert(settle(op).write.postEpoch([4n, zeroHash, 31n, 31n, zeroHash, zeroHash, zeroHash]), "OperatorDisputed", [addr(op), 2n]);
    // A later dispute of an earlier epoch widens the freeze; of a later one changes nothing.
    await c.mine(settle(disputes).write.freeze([addr(op), 3n]));
    expect(await settle(op).read.frozenFrom([addr(op)])).toBe(2n);
    await c.increaseTime(W);
    await claim(e1.tree, 1n, party);
    await expectRevert(claim(e2.tree, 2n, party), "EpochDisputed", [addr(op), 2n]);
    await expectRevert(claim(e3.tree, 3n, party), "EpochDisputed", [addr(op), 3n]);
    // Past their window already: release opens them now.
    const rel = await c.mine(settle(disputes).write.release([addr(op)]));
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "EpochsReleased", logs: rel.logs })[0]!.args).toMatchObject({ fromEpoch: 2n, toEpoch: 3n });
    expect(await settle(op).read.frozenFrom([addr(op)])).toBe(0n);
    const p0 = await bal(addr(party));
    await claim(e3.tree, 3n, party);
    expect(await bal(addr(party))).toBe(p0 + 200n);
    await post([]);
  });

  it("released inside their window, epochs open at postedAt + window, not earlier; a frozen bond stays locked", async () => {
    await c.mine(settle(op).write.bond([500n]));
    const e1 = await post([earn(party, 10n)]);
    await c.mine(settle(agentA).write.deposit([addr(op), 10n]));
    await c.mine(settle(op).write.requestUnbond([500n]));
    await c.mine(settle(disputes).write.freeze([addr(op), 1n]));
    await c.increaseTime(TEST_PARAMS.unbondingDelay + W);
    await expectRevert(settle(op).write.withdrawBond(), "BondLocked", [MAX]);
    await c.mine(settle(disputes).write.release([addr(op)]));
    const ep = await settle(op).read.epochOf([addr(op), 1n]);
    expect(ep.claimableAt).toBe(await c.now());
    await claim(e1.tree, 1n, party);
    await c.mine(settle(op).write.withdrawBond());

    const e2 = await post([earn(party, 20n)]);
    await c.mine(settle(disputes).write.freeze([addr(op), 2n]));
    await c.mine(settle(disputes).write.release([addr(op)]));
    const ep2 = await settle(op).read.epochOf([addr(op), 2n]);
    expect(ep2.claimableAt).toBe(ep2.postedAt + W);
    await expectRevert(claim(e2.tree, 2n, party), "ChallengeWindowOpen", [ep2.claimableAt]);
    // Nothing frozen: release is a no-op.
    await c.mine(settle(disputes).write.release([addr(op)]));
    await expectRevert(settle(disputes).write.freeze([addr(op), 3n]), "NoEpoch", [addr(op)]);
  });
});

describe("jail and slashFor", () => {
  it("a jailed operator's epochs from the faulty one never finalise; it posts and takes deposits no more; agents withdraw against the epoch before", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 1000n]));
    const e1 = await post([earn(party, 100n), commit(agentA, 100n)]);
    const e2 = await post([earn(party, 300n), commit(agentA, 300n)]);
    await c.mine(settle(agentA).write.requestWithdrawal([addr(op), 900n]));
    await c.mine(settle(disputes).write.freeze([addr(op), 2n]));
    const j = await c.mine(settle(disputes).write.jail([addr(op), 2n]));
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "OperatorJailedFrom", logs: j.logs })[0]!.args.fromEpoch).toBe(2n);
    await c.mine(settle(disputes).write.jail([addr(op), 3n])); // a later epoch: still jailed from 2
    expect(await settle(op).read.jailedFrom([addr(op)])).toBe(2n);
    await c.mine(settle(disputes).write.release([addr(op)]));
    await c.increaseTime(W);
    await claim(e1.tree, 1n, party);
    await expectRevert(claim(e2.tree, 2n, party), "EpochDisputed", [addr(op), 2n]);
    await expectRevert(settle(op).write.postEpoch([3n, zeroHash, 21n, 21n, zeroHash, zeroHash, zeroHash]), "OperatorJailed", [addr(op), 2n]);
    await expectRevert(settle(agentA).write.deposit([addr(op), 1n]), "OperatorJailed", [addr(op), 2n]);
    // Epoch 2 (committed 300) never counts: the agent takes back all but epoch 1's 100, with no later epoch.
    const bad = e2.tree.proofOf(1, addr(agentA));
    await expectRevert(settle(agentA).write.withdraw([addr(op), bad.cumulative, bad.proof]), "InvalidProof");
    const good = e1.tree.proofOf(1, addr(agentA));
    const a0 = await bal(addr(agentA));
    await c.mine(settle(agentA).write.withdraw([addr(op), good.cumulative, good.proof]));
    expect(await bal(addr(agentA))).toBe(a0 + 900n);
  });

  it("jailed from epoch 1: nothing was committed", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 50n]));
    const e1 = await post([commit(agentA, 50n)]);
    await c.mine(settle(agentA).write.requestWithdrawal([addr(op), 50n]));
    await c.mine(settle(disputes).write.freeze([addr(op), 1n]));
    await c.mine(settle(disputes).write.jail([addr(op), 1n]));
    await c.increaseTime(TEST_PARAMS.withdrawDelay);
    const p = e1.tree.proofOf(1, addr(agentA));
    await expectRevert(settle(agentA).write.withdraw([addr(op), p.cumulative, p.proof]), "InvalidProof");
    await c.mine(settle(agentA).write.withdraw([addr(op), 0n, []]));
  });

  it("slashFor takes the whole bond: the refund first (capped), then slashRewardBps of the rest to the challenger", async () => {
    const treasury = c.deployment.params.treasury;
    await c.mine(settle(op).write.bond([1000n]));
    await c.mine(settle(op).write.requestUnbond([100n]));
    const [a0, ch0, t0] = [await bal(addr(agentA)), await bal(addr(challenger)), await bal(treasury)];
    const r = await c.mine(settle(disputes).write.slashFor([addr(op), addr(challenger), addr(agentA), 200n]));
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "Slashed", logs: r.logs })[0]!.args).toMatchObject({ slashed: 1000n, reward: 200n });
    expect(await bal(addr(agentA))).toBe(a0 + 200n);
    expect(await bal(addr(challenger))).toBe(ch0 + 200n); // 2500 bps of 800
    expect(await bal(treasury)).toBe(t0 + 600n);
    expect(await settle(op).read.bondOf([addr(op)])).toBe(0n);

    await c.mine(settle(op).write.bond([100n]));
    const a1 = await bal(addr(agentA));
    await c.mine(settle(disputes).write.slashFor([addr(op), addr(challenger), addr(agentA), 1000n]));
    expect(await bal(addr(agentA))).toBe(a1 + 100n);
    // No refund address (an agent that is not an address): reward and treasury only.
    await c.mine(settle(op).write.bond([100n]));
    const [ch1, t1] = [await bal(addr(challenger)), await bal(treasury)];
    await c.mine(settle(disputes).write.slashFor([addr(op), addr(challenger), zeroAddress, 50n]));
    expect([await bal(addr(challenger)) - ch1, await bal(treasury) - t1]).toEqual([25n, 75n]);
  });
});

describe("who may", () => {
  it("only the disputes contract freezes, releases, jails and slashFor; it is set once, by the deployer, never to zero", async () => {
    await post([]);
    await expectRevert(settle(anyone).write.freeze([addr(op), 1n]), "NotDisputes", [addr(anyone)]);
    await expectRevert(settle(op).write.release([addr(op)]), "NotDisputes", [addr(op)]);
    await expectRevert(settle(anyone).write.jail([addr(op), 1n]), "NotDisputes", [addr(anyone)]);
    await expectRevert(settle(anyone).write.slashFor([addr(op), addr(anyone), addr(anyone), 1n]), "NotDisputes", [addr(anyone)]);
    await expectRevert(settle(anyone).write.setDisputes([addr(anyone)]), "NotDeployer", [addr(anyone)]);
    await expectRevert(settle(deployer).write.setDisputes([addr(anyone)]), "DisputesAlreadySet", [addr(disputes)]);
  });
});

it("every dispute error of Settlement was triggered above", () => {
  expect(SETTLEMENT_DISPUTE_ERRORS.filter((n) => !seenErrors.has(n))).toEqual([]);
});
