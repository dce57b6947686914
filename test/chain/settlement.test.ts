/** Settlement on a real anvil: deposits, epochs, cumulative claims, withdrawals, stakes, bonds, slashing. */
import { getContract, keccak256, parseEventLogs, toHex, zeroAddress, zeroHash, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RegistryAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { loadArtifact } from "../../src/chain/deploy.js";
import { buildPayoutTree, payoutRootOf, type PayoutEntry, type PayoutTree } from "../../src/chain/payout-tree.js";
import {
  SETTLEMENT_DISPUTE_ERRORS, TEST_PARAMS, errorNames, expectRevert, nameId, seenErrors, startTestChain, testTerms, type TestChain, type TestWallet,
} from "../helpers/chain.js";

let c: TestChain;
let snap: Hex;
let deployer: TestWallet, op: TestWallet, agentA: TestWallet, agentB: TestWallet, party: TestWallet, party2: TestWallet, court: TestWallet, anyone: TestWallet;
const W = TEST_PARAMS.challengeWindow;

const settle = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });
const registry = (w: TestWallet) => getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: w } });
const token = (w: TestWallet) => getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });
const bal = (a: Address) => token(deployer).read.balanceOf([a]);
const addr = (w: TestWallet) => w.account.address;

/** Posts the operator's next epoch (n receipts, contiguous) with the payout tree of `entries`. */
async function post(entries: PayoutEntry[], n = 10n, from: TestWallet = op): Promise<{ tree: PayoutTree; epoch: bigint }> {
  const s = settle(from);
  const epoch = (await s.read.lastEpoch([addr(from)])) + 1n;
  const first = (await s.read.lastReceiptOf([addr(from)])) + 1n;
  const tree = buildPayoutTree(entries);
  await c.mine(s.write.postEpoch([epoch, keccak256(toHex(`receipts ${epoch}`)), first, first + n - 1n, keccak256(toHex(`last ${epoch}`)), tree.root, zeroHash]));
  return { tree, epoch };
}

const earn = (w: TestWallet, cumulative: bigint): PayoutEntry => ({ kind: 0, account: addr(w), cumulative });
const commit = (w: TestWallet, cumulative: bigint): PayoutEntry => ({ kind: 1, account: addr(w), cumulative });

async function claim(tree: PayoutTree, epoch: bigint, who: TestWallet, sender: TestWallet = who) {
  const { cumulative, proof } = tree.proofOf(0, addr(who));
  return c.mine(settle(sender).write.claim([addr(op), epoch, addr(who), cumulative, proof]));
}

beforeAll(async () => {
  // The court is a plain wallet here, so tests can call slash directly; deploy sets it.
  c = await startTestChain({ court: async () => privateKeyToAccount(ANVIL_KEYS[6]!).address });
  [deployer, op, agentA, agentB, party, party2, court, anyone] = c.wallets as TestWallet[] as [TestWallet, TestWallet, TestWallet, TestWallet, TestWallet, TestWallet, TestWallet, TestWallet];
  await c.mine(registry(op).write.registerOperator(["http://op"]));
  for (const w of [op, agentA, agentB, party]) {
    await c.mine(token(w).write.mint([addr(w), 1_000_000n]));
    await c.mine(token(w).write.approve([c.deployment.settlement, 1_000_000n]));
  }
});
afterAll(async () => c?.stop());
beforeEach(async () => { snap = await c.snapshot(); });
afterEach(async () => { await c.revert(snap); });

