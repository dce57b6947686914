/**
 * Where the gas of the worst-case claim goes: a first claim to a fresh account against a 10,000-entry
 * payout tree (the bench/chain-gas.ts row over the ≤ 100k target), traced opcode by opcode
 * (anvil --steps-tracing, debug_traceTransaction), summed per contract and opcode, beside the
 * transaction's intrinsic cost (21,000 + calldata at 16 gas per non-zero byte, 4 per zero byte).
 *   npx tsx bench/claim-gas-breakdown.ts
 */
import { getContract, hexToBytes, keccak256, toHex, type Address, type Hex } from "viem";
import { merkleRoot } from "../src/attribution/merkle.js";
import { RegistryAbi, SettlementAbi, TestTokenAbi } from "../src/chain/abi.js";
import { buildPayoutTree, type PayoutEntry } from "../src/chain/payout-tree.js";
import { TEST_PARAMS, startTestChain, type TestWallet } from "../test/helpers/chain.js";

const c = await startTestChain({}, { stepsTracing: true });
try {
  const [, op, agent] = c.wallets as [TestWallet, TestWallet, TestWallet];
  const settlement = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });
  await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: op } }).write.registerOperator(["http://op"]));
  const token = getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: agent } });
  await c.mine(token.write.mint([agent.account.address, 10n ** 30n]));
  await c.mine(token.write.approve([c.deployment.settlement, 10n ** 30n]));
  await c.mine(settlement(agent).write.deposit([op.account.address, 10n ** 24n]));
  const party = (i: number): Address => `0x${keccak256(toHex(`party ${i}`)).slice(26)}` as Address;
  const entries: PayoutEntry[] = Array.from({ length: 10_000 }, (_, i) => ({ kind: 0 as const, account: party(i), cumulative: 10n ** 15n + BigInt(i) }));
  const tree = buildPayoutTree(entries);
  const receipts = [keccak256(toHex("receipt 1"))];
  await c.mine(settlement(op).write.postEpoch([1n, merkleRoot(receipts), 1n, 1n, receipts[0]!, tree.root, `0x${"00".repeat(32)}`]));
  await c.increaseTime(TEST_PARAMS.challengeWindow);

  // The fresh account with the longest proof among the first 1,000 (14 hashes for 10,000 entries).
  let account = party(0);
  for (let i = 1; i < 1000; i++) if (tree.proofOf(0, party(i)).proof.length > tree.proofOf(0, account).proof.length) account = party(i);
  const { cumulative, proof } = tree.proofOf(0, account);
  const rc = await c.mine(settlement(agent).write.claim([op.account.address, 1n, account, cumulative, proof]));
  const tx = await c.publicClient.getTransaction({ hash: rc.transactionHash });
  const data = hexToBytes(tx.input as Hex);
  const nonZero = data.filter((b) => b !== 0).length;
  const calldataGas = nonZero * 16 + (data.length - nonZero) * 4;
  const trace = (await c.publicClient.request({ method: "debug_traceTransaction", params: [rc.transactionHash, {}] } as never)) as { structLogs: { op: string; gasCost: number; depth: number }[] };
  // A CALL step's gasCost in the trace includes the gas it forwards (partly returned), so the CALL row
  // is the rest: gasUsed minus the intrinsic cost and every other step (the callee's steps are at depth 2).
  const rows = new Map<string, number>();
  for (const l of trace.structLogs) {
    if (l.depth === 1 && l.op === "CALL") continue;
    const who = l.depth === 1 ? "Settlement" : "token";
    const kind = ["SSTORE", "SLOAD", "STATICCALL", "KECCAK256", "TSTORE", "TLOAD"].includes(l.op) ? l.op : l.op.startsWith("LOG") ? "LOG" : "other";
    rows.set(`${who} ${kind}`, (rows.get(`${who} ${kind}`) ?? 0) + l.gasCost);
  }
  rows.set("Settlement CALL (the token call itself: the rest)", Number(rc.gasUsed) - 21_000 - calldataGas - [...rows.values()].reduce((a, b) => a + b, 0));
  console.log(`claim gasUsed ${rc.gasUsed}: proof of ${proof.length} hashes, calldata ${data.length} B (${nonZero} non-zero)`);
  console.log("| part | gas |\n|---|---|");
  console.log(`| intrinsic: 21,000 + calldata | ${21_000 + calldataGas} (calldata ${calldataGas}) |`);
  for (const [k, v] of [...rows].sort((a, b) => b[1] - a[1])) if (v > 0) console.log(`| ${k} | ${v} |`);
} finally {
  await c.stop();
}
