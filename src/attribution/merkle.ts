/**
 * Binary keccak256 Merkle tree over bytes32 leaves, with OpenZeppelin's sorted-pair hashing:
 * parent = keccak256(min(a, b) ‖ max(a, b)), so `MerkleProof.verify(proof, root, leaf)` in
 * Solidity accepts our proofs without knowing the leaf's position.
 *
 * Layout: leaves in the given order; each level pairs neighbours (0,1), (2,3), …; an odd last
 * node is carried up unchanged (never duplicated). One leaf: root = leaf. No leaves: root = 0x00…0.
 * Leaves must themselves be digests of typed content (EIP-712 digests, record hashes), never raw
 * 64-byte data, so an inner node can never pass for a leaf.
 */
import { concatHex, type Hex } from "viem";
import { keccak256 } from "../crypto/keccak.js";
import { oerr } from "../errors.js";

export const ZERO_HASH: Hex = `0x${"0".repeat(64)}`;

export function hashPair(a: Hex, b: Hex): Hex {
  const x = a.toLowerCase() as Hex;
  const y = b.toLowerCase() as Hex;
  return keccak256(x < y ? concatHex([x, y]) : concatHex([y, x]));
}

/** All levels, leaves first, root level last (build once to take many proofs: merkleProofAt). */
export function merkleLevels(leaves: readonly Hex[]): Hex[][] {
  for (const l of leaves) checkBytes32(l);
  const out: Hex[][] = [leaves.map((l) => l.toLowerCase() as Hex)];
  while (out[out.length - 1]!.length > 1) {
    const cur = out[out.length - 1]!;
    const next: Hex[] = [];
    for (let i = 0; i < cur.length; i += 2) next.push(i + 1 < cur.length ? hashPair(cur[i]!, cur[i + 1]!) : cur[i]!);
    out.push(next);
  }
  return out;
}

export function merkleRoot(leaves: readonly Hex[]): Hex {
  if (leaves.length === 0) return ZERO_HASH;
  const ls = merkleLevels(leaves);
  return ls[ls.length - 1]![0]!;
}

/** The sibling hashes from leaf `index` up to the root (siblings of carried-up nodes are skipped). */
export function merkleProof(leaves: readonly Hex[], index: number): Hex[] {
  if (!Number.isInteger(index) || index < 0 || index >= leaves.length) {
    throw oerr("INVALID_ARGUMENT", `leaf index ${index} out of range (0..${leaves.length - 1})`);
  }
  return merkleProofAt(merkleLevels(leaves), index);
}

/** The proof of leaf `index` from levels built by merkleLevels. */
export function merkleProofAt(levels: readonly Hex[][], index: number): Hex[] {
  const proof: Hex[] = [];
  let i = index;
  for (const level of levels) {
    if (level.length === 1) break;
    const sibling = i ^ 1;
    if (sibling < level.length) proof.push(level[sibling]!);
    i >>= 1;
  }
  return proof;
}

/** The node a proof leads to from `leaf` (OpenZeppelin MerkleProof.processProof: sorted-pair hashing). */
export function merkleTopOf(proof: readonly Hex[], leaf: Hex): Hex {
  let h = leaf.toLowerCase() as Hex;
  for (const p of proof) h = hashPair(h, p);
  return h;
}

/** OpenZeppelin MerkleProof.verify: fold the proof and compare with `root`. */
export function verifyMerkleProof(proof: readonly Hex[], root: Hex, leaf: Hex): boolean {
  return merkleTopOf(proof, leaf) === root.toLowerCase();
}

function checkBytes32(h: string): void {
  if (!/^0x[0-9a-fA-F]{64}$/.test(h)) throw oerr("INVALID_ARGUMENT", `not a bytes32 hex string: ${h}`);
}
