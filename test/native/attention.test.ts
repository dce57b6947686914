/**
 * Paged causal GQA attention vs a naive f64 implementation (with the kernel's f16 rounding of q and
 * of the softmax weights); row / thread / impl invariance.
 */
import { describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../../src/native/index.js";

/** Rounds to the nearest f16 (ties to even), as the kernel does before products with the cache. */
const toF16 = (x: number) => f16ToF32(f32ToF16(Math.fround(x)));
import { firstBitDiff, hasAvx2, IMPLS, native, randomF32, withConfig } from "./helpers.js";

interface Setup {
  nHeads: number; nKvHeads: number; headDim: number; blockSize: number; scale: number;
  kPool: Uint16Array; vPool: Uint16Array; q: Float32Array;
  rowSeq: Int32Array; rowPos: Int32Array; blockTables: Int32Array; tableOffsets: Int32Array;
}

function setup(headDim: number): Setup {
  const nHeads = 4, nKvHeads = 2, blockSize = 4, numBlocks = 12;
  const kvDim = nKvHeads * headDim, numSlots = numBlocks * blockSize;
  const kPool = new Uint16Array(numSlots * kvDim), vPool = new Uint16Array(numSlots * kvDim);
  const slots = Int32Array.from({ length: numSlots }, (_, i) => i);
  native.kvStore(kPool, vPool, randomF32(numSlots * kvDim, 11, 2), randomF32(numSlots * kvDim, 12, 2), slots, kvDim);
  // Non-contiguous tables: seq 0 → blocks [5, 1, 9], seq 1 → [2, 7, 0, 11], seq 2 → [4].
  const blockTables = new Int32Array([5, 1, 9, 2, 7, 0, 11, 4]);
  const tableOffsets = new Int32Array([0, 3, 7]);
  const rowSeq = new Int32Array([0, 0, 0, 1, 2, 1]);
  const rowPos = new Int32Array([8, 9, 10, 13, 0, 3]);
  const q = randomF32(rowSeq.length * nHeads * headDim, 13, 1);
  return { nHeads, nKvHeads, headDim, blockSize, scale: 1 / Math.sqrt(headDim), kPool, vPool, q, rowSeq, rowPos, blockTables, tableOffsets };
}

function run(s: Setup, rows?: number[]): Float32Array {
  const idx = rows ?? Array.from({ length: s.rowSeq.length }, (_, i) => i);
  const D = s.nHeads * s.headDim;
  const q = new Float32Array(idx.length * D);
  idx.forEach((r, i) => q.set(s.q.subarray(r * D, (r + 1) * D), i * D));
  const out = new Float32Array(idx.length * D);
  native.attention(out, q, s.kPool, s.vPool, Int32Array.from(idx.map((r) => s.rowSeq[r]!)), Int32Array.from(idx.map((r) => s.rowPos[r]!)),
    s.blockTables, s.tableOffsets, s.nHeads, s.nKvHeads, s.headDim, s.blockSize, s.scale);
  return out;
}

function naive(s: Setup): Float64Array {
  const { nHeads, nKvHeads, headDim: D, blockSize } = s;
  const T = s.rowSeq.length, kvDim = nKvHeads * D, group = nHeads / nKvHeads;
  const out = new Float64Array(T * nHeads * D);
  for (let t = 0; t < T; t++) {
    const off = s.tableOffsets[s.rowSeq[t]!]!;
    const pos = s.rowPos[t]!;
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / group);
      const slot = (p: number) => s.blockTables[off + Math.floor(p / blockSize)]! * blockSize + (p % blockSize);
      const sc: number[] = [];
      for (let p = 0; p <= pos; p++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += toF16(s.q[(t * nHeads + h) * D + i]!) * f16ToF32(s.kPool[slot(p) * kvDim + kvh * D + i]!);
        sc.push(d * s.scale);
      }
      const mx = Math.max(...sc);
      const e = sc.map((v) => Math.exp(v - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let p = 0; p <= pos; p++) {
        for (let i = 0; i < D; i++) out[(t * nHeads + h) * D + i] += toF16(e[p]! / sum) * f16ToF32(s.vPool[slot(p) * kvDim + kvh * D + i]!);
      }
    }
  }
  return out;
}

describe("attention", () => {
  for (const headDim of [20, 64]) {
    for (const impl of IMPLS) {
      it(`matches naive f64 (headDim ${headDim}, ${impl}); tolerance 2e-5 · (1 + |v|max)`, () => {
        const s = setup(headDim);
        const out = withConfig(impl, 2, () => run(s));
        const ref = naive(s);
        // |v| ≤ 2 here.
        for (let i = 0; i < out.length; i++) expect(Math.abs(out[i]! - ref[i]!)).toBeLessThanOrEqual(2e-5 * 3);
      });

      it(`a row's result does not depend on the batch or thread count (headDim ${headDim}, ${impl})`, () => {
        const s = setup(headDim);
        const D = s.nHeads * headDim;
        const all1 = withConfig(impl, 1, () => run(s));
        const all2 = withConfig(impl, 2, () => run(s));
        expect(firstBitDiff(all1, all2)).toBe(-1);
        for (let r = 0; r < s.rowSeq.length; r++) {
          const alone = withConfig(impl, 2, () => run(s, [r]));
          expect(firstBitDiff(alone, all1.subarray(r * D, (r + 1) * D))).toBe(-1);
        }
        const reversed = withConfig(impl, 2, () => run(s, [5, 4, 3, 2, 1, 0]));
        for (let i = 0; i < 6; i++) {
          expect(firstBitDiff(reversed.subarray(i * D, (i + 1) * D), all1.subarray((5 - i) * D, (6 - i) * D))).toBe(-1);
        }
      });
    }
    it.skipIf(!hasAvx2)(`avx2 equals reference bit for bit (headDim ${headDim})`, () => {
      const s = setup(headDim);
      expect(firstBitDiff(withConfig("avx2", 2, () => run(s)), withConfig("reference", 1, () => run(s)))).toBe(-1);
    });
  }

  it("long context (1000 positions) avx2 vs reference", () => {
    const headDim = 128, nHeads = 2, nKvHeads = 1, blockSize = 16, numBlocks = 64;
    const kvDim = nKvHeads * headDim;
    const kPool = new Uint16Array(numBlocks * blockSize * kvDim), vPool = new Uint16Array(kPool.length);
    const slots = Int32Array.from({ length: numBlocks * blockSize }, (_, i) => i);
    native.kvStore(kPool, vPool, randomF32(kPool.length, 1), randomF32(kPool.length, 2), slots, kvDim);
    const blockTables = Int32Array.from({ length: numBlocks }, (_, i) => (i * 7) % numBlocks);
    const q = randomF32(nHeads * headDim, 3);
    const outs = IMPLS.map((impl) => withConfig(impl, 2, () => {
      const out = new Float32Array(q.length);
      native.attention(out, q, kPool, vPool, new Int32Array([0]), new Int32Array([999]), blockTables, new Int32Array([0]),
        nHeads, nKvHeads, headDim, blockSize, 1 / Math.sqrt(headDim));
      return out;
    }));
    if (outs.length === 2) expect(firstBitDiff(outs[0]!, outs[1]!)).toBe(-1);
    expect(outs[0]!.every((v) => Number.isFinite(v))).toBe(true);
  });
});
