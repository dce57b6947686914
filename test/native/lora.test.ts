/** loraApply: heterogeneous batched LoRA vs a naive f64 implementation; invariance bit for bit. */
import { describe, expect, it } from "vitest";
import { firstBitDiff, IMPLS, native, randomF32, withConfig } from "./helpers.js";

interface Term { row: number; scale: number; a: Float32Array; b: Float32Array }

function apply(y0: Float32Array, x: Float32Array, M: number, K: number, N: number, terms: Term[]): Float32Array {
  const y = y0.slice();
  native.loraApply(y, x, M, K, N, Int32Array.from(terms.map((t) => t.row)), Float32Array.from(terms.map((t) => t.scale)),
    terms.map((t) => t.a), terms.map((t) => t.b));
  return y;
}

function naive(y0: Float32Array, x: Float32Array, K: number, N: number, terms: Term[]): Float64Array {
  const y = Float64Array.from(y0);
  for (const t of terms) {
    const r = t.a.length / K;
    const u = new Float64Array(r);
    for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) u[j]! += t.a[j * K + k]! * x[t.row * K + k]!;
    for (let n = 0; n < N; n++) {
      let d = 0;
      for (let j = 0; j < r; j++) d += t.b[n * r + j]! * u[j]!;
      y[t.row * N + n]! += Math.fround(t.scale) * d;
    }
  }
  return y;
}

const K = 70, N = 300; // K not a multiple of 8; N spans two column chunks
function adapter(rank: number, seed: number): { a: Float32Array; b: Float32Array } {
  return { a: randomF32(rank * K, seed, 1 / Math.sqrt(K)), b: randomF32(N * rank, seed + 1, 0.5) };
}
const adapters = [adapter(8, 1), adapter(16, 3), adapter(5, 5), adapter(64, 7)];

describe("loraApply", () => {
  for (const impl of IMPLS) {
    it(`matches a naive f64 implementation, mixed ranks and a composed row (${impl})`, () => {
      const M = 5;
      const x = randomF32(M * K, 11);
      const y0 = randomF32(M * N, 12);
      const terms: Term[] = [
        { row: 0, scale: 2, ...adapters[0]! },
        { row: 2, scale: 0.5, ...adapters[1]! },
        { row: 2, scale: -0.25, ...adapters[3]! }, // row 2 composes two adapters
        { row: 3, scale: 1, ...adapters[2]! },
        { row: 4, scale: 1, ...adapters[0]! },
      ];
      const y = withConfig(impl, 2, () => apply(y0, x, M, K, N, terms));
      const ref = naive(y0, x, K, N, terms);
      for (let i = 0; i < y.length; i++) expect(Math.abs(y[i]! - ref[i]!)).toBeLessThan(1e-4);
      // Row 1 has no term: untouched, bit for bit.
      expect(firstBitDiff(y.subarray(N, 2 * N), y0.subarray(N, 2 * N))).toBe(-1);
    });

    it(`a row's result does not depend on the batch, the grouping or the thread count (${impl})`, () => {
      const M = 33;
      const x = randomF32(M * K, 21);
      const y0 = randomF32(M * N, 22);
      const terms: Term[] = [];
      for (let r = 0; r < M; r++) {
        terms.push({ row: r, scale: 1 + r / 10, ...adapters[r % 4]! });
        // Some rows compose a second adapter with a higher index, so sorting by adapter keeps each
        // row's own term order.
        if (r % 5 === 0 && r % 4 < 3) terms.push({ row: r, scale: 0.3, ...adapters[(r % 4) + 1]! });
      }
      const index = (t: Term) => adapters.findIndex((a) => a.a === t.a);
      const grouped = [...terms].sort((p, q) => index(p) - index(q)); // segments by adapter (prefill layout)
      const results = [
        withConfig(impl, 1, () => apply(y0, x, M, K, N, terms)),
        withConfig(impl, 2, () => apply(y0, x, M, K, N, terms)),
        withConfig(impl, 2, () => apply(y0, x, M, K, N, grouped)),
      ];
      for (const r of [0, 7, 10, 20, 32]) {
        const own = terms.filter((t) => t.row === r).map((t) => ({ ...t, row: 0 }));
        const alone = withConfig(impl, 2, () => apply(y0.slice(r * N, (r + 1) * N), x.slice(r * K, (r + 1) * K), 1, K, N, own));
        for (const full of results) expect(firstBitDiff(full.subarray(r * N, (r + 1) * N), alone)).toBe(-1);
      }
    });
  }

  it("avx2 and reference agree bit for bit", () => {
    if (!IMPLS.includes("avx2")) return;
    const M = 6;
    const x = randomF32(M * K, 31);
    const y0 = randomF32(M * N, 32);
    const terms: Term[] = Array.from({ length: M }, (_, r) => ({ row: r, scale: 0.7, ...adapters[r % 4]! }));
    const a = withConfig("avx2", 2, () => apply(y0, x, M, K, N, terms));
    const b = withConfig("reference", 2, () => apply(y0, x, M, K, N, terms));
    expect(firstBitDiff(a, b)).toBe(-1);
  });

  it("validates every argument before touching memory", () => {
    const x = randomF32(2 * K, 1);
    const y = new Float32Array(2 * N);
    const { a, b } = adapters[0]!;
    const call = (rows: number[], as: Float32Array[], bs: Float32Array[], yy = y) =>
      native.loraApply(yy, x, 2, K, N, Int32Array.from(rows), new Float32Array(rows.length).fill(1), as, bs);
    expect(() => call([2], [a], [b])).toThrow(RangeError); // row out of range
    expect(() => call([0], [a.subarray(1)], [b])).toThrow(RangeError); // A not rank × K
    expect(() => call([0], [a], [b.subarray(1)])).toThrow(RangeError); // B not N × rank
    expect(() => call([0], [a], [])).toThrow(RangeError); // one matrix per term
    expect(() => call([0], [a], [b], new Float32Array(3))).toThrow(RangeError); // y size
    expect(() => native.loraApply(y, x, 2, K, N, new Int32Array([0]), new Float32Array([1]), [new Uint8Array(8) as never], [b])).toThrow(TypeError);
  });
});
