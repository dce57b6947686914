/**
 * One posted epoch checked from its batch alone (plus the registry view): every receipt's signature by the
 * operator (low-s, as OpenZeppelin's ECDSA accepts), its hash-chain link to the one before (the previous
 * epoch's last for the first), its token ids against its prompt and output hashes, its split recomputed
 * from its inputs to the unit (receiptSplitProblem, ReceiptCourt.proveBadSplit's rule) and its inputs against
 * the registry in force at its time (judge.ts); then the epoch: the receipts' Merkle root is the posted
 * receiptsRoot and the last receipt's digest the posted lastReceiptHash (else proveNotPosted, with it).
 */
import { getAddress, hexToBytes, keccak256, type Address, type Hex } from "viem";
import { merkleRoot, ZERO_HASH } from "../attribution/merkle.js";
import { hashTokenIds, receiptDigest, receiptSplitProblem, type ReceiptDomainOptions } from "../attribution/receipts.js";
import { isHighS, secp256k1 } from "../crypto/secp256k1.js";
import type { DecodedBatch } from "../da/batch.js";
import { judgeAgainstRegistry, type Finding } from "./judge.js";
import type { RegistryView } from "./registry-view.js";

/** An epoch as Settlement holds it (epochOf), with the post's block. */
export interface PostedEpoch {
  operator: Address;
  epoch: number;
  receiptsRoot: Hex;
  firstReceipt: number;
  lastReceipt: number;
  lastReceiptHash: Hex;
  payoutRoot: Hex;
  batchCommitment: Hex;
  batchOnChain: boolean;
  claimableAt: bigint;
  block: bigint;
  blockHash: Hex;
}

export interface EpochCheck {
  findings: Finding[];
  /** Each receipt's EIP-712 digest, in order. */
  digests: Hex[];
}

/** `prevLastHash`: the previous epoch's lastReceiptHash (null when unknown: the operator's first epoch). */
export function checkEpoch(batch: DecodedBatch, posted: PostedEpoch, prevLastHash: Hex | null, view: RegistryView, domain: ReceiptDomainOptions): EpochCheck {
  const findings: Finding[] = [];
  const digests: Hex[] = [];
  const operator = getAddress(posted.operator);
  for (const [i, e] of batch.entries.entries()) {
    const r = e.receipt;
    const digest = receiptDigest(r, domain);
    digests.push(digest);
    const signer = recoverSigner(digest, e.signature);
    if (signer !== operator || getAddress(r.node) !== operator) {
      findings.push({ receipt: r.id, check: "signature", proof: null, detail: `signed by ${signer ?? "no valid signature"}, names node ${r.node}; the operator is ${operator}` });
      continue;
    }
    const prev = i === 0 ? prevLastHash : digests[i - 1]!;
    if (prev !== null && r.prevHash !== prev) findings.push({ receipt: r.id, check: "link", proof: null, detail: `prevHash ${r.prevHash}, the receipt before hashes to ${prev}` });
    if (hashTokenIds(e.prompt) !== r.promptHash || hashTokenIds(e.output) !== r.outputHash) {
      findings.push({ receipt: r.id, check: "tokens", proof: null, detail: "the batch's token ids do not hash to the receipt's prompt and output hashes" });
    }
    const split = receiptSplitProblem(r);
    if (split !== null && r.v === 2) findings.push({ receipt: r.id, check: "split", proof: "proveBadSplit", detail: split });
    findings.push(...judgeAgainstRegistry(r, view));
  }
  if (digests.length > 0 && digests[digests.length - 1] !== posted.lastReceiptHash) {
    findings.push({ receipt: posted.lastReceipt, check: "root", proof: "proveNotPosted", detail: `the batch's last receipt hashes to ${digests[digests.length - 1]}, the post names ${posted.lastReceiptHash}` });
  }
  const root = digests.length === 0 ? ZERO_HASH : merkleRoot(digests);
  if (root !== posted.receiptsRoot) findings.push({ receipt: posted.lastReceipt, check: "root", proof: null, detail: `the batch's receipts have root ${root}, the post names ${posted.receiptsRoot}` });
  return { findings, digests };
}

/** The address that signed `digest` (65 bytes r‖s‖v, v 27/28 or 0/1), null for a malformed or high-s signature. */
export function recoverSigner(digest: Hex, signature: Hex): Address | null {
  if (!/^0x[0-9a-fA-F]{130}$/.test(signature)) return null;
  const sig = hexToBytes(signature);
  const v = sig[64]!;
  const recovery = v >= 27 ? v - 27 : v;
  if (recovery !== 0 && recovery !== 1) return null;
  const rs = sig.subarray(0, 64);
  if (isHighS(rs)) return null;
  const pub = secp256k1.recover(hexToBytes(digest), rs, recovery);
  if (!pub) return null;
  return getAddress(`0x${keccak256(pub.subarray(1)).slice(-40)}`);
}

/**
 * Which receipts of the epoch to replay: each with probability `rate`, drawn from keccak256(receiptsRoot ‖
 * batchCommitment ‖ the post's block hash ‖ index) — unknown to the node until its post is in a block.
 */
export function replaySample(posted: PostedEpoch, rate: number): number[] {
  const out: number[] = [];
  if (rate <= 0) return out;
  const threshold = BigInt(Math.floor(Math.min(rate, 1) * 1_000_000));
  for (let id = posted.firstReceipt; id <= posted.lastReceipt; id++) {
    const h = keccak256(`${posted.receiptsRoot}${posted.batchCommitment.slice(2)}${posted.blockHash.slice(2)}${id.toString(16).padStart(16, "0")}` as Hex);
    if (BigInt(h) % 1_000_000n < threshold) out.push(id);
  }
  return out;
}
