/**
 * Anyone's check of one signed receipt against the chain: every single-receipt fraud proof the courts
 * know (ReceiptCourt: split, terms, stakers, contributors; RegistryCourt: policy, merged lineage),
 * with its arguments gathered from the chain itself (the registry's terms from TermsSet logs, Datanet
 * versions from DatanetVersionPublished logs), each simulated: a proof that would be mined is a lie
 * the challenger can slash (`openlora chain check-receipt --send`); one that reverts says why it
 * stands. With the receipt's successor (id + 1, from the same node) it also tries proveEquivocation,
 * and when a posted epoch of the node ends at this receipt's id, proveNotPosted. A twin with the
 * same id, served to someone else, is only found by whoever holds both (#16: validators).
 */
import { BaseError, ContractFunctionRevertedError, keccak256, stringToHex, type Abi, type Address, type Hex, type PublicClient } from "viem";
import {
  proveBadContributorsArgs, proveBadMergedLineageArgs, proveBadPolicyArgs, proveBadStakersArgs, proveBadTermsArgs, receiptCourtArgs,
  type PublishedVersion, type Receipt, type RegistryTerms,
} from "../attribution/receipts.js";
import { IRegistryAbi, ISettlementAbi, ReceiptCourtAbi, RegistryCourtAbi } from "./abi.js";
import type { Deployment } from "./deploy.js";
import { MAX_RANGE } from "./follower.js";
import { oerr } from "../errors.js";

/** ReceiptCourt.Reason, by index. */
export const FRAUD_REASONS = [
  "FeeMismatch", "LinesMismatch", "InvalidInputs", "TermsMismatch", "Equivocation", "NotPosted", "StakersMismatch", "ContributorsMismatch",
  "PolicyMismatch", "MergedLineageMismatch",
] as const;

export interface ProofCheck {
  /** e.g. "proveBadTerms(legal-lora)", "proveBadContributors(legal-lora, legal@1)". */
  proof: string;
  /** "slashes": the proof would be mined (the reason it would prove); "stands": it reverts (the error). */
  verdict: "slashes" | "stands";
  detail: string;
  /** The call that would slash: what `--send` sends. */
  call?: { address: Address; abi: Abi; functionName: string; args: readonly unknown[] };
}

const id = (name: string): Hex => keccak256(stringToHex(name));
const MAX_MERGE_DEPTH = 32;

/** `read` over [from, head] in ranges of MAX_RANGE blocks (what public RPC endpoints answer), concatenated. */
async function inRanges<T>(client: PublicClient, from: bigint, read: (fromBlock: bigint, toBlock: bigint) => Promise<T[]>): Promise<T[]> {
  const head = await client.getBlockNumber();
  const out: T[] = [];
  for (let a = from; a <= head; a += MAX_RANGE) out.push(...(await read(a, a + MAX_RANGE - 1n < head ? a + MAX_RANGE - 1n : head)));
  return out;
}

