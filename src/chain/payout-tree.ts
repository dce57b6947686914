/**
 * An epoch's payout tree, the `payoutRoot` Settlement checks claims and withdrawals against.
 *
 * Leaf = keccak256(keccak256(abi.encode(uint8 kind, address account, uint256 cumulative))), double
 * hashed as @openzeppelin/merkle-tree does so no 64-byte inner node can pass for a leaf. Kind 0: a
 * party's cumulative earnings at the operator (what `claim` pays up to); kind 1: an agent's
 * committed spend, cumulative spend + open reservations (what `withdraw` keeps back).
 *
 * The tree is src/attribution/merkle.ts's (sorted pairs, odd node carried up), over the entries
 * sorted by (kind, account), so one set of entries has one root whatever order it comes in. The root
 * is that tree's top node with its low 64 bits zeroed (`payoutRootOf`): Settlement stores the 192 bits
 * left in one slot with the time claims open, so a claim reads one slot instead of two (2.1k gas);
 * 192 bits leave a forger 2^192 hashes to find another leaf under it.
 */
import { encodeAbiParameters, getAddress, isAddress, keccak256, type Address, type Hex } from "viem";
import { oerr } from "../errors.js";
import { merkleLevels, merkleProofAt, merkleTopOf, ZERO_HASH } from "../attribution/merkle.js";

export type PayoutKind = 0 | 1;
export const EARNINGS: PayoutKind = 0;
export const COMMITTED: PayoutKind = 1;

export interface PayoutEntry {
  kind: PayoutKind;
  account: Address;
  cumulative: bigint;
}

export interface PayoutTree {
  root: Hex;
  /** The entries in tree order (sorted by kind, then account), accounts checksummed. */
  entries: PayoutEntry[];
  leaves: Hex[];
  /** proofs[i] proves entries[i]. */
  proofs: Hex[][];
  /** The proof of (kind, account)'s entry; throws CLAIM_NOT_FOUND when it has none. */
  proofOf(kind: PayoutKind, account: Address): { cumulative: bigint; proof: Hex[] };
}

const MAX_UINT256 = (1n << 256n) - 1n;
const LOW_64 = (1n << 64n) - 1n;

/** A top node as Settlement stores and compares it: its low 64 bits zeroed. */
export function payoutRootOf(top: Hex): Hex {
  return `0x${(BigInt(top) & ~LOW_64 & MAX_UINT256).toString(16).padStart(64, "0")}` as Hex;
}

export function payoutLeaf(kind: PayoutKind, account: Address, cumulative: bigint): Hex {
  if (kind !== 0 && kind !== 1) throw oerr("INVALID_ARGUMENT", `payout kind must be 0 or 1, got ${String(kind)}`);
  if (!isAddress(account, { strict: false })) throw oerr("INVALID_ARGUMENT", `not an address: ${String(account)}`);
  if (typeof cumulative !== "bigint" || cumulative < 0n || cumulative > MAX_UINT256) {
    throw oerr("INVALID_ARGUMENT", `cumulative must be a uint256 bigint, got ${String(cumulative)}`);
  }
  const inner = keccak256(encodeAbiParameters([{ type: "uint8" }, { type: "address" }, { type: "uint256" }], [kind, account, cumulative]));
  return keccak256(inner);
}

/** What Settlement's claim and withdraw check: `proof` leads from the entry's leaf to `root`. */
export function verifyPayoutProof(proof: readonly Hex[], root: Hex, kind: PayoutKind, account: Address, cumulative: bigint): boolean {
  return payoutRootOf(merkleTopOf(proof, payoutLeaf(kind, account, cumulative))) === root.toLowerCase();
}

/** Throws INVALID_ARGUMENT on a malformed entry or a (kind, account) given twice. */
export function buildPayoutTree(input: readonly PayoutEntry[]): PayoutTree {
  const entries = input.map((e) => ({ kind: e.kind, account: checkedAddress(e.account), cumulative: e.cumulative }));
  entries.sort((a, b) => a.kind - b.kind || cmp(a.account.toLowerCase(), b.account.toLowerCase()));
  for (let i = 1; i < entries.length; i++) {
    const [p, e] = [entries[i - 1]!, entries[i]!];
    if (p.kind === e.kind && p.account === e.account) throw oerr("INVALID_ARGUMENT", `payout entry (${e.kind}, ${e.account}) given twice`);
  }
  const leaves = entries.map((e) => payoutLeaf(e.kind, e.account, e.cumulative));
  // Levels built once, so n proofs cost O(n log n) rather than n tree builds.
  const levels = merkleLevels(leaves);
  const proofs = leaves.map((_, i) => merkleProofAt(levels, i));
  const index = new Map(entries.map((e, i) => [`${e.kind}:${e.account}`, i]));
  const root = payoutRootOf(levels[levels.length - 1]![0] ?? ZERO_HASH);
  return {
    root,
    entries,
    leaves,
    proofs,
    proofOf(kind, account) {
      const i = index.get(`${kind}:${checkedAddress(account)}`);
      if (i === undefined) throw oerr("CLAIM_NOT_FOUND", `no payout entry (${kind}, ${account}) in this tree`);
      return { cumulative: entries[i]!.cumulative, proof: proofs[i]! };
    },
  };
}

function checkedAddress(a: string): Address {
  if (typeof a !== "string" || !isAddress(a, { strict: false })) throw oerr("INVALID_ARGUMENT", `not an address: ${String(a)}`);
  return getAddress(a);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
