/**
 * ValidatorCourt on a real anvil with the real deployment (Registry, Settlement, BatchInbox,
 * ReceiptCourt): validator stakes by block, attestations, replay disputes voted by stake (upheld:
 * the operator jailed and its bond slashed, the agent refunded, the challenger rewarded; rejected:
 * the challenger's bond lost; lapsed), withheld-batch disputes (answered by publishing, or upheld),
 * and every refusal by its custom error. Receipts are real v2 receipts signed by a ledger in the
 * court's EIP-712 domain; epochs are posted with their Merkle root of receipt digests.
 */
import { getContract, parseEventLogs, toHex, zeroHash, type Address, type Hex } from "viem";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { merkleProof, merkleRoot } from "../../src/attribution/merkle.js";
import { receiptCourtArgs, receiptDigest, type Receipt } from "../../src/attribution/receipts.js";
import { RegistryAbi, SettlementAbi, TestTokenAbi, ValidatorCourtAbi } from "../../src/chain/abi.js";
import { connectChain } from "../../src/chain/client.js";
import { loadArtifact } from "../../src/chain/deploy.js";
import { batchCommitment } from "../../src/da/commitment.js";
import { publishCalldata } from "../../src/da/calldata.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import type { Ledger } from "../../src/ledger/index.js";
import { TEST_PARAMS, errorNames, expectRevert, seenErrors, startTestChain, type TestChain, type TestWallet } from "../helpers/chain.js";
import { tempDir } from "../helpers/tmp.js";
import { courtLedger } from "./court-fixture.js";

const V = TEST_PARAMS.validators;
const W = TEST_PARAMS.challengeWindow;
const BOND = 1000n;
const [Pending, Disputed, Final, Voided] = [0, 1, 2, 3];
const [Upheld, Rejected, Lapsed, Answered] = [2, 3, 4, 5];

let c: TestChain;
let snap: Hex;
let ledger: Ledger;
let op: TestWallet, v1: TestWallet, v2: TestWallet, v3: TestWallet, challenger: TestWallet, agent: TestWallet, latecomer: TestWallet;
const addr = (w: TestWallet) => w.account.address;
const court = (w: TestWallet) => getContract({ address: c.deployment.validatorCourt!, abi: ValidatorCourtAbi, client: { public: c.publicClient, wallet: w } });
const settle = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });
const token = (w: TestWallet) => getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });
const bal = (a: Address) => token(op).read.balanceOf([a]);
const domain = () => ({ chainId: c.deployment.chainId, verifyingContract: c.deployment.court! });

interface Signed { receipt: Receipt; signature: Hex }
interface Posted { epoch: bigint; receipts: Signed[]; digests: Hex[]; payload: Uint8Array }

/** Settles `n` requests of the agent's (its ledger name is its address, so the court can refund it). */
async function serve(n: number): Promise<Signed[]> {
  const out: Signed[] = [];
  for (let i = 0; i < n; i++) {
    const worst = ledger.worstCaseFee({ baseModel: "llama", adapters: ["legal-lora"], tokensIn: 3, maxTokens: 4 });
    const s = await ledger.settle(ledger.reserve(addr(agent), worst), {
      baseModel: "llama", adapters: [{ id: "legal-lora", weightPpm: 1_000_000 }], promptTokens: [1, 2, 3], outputTokens: [10, 11, 12, 13 + i],
      sampling: { temperature: 0, topP: 1, seed: i }, finish: "length", spans: [],
    });
    out.push({ receipt: s.receipt, signature: s.signature });
  }
  return out;
}

/** Posts the operator's next epoch over `n` fresh receipts; `publish`: its batch bytes to BatchInbox first. */
async function post(n: number, publish = false): Promise<Posted> {
  const receipts = await serve(n);
  const digests = receipts.map((r) => receiptDigest(r.receipt, domain()));
  const payload = new TextEncoder().encode(`batch ${receipts[0]!.receipt.id}..${receipts.at(-1)!.receipt.id}`);
  const commitment = publish ? (await publishCalldata(await connectChain(c.anvil.url, ANVIL_KEYS[1]!), c.deployment.inbox, payload)).commitment : batchCommitment(payload);
  const epoch = (await settle(op).read.lastEpoch([addr(op)])) + 1n;
  await c.mine(settle(op).write.postEpoch([
    epoch, merkleRoot(digests), BigInt(receipts[0]!.receipt.id), BigInt(receipts.at(-1)!.receipt.id), digests.at(-1)!, zeroHash, commitment,
  ]));
  return { epoch, receipts, digests, payload };
}

