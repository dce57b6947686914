/**
 * The payout tree an operator posts each epoch: one leaf per party (kind 0: cumulative earnings) and
 * per agent (kind 1: cumulative committed spend = charges + open reservations), over the Merkle tree
 * of src/attribution/merkle.ts (OpenZeppelin's sorted pairs). A leaf is hashed twice, as
 * @openzeppelin/merkle-tree does, so no inner node (64 bytes) can pass for a leaf:
 *   leaf = keccak256(bytes.concat(keccak256(abi.encode(uint8 kind, address account, uint256 cumulative))))
 * Entries are sorted (kind, account) so the same book always gives the same root.
 */
import { encodeAbiParameters, getAddress, isAddress, keccak256, type Address, type Hex } from "viem";
import { merkleProof, merkleRoot } from "../attribution/merkle.js";
import { oerr } from "../errors.js";

export type PayoutKind = 0 | 1;
export const EARNED: PayoutKind = 0;
export const COMMITTED: PayoutKind = 1;

export interface PayoutEntry {
  kind: PayoutKind;
  account: Address;
  cumulative: bigint;
}

export function payoutLeaf(e: PayoutEntry): Hex {
  const inner = keccak256(encodeAbiParameters([{ type: "uint8" }, { type: "address" }, { type: "uint256" }], [e.kind, e.account, e.cumulative]));
  return keccak256(inner);
}

function sortEntries(entries: readonly PayoutEntry[]): PayoutEntry[] {
  const out = entries.map((e) => {
    if (!isAddress(e.account, { strict: false })) throw oerr("INVALID_ARGUMENT", `payout account ${e.account} is not an address`);
    if (e.cumulative < 0n || e.cumulative >= 1n << 256n) throw oerr("INVALID_ARGUMENT", `payout amount out of range: ${e.cumulative}`);
    return { kind: e.kind, account: getAddress(e.account), cumulative: e.cumulative };
  });
  out.sort((a, b) => a.kind - b.kind || (a.account.toLowerCase() < b.account.toLowerCase() ? -1 : a.account.toLowerCase() > b.account.toLowerCase() ? 1 : 0));
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.kind === out[i - 1]!.kind && out[i]!.account === out[i - 1]!.account) throw oerr("INVALID_ARGUMENT", `payout account ${out[i]!.account} appears twice`);
  }
  return out;
}

export interface PayoutTree {
  root: Hex;
  entries: PayoutEntry[];
  /** The entry and its proof, or null when the account has no leaf of that kind. */
  proof(kind: PayoutKind, account: Address): { entry: PayoutEntry; proof: Hex[] } | null;
}

export function buildPayoutTree(entries: readonly PayoutEntry[]): PayoutTree {
  const sorted = sortEntries(entries);
  const leaves = sorted.map(payoutLeaf);
  return {
    root: merkleRoot(leaves),
    entries: sorted,
    proof(kind, account) {
      const a = getAddress(account);
      const i = sorted.findIndex((e) => e.kind === kind && e.account === a);
      return i < 0 ? null : { entry: sorted[i]!, proof: merkleProof(leaves, i) };
    },
  };
}
