/**
 * loraApply: heterogeneous batched LoRA vs a naive f64 implementation; invariance bit for bit;
 * the segmented path (runs of rows sharing a term list) equals the gathered one bit for bit.
 */
import { describe, expect, it } from "vitest";
import type { LoraPath } from "../../src/native/index.js";
import { firstBitDiff, IMPLS, native, randomF32, rng, withConfig } from "./helpers.js";

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

function withPath<T>(path: LoraPath, fn: () => T): T {
  const prev = native.getLoraPath();
  native.setLoraPath(path);
  try {
    return fn();
  } finally {
    native.setLoraPath(prev);
  }
}

/**
 * Every (kernels, threads, path) combination gives the same bits as the gathered reference (the
 * scalar reference kernels are slow, so they run the two paths once each).
 */
function expectAllPathsEqual(y0: Float32Array, x: Float32Array, M: number, K: number, N: number, terms: Term[]): void {
  const want = withConfig("reference", 1, () => withPath("gathered", () => apply(y0, x, M, K, N, terms)));
  const configs: ["avx2" | "reference", number, LoraPath][] = [["reference", 2, "segmented"]];
  if (IMPLS.includes("avx2")) {
    for (const threads of [1, 2]) for (const path of ["gathered", "segmented", "auto"] as const) configs.push(["avx2", threads, path]);
  }
  for (const [impl, threads, path] of configs) {
    const got = withConfig(impl, threads, () => withPath(path, () => apply(y0, x, M, K, N, terms)));
    expect(firstBitDiff(got, want), `${impl}, ${threads} threads, ${path}`).toBe(-1);
  }
}

describe("loraApply, segmented vs gathered", () => {
  it("selects the path; rejects unknown names", () => {
    expect(native.getLoraPath()).toBe("auto");
    withPath("segmented", () => expect(native.getLoraPath()).toBe("segmented"));
    expect(() => native.setLoraPath("fast" as never)).toThrow(RangeError);
    expect(() => native.setLoraPath(1 as never)).toThrow(TypeError);
    expect(native.getLoraPath()).toBe("auto");
  });

  it("bit-identical for every rank 1..64 (one run of 7 rows, a lone row, a row without terms)", () => {
    const K = 37, N = 19, M = 9;
    const x = randomF32(M * K, 41);
    const y0 = randomF32(M * N, 42);
    for (let rank = 1; rank <= 64; rank++) {
      const a = randomF32(rank * K, 100 + rank, 1 / Math.sqrt(K));
      const b = randomF32(N * rank, 200 + rank, 0.5);
      const terms: Term[] = [];
      for (let r = 1; r <= 7; r++) terms.push({ row: r, scale: 0.75, a, b });
      terms.push({ row: 8, scale: 0.5, a, b }); // a lone row: another scale
      expectAllPathsEqual(y0, x, M, K, N, terms);
    }
  });

  it("bit-identical over random batches: runs of 1..70 rows, compositions of 1-3 adapters, ranks 1..64", () => {
    for (let seed = 1; seed <= 8; seed++) {
      const r = rng(seed * 7 + 3);
      const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
      const K = int(1, 160), N = int(1, 300);
      const pool = Array.from({ length: 5 }, (_, i) => {
        const rank = int(1, 64);
        return { a: randomF32(rank * K, seed * 100 + 2 * i, 1 / Math.sqrt(K)), b: randomF32(N * rank, seed * 100 + 2 * i + 1, 0.5) };
      });
      const terms: Term[] = [];
      let M = 0;
      for (let run = 0, runs = int(1, 5); run < runs; run++) {
        const rows = r() < 0.25 ? int(49, 70) : int(1, 13);
        const list = Array.from({ length: int(0, 3) }, () => ({ ...pool[int(0, 4)]!, scale: (r() * 2 - 1) * 2 }));
        for (let i = 0; i < rows; i++, M++) for (const t of list) terms.push({ row: M, ...t });
      }
      const x = randomF32(M * K, seed + 500);
      const y0 = randomF32(M * N, seed + 600);
      // Terms in the order a prefill batch builds them, and shuffled (each row keeps its own order).
      expectAllPathsEqual(y0, x, M, K, N, terms);
      const shuffled = terms.map((t, i) => ({ t, key: r(), i })).sort((p, q) => p.key - q.key).map((e) => e.t);
      const byRow = new Map<number, Term[]>();
      for (const t of terms) byRow.set(t.row, [...(byRow.get(t.row) ?? []), t]);
      const next = new Map<number, number>();
      const reordered = shuffled.map((t) => { const k = next.get(t.row) ?? 0; next.set(t.row, k + 1); return byRow.get(t.row)![k]!; });
      expectAllPathsEqual(y0, x, M, K, N, reordered);
    }
  });

  it("a prefill run gives each row what it gets alone (segmented vs a one-row gathered call)", () => {
    const K = 64, N = 96, M = 61;
    const x = randomF32(M * K, 51);
    const y0 = randomF32(M * N, 52);
    const list = [{ scale: 0.6, ...adapters[1]! }, { scale: -1.5, ...adapter(3, 9) }, { scale: 0.25, ...adapter(33, 11) }]
      .map((t) => ({ ...t, a: t.a.subarray(0, (t.a.length / 70) * K), b: t.b.subarray(0, (t.b.length / 300) * N) }));
    const terms = Array.from({ length: M }, (_, row) => list.map((t) => ({ row, ...t }))).flat();
    for (const impl of IMPLS) {
      const full = withConfig(impl, 2, () => withPath("auto", () => apply(y0, x, M, K, N, terms)));
      for (const row of [0, 1, 2, 3, 31, 32, 47, 48, 60]) {
        const own = list.map((t) => ({ row: 0, ...t }));
        const alone = withConfig(impl, 1, () => withPath("gathered", () => apply(y0.slice(row * N, (row + 1) * N), x.slice(row * K, (row + 1) * K), 1, K, N, own)));
        expect(firstBitDiff(full.subarray(row * N, (row + 1) * N), alone), `${impl} row ${row}`).toBe(-1);
      }
    }
  });
});