/** challengeReplay's arguments for receipt `i` of a posted epoch. */
const replayArgs = (p: Posted, i: number) => [addr(op), p.epoch, receiptCourtArgs(p.receipts[i]!.receipt)[0], p.receipts[i]!.signature, merkleProof(p.digests, i)] as const;

async function openReplay(p: Posted, i: number, by: TestWallet = challenger): Promise<bigint> {
  const r = await c.mine(court(by).write.challengeReplay(replayArgs(p, i) as never));
  return parseEventLogs({ abi: ValidatorCourtAbi, eventName: "DisputeOpened", logs: r.logs })[0]!.args.id;
}

async function resolve(id: bigint): Promise<number> {
  const r = await c.mine(court(challenger).write.resolve([id]));
  return parseEventLogs({ abi: ValidatorCourtAbi, eventName: "DisputeResolved", logs: r.logs })[0]!.args.outcome;
}

/** Makes `chain` the one the helpers above use, with its wallets and a fresh ledger signing in its court's domain. */
function use(chain: TestChain): void {
  c = chain;
  [, op, v1, v2, v3, challenger, latecomer, , agent] = chain.wallets as TestWallet[];
  ledger = courtLedger(`${tempDir("openlora-vcourt-")}/ledger.db`, chain.deployment.chainId, chain.deployment.court!);
  ledger.createAgent(addr(agent));
  ledger.deposit(addr(agent), 10n ** 12n);
}

/** The operator registered and bonded; everyone holds tokens and has approved both contracts. */
async function fund(): Promise<void> {
  await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: op } }).write.registerOperator(["http://op"]));
  for (const w of [op, v1, v2, v3, challenger, latecomer]) {
    await c.mine(token(w).write.mint([addr(w), 1_000_000n]));
    await c.mine(token(w).write.approve([c.deployment.validatorCourt!, 1_000_000n]));
    await c.mine(token(w).write.approve([c.deployment.settlement, 1_000_000n]));
  }
  await c.mine(settle(op).write.bond([BOND]));
}

let main: TestChain;
beforeAll(async () => {
  main = await startTestChain();
  expect(main.deployment.validatorCourt).not.toBeNull();
  expect(main.deployment.validators).toMatchObject({ minStake: "100", challengeBond: "40", quorumBps: 5000 });
  use(main);
  await fund();
});
afterAll(async () => main?.stop());
beforeEach(async () => { snap = await c.snapshot(); });
afterEach(async () => { await c.revert(snap); });

/** v1 200, v2 200, v3 100: 500 in all; a verdict needs 250 and a majority. */
async function stakeAll(): Promise<void> {
  for (const [w, s] of [[v1, 200n], [v2, 200n], [v3, 100n]] as const) await c.mine(court(w).write.stake([s]));
}

describe("the validator set", () => {
  it("stakes count by block; an unstake stops counting at once and leaves after the unbonding delay", async () => {
    const r = await c.mine(court(v1).write.stake([150n]));
    await c.mine(court(v1).write.stake([50n]));
    expect(await court(v1).read.stakeOf([addr(v1)])).toBe(200n);
    expect(await court(v1).read.stakeAtBlock([addr(v1), r.blockNumber])).toBe(150n);
    expect(await court(v1).read.totalStakeAtBlock([r.blockNumber - 1n])).toBe(0n);
    await expectRevert(court(v1).write.stake([0n]), "ZeroAmount");
    await expectRevert(court(v1).write.requestUnstake([0n]), "ZeroAmount");
    await expectRevert(court(v1).write.requestUnstake([201n]), "InsufficientStake", [200n, 201n]);
    await expectRevert(court(v1).write.completeUnstake(), "NothingUnbonding");
    const u = await c.mine(court(v1).write.requestUnstake([120n]));
    const readyAt = parseEventLogs({ abi: ValidatorCourtAbi, eventName: "ValidatorUnstakeRequested", logs: u.logs })[0]!.args.readyAt;
    expect(await court(v1).read.totalStake()).toBe(80n);
    await expectRevert(court(v1).write.completeUnstake(), "UnbondingNotDone", [readyAt]);
    await c.increaseTime(V.unbondingDelay);
    const b0 = await bal(addr(v1));
    await c.mine(court(v1).write.completeUnstake());
    expect(await bal(addr(v1))).toBe(b0 + 120n);
  });

  it("refuses parameters that cannot work", async () => {
    const deploy = (p: Record<string, bigint | number>) => op.deployContract({
      abi: ValidatorCourtAbi, bytecode: loadArtifact("ValidatorCourt").bytecode, args: [c.deployment.settlement, c.deployment.court!, { ...V, ...p }] as never,
    });
    const bad: Record<string, bigint | number>[] = [{ quorumBps: 0 }, { quorumBps: 10_001 }, { minStake: 0n }, { voteWindow: 0n }, { answerWindow: 0n }];
    for (const p of bad) await expectRevert(deploy(p), "InvalidParameters");
  });
});

