import fc from "fast-check";
import { concatHex, keccak256, toHex, type Hex } from "viem";
import { describe, expect, it } from "vitest";
import { hashPair, merkleProof, merkleRoot, verifyMerkleProof, ZERO_HASH } from "../../src/attribution/merkle.js";

const leaf = (i: number): Hex => keccak256(toHex(`leaf ${i}`));
const leaves = (n: number) => Array.from({ length: n }, (_, i) => leaf(i));

/** OpenZeppelin MerkleProof.processProof, transcribed. */
function ozProcessProof(proof: Hex[], l: Hex): Hex {
  let computed = l;
  for (const p of proof) computed = BigInt(computed) < BigInt(p) ? keccak256(concatHex([computed, p])) : keccak256(concatHex([p, computed]));
  return computed;
}

describe("merkle", () => {
  it("hashes pairs sorted, so order does not matter", () => {
    const [a, b] = [leaf(1), leaf(2)];
    expect(hashPair(a, b)).toBe(hashPair(b, a));
    const [lo, hi] = BigInt(a) < BigInt(b) ? [a, b] : [b, a];
    expect(hashPair(a, b)).toBe(keccak256(concatHex([lo, hi])));
  });

  it("has the documented shape: empty → zero, one → the leaf, odd last node carried up", () => {
    expect(merkleRoot([])).toBe(ZERO_HASH);
    expect(merkleRoot([leaf(0)])).toBe(leaf(0));
    const [a, b, c] = leaves(3);
    expect(merkleRoot([a!, b!, c!])).toBe(hashPair(hashPair(a!, b!), c!));
    const l5 = leaves(5);
    expect(merkleRoot(l5)).toBe(hashPair(hashPair(hashPair(l5[0]!, l5[1]!), hashPair(l5[2]!, l5[3]!)), l5[4]!));
    expect(merkleProof(l5, 4)).toEqual([hashPair(hashPair(l5[0]!, l5[1]!), hashPair(l5[2]!, l5[3]!))]);
  });

  it("proves every leaf of trees of 1..40 leaves, as OpenZeppelin's verifier would", () => {
    for (let n = 1; n <= 40; n++) {
      const ls = leaves(n);
      const root = merkleRoot(ls);
      for (let i = 0; i < n; i++) {
        const proof = merkleProof(ls, i);
        expect(verifyMerkleProof(proof, root, ls[i]!)).toBe(true);
        expect(ozProcessProof(proof, ls[i]!)).toBe(root);
        expect(verifyMerkleProof(proof, root, leaf(1000))).toBe(false);
      }
    }
  });

  it("rejects tampered proofs and roots", () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 64 }), fc.nat(), fc.nat(), (n, i0, j0) => {
      const ls = leaves(n);
      const i = i0 % n;
      const root = merkleRoot(ls);
      const proof = merkleProof(ls, i);
      const j = j0 % proof.length;
      const bad = [...proof];
      bad[j] = leaf(99_999);
      expect(verifyMerkleProof(bad, root, ls[i]!)).toBe(false);
      expect(verifyMerkleProof(proof, leaf(12_345), ls[i]!)).toBe(false);
    }), { numRuns: 100 });
  });

  it("refuses non-bytes32 leaves and out-of-range indices", () => {
    expect(() => merkleRoot(["0x1234" as Hex])).toThrow();
    expect(() => merkleProof(leaves(3), 3)).toThrow();
  });
});