describe("deposits, epochs and claims", () => {
  it("pays a claim after the window, the difference on a cumulative second claim, nothing twice", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 1000n]));
    expect(await settle(op).read.deposited([addr(op), addr(agentA)])).toBe(1000n);
    const e1 = await post([earn(party, 300n), earn(party2, 100n), commit(agentA, 400n)]);
    const ep = await settle(op).read.epochOf([addr(op), 1n]);
    expect(ep.claimableAt - ep.postedAt).toBe(W);
    expect(ep.payoutRoot).toBe(e1.tree.root);
    const { cumulative, proof } = e1.tree.proofOf(0, addr(party));
    await expectRevert(settle(party).write.claim([addr(op), 1n, addr(party), cumulative, proof]), "ChallengeWindowOpen", [ep.claimableAt]);
    await c.increaseTime(W);
    const p0 = await bal(addr(party));
    const r = await claim(e1.tree, 1n, party);
    expect(await bal(addr(party))).toBe(p0 + 300n);
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "Claimed", logs: r.logs })[0]!.args).toMatchObject({ account: addr(party), amount: 300n, cumulative: 300n });
    await expectRevert(claim(e1.tree, 1n, party), "NothingToClaim", [addr(party), 300n, 300n]);
    // Anyone may send a claim; the tokens go to the account.
    const q0 = await bal(addr(party2));
    await claim(e1.tree, 1n, party2, anyone);
    expect(await bal(addr(party2))).toBe(q0 + 100n);

    const e2 = await post([earn(party, 450n), earn(party2, 100n), commit(agentA, 600n)]);
    await c.increaseTime(W);
    await claim(e2.tree, 2n, party);
    expect(await bal(addr(party))).toBe(p0 + 450n);
    expect(await settle(op).read.claimed([addr(op), addr(party)])).toBe(450n);
    expect(await settle(op).read.paidOut([addr(op)])).toBe(550n);
    await expectRevert(claim(e1.tree, 1n, party), "NothingToClaim", [addr(party), 300n, 450n]);
    await expectRevert(claim(e2.tree, 2n, party2), "NothingToClaim", [addr(party2), 100n, 100n]);
  });

  it("one claim on a later epoch covers the earlier ones", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 1000n]));
    await post([earn(party, 100n)]);
    const e2 = await post([earn(party, 250n)]);
    await c.increaseTime(W);
    const p0 = await bal(addr(party));
    await claim(e2.tree, e2.epoch, party);
    expect(await bal(addr(party))).toBe(p0 + 250n);
  });

  it("refuses forged proofs, unknown epochs, and payouts beyond the operator's deposits", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 1000n]));
    const e1 = await post([earn(party, 300n), earn(party2, 1200n)]);
    await c.increaseTime(W);
    const { proof } = e1.tree.proofOf(0, addr(party));
    await expectRevert(settle(party).write.claim([addr(op), 1n, addr(party), 301n, proof]), "InvalidProof");
    await expectRevert(settle(party).write.claim([addr(op), 1n, addr(party2), 300n, proof]), "InvalidProof");
    // A committed (kind 1) leaf is no earnings leaf.
    const e2 = await post([commit(party, 300n), earn(agentB, 1n)]);
    await c.increaseTime(W);
    await expectRevert(settle(party).write.claim([addr(op), e2.epoch, addr(party), 300n, e2.tree.proofOf(1, addr(party)).proof]), "InvalidProof");
    await expectRevert(settle(party).write.claim([addr(op), 9n, addr(party), 300n, proof]), "NoEpoch", [addr(op)]);
    await expectRevert(settle(party).read.epochOf([addr(op), 9n]), "NoEpoch", [addr(op)]);
    await expectRevert(claim(e1.tree, 1n, party2), "ExceedsDeposits", [0n, 1200n, 1000n]);
    await claim(e1.tree, 1n, party);
    await expectRevert(claim(e1.tree, 1n, party2), "ExceedsDeposits", [300n, 1200n, 1000n]);
    // Another operator's deposits never fund this one's claims.
    const op2 = c.wallets[8]!;
    await c.mine(registry(op2).write.registerOperator(["http://op2"]));
    await c.mine(settle(agentB).write.deposit([addr(op2), 5000n]));
    await expectRevert(claim(e1.tree, 1n, party2), "ExceedsDeposits", [300n, 1200n, 1000n]);
  });

  it("epochs are 1, 2, 3… per operator, receipts contiguous, empty epochs allowed, operators only", async () => {
    const s = settle(op);
    const r = zeroHash;
    await expectRevert(settle(anyone).write.postEpoch([1n, r, 1n, 5n, r, r, r]), "NotOperator", [addr(anyone)]);
    await expectRevert(s.write.postEpoch([2n, r, 1n, 5n, r, r, r]), "EpochOutOfOrder", [addr(op), 1n, 2n]);
    await expectRevert(s.write.postEpoch([1n, r, 0n, 5n, r, r, r]), "ReceiptsOutOfOrder", [1n, 0n]);
    await expectRevert(s.write.postEpoch([1n, r, 5n, 3n, r, r, r]), "InvalidReceiptRange", [5n, 3n]);
    // A payout root is a tree's top node with its low 64 bits zeroed (payoutRootOf); a full hash is refused.
    const full = keccak256(toHex("a top node"));
    await expectRevert(s.write.postEpoch([1n, r, 1n, 5n, r, full, r]), "PayoutRootNotTruncated", [full]);
    expect(payoutRootOf(full)).toBe(`${full.slice(0, 50)}${"0".repeat(16)}`);
    // The first epoch may start anywhere (a node may go on chain with receipts behind it).
    await c.mine(s.write.postEpoch([1n, r, 7n, 9n, r, r, r]));
    await expectRevert(s.write.postEpoch([1n, r, 10n, 12n, r, r, r]), "EpochAlreadyPosted", [addr(op), 1n]);
    await expectRevert(s.write.postEpoch([2n, r, 11n, 12n, r, r, r]), "ReceiptsOutOfOrder", [10n, 11n]);
    await expectRevert(s.write.postEpoch([2n, r, 9n, 12n, r, r, r]), "ReceiptsOutOfOrder", [10n, 9n]);
    await c.mine(s.write.postEpoch([2n, r, 10n, 9n, r, r, r])); // empty
    await c.mine(s.write.postEpoch([3n, r, 10n, 10n, r, r, r]));
    expect(await s.read.lastEpoch([addr(op)])).toBe(3n);
    const e = await s.read.epochOf([addr(op), 3n]);
    expect([e.firstReceipt, e.lastReceipt]).toEqual([10n, 10n]);
    // Another operator's epochs count on their own.
    const op2 = c.wallets[8]!;
    await c.mine(registry(op2).write.registerOperator(["http://op2"]));
    await c.mine(settle(op2).write.postEpoch([1n, r, 1n, 1n, r, r, r]));
  });

  it("deposits only to registered operators, never zero", async () => {
    await expectRevert(settle(agentA).write.deposit([addr(anyone), 5n]), "NotOperator", [addr(anyone)]);
    await expectRevert(settle(agentA).write.deposit([addr(op), 0n]), "ZeroAmount");
  });
});

