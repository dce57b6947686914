/**
 * Gas of the Settlement operations on anvil (cancun, the artifacts' optimizer settings), of the
 * two ReceiptCourt proofs that slash through the real Settlement (proveEquivocation, proveNotPosted),
 * and of ValidatorCourt's stake, attest, disputes, votes and verdicts:
 *   npx tsx bench/chain-gas.ts
 * Each row is ≥ 5 transactions on distinct accounts or epochs; gasUsed from the receipts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { receiptCourtArgs, receiptDigest, type Receipt } from "../src/attribution/receipts.js";
import { nodeSigner } from "../src/attribution/signing.js";
import { courtLedger, NODE_KEY, settleRequest } from "../test/chain/court-fixture.js";
import { privateKeyToAccount } from "viem/accounts";
import { getAddress, getContract, keccak256, toHex, type Address, type Hex, type TransactionReceipt } from "viem";
import { ANVIL_KEYS } from "../src/chain/anvil.js";
import { connectChain } from "../src/chain/client.js";
import { publishCalldata } from "../src/da/calldata.js";
import { batchCommitment, MAX_CHUNK } from "../src/da/commitment.js";
import { merkleProof, merkleRoot } from "../src/attribution/merkle.js";
import { BatchInboxAbi, ReceiptCourtAbi, RegistryAbi, SettlementAbi, TestTokenAbi, ValidatorCourtAbi } from "../src/chain/abi.js";
import { buildPayoutTree, type PayoutEntry } from "../src/chain/payout-tree.js";
import { TEST_PARAMS, startTestChain, testTerms, nameId, type TestWallet } from "../test/helpers/chain.js";

const RUNS = 5;
const c = await startTestChain();
const rows: { op: string; gas: bigint[] }[] = [];
const record = (op: string, rs: TransactionReceipt[]) => rows.push({ op, gas: rs.map((r) => r.gasUsed) });
const settle = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });
const randomAddress = (i: number): Address => `0x${keccak256(toHex(`party ${i}`)).slice(26)}` as Address;

try {
  const [, op, ...agents] = c.wallets as [TestWallet, TestWallet, ...TestWallet[]];
  const opAddr = op.account.address;
  await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: op } }).write.registerOperator(["http://op"]));
  await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: op } }).write.registerModel(["m", 0, `0x${"00".repeat(32)}`, testTerms(opAddr)]));
  for (const w of [op, ...agents]) {
    const t = getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });
    await c.mine(t.write.mint([w.account.address, 10n ** 30n]));
    await c.mine(t.write.approve([c.deployment.settlement, 10n ** 30n]));
  }
  const who = agents.slice(0, RUNS);

  const first: TransactionReceipt[] = [];
  const again: TransactionReceipt[] = [];
  for (const a of who) first.push(await c.mine(settle(a).write.deposit([opAddr, 10n ** 24n])));
  for (const a of who) again.push(await c.mine(settle(a).write.deposit([opAddr, 10n ** 20n])));
  record("deposit (agent's first at the operator)", first);
  record("deposit (again)", again);

  const stakes: TransactionReceipt[] = [];
  for (const a of who) stakes.push(await c.mine(settle(a).write.stakeAgent([1000n])));
  record("stakeAgent (first)", stakes);
  const modelStakes: TransactionReceipt[] = [];
  for (const a of who) modelStakes.push(await c.mine(settle(a).write.stake([nameId("m"), 1000n])));
  record("stake on a model (first)", modelStakes);
  const bonds: TransactionReceipt[] = [];
  for (let i = 0; i < RUNS; i++) bonds.push(await c.mine(settle(op).write.bond([1000n])));
  record("bond", bonds);

  // Epochs: the same 7 arguments whatever the epoch summarises; the trees are built off chain. Each post's
  // batch is published first (1 kB of random bytes, one chunk), so its commitment is real and batchOnChain true.
  const opClients = await connectChain(c.anvil.url, ANVIL_KEYS[1]!);
  if (getAddress(opClients.account.address) !== getAddress(op.account.address)) throw new Error("the operator is not ANVIL_KEYS[1]");
  let batchSeed = 1;
  const randomBytes = (n: number) => { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = (batchSeed = (batchSeed * 1103515245 + 12345) >>> 0) >>> 24; return b; };
  const publishes: TransactionReceipt[] = [];
  let epoch = 0n;
  let lastReceipt = 0n;
  const post = async (receipts: number, entries: PayoutEntry[]) => {
    const leaves = Array.from({ length: receipts }, (_, i) => keccak256(toHex(`receipt ${lastReceipt + BigInt(i) + 1n}`)));
    const tree = buildPayoutTree(entries);
    epoch++;
    const first = lastReceipt + 1n;
    lastReceipt += BigInt(receipts);
    const { commitment } = await publishCalldata(opClients, c.deployment.inbox, randomBytes(1000));
    const r = await c.mine(settle(op).write.postEpoch([epoch, merkleRoot(leaves), first, lastReceipt, leaves[leaves.length - 1]!, tree.root, commitment]));
    return { r, tree, epoch };
  };
  const small: PayoutEntry[] = who.map((a, i) => ({ kind: 0, account: randomAddress(i), cumulative: 100n }));
  for (const n of [1, 100, 10_000]) {
    const rs: TransactionReceipt[] = [];
    for (let i = 0; i < RUNS; i++) rs.push((await post(n, small)).r);
    record(`postEpoch (${n} receipts)`, rs);
  }
  // A full chunk of a large batch (a 10,000-receipt epoch is ≈ 36 of them: bench/validator.ts).
  for (let i = 0; i < RUNS; i++) {
    const chunk = randomBytes(MAX_CHUNK);
    const payload = new Uint8Array(MAX_CHUNK + 1);
    payload.set(chunk);
    const commitment = batchCommitment(payload);
    publishes.push(await c.mine(opClients.wallet.writeContract({ address: c.deployment.inbox, abi: BatchInboxAbi, functionName: "publish", args: [commitment, 0, 2, toHex(chunk)] })));
  }
  record(`BatchInbox.publish (a ${MAX_CHUNK}-byte chunk of random bytes)`, publishes);

  // Claims against a 10,000-entry payout tree (proofs of 14 hashes), to fresh accounts (their first token balance).
  const big = (cum: bigint): PayoutEntry[] => [
    ...Array.from({ length: 10_000 }, (_, i) => ({ kind: 0 as const, account: randomAddress(1000 + i), cumulative: cum + BigInt(i) })),
    ...who.map((a) => ({ kind: 0 as const, account: a.account.address, cumulative: cum })),
  ];
  const e1 = await post(10, big(100n));
  const e2 = await post(10, big(250n));
  await c.increaseTime(TEST_PARAMS.challengeWindow);
  const claims = async (e: { tree: ReturnType<typeof buildPayoutTree>; epoch: bigint }, accounts: Address[]) => {
    const rs: TransactionReceipt[] = [];
    for (const [i, account] of accounts.entries()) {
      const { cumulative, proof } = e.tree.proofOf(0, account);
      rs.push(await c.mine(settle(who[i % who.length]!).write.claim([opAddr, e.epoch, account, cumulative, proof])));
    }
    return rs;
  };
  const accounts = Array.from({ length: RUNS }, (_, i) => randomAddress(1000 + i * 997));
  record("claim, first (10k-entry tree, fresh account)", await claims(e1, accounts));
  record("claim, cumulative second (10k-entry tree)", await claims(e2, accounts));
  record("claim, first (10k-entry tree, account holding tokens)", await claims(e1, who.map((a) => a.account.address)));
  // How the worst case grows with the tree: 100,000 entries, proofs of 17 hashes (~200 gas a level).
  const e3 = await post(10, Array.from({ length: 100_000 }, (_, i) => ({ kind: 0 as const, account: randomAddress(200_000 + i), cumulative: 100n + BigInt(i) })));
  await c.increaseTime(TEST_PARAMS.challengeWindow);
  record("claim, first (100k-entry tree, fresh account)", await claims(e3, Array.from({ length: RUNS }, (_, i) => randomAddress(200_000 + i * 9973))));
  const smallEpoch = { tree: buildPayoutTree(small), epoch: 1n };
  record("claim, first (5-entry tree, fresh account)", await claims(smallEpoch, small.map((e) => e.account)));

  // Withdrawals: request, wait, a post with everyone's committed spend, withdraw.
  for (const a of who) await c.mine(settle(a).write.requestWithdrawal([opAddr, 10n ** 20n]));
  await c.increaseTime(TEST_PARAMS.withdrawDelay);
  const committed = await post(10, [...small, ...who.map((a) => ({ kind: 1 as const, account: a.account.address, cumulative: 10n ** 18n }))]);
  const ws: TransactionReceipt[] = [];
  for (const a of who) {
    const { cumulative, proof } = committed.tree.proofOf(1, a.account.address);
    ws.push(await c.mine(settle(a).write.withdraw([opAddr, cumulative, proof as Hex[]])));
  }
  record("withdraw", ws);

  // Fraud proofs through the real court and Settlement (each slashes the whole bond: re-bonded before each).
  // Receipts of courtLedger (1 base + 2 adapters, 16 lines) signed by the operator's key (ANVIL_KEYS[1] = NODE_KEY).
  if (getAddress(op.account.address) !== getAddress(privateKeyToAccount(NODE_KEY).address)) throw new Error("the operator is not the court fixture's node key");
  const dir = mkdtempSync(join(tmpdir(), "openlora-chain-gas-"));
  const ledger = courtLedger(join(dir, "l.sqlite"), c.deployment.chainId, c.deployment.court!);
  const court = (w: TestWallet) => getContract({ address: c.deployment.court!, abi: ReceiptCourtAbi, client: { public: c.publicClient, wallet: w } });
  const resign = (r: Receipt): Hex => nodeSigner(NODE_KEY).sign(receiptDigest(r, ledger.domainOptions));
  try {
    const equivocations: TransactionReceipt[] = [];
    const notPosted: TransactionReceipt[] = [];
    for (let i = 0; i < RUNS; i++) {
      await c.mine(settle(op).write.bond([1000n]));
      const s = await settleRequest(ledger, i);
      const twin: Receipt = { ...s.receipt, fee: s.receipt.fee + 1n };
      equivocations.push(await c.mine(court(who[i]!).write.proveEquivocation([receiptCourtArgs(s.receipt)[0], s.signature, receiptCourtArgs(twin)[0], resign(twin)])));
      await c.mine(settle(op).write.bond([1000n]));
      // An epoch whose last receipt hash is not the receipt the operator signed with that id.
      const posted = await post(1, small);
      const last: Receipt = { ...s.receipt, id: Number(lastReceipt) };
      notPosted.push(await c.mine(court(who[i]!).write.proveNotPosted([receiptCourtArgs(last)[0], resign(last), posted.epoch])));
    }
    record("ReceiptCourt.proveEquivocation (slash via Settlement)", equivocations);
    record("ReceiptCourt.proveNotPosted (slash via Settlement)", notPosted);

    // ValidatorCourt: five validators of 200 each; disputes over real signed receipts, each run from a snapshot.
    const vc = (w: TestWallet) => getContract({ address: c.deployment.validatorCourt!, abi: ValidatorCourtAbi, client: { public: c.publicClient, wallet: w } });
    const tok = (w: TestWallet) => getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });
    const vstakes: TransactionReceipt[] = [];
    for (const a of who) {
      await c.mine(tok(a).write.approve([c.deployment.validatorCourt!, 10n ** 30n]));
      vstakes.push(await c.mine(vc(a).write.stake([200n])));
    }
    record("ValidatorCourt.stake (a validator's first)", vstakes);
    /** An epoch of 100 receipts whose first is `r` (signed); the rest are stand-in leaves. */
    const postSigned = async (r: Receipt, publish: boolean) => {
      const digest = receiptDigest(r, ledger.domainOptions);
      const leaves = [digest, ...Array.from({ length: 99 }, (_, i) => keccak256(toHex(`leaf ${r.id} ${i}`)))];
      epoch++;
      const payload = randomBytes(1000);
      const commitment = publish ? (await publishCalldata(opClients, c.deployment.inbox, payload)).commitment : batchCommitment(payload);
      await c.mine(settle(op).write.postEpoch([epoch, merkleRoot(leaves), BigInt(r.id), BigInt(r.id) + 99n, leaves[99]!, small.length ? buildPayoutTree(small).root : `0x${"00".repeat(32)}`, commitment]));
      lastReceipt = BigInt(r.id) + 99n;
      return { leaves, payload, epoch };
    };
    const attests: TransactionReceipt[] = [];
    const challenges: TransactionReceipt[] = [];
    const votes: TransactionReceipt[] = [];
    const upheld: TransactionReceipt[] = [];
    const rejected: TransactionReceipt[] = [];
    const withheld: TransactionReceipt[] = [];
    const answered: TransactionReceipt[] = [];
    for (let i = 0; i < RUNS; i++) {
      await c.mine(settle(op).write.bond([1000n]));
      const s = await settleRequest(ledger, 100 + i);
      // Receipt ids continue from the last epoch's.
      const r: Receipt = { ...s.receipt, id: Number(lastReceipt) + 1 };
      const sig = resign(r);
      const snap = await c.snapshot();
      const e = await postSigned(r, true);
      attests.push(await c.mine(vc(who[i]!).write.attest([opAddr, e.epoch])));
      const args = [opAddr, e.epoch, receiptCourtArgs(r)[0], sig, merkleProof(e.leaves, 0)] as const;
      challenges.push(await c.mine(vc(who[0]!).write.challengeReplay(args as never)));
      const id = (await vc(who[0]!).read.disputeCount()) - 1n;
      for (const v of who.slice(0, 3)) votes.push(await c.mine(vc(v).write.vote([id, i % 2 === 0])));
      (i % 2 === 0 ? upheld : rejected).push(await c.mine(vc(who[4]!).write.resolve([id])));
      await c.revert(snap);
      epoch--;
      lastReceipt -= 100n;
      const snap2 = await c.snapshot();
      const w = await postSigned(r, false);
      withheld.push(await c.mine(vc(who[1]!).write.challengeWithheld([opAddr, w.epoch])));
      await publishCalldata(opClients, c.deployment.inbox, w.payload);
      answered.push(await c.mine(vc(who[1]!).write.resolve([(await vc(who[1]!).read.disputeCount()) - 1n])));
      await c.revert(snap2);
      epoch--;
      lastReceipt -= 100n;
    }
    record("ValidatorCourt.attest", attests);
    record("ValidatorCourt.challengeReplay (100-receipt epoch: 7-hash proof)", challenges);
    record("ValidatorCourt.vote", votes);
    record("ValidatorCourt.resolve, upheld (jail, slash: refund + reward + treasury, bond back, release)", upheld);
    record("ValidatorCourt.resolve, rejected (bond to the treasury, release)", rejected);
    record("ValidatorCourt.challengeWithheld", withheld);
    record("ValidatorCourt.resolve, answered (bond to the operator, release)", answered);
  } finally {
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const median = (xs: bigint[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))[Math.floor(xs.length / 2)]!;
  const min = (xs: bigint[]) => xs.reduce((a, b) => (b < a ? b : a));
  const max = (xs: bigint[]) => xs.reduce((a, b) => (b > a ? b : a));
  console.log("| operation | runs | median gas | min | max |\n|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.op} | ${r.gas.length} | ${median(r.gas)} | ${min(r.gas)} | ${max(r.gas)} |`);
} finally {
  await c.stop();
}
