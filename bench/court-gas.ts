/**
 * Gas of ReceiptCourt.proveBadSplit (a successful fraud proof, mock Registry/Settlement) for a receipt
 * with 1 base + 2 adapters, 2 Datanets, 3 contributors, stakers: one proof per dishonest receipt; then
 * of proveBadTerms on the same receipts with the adapter's inputs re-signed to differ from its terms
 * only in the last lineage weight (every comparison made: the most expensive verdict).
 *   npx tsx bench/court-gas.ts [proofs, default 7]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeFunctionData } from "viem";
import { proveBadTermsArgs, receiptCourtArgs, receiptDigest, type Receipt, type RegistryTerms } from "../src/attribution/receipts.js";
import { nodeSigner } from "../src/attribution/signing.js";
import { MockRegistryAbi, ReceiptCourtAbi } from "../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil } from "../src/chain/anvil.js";
import { courtLedger, deployCourt, NODE_KEY, settleRequest } from "../test/chain/court-fixture.js";
import { nameId, termsHash } from "../test/helpers/chain.js";

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
  console.log(`receipt: ${shape}; proveBadSplit calldata ${calldata} B`);
  console.log("| proof | proofs | gas median | min | max |");
  console.log("|---|---|---|---|---|");
  table("proveBadSplit", gas);

  // proveBadTerms: legal-lora's terms on the mock registry; its inputs name the developers by address.
  const [alice, bob] = ["0x" + "a1".repeat(20), "0x" + "b2".repeat(20)] as `0x${string}`[];
  const terms: RegistryTerms = {
    contentHash: `0x${"00".repeat(32)}`, priceIn: 10n, priceOut: 40n, developers: [{ party: alice!, share: 2n }, { party: bob!, share: 1n }],
    hasShares: false, developerBps: 0, stakerBps: 0, dataBps: 0,
    lineage: [{ datanet: nameId("legal"), version: 1, weight: 7n }, { datanet: nameId("cases"), version: 1, weight: 4n }], parents: [],
  };
  const deployer = c.wallet(ANVIL_KEYS[0]!);
  await c.client.waitForTransactionReceipt({ hash: await deployer.writeContract({ address: c.registry, abi: MockRegistryAbi, functionName: "setTermsHash", args: [nameId("legal-lora"), termsHash(terms)] }) });
  const tgas: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const s = await settleRequest(ledger, n + i);
    const models = s.receipt.inputs!.models.map((m) => (m.model === "legal-lora" ? { ...m, developers: [{ party: bob!, share: 1n }, { party: alice!, share: 2n }] } : m));
    const lie: Receipt = { ...s.receipt, inputs: { ...s.receipt.inputs!, models } };
    const sig = nodeSigner(NODE_KEY).sign(receiptDigest(lie, { chainId: chain.chainId, verifyingContract: c.court }));
    const args = proveBadTermsArgs(lie, sig, "legal-lora", terms);
    const hash = await w.writeContract({ address: c.court, abi: ReceiptCourtAbi, functionName: "proveBadTerms", args });
    const rc = await c.client.waitForTransactionReceipt({ hash });
    if (rc.status !== "success") throw new Error(`terms proof ${i} reverted`);
    tgas.push(rc.gasUsed);
    calldata = (encodeFunctionData({ abi: ReceiptCourtAbi, functionName: "proveBadTerms", args }).length - 2) / 2;
  }
  console.log(`proveBadTerms calldata ${calldata} B`);
  table("proveBadTerms", tgas);
  ledger.close();
} finally {
  await chain.stop();
  rmSync(dir, { recursive: true, force: true });
}

function table(what: string, gas: bigint[]): void {
  const sorted = [...gas].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(`| ${what} | ${gas.length} | ${median} | ${sorted[0]} | ${sorted.at(-1)} |`);
  console.log(`all: ${gas.join(", ")}`);
}