describe("withdrawals", () => {
  it("pays after the delay and a later post, keeping back the committed spend", async () => {
    const s = settle(agentA);
    await c.mine(s.write.deposit([addr(op), 1000n]));
    await expectRevert(s.write.withdraw([addr(op), 0n, []]), "NoWithdrawalRequested", [addr(agentA)]);
    await expectRevert(s.write.requestWithdrawal([addr(op), 0n]), "ZeroAmount");
    await expectRevert(s.write.requestWithdrawal([addr(op), 1001n]), "WithdrawalExceedsUnspent", [1001n, 1000n]);
    await post([commit(agentA, 100n)]);
    const rq = await c.mine(s.write.requestWithdrawal([addr(op), 700n]));
    const requestedAt = (await c.publicClient.getBlock({ blockNumber: rq.blockNumber })).timestamp;
    const readyAt = requestedAt + TEST_PARAMS.withdrawDelay;
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "WithdrawalRequested", logs: rq.logs })[0]!.args.readyAt).toBe(readyAt);
    await expectRevert(s.write.withdraw([addr(op), 0n, []]), "WithdrawalNotReady", [readyAt]);
    await c.increaseTime(TEST_PARAMS.withdrawDelay);
    // The epoch posted before the request does not count.
    await expectRevert(s.write.withdraw([addr(op), 100n, []]), "NoEpochSinceRequest", [requestedAt]);
    const e = await post([commit(agentA, 400n), earn(party, 400n)]);
    const { cumulative, proof } = e.tree.proofOf(1, addr(agentA));
    await expectRevert(s.write.withdraw([addr(op), 0n, proof]), "InvalidProof");
    await expectRevert(s.write.withdraw([addr(op), cumulative, proof]), "WithdrawalExceedsUnspent", [700n, 600n]);
    await c.mine(s.write.requestWithdrawal([addr(op), 600n]));
    await c.increaseTime(TEST_PARAMS.withdrawDelay);
    const e2 = await post([commit(agentA, 400n), earn(party, 400n)]);
    const a0 = await bal(addr(agentA));
    const p = e2.tree.proofOf(1, addr(agentA));
    await c.mine(s.write.withdraw([addr(op), p.cumulative, p.proof]));
    expect(await bal(addr(agentA))).toBe(a0 + 600n);
    expect(await s.read.withdrawn([addr(op), addr(agentA)])).toBe(600n);
    expect(await s.read.funded([addr(op)])).toBe(400n);
    await expectRevert(s.write.withdraw([addr(op), p.cumulative, p.proof]), "NoWithdrawalRequested", [addr(agentA)]);
    // What the agent committed stays: the party's claim is still funded.
    await c.increaseTime(W);
    await claim(e2.tree, e2.epoch, party);
  });

  it("never takes what claims already paid out of the operator's pool", async () => {
    await c.mine(settle(agentA).write.deposit([addr(op), 1000n]));
    const e = await post([earn(party, 800n)]);
    await c.increaseTime(W);
    await claim(e.tree, e.epoch, party);
    await c.mine(settle(agentA).write.requestWithdrawal([addr(op), 1000n]));
    await c.increaseTime(TEST_PARAMS.withdrawDelay);
    // A root that (wrongly) says the agent committed nothing still cannot drain the pool.
    const e2 = await post([commit(agentA, 0n), earn(party, 800n)]);
    const p = e2.tree.proofOf(1, addr(agentA));
    await expectRevert(settle(agentA).write.withdraw([addr(op), p.cumulative, p.proof]), "WithdrawalExceedsUnspent", [1000n, 200n]);
  });
});