describe("attestations", () => {
  it("eligible validators attest an epoch once, inside its window; the epoch finalises after it", async () => {
    await c.mine(court(v3).write.stake([99n]));
    const p = await post(2);
    await expectRevert(court(v3).write.attest([addr(op), p.epoch]), "NotEligible", [addr(v3), 99n]);
    await c.mine(court(v1).write.stake([200n]));
    await c.mine(court(v2).write.stake([100n]));
    const r = await c.mine(court(v1).write.attest([addr(op), p.epoch]));
    expect(parseEventLogs({ abi: ValidatorCourtAbi, eventName: "Attested", logs: r.logs })[0]!.args).toMatchObject({ validator: addr(v1), stake: 200n });
    await c.mine(court(v2).write.attest([addr(op), p.epoch]));
    await expectRevert(court(v1).write.attest([addr(op), p.epoch]), "AlreadyAttested", [addr(op), p.epoch]);
    expect([await court(v1).read.attestedStake([addr(op), p.epoch]), await court(v1).read.attestations([addr(op), p.epoch])]).toEqual([300n, 2n]);
    expect(await court(v1).read.epochStatus([addr(op), p.epoch])).toBe(Pending);
    await c.increaseTime(W);
    expect(await court(v1).read.epochStatus([addr(op), p.epoch])).toBe(Final);
    const closes = (await settle(op).read.epochOf([addr(op), p.epoch])).postedAt + W;
    await c.mine(court(v3).write.stake([1n]));
    await expectRevert(court(v3).write.attest([addr(op), p.epoch]), "WindowClosed", [closes]);
    await expectRevert(court(v3).write.challengeReplay(replayArgs(p, 0) as never), "WindowClosed", [closes]);
    await expectRevert(court(v3).read.epochStatus([addr(op), 9n]), "NoEpoch", [addr(op)]);
  });
});

