import { describe, expect, it } from "vitest";
import { keccak256, native, reference } from "../../src/crypto/keccak.js";

describe("keccak256: the native binding and the reference give the same digests", () => {
  it("loads the native binding here (linux-x64 prebuild)", () => {
    expect(native).toBeDefined();
  });

  it("known digests, and equal digests for random inputs of every length up to 2 blocks and far beyond", () => {
    expect(keccak256(new Uint8Array(0))).toBe("0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
    expect(keccak256("0x616263")).toBe("0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
    let x = 7;
    const lengths = [...Array.from({ length: 280 }, (_, i) => i), 1087, 1088, 1089, 5000, 96_000];
    for (const n of lengths) {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
      expect(native!(b), `length ${n}`).toBe(reference(b));
    }
  });
});
