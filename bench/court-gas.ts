/**
 * Gas of ReceiptCourt.proveBadSplit (a successful fraud proof, mock Registry/Settlement) for a receipt
 * with 1 base + 2 adapters, 2 Datanets, 3 contributors, stakers: one proof per dishonest receipt.
 *   npx tsx bench/court-gas.ts [proofs, default 7]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFunctionData } from "viem";
import { receiptCourtArgs, receiptDigest, type Receipt } from "../src/attribution/receipts.js";
import { nodeSigner } from "../src/attribution/signing.js";
import { ReceiptCourtAbi } from "../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil } from "../src/chain/anvil.js";
import { courtLedger, deployCourt, NODE_KEY, settleRequest } from "../test/chain/court-fixture.js";

const n = Number(process.argv[2] ?? 7);
const dir = mkdtempSync(join(tmpdir(), "openlora-court-gas-"));
const chain = await startAnvil();
try {
  const c = await deployCourt(chain);
  const ledger = courtLedger(join(dir, "l.sqlite"), chain.chainId, c.court);
  const w = c.wallet(ANVIL_KEYS[2]!);
  const gas: bigint[] = [];
  let shape = "";
  let calldata = 0;
  for (let i = 0; i < n; i++) {
    const s = await settleRequest(ledger, i);
    const lines = s.receipt.lines.map((l, k) => (k === 0 ? { ...l, amount: l.amount - 1n } : k === 1 ? { ...l, amount: l.amount + 1n } : l));
    const lie: Receipt = { ...s.receipt, lines };
    const sig = nodeSigner(NODE_KEY).sign(receiptDigest(lie, { chainId: chain.chainId, verifyingContract: c.court }));
    const [struct, parts] = receiptCourtArgs(lie);
    const hash = await w.writeContract({ address: c.court, abi: ReceiptCourtAbi, functionName: "proveBadSplit", args: [struct, parts, sig] });
    const rc = await c.client.waitForTransactionReceipt({ hash });
    if (rc.status !== "success") throw new Error(`proof ${i} reverted`);
    gas.push(rc.gasUsed);
    calldata = (encodeFunctionData({ abi: ReceiptCourtAbi, functionName: "proveBadSplit", args: [struct, parts, sig] }).length - 2) / 2;
    shape = `${lie.inputs!.models.length} models, ${lie.lines.length} lines, ${lie.credits.length} credits, ${lie.spans.length} spans`;
  }
  ledger.close();
  const sorted = [...gas].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(`receipt: ${shape}; calldata ${calldata} B`);
  console.log("| proofs | gas median | min | max |");
  console.log("|---|---|---|---|");
  console.log(`| ${gas.length} | ${median} | ${sorted[0]} | ${sorted.at(-1)} |`);
  console.log(`all: ${gas.join(", ")}`);
} finally {
  await chain.stop();
  rmSync(dir, { recursive: true, force: true });
}