describe("replay disputes", () => {
  it("a quorum finding a mismatch jails the operator and slashes its bond: the agent refunded, the challenger rewarded", async () => {
    await stakeAll();
    const e1 = await post(2);
    const e2 = await post(3);
    const e3 = await post(1);
    const fee = e2.receipts[1]!.receipt.fee;
    expect(fee > 0n).toBe(true);
    const c0 = await bal(addr(challenger));
    const id = await openReplay(e2, 1);
    expect(await bal(addr(challenger))).toBe(c0 - BigInt(V.challengeBond));
    const d = await court(v1).read.disputeOf([id]);
    expect(d).toMatchObject({ operator: addr(op), epoch: e2.epoch, kind: 0, outcome: 1, challenger: addr(challenger), totalStake: 500n, fee, agent: addr(agent) });
    expect(d.receiptDigest).toBe(e2.digests[1]);
    for (const [n, s] of [[e1.epoch, Pending], [e2.epoch, Disputed], [e3.epoch, Disputed]] as const) expect(await court(v1).read.epochStatus([addr(op), n])).toBe(s);
    await expectRevert(settle(op).write.postEpoch([4n, zeroHash, 7n, 7n, zeroHash, zeroHash, zeroHash]), "OperatorDisputed", [addr(op), e2.epoch]);
    await expectRevert(court(v1).write.challengeReplay(replayArgs(e2, 1) as never), "AlreadyDisputed", [e2.digests[1]]);

    await expectRevert(court(op).write.vote([id, false]), "OperatorCannotVote", [addr(op)]);
    await c.mine(court(latecomer).write.stake([1000n])); // after the dispute opened: no weight in it
    await expectRevert(court(latecomer).write.vote([id, false]), "NotEligible", [addr(latecomer), 0n]);
    await c.mine(court(v1).write.vote([id, true]));
    await expectRevert(court(v1).write.vote([id, true]), "AlreadyVoted", [id, addr(v1)]);
    await expectRevert(court(v1).write.resolve([id]), "Undecided", [d.deadline]);
    // Unstaking after the dispute opened changes nothing in it.
    await c.mine(court(v2).write.requestUnstake([200n]));
    await c.mine(court(v2).write.vote([id, true]));

    const treasury = c.deployment.params.treasury;
    const [a0, c1, t0] = [await bal(addr(agent)), await bal(addr(challenger)), await bal(treasury)];
    expect(await resolve(id)).toBe(Upheld);
    const reward = ((BOND - fee) * BigInt(TEST_PARAMS.slashRewardBps)) / 10_000n;
    expect(await bal(addr(agent))).toBe(a0 + fee);
    expect(await bal(addr(challenger))).toBe(c1 + reward + BigInt(V.challengeBond));
    expect(await bal(treasury)).toBe(t0 + BOND - fee - reward);
    expect(await settle(op).read.bondOf([addr(op)])).toBe(0n);
    expect(await settle(op).read.jailedFrom([addr(op)])).toBe(e2.epoch);
    for (const [n, s] of [[e1.epoch, Pending], [e2.epoch, Voided], [e3.epoch, Voided]] as const) expect(await court(v1).read.epochStatus([addr(op), n])).toBe(s);
    await expectRevert(court(v1).write.resolve([id]), "DisputeClosed", [id, Upheld]);
    await expectRevert(court(v3).write.vote([id, true]), "DisputeClosed", [id, Upheld]);
    await expectRevert(court(v1).write.attest([addr(op), e3.epoch]), "OperatorJailed", [addr(op), e2.epoch]);
    await expectRevert(settle(op).write.postEpoch([4n, zeroHash, 7n, 7n, zeroHash, zeroHash, zeroHash]), "OperatorJailed", [addr(op), e2.epoch]);
    await c.increaseTime(W);
    expect(await court(v1).read.epochStatus([addr(op), e1.epoch])).toBe(Final);
  });

  it("a challenge the quorum rejects costs the challenger its bond; the epochs open again and the operator posts", async () => {
    await stakeAll();
    const e1 = await post(2);
    const id = await openReplay(e1, 0);
    await c.mine(court(v2).write.vote([id, false]));
    await c.mine(court(v3).write.vote([id, false]));
    const [c0, t0] = [await bal(addr(challenger)), await bal(c.deployment.params.treasury)];
    expect(await resolve(id)).toBe(Rejected);
    expect(await bal(addr(challenger))).toBe(c0);
    expect(await bal(c.deployment.params.treasury)).toBe(t0 + BigInt(V.challengeBond));
    expect(await settle(op).read.bondOf([addr(op)])).toBe(BOND);
    expect(await court(v1).read.epochStatus([addr(op), e1.epoch])).toBe(Pending);
    await post(1);
  });

  it("without a verdict at the deadline it lapses: the bond comes back; no vote after the deadline", async () => {
    await stakeAll();
    const e1 = await post(1);
    const id = await openReplay(e1, 0, v1);
    await c.mine(court(v3).write.vote([id, true]));
    const d = await court(v1).read.disputeOf([id]);
    await c.increaseTime(V.voteWindow);
    await expectRevert(court(v2).write.vote([id, true]), "VoteClosed", [d.deadline]);
    const b0 = await bal(addr(v1));
    expect(await resolve(id)).toBe(Lapsed);
    expect(await bal(addr(v1))).toBe(b0 + BigInt(V.challengeBond));
    expect(await settle(op).read.frozenFrom([addr(op)])).toBe(0n);
  });

  it("refuses a receipt out of the epoch, not signed by the operator, not under the root; none without validators", async () => {
    const e1 = await post(2);
    const e2 = await post(2);
    await expectRevert(court(challenger).write.challengeReplay(replayArgs(e1, 0) as never), "NoValidators");
    await stakeAll();
    const [, , struct, sig, proof] = replayArgs(e1, 0);
    await expectRevert(court(challenger).write.challengeReplay([addr(op), e2.epoch, struct, sig, proof] as never), "ReceiptNotInEpoch", [struct.id, BigInt(e2.receipts[0]!.receipt.id), BigInt(e2.receipts[1]!.receipt.id)]);
    await expectRevert(court(challenger).write.challengeReplay([addr(op), e1.epoch, struct, "0x1234", proof] as never), "BadSignature");
    const other = await c.wallets[7]!.signMessage({ message: "x" });
    await expectRevert(court(challenger).write.challengeReplay([addr(op), e1.epoch, struct, other, proof] as never), "SignerNotOperator");
    await expectRevert(court(challenger).write.challengeReplay([addr(op), e1.epoch, struct, sig, merkleProof(e1.digests, 1)] as never), "NotInReceiptsRoot");
    await expectRevert(court(challenger).write.vote([7n, true]), "UnknownDispute", [7n]);
    await expectRevert(court(challenger).read.disputeOf([7n]), "UnknownDispute", [7n]);
    expect(await court(challenger).read.disputeCount()).toBe(0n);
  });
});

