/**
 * Gas of ReceiptCourt.proveBadSplit (a successful fraud proof, mock Registry/Settlement) for a receipt
 * with 1 base + 2 adapters, 2 Datanets, 3 contributors, stakers: one proof per dishonest receipt; then
 * of proveBadTerms on the same receipts with the adapter's inputs re-signed to differ from its terms
 * only in the last lineage weight (every comparison made); of proveBadStakers with a staker left out (every
 * stake read, the sum differs); of proveBadContributors with the last approved token count wrong; of
 * proveBadPolicy with the policy and operator right and the treasury (compared last) wrong; of
 * proveBadMergedLineage on a merge of the two adapters with one weight wrong: each the most expensive
 * verdict of its kind (the last two through RegistryCourt, ReceiptCourt's deputy).
 *   npx tsx bench/court-gas.ts [proofs, default 7]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeAbiParameters, encodeFunctionData, keccak256, stringToHex, type Address, type Hex } from "viem";
import {
  proveBadContributorsArgs, proveBadMergedLineageArgs, proveBadPolicyArgs, proveBadStakersArgs, proveBadTermsArgs, receiptCourtArgs, receiptDigest,
  type PublishedVersion, type Receipt, type RegistryTerms,
} from "../src/attribution/receipts.js";
import type { ModelUse } from "../src/attribution/types.js";
import { nodeSigner } from "../src/attribution/signing.js";
import { MockRegistryAbi, MockSettlementAbi, ReceiptCourtAbi, RegistryCourtAbi } from "../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil } from "../src/chain/anvil.js";
import { courtLedger, deployCourt, NODE_KEY, POLICY, settleRequest } from "../test/chain/court-fixture.js";
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
  const sign = (r: Receipt) => nodeSigner(NODE_KEY).sign(receiptDigest(r, { chainId: chain.chainId, verifyingContract: c.court }));
  type Proof = "proveBadTerms" | "proveBadStakers" | "proveBadContributors" | "proveBadPolicy" | "proveBadMergedLineage";
  /** `n` proofs by `functionName`, each of a fresh receipt (`settle`) changed by `lie` and re-signed; prints their gas. */
  async function measure(functionName: Proof, settle: (i: number) => Promise<{ receipt: Receipt }>, lie: (r: Receipt) => Receipt, args: (r: Receipt, sig: Hex) => readonly unknown[]) {
    const deputy = functionName === "proveBadPolicy" || functionName === "proveBadMergedLineage";
    const [address, abi] = deputy ? [c.registryCourt, RegistryCourtAbi] : [c.court, ReceiptCourtAbi];
    const used: bigint[] = [];
    for (let i = 0; i < n; i++) {
      const r = lie((await settle(i)).receipt);
      const a = args(r, sign(r));
      const rc = await c.client.waitForTransactionReceipt({ hash: await w.writeContract({ address, abi, functionName, args: a } as never) });
      if (rc.status !== "success") throw new Error(`${functionName} ${i} reverted`);
      used.push(rc.gasUsed);
      calldata = (encodeFunctionData({ abi, functionName, args: a } as never).length - 2) / 2;
    }
    console.log(`${functionName} calldata ${calldata} B`);
    table(functionName, used);
  }
  /** The fixture's request, with legal-lora's model use changed by `lie`. */
  const proofs = (functionName: Proof, lie: (m: ModelUse) => ModelUse, args: (r: Receipt, sig: Hex) => readonly unknown[]) =>
    measure(functionName, () => settleRequest(ledger, 1000 + proofsMade++), (r) => ({ ...r, inputs: { ...r.inputs!, models: r.inputs!.models.map((m) => (m.model === "legal-lora" ? lie(m) : m)) } }), args);
  let proofsMade = 0;
  await proofs("proveBadTerms", (m) => ({ ...m, developers: [{ party: bob!, share: 1n }, { party: alice!, share: 2n }] }), (r, sig) => proveBadTermsArgs(r, sig, "legal-lora", terms));

  // proveBadStakers: A and B listed as Settlement has them, C (staked too) left out: every stake read, the sum differs.
  const [A, B, C] = ["0a", "0b", "0c"].map((x) => `0x${"0".repeat(38)}${x}` as Address);
  for (const [who, stake, total] of [[A, 30n, 30n], [B, 10n, 40n], [C, 1n, 41n]] as const) {
    await c.client.waitForTransactionReceipt({ hash: await deployer.writeContract({ address: c.settlement, abi: MockSettlementAbi, functionName: "setStake", args: [nameId("legal-lora"), who!, stake, total] }) });
  }
  await proofs("proveBadStakers", (m) => ({ ...m, stakers: [{ party: A!, stake: 30n }, { party: B!, stake: 10n }] }), (r, sig) => proveBadStakersArgs(r, sig, "legal-lora"));

  // proveBadContributors: legal@1 published with A 6 and B 4; the receipt lists A 6 and B 3 (the last comparison differs).
  const version: PublishedVersion = { root: keccak256(stringToHex("legal v1")), contributors: [A!, B!], approvedTokens: [6n, 4n] };
  const versionHash = keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "address[]" }, { type: "uint256[]" }], [version.root, version.contributors, version.approvedTokens]));
  await c.client.waitForTransactionReceipt({ hash: await deployer.writeContract({ address: c.registry, abi: MockRegistryAbi, functionName: "setDatanetVersionHash", args: [nameId("legal"), 1, versionHash] }) });
  await proofs(
    "proveBadContributors",
    (m) => ({ ...m, lineage: m.lineage.map((e) => (e.datanet === "legal@1" ? { ...e, contributors: [{ party: A!, approvedTokens: 6 }, { party: B!, approvedTokens: 3 }] } : e)) }),
    (r, sig) => proveBadContributorsArgs(r, sig, "legal-lora", "legal@1", version),
  );

  // proveBadPolicy: the node declared POLICY on the mock; the receipt has it and names the node, but another treasury.
  const treasury = `0x${"7e".repeat(20)}` as Address;
  await c.client.waitForTransactionReceipt({ hash: await deployer.writeContract({ address: c.settlement, abi: MockSettlementAbi, functionName: "setTreasury", args: [treasury] }) });
  await c.client.waitForTransactionReceipt({ hash: await deployer.writeContract({ address: c.registry, abi: MockRegistryAbi, functionName: "setPolicy", args: [c.node, POLICY] }) });
  await measure(
    "proveBadPolicy", (i) => settleRequest(ledger, 2000 + i),
    (r) => ({ ...r, inputs: { ...r.inputs!, policy: POLICY, treasury: `${treasury.slice(0, -2)}7f`, operator: c.node.toLowerCase() } }),
    (r, sig) => proveBadPolicyArgs(r, sig),
  );

  // proveBadMergedLineage: "mix" merges legal-lora and case-lora 1:1 (lineage cases 13 : legal 7); the receipt says 14 : 7.
  ledger.registerModel({
    id: "mix", kind: "adapter", owner: "gina", baseModel: "llama", priceIn: 2n, priceOut: 3n, contentHash: nameId("mix"),
    developers: [{ party: "gina", share: 1n }], parents: [{ model: "legal-lora", weight: 1n }, { model: "case-lora", weight: 1n }],
  });
  const plainTerms = (lineage: RegistryTerms["lineage"]): RegistryTerms => ({ ...terms, lineage });
  const legalTerms = plainTerms([{ datanet: nameId("legal"), version: 1, weight: 7n }, { datanet: nameId("cases"), version: 1, weight: 3n }]);
  const caseTerms = plainTerms([{ datanet: nameId("cases"), version: 1, weight: 1n }]);
  const mixTerms: RegistryTerms = { ...terms, lineage: [], parents: [{ model: nameId("legal-lora"), weight: 1n }, { model: nameId("case-lora"), weight: 1n }] };
  for (const [m, t] of [["mix", mixTerms], ["legal-lora", legalTerms], ["case-lora", caseTerms]] as const) {
    await c.client.waitForTransactionReceipt({ hash: await deployer.writeContract({ address: c.registry, abi: MockRegistryAbi, functionName: "setTermsHash", args: [nameId(m), termsHash(t)] }) });
  }
  const worst = ledger.worstCaseFee({ baseModel: "llama", adapters: ["mix"], tokensIn: 3, maxTokens: 4 });
  await measure(
    "proveBadMergedLineage",
    (i) => ledger.settle(ledger.reserve("agent", worst), { baseModel: "llama", adapters: [{ id: "mix", weightPpm: 1_000_000 }], promptTokens: [1, 2, 3], outputTokens: [4, 5, 6, 100 + i], sampling: { seed: 1 }, finish: "length" }),
    (r) => ({ ...r, inputs: { ...r.inputs!, models: r.inputs!.models.map((m) => (m.model === "mix" ? { ...m, lineage: m.lineage.map((e) => (e.datanet === "cases@1" ? { ...e, weight: 14n } : e)) } : m)) } }),
    (r, sig) => proveBadMergedLineageArgs(r, sig, "mix", mixTerms, [legalTerms, caseTerms]),
  );
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