describe("stakes", () => {
  it("agent stake: counts until the unstake request, pays back after unbondingDelay", async () => {
    const s = settle(agentA);
    await expectRevert(s.write.stakeAgent([0n]), "ZeroAmount");
    await c.mine(s.write.stakeAgent([500n]));
    await expectRevert(s.write.requestAgentUnstake([501n]), "InsufficientStake", [500n, 501n]);
    await expectRevert(s.write.requestAgentUnstake([0n]), "ZeroAmount");
    await expectRevert(s.write.completeAgentUnstake(), "NothingUnbonding");
    const r = await c.mine(s.write.requestAgentUnstake([200n]));
    expect(await s.read.agentStake([addr(agentA)])).toBe(300n);
    const readyAt = parseEventLogs({ abi: SettlementAbi, eventName: "AgentUnstakeRequested", logs: r.logs })[0]!.args.readyAt;
    await expectRevert(s.write.completeAgentUnstake(), "UnbondingNotDone", [readyAt]);
    await c.increaseTime(TEST_PARAMS.unbondingDelay);
    const a0 = await bal(addr(agentA));
    await c.mine(s.write.completeAgentUnstake());
    expect(await bal(addr(agentA))).toBe(a0 + 200n);
    expect(await s.read.agentStake([addr(agentA)])).toBe(300n);
    await expectRevert(s.write.completeAgentUnstake(), "NothingUnbonding");
  });

  it("model stake: on registered models only, stops counting at the request", async () => {
    const s = settle(agentB);
    const m = nameId("m");
    await expectRevert(s.write.stake([m, 10n]), "UnknownModel", [m]);
    await c.mine(registry(party).write.registerModel(["m", 0, zeroHash, testTerms(addr(party))]));
    await expectRevert(s.write.stake([m, 0n]), "ZeroAmount");
    await c.mine(s.write.stake([m, 100n]));
    await c.mine(settle(party).write.stake([m, 50n]));
    expect(await s.read.stakeOf([m, addr(agentB)])).toBe(100n);
    expect(await s.read.modelStake([m])).toBe(150n);
    await expectRevert(s.write.requestUnstake([m, 101n]), "InsufficientStake", [100n, 101n]);
    await expectRevert(s.write.requestUnstake([m, 0n]), "ZeroAmount");
    const r = await c.mine(s.write.requestUnstake([m, 40n]));
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "StakeChanged", logs: r.logs })[0]!.args.total).toBe(60n);
    expect(await s.read.stakeOf([m, addr(agentB)])).toBe(60n);
    expect(await s.read.modelStake([m])).toBe(110n);
    const readyAt = parseEventLogs({ abi: SettlementAbi, eventName: "UnstakeRequested", logs: r.logs })[0]!.args.readyAt;
    await expectRevert(s.write.completeUnstake([m]), "UnbondingNotDone", [readyAt]);
    await c.increaseTime(TEST_PARAMS.unbondingDelay);
    const b0 = await bal(addr(agentB));
    await c.mine(s.write.completeUnstake([m]));
    expect(await bal(addr(agentB))).toBe(b0 + 40n);
    await expectRevert(s.write.completeUnstake([m]), "NothingUnbonding");
  });
});