describe("withheld batches", () => {
  it("an epoch whose batch is not on chain is challenged; the operator answers by publishing it, and the bond pays it", async () => {
    const e1 = await post(1, true);
    await expectRevert(court(challenger).write.challengeWithheld([addr(op), e1.epoch]), "BatchOnChain", [addr(op), e1.epoch]);
    const e2 = await post(2);
    const r = await c.mine(court(challenger).write.challengeWithheld([addr(op), e2.epoch]));
    const id = parseEventLogs({ abi: ValidatorCourtAbi, eventName: "DisputeOpened", logs: r.logs })[0]!.args.id;
    await expectRevert(court(challenger).write.challengeWithheld([addr(op), e2.epoch]), "AlreadyDisputed", [toHex(e2.epoch, { size: 32 })]);
    await expectRevert(court(v1).write.vote([id, true]), "NotReplayDispute", [id]);
    const d = await court(v1).read.disputeOf([id]);
    await expectRevert(court(v1).write.resolve([id]), "Undecided", [d.deadline]);
    expect(await court(v1).read.epochStatus([addr(op), e2.epoch])).toBe(Disputed);
    await publishCalldata(await connectChain(c.anvil.url, ANVIL_KEYS[1]!), c.deployment.inbox, e2.payload);
    const o0 = await bal(addr(op));
    expect(await resolve(id)).toBe(Answered);
    expect(await bal(addr(op))).toBe(o0 + BigInt(V.challengeBond));
    expect(await court(v1).read.epochStatus([addr(op), e2.epoch])).toBe(Pending);
  });

  it("unanswered within the answer window, it is upheld: jailed, the bond slashed, no refund", async () => {
    const e1 = await post(2);
    const r = await c.mine(court(challenger).write.challengeWithheld([addr(op), e1.epoch]));
    const id = parseEventLogs({ abi: ValidatorCourtAbi, eventName: "DisputeOpened", logs: r.logs })[0]!.args.id;
    await c.increaseTime(V.answerWindow);
    const c0 = await bal(addr(challenger));
    expect(await resolve(id)).toBe(Upheld);
    expect(await bal(addr(challenger))).toBe(c0 + (BOND * BigInt(TEST_PARAMS.slashRewardBps)) / 10_000n + BigInt(V.challengeBond));
    expect(await settle(op).read.jailedFrom([addr(op)])).toBe(e1.epoch);
    expect(await court(v1).read.epochStatus([addr(op), e1.epoch])).toBe(Voided);
  });
});

describe("below a majority quorum", () => {
  // quorumBps 2000 of 500: 100 stake decides, but only at the deadline unless it is a majority of all.
  let q: TestChain;
  beforeAll(async () => {
    q = await startTestChain({ validators: { ...V, quorumBps: 2000 } });
  });
  afterAll(async () => q?.stop());

  it("at the deadline more yes than no (and the quorum) upholds; more no, rejects", async () => {
    use(q);
    try {
      await fund();
      await stakeAll();
      const e1 = await post(2);
      const no = await openReplay(e1, 0);
      await c.mine(court(v3).write.vote([no, false]));
      const yes = await openReplay(e1, 1);
      await c.mine(court(v3).write.vote([yes, true]));
      await expectRevert(court(v1).write.resolve([yes]), "Undecided");
      await c.increaseTime(V.voteWindow);
      expect(await resolve(no)).toBe(Rejected);
      expect(await resolve(yes)).toBe(Upheld);
    } finally {
      use(main);
    }
  });
});

it("every custom error of ValidatorCourt was triggered above", () => {
  // Settlement's NoEpoch surfaces through epochStatus; the OZ library errors cannot be reached by a caller.
  const ours = (n: string) => !/^(SafeERC20|SafeCast|ReentrancyGuard|CheckpointUnorderedInsertion$|StringsInvalid|ECDSA)/.test(n);
  expect(errorNames(ValidatorCourtAbi).filter(ours).filter((n) => !seenErrors.has(n))).toEqual([]);
});
