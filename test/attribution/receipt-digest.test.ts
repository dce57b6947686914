import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { receiptDigest, receiptDigestReference, type Receipt } from "../../src/attribution/receipts.js";
import { courtLedger, settleRequest } from "../chain/court-fixture.js";

describe("receiptDigest: the word-by-word EIP-712 digest is viem's hashTypedData", () => {
  it("on version 2 receipts of a real ledger, varied fields, other domains, and version 1", async () => {
    const l = courtLedger(join(mkdtempSync(join(tmpdir(), "openlora-digest-")), "l.sqlite"), 31337, `0x${"c0".repeat(20)}`);
    try {
      const receipts: Receipt[] = [];
      for (let i = 0; i < 6; i++) receipts.push((await settleRequest(l, i)).receipt);
      const r0 = receipts[0]!;
      const varied: Receipt[] = [
        ...receipts,
        { ...r0, id: 2 ** 53 - 1, time: 0, fee: (1n << 256n) - 1n, agent: "agent ünïcödé ✓", finish: "stop", tokensIn: 0xffffffff },
        { ...r0, v: undefined, inputs: undefined },
      ];
      for (const r of varied) {
        for (const opts of [{}, { chainId: 31337, verifyingContract: `0x${"c0".repeat(20)}` as const }, { chainId: 10 }]) {
          expect(receiptDigest(r, opts)).toBe(receiptDigestReference(r, opts));
        }
      }
      expect(() => receiptDigest({ ...r0, tokensOut: 2 ** 32 })).toThrow(expect.objectContaining({ code: "RECEIPT_INVALID" }));
      expect(() => receiptDigest({ ...r0, prevHash: "0x1234" })).toThrow(expect.objectContaining({ code: "RECEIPT_INVALID" }));
    } finally {
      l.close();
    }
  });
});