/** Runs every proof on `receipt` (signed with `signature`) as `account` would send it, none sent. */
export async function checkReceipt(
  client: PublicClient, d: Deployment, receipt: Receipt, signature: Hex, account: Address, next?: { receipt: Receipt; signature: Hex },
): Promise<ProofCheck[]> {
  if (!d.court) throw oerr("INVALID_ARGUMENT", "the contracts file names no court");
  const court = d.court;
  const deputy = await client.readContract({ address: court, abi: ReceiptCourtAbi, functionName: "deputy" });
  const fromBlock = BigInt(d.deployBlock);
  const time = BigInt(Math.floor(receipt.time / 1000));
  const termsOf = async (model: Hex, at: bigint): Promise<RegistryTerms | null> => {
    const [, version] = await client.readContract({ address: d.registry, abi: IRegistryAbi, functionName: "termsAt", args: [model, at] }).catch(() => [null, 0] as const);
    if (!version) return null;
    const logs = await inRanges(client, fromBlock, (f, t) => client.getContractEvents({ address: d.registry, abi: IRegistryAbi, eventName: "TermsSet", args: { id: model }, fromBlock: f, toBlock: t }));
    const t = logs.find((l) => l.args.version === version)?.args.terms;
    return t ? (t as unknown as RegistryTerms) : null;
  };
  // A merge's ancestry as proveBadMergedLineage reads it: depth-first, each parent's terms at the time the
  // merge's apply from (null: none then), a merged parent's own ancestry right after it. The depth cap stops a
  // cycle of merges (the court refuses one too: it runs out of entries).
  const ancestry = async (model: Hex, terms: RegistryTerms, at: bigint, depth = 0): Promise<(RegistryTerms | null)[]> => {
    const [, version] = await client.readContract({ address: d.registry, abi: IRegistryAbi, functionName: "termsAt", args: [model, at] });
    const from = await client.readContract({ address: d.registry, abi: IRegistryAbi, functionName: "termsFrom", args: [model, version] });
    const out: (RegistryTerms | null)[] = [];
    for (const p of terms.parents) {
      const t = await termsOf(p.model, from);
      out.push(t);
      if (t && t.parents.length > 0 && depth < MAX_MERGE_DEPTH) out.push(...(await ancestry(p.model, t, from, depth + 1)));
    }
    return out;
  };
  const out: ProofCheck[] = [];
  const run = async (proof: string, address: Address, abi: Abi, functionName: string, args: readonly unknown[]) => {
    try {
      const { result } = await client.simulateContract({ account, address, abi, functionName, args } as never);
      out.push({ proof, verdict: "slashes", detail: FRAUD_REASONS[Number(result)] ?? String(result), call: { address, abi, functionName, args } });
    } catch (e) {
      const revert = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
      const name = revert instanceof ContractFunctionRevertedError ? revert.data?.errorName : undefined;
      out.push({ proof, verdict: "stands", detail: name ?? (e as Error).message.split("\n")[0]! });
    }
  };

  const [struct, parts] = receiptCourtArgs(receipt);
  await run("proveBadSplit", court, ReceiptCourtAbi, "proveBadSplit", [struct, parts, signature]);
  if (next) await run(`proveEquivocation(${receipt.id}, ${next.receipt.id})`, court, ReceiptCourtAbi, "proveEquivocation", [struct, signature, receiptCourtArgs(next.receipt)[0], next.signature]);
  const posted = await inRanges(client, fromBlock, (f, t) => client.getContractEvents({ address: d.settlement, abi: ISettlementAbi, eventName: "EpochPosted", args: { operator: receipt.node }, fromBlock: f, toBlock: t }));
  for (const e of posted.filter((x) => x.args.lastReceipt === BigInt(receipt.id))) {
    await run(`proveNotPosted(epoch ${e.args.epoch})`, court, ReceiptCourtAbi, "proveNotPosted", [struct, signature, e.args.epoch]);
  }
  await run("proveBadPolicy", deputy, RegistryCourtAbi, "proveBadPolicy", proveBadPolicyArgs(receipt, signature));
  for (const m of receipt.inputs!.models) {
    const terms = await termsOf(id(m.model), time);
    if (terms) await run(`proveBadTerms(${m.model})`, court, ReceiptCourtAbi, "proveBadTerms", proveBadTermsArgs(receipt, signature, m.model, terms));
    else out.push({ proof: `proveBadTerms(${m.model})`, verdict: "stands", detail: "NoTermsAtTime (not registered then: the node's own listing)" });
    await run(`proveBadStakers(${m.model})`, court, ReceiptCourtAbi, "proveBadStakers", proveBadStakersArgs(receipt, signature, m.model));
    for (const e of m.lineage) {
      const version = await publishedVersion(client, d, e.datanet);
      if (version) await run(`proveBadContributors(${m.model}, ${e.datanet})`, court, ReceiptCourtAbi, "proveBadContributors", proveBadContributorsArgs(receipt, signature, m.model, e.datanet, version));
      else out.push({ proof: `proveBadContributors(${m.model}, ${e.datanet})`, verdict: "stands", detail: "NotPublishedVersion (a Datanet version the chain does not hold)" });
    }
    if (terms && terms.parents.length > 0) {
      const tree = await ancestry(id(m.model), terms, time);
      await run(`proveBadMergedLineage(${m.model})`, deputy, RegistryCourtAbi, "proveBadMergedLineage", proveBadMergedLineageArgs(receipt, signature, m.model, terms, tree));
    }
  }
  return out;
}

/** The Datanet version a lineage key ("name@version") names, as DatanetVersionPublished carried it; null when none. */
async function publishedVersion(client: PublicClient, d: Deployment, key: string): Promise<PublishedVersion | null> {
  const at = key.lastIndexOf("@");
  const version = Number(key.slice(at + 1));
  if (at <= 0 || !/^[1-9][0-9]{0,9}$/.test(key.slice(at + 1))) return null;
  const logs = await inRanges(client, BigInt(d.deployBlock), (f, t) =>
    client.getContractEvents({ address: d.registry, abi: IRegistryAbi, eventName: "DatanetVersionPublished", args: { id: id(key.slice(0, at)) }, fromBlock: f, toBlock: t }));
  const l = logs.find((x) => x.args.version === version);
  return l ? { root: l.args.root!, contributors: l.args.contributors!, approvedTokens: l.args.approvedTokens! } : null;
}