describe("bonds and slashing", () => {
  it("a bond leaves after the delay and once every posted epoch's window closed", async () => {
    const s = settle(op);
    await expectRevert(settle(agentA).write.bond([10n]), "NotOperator", [addr(agentA)]);
    await expectRevert(s.write.bond([0n]), "ZeroAmount");
    await c.mine(s.write.bond([1000n]));
    expect(await s.read.bondOf([addr(op)])).toBe(1000n);
    await expectRevert(s.write.withdrawBond(), "NothingUnbonding");
    await expectRevert(s.write.requestUnbond([1001n]), "InsufficientStake", [1000n, 1001n]);
    await expectRevert(s.write.requestUnbond([0n]), "ZeroAmount");
    const r = await c.mine(s.write.requestUnbond([400n]));
    const unlockAt = parseEventLogs({ abi: SettlementAbi, eventName: "UnbondRequested", logs: r.logs })[0]!.args.unlockAt;
    expect(await s.read.bondOf([addr(op)])).toBe(1000n); // unbonding stays slashable
    await expectRevert(s.write.withdrawBond(), "BondLocked", [unlockAt]);
    await c.increaseTime(TEST_PARAMS.unbondingDelay - 60n);
    await post([]);
    const claimableAt = (await s.read.epochOf([addr(op), 1n])).claimableAt;
    expect(claimableAt > unlockAt).toBe(true);
    await c.increaseTime(70n);
    await expectRevert(s.write.withdrawBond(), "BondLocked", [claimableAt]);
    await c.increaseTime(W);
    const o0 = await bal(addr(op));
    await c.mine(s.write.withdrawBond());
    expect(await bal(addr(op))).toBe(o0 + 400n);
    expect(await s.read.bondOf([addr(op)])).toBe(600n);
  });

  it("only the court slashes: the whole bond, slashRewardBps to the challenger, the rest to the treasury", async () => {
    const s = settle(op);
    await c.mine(s.write.bond([1000n]));
    await c.mine(s.write.requestUnbond([200n]));
    await expectRevert(settle(anyone).write.slash([addr(op), addr(anyone)]), "NotCourt", [addr(anyone)]);
    const treasury = c.deployment.params.treasury;
    const [t0, ch0] = [await bal(treasury), await bal(addr(party2))];
    const sim = await settle(court).simulate.slash([addr(op), addr(party2)], { account: addr(court) });
    expect(sim.result).toBe(1000n);
    const r = await c.mine(settle(court).write.slash([addr(op), addr(party2)]));
    expect(parseEventLogs({ abi: SettlementAbi, eventName: "Slashed", logs: r.logs })[0]!.args).toMatchObject({ slashed: 1000n, reward: 250n });
    expect(await bal(addr(party2))).toBe(ch0 + 250n);
    expect(await bal(treasury)).toBe(t0 + 750n);
    expect(await s.read.bondOf([addr(op)])).toBe(0n);
    await expectRevert(s.write.withdrawBond(), "NothingUnbonding");
    // An operator with nothing bonded is slashed for 0 without a revert.
    expect((await settle(court).simulate.slash([addr(op), addr(party2)], { account: addr(court) })).result).toBe(0n);
  });

  it("the court is set once, by the deployer, never to zero", async () => {
    expect(await settle(anyone).read.court()).toBe(addr(court));
    await expectRevert(settle(anyone).write.setCourt([addr(anyone)]), "NotDeployer", [addr(anyone)]);
    await expectRevert(settle(deployer).write.setCourt([addr(anyone)]), "CourtAlreadySet", [addr(court)]);
  });
});

describe("construction", () => {
  const deploy = (args: readonly unknown[]) => deployer.deployContract({ abi: SettlementAbi, bytecode: loadArtifact("Settlement").bytecode, args: args as never });

  it("refuses zero addresses and a reward above 10000 bps; a fresh one refuses setCourt(0)", async () => {
    const t = c.deployment.token;
    const reg = c.deployment.registry;
    const inbox = c.deployment.inbox;
    await expectRevert(deploy([zeroAddress, reg, inbox, t, 1n, 1n, 1n, 0]), "ZeroAddress");
    await expectRevert(deploy([t, reg, zeroAddress, t, 1n, 1n, 1n, 0]), "ZeroAddress");
    await expectRevert(deploy([t, reg, inbox, zeroAddress, 1n, 1n, 1n, 0]), "ZeroAddress");
    await expectRevert(deploy([t, reg, inbox, t, 1n, 1n, 1n, 10001]), "InvalidParameters");
    const r = await c.mine(deploy([t, reg, inbox, t, 1n, 1n, 1n, 10000]));
    const fresh = getContract({ address: r.contractAddress!, abi: SettlementAbi, client: { public: c.publicClient, wallet: deployer } });
    await expectRevert(fresh.write.setCourt([zeroAddress]), "ZeroAddress");
  });
});

it("every custom error of Settlement was triggered above", () => {
  // CheckpointUnorderedInsertion (OZ Checkpoints) cannot happen: a stake's key is block time + a
  // constant delay, which never decreases.
  const ours = (n: string) => !/^(ERC20|SafeERC20|ReentrancyGuard|SafeCast|CheckpointUnorderedInsertion$)/.test(n);
  // UnknownModel is Registry's, bubbling up through stake().
  const want = errorNames(SettlementAbi).filter(ours).filter((n) => !SETTLEMENT_DISPUTE_ERRORS.includes(n));
  expect(want.filter((n) => !seenErrors.has(n))).toEqual([]);
});
