/** rmsNorm, rope, kvStore, siluMul, add, addBias against plain f64 JS. */
import { describe, expect, it } from "vitest";
import { f32ToF16 } from "../../src/native/index.js";
import { firstBitDiff, hasAvx2, IMPLS, native, randomF32, withConfig } from "./helpers.js";

describe("rmsNorm", () => {
  for (const impl of IMPLS) {
    it(`matches f64 within 4e-6 relative (${impl}), odd dims, in place`, () => {
      for (const dim of [1, 7, 64, 1027]) {
        const rows = 5;
        const x = randomF32(rows * dim, dim, 3);
        const w = randomF32(dim, dim + 1, 2);
        const out = new Float32Array(rows * dim);
        withConfig(impl, 2, () => native.rmsNorm(out, x, w, rows, dim, 1e-6));
        for (let r = 0; r < rows; r++) {
          let ss = 0;
          for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
          const s = 1 / Math.sqrt(ss / dim + 1e-6);
          for (let i = 0; i < dim; i++) {
            const ref = x[r * dim + i]! * s * w[i]!;
            expect(Math.abs(out[r * dim + i]! - ref)).toBeLessThanOrEqual(4e-6 * Math.abs(ref) + 1e-30);
          }
        }
        const inPlace = x.slice();
        withConfig(impl, 2, () => native.rmsNorm(inPlace, inPlace, w, rows, dim, 1e-6));
        expect(firstBitDiff(inPlace, out)).toBe(-1);
      }
    });
  }
  it.skipIf(!hasAvx2)("avx2 equals reference bit for bit", () => {
    for (const dim of [3, 100, 1024]) {
      const x = randomF32(4 * dim, 1), w = randomF32(dim, 2);
      const a = new Float32Array(4 * dim), r = new Float32Array(4 * dim);
      withConfig("avx2", 2, () => native.rmsNorm(a, x, w, 4, dim, 1e-5));
      withConfig("reference", 1, () => native.rmsNorm(r, x, w, 4, dim, 1e-5));
      expect(firstBitDiff(a, r)).toBe(-1);
    }
  });
});

describe("rope", () => {
  for (const neox of [true, false]) {
    it(`${neox ? "neox (i, i + d/2)" : "interleaved (2i, 2i+1)"} pairs match f64 within 2e-5 (partial ropeDim)`, () => {
      const nHeads = 3, headDim = 16;
      for (const ropeDim of [16, 8]) {
        const positions = new Int32Array([0, 1, 7, 100, 4095]);
        const invFreq = Float32Array.from({ length: ropeDim / 2 }, (_, i) => Math.pow(10000, (-2 * i) / ropeDim));
        const x = randomF32(positions.length * nHeads * headDim, 3);
        const y = x.slice();
        native.rope(y, positions, nHeads, headDim, ropeDim, neox, invFreq);
        for (let r = 0; r < positions.length; r++) {
          for (let h = 0; h < nHeads; h++) {
            const base = (r * nHeads + h) * headDim;
            const expected = Array.from(x.subarray(base, base + headDim));
            for (let i = 0; i < ropeDim / 2; i++) {
              const i0 = neox ? i : 2 * i, i1 = neox ? i + ropeDim / 2 : 2 * i + 1;
              const ang = Math.fround(positions[r]! * invFreq[i]!);
              const a = x[base + i0]!, b = x[base + i1]!;
              expected[i0] = a * Math.cos(ang) - b * Math.sin(ang);
              expected[i1] = a * Math.sin(ang) + b * Math.cos(ang);
            }
            for (let i = 0; i < headDim; i++) expect(Math.abs(y[base + i]! - expected[i]!)).toBeLessThanOrEqual(2e-5);
          }
        }
      }
    });
  }
});

describe("kvStore", () => {
  it("writes f16 (round to nearest even) rows to the given slots only", () => {
    const kvDim = 6, numSlots = 10;
    const kPool = new Uint16Array(numSlots * kvDim).fill(0xffff), vPool = new Uint16Array(numSlots * kvDim).fill(0xffff);
    const k = randomF32(3 * kvDim, 1, 10), v = randomF32(3 * kvDim, 2, 10);
    const slots = new Int32Array([7, 2, 9]);
    native.kvStore(kPool, vPool, k, v, slots, kvDim);
    for (let s = 0; s < numSlots; s++) {
      const t = Array.from(slots).indexOf(s);
      for (let i = 0; i < kvDim; i++) {
        expect(kPool[s * kvDim + i]).toBe(t < 0 ? 0xffff : f32ToF16(k[t * kvDim + i]!));
        expect(vPool[s * kvDim + i]).toBe(t < 0 ? 0xffff : f32ToF16(v[t * kvDim + i]!));
      }
    }
  });
});

describe("elementwise", () => {
  it("siluMul, add, addBias (also aliased, and large enough to be threaded)", () => {
    for (const n of [1, 13, 100_003]) {
      const g = randomF32(n, 1, 6), u = randomF32(n, 2, 2);
      const out = new Float32Array(n);
      withConfig(IMPLS[0]!, 2, () => native.siluMul(out, g, u));
      for (let i = 0; i < n; i += 97) {
        const ref = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
        expect(Math.abs(out[i]! - ref)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(ref)));
      }
      const gg = g.slice();
      native.siluMul(gg, gg, u);
      expect(firstBitDiff(gg, out)).toBe(-1);
      const sum = new Float32Array(n);
      native.add(sum, g, u);
      for (let i = 0; i < n; i += 97) expect(sum[i]).toBe(Math.fround(g[i]! + u[i]!));
      const a = g.slice();
      native.add(a, a, u);
      expect(firstBitDiff(a, sum)).toBe(-1);
    }
    const x = randomF32(3 * 5, 3), bias = randomF32(5, 4);
    const y = x.slice();
    native.addBias(y, bias, 3, 5);
    for (let i = 0; i < 15; i++) expect(y[i]).toBe(Math.fround(x[i]! + bias[i % 5]!));
  });
});
