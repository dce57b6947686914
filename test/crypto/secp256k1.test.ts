import { randomBytes } from "node:crypto";
import { secp256k1 as noble } from "@noble/curves/secp256k1";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isHighS, native, reference, secp256k1 } from "../../src/crypto/secp256k1.js";

const N = noble.CURVE.n;
const be32 = (x: bigint): Uint8Array => Uint8Array.from(Buffer.from(x.toString(16).padStart(64, "0"), "hex"));
const key = fc.bigInt({ min: 1n, max: N - 1n }).map(be32);
const digest = fc.uint8Array({ minLength: 32, maxLength: 32 });
const sigOf = (r: bigint, s: bigint): Uint8Array => Uint8Array.from([...be32(r), ...be32(s)]);

describe("secp256k1: libsecp256k1 and the noble reference give the same bytes", () => {
  it("the native binding loads on linux-x64 (the prebuilt one ships in the package), so the hot paths use it", () => {
    if (process.platform !== "linux" || process.arch !== "x64") return;
    expect(native?.name).toBe("libsecp256k1");
    expect(secp256k1).toBe(native);
  });

  const impl = native!;

  it("signs the same RFC 6979 low-s signature and recovers the same key, which is the signer's", () => {
    fc.assert(fc.property(key, digest, (k, d) => {
      const a = impl.sign(d, k);
      const b = reference.sign(d, k);
      expect(Buffer.from(a.signature).toString("hex")).toBe(Buffer.from(b.signature).toString("hex"));
      expect(a.recovery).toBe(b.recovery);
      expect(isHighS(a.signature)).toBe(false);
      const pub = Buffer.from(noble.getPublicKey(k, false)).toString("hex");
      expect(Buffer.from(impl.recover(d, a.signature, a.recovery)!).toString("hex")).toBe(pub);
      expect(Buffer.from(reference.recover(d, a.signature, a.recovery)!).toString("hex")).toBe(pub);
      // The other recovery id gives another key (or none), the same in both.
      const other = (1 - a.recovery) as 0 | 1;
      const x = impl.recover(d, a.signature, other);
      const y = reference.recover(d, a.signature, other);
      expect(x && Buffer.from(x).toString("hex")).toEqual(y && Buffer.from(y).toString("hex"));
      expect(x && Buffer.from(x).toString("hex")).not.toBe(pub);
    }), { numRuns: 200 });
  });

  it("recovers the same key from arbitrary (r, s, recovery), including high s, or refuses in both", () => {
    fc.assert(fc.property(digest, fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), fc.constantFrom(0, 1), (d, r, s, v) => {
      const sig = sigOf(r, s);
      const x = impl.recover(d, sig, v as 0 | 1);
      const y = reference.recover(d, sig, v as 0 | 1);
      expect(x && Buffer.from(x).toString("hex")).toEqual(y && Buffer.from(y).toString("hex"));
    }), { numRuns: 300 });
  });

  it("refuses r or s of zero or at least n, and an r that is no point's x, in both", () => {
    const d = randomBytes(32);
    const good = impl.sign(d, be32(12345n));
    const r = BigInt(`0x${Buffer.from(good.signature.subarray(0, 32)).toString("hex")}`);
    const s = BigInt(`0x${Buffer.from(good.signature.subarray(32)).toString("hex")}`);
    // x = 5 is not on y² = x³ + 7 (12 ≡ 132 is not a square mod p; checked by noble below).
    expect(() => noble.ProjectivePoint.fromHex(`02${(5n).toString(16).padStart(64, "0")}`)).toThrow();
    for (const [rr, ss] of [[0n, s], [r, 0n], [N, s], [r, N], [r + N < 1n << 256n ? r + N : N + 1n, s], [5n, s]] as const) {
      for (const rec of [0, 1] as const) {
        expect(impl.recover(d, sigOf(rr, ss), rec)).toBeUndefined();
        expect(reference.recover(d, sigOf(rr, ss), rec)).toBeUndefined();
      }
    }
  });

  it("calls s > n/2 high, and n/2 itself low", () => {
    const half = N >> 1n;
    expect(isHighS(sigOf(1n, half))).toBe(false);
    expect(isHighS(sigOf(1n, half + 1n))).toBe(true);
    expect(isHighS(sigOf(1n, N - 1n))).toBe(true);
  });
});
