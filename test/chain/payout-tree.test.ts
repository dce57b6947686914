/** The payout tree: leaf encoding, proofs equal to merkle.ts's, order independence, bad input. */
import fc from "fast-check";
import { encodeAbiParameters, getAddress, keccak256, type Address } from "viem";
import { describe, expect, it } from "vitest";
import { merkleProof, merkleRoot, verifyMerkleProof, ZERO_HASH } from "../../src/attribution/merkle.js";
import { buildPayoutTree, payoutLeaf, payoutRootOf, verifyPayoutProof, type PayoutEntry } from "../../src/chain/payout-tree.js";
import { isOpenLoraError } from "../../src/errors.js";

const addrOf = (i: number): Address => getAddress(`0x${(i + 1).toString(16).padStart(40, "0")}`);

describe("payoutLeaf", () => {
  it("is keccak256(keccak256(abi.encode(uint8, address, uint256)))", () => {
    const a = addrOf(7);
    const inner = keccak256(encodeAbiParameters([{ type: "uint8" }, { type: "address" }, { type: "uint256" }], [1, a, 12345n]));
    expect(payoutLeaf(1, a, 12345n)).toBe(keccak256(inner));
    expect(payoutLeaf(0, a, 12345n)).not.toBe(payoutLeaf(1, a, 12345n));
  });

  it("refuses a bad kind, address or amount", () => {
    for (const f of [
      () => payoutLeaf(2 as 0, addrOf(1), 1n),
      () => payoutLeaf(0, "0x12" as Address, 1n),
      () => payoutLeaf(0, addrOf(1), -1n),
      () => payoutLeaf(0, addrOf(1), 1n << 256n),
    ]) expect(f).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("buildPayoutTree", () => {
  const entries = fc.uniqueArray(fc.record({ kind: fc.constantFrom<0 | 1>(0, 1), i: fc.nat(40), cumulative: fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }) }),
    { selector: (e) => `${e.kind}:${e.i}`, maxLength: 40 });

  it("proves every entry, with merkle.ts's proofs, whatever the input order", () => {
    fc.assert(fc.property(entries, fc.integer(), (es, seed) => {
      const input: PayoutEntry[] = es.map((e) => ({ kind: e.kind, account: addrOf(e.i), cumulative: e.cumulative }));
      const t = buildPayoutTree(input);
      expect(t.root).toBe(payoutRootOf(merkleRoot(t.leaves)));
      expect(t.root.endsWith("0".repeat(16))).toBe(true);
      t.leaves.forEach((leaf, i) => {
        const e = t.entries[i]!;
        expect(t.proofs[i]).toEqual(merkleProof(t.leaves, i));
        expect(verifyMerkleProof(t.proofs[i]!, merkleRoot(t.leaves), leaf)).toBe(true);
        expect(verifyPayoutProof(t.proofs[i]!, t.root, e.kind, e.account, e.cumulative)).toBe(true);
        expect(verifyPayoutProof(t.proofs[i]!, t.root, e.kind, e.account, e.cumulative ^ 1n)).toBe(false);
      });
      for (const e of input) expect(t.proofOf(e.kind, e.account).cumulative).toBe(e.cumulative);
      const shuffled = [...input].sort(() => ((seed = (seed * 1103515245 + 12345) | 0) & 1 ? 1 : -1));
      expect(buildPayoutTree(shuffled).root).toBe(t.root);
    }), { numRuns: 60 });
  });

  it("an empty tree has the zero root; a missing entry is CLAIM_NOT_FOUND; a repeat is refused", () => {
    expect(buildPayoutTree([]).root).toBe(ZERO_HASH);
    const t = buildPayoutTree([{ kind: 0, account: addrOf(1), cumulative: 5n }]);
    expect(t.root).toBe(payoutRootOf(payoutLeaf(0, addrOf(1), 5n)));
    let err: unknown;
    try { t.proofOf(1, addrOf(1)); } catch (e) { err = e; }
    expect(isOpenLoraError(err, "CLAIM_NOT_FOUND")).toBe(true);
    expect(() => buildPayoutTree([
      { kind: 0, account: addrOf(1), cumulative: 5n },
      { kind: 0, account: addrOf(1).toLowerCase() as Address, cumulative: 6n },
    ])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});
