/**
 * loraApply with 16-bit adapter matrices (termTypes): an F16 / BF16 term gives exactly the bits of
 * the same values passed as f32, on every kernel table and LoRA path, mixed with f32 terms in one
 * call; wrong array kinds and type ids are rejected before anything is computed.
 */
import { describe, expect, it } from "vitest";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, type LoraPath } from "../../src/native/index.js";
import { firstBitDiff, IMPLS, native, randomF32, withConfig } from "./helpers.js";

const F32 = 0, F16 = 1, BF16 = 30;

interface HalfMatrix { bits: Uint16Array; f32: Float32Array }

/** Random values rounded to the 16-bit type: its bits, and the same values as f32. */
function half(n: number, seed: number, scale: number, type: number): HalfMatrix {
  const src = randomF32(n, seed, scale);
  const bits = new Uint16Array(n);
  const f32 = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    bits[i] = type === F16 ? f32ToF16(src[i]!) : f32ToBf16(src[i]!);
    f32[i] = type === F16 ? f16ToF32(bits[i]!) : bf16ToF32(bits[i]!);
  }
  return { bits, f32 };
}

interface Term { row: number; scale: number; type: number; a: HalfMatrix; b: HalfMatrix }

function run(y0: Float32Array, x: Float32Array, M: number, K: number, N: number, terms: Term[], asHalf: boolean): Float32Array {
  const y = y0.slice();
  const sixteen = (t: Term) => asHalf && t.type !== F32;
  native.loraApply(y, x, M, K, N, Int32Array.from(terms.map((t) => t.row)), Float32Array.from(terms.map((t) => t.scale)),
    terms.map((t) => (sixteen(t) ? t.a.bits : t.a.f32)), terms.map((t) => (sixteen(t) ? t.b.bits : t.b.f32)),
    Int32Array.from(terms.map((t) => (sixteen(t) ? t.type : F32))));
  return y;
}

describe("loraApply with f16 / bf16 matrices", () => {
  for (const K of [64, 70]) {
    const N = 300;
    const mk = (rank: number, seed: number, type: number) => ({ type, a: half(rank * K, seed, 1 / Math.sqrt(K), type), b: half(N * rank, seed + 1, 0.5, type) });
    const f16a = mk(16, 1, F16), bf16a = mk(8, 3, BF16), f32a = mk(5, 5, F16), f16b = mk(64, 7, F16);
    const plain = { ...f32a, type: F32 };
    // Rows 0-5 share one f16 adapter (a segment), rows 6-9 each their own, row 8 composes three.
    const M = 11;
    const terms: Term[] = [
      ...[0, 1, 2, 3, 4, 5].map((row) => ({ row, scale: 0.5, ...f16a })),
      { row: 6, scale: 1, ...bf16a },
      { row: 7, scale: 2, ...plain },
      { row: 8, scale: 1, ...f16b },
      { row: 8, scale: -0.25, ...bf16a },
      { row: 8, scale: 0.75, ...plain },
      { row: 9, scale: 1, ...f16a },
      ...[9, 10].map((row) => ({ row, scale: 1, ...bf16a })),
    ];
    const x = randomF32(M * K, 11);
    const y0 = randomF32(M * N, 12);
    for (const impl of IMPLS) {
      it(`K=${K}: bit-identical to the f32 copies on every path (${impl})`, () => {
        const want = withConfig(impl, 1, () => run(y0, x, M, K, N, terms, false));
        for (const path of ["auto", "gathered", "segmented"] as LoraPath[]) {
          for (const threads of [1, 2]) {
            const prev = native.getLoraPath();
            native.setLoraPath(path);
            try {
              const got = withConfig(impl, threads, () => run(y0, x, M, K, N, terms, true));
              const d = firstBitDiff(got, want);
              expect(d, `${path} threads=${threads} at ${d}`).toBe(-1);
            } finally {
              native.setLoraPath(prev);
            }
          }
        }
        // And the update is really there: rows with terms moved.
        expect(firstBitDiff(want.subarray(0, N), y0.subarray(0, N))).not.toBe(-1);
      });
    }
  }

  it("views of one buffer with different ranks or types are different matrices (segmented path)", () => {
    const K = 32, N = 24, M = 16;
    const a = half(8 * K, 51, 0.2, F16), b = half(N * 8, 52, 0.5, F16);
    // Terms 1 and 2 start at the same address as term 0 but are rank 4 / read as bf16.
    const aBits = [a.bits.subarray(0, 2 * K), a.bits.subarray(0, 4 * K), a.bits.subarray(0, 2 * K)];
    const bBits = [new Uint16Array(b.bits.buffer, 0, N * 2), new Uint16Array(b.bits.buffer, 0, N * 4), new Uint16Array(b.bits.buffer, 0, N * 2)];
    const types = [F16, F16, BF16];
    const widen = (m: Uint16Array, t: number) => Float32Array.from(m, (h) => (t === F16 ? f16ToF32(h) : bf16ToF32(h)));
    const rowsOf = (t: number) => [0, 1, 2, 3, 4].map((i) => 5 * t + i).filter((r) => r < M);
    const rows = [0, 1, 2].flatMap((t) => rowsOf(t));
    const termOf = [0, 1, 2].flatMap((t) => rowsOf(t).map(() => t));
    const x = randomF32(M * K, 53), y0 = randomF32(M * N, 54);
    const call = (sixteen: boolean) => {
      const y = y0.slice();
      native.loraApply(y, x, M, K, N, Int32Array.from(rows), new Float32Array(rows.length).fill(0.5),
        termOf.map((t) => (sixteen ? aBits[t]! : widen(aBits[t]!, types[t]!))), termOf.map((t) => (sixteen ? bBits[t]! : widen(bBits[t]!, types[t]!))),
        Int32Array.from(termOf.map((t) => (sixteen ? types[t]! : F32))));
      return y;
    };
    const prev = native.getLoraPath();
    native.setLoraPath("segmented");
    try {
      for (const impl of IMPLS) expect(firstBitDiff(withConfig(impl, 2, () => call(true)), withConfig(impl, 2, () => call(false))), impl).toBe(-1);
    } finally {
      native.setLoraPath(prev);
    }
  });

  it("rejects a 16-bit matrix without its type, a Float32Array typed as f16, unknown type ids and a short termTypes", () => {
    const K = 16, N = 8, rank = 2;
    const y = new Float32Array(N), x = new Float32Array(K);
    const a16 = new Uint16Array(rank * K), b16 = new Uint16Array(N * rank);
    const a32 = new Float32Array(rank * K), b32 = new Float32Array(N * rank);
    const call = (as: (Float32Array | Uint16Array)[], bs: (Float32Array | Uint16Array)[], types?: Int32Array) =>
      native.loraApply(y, x, 1, K, N, Int32Array.of(0), Float32Array.of(1), as, bs, types);
    expect(() => call([a16], [b16])).toThrow(/must be a Float32Array/);
    expect(() => call([a32], [b32], Int32Array.of(F16))).toThrow(/Uint16Array/);
    expect(() => call([a16], [b32], Int32Array.of(BF16))).toThrow(/Bs\[0\].*Uint16Array/);
    expect(() => call([a16], [b16], Int32Array.of(2))).toThrow(RangeError);
    expect(() => call([a16], [b16], new Int32Array(0))).toThrow(RangeError);
    expect(() => call([a16], [new Uint16Array(N * rank + 1)], Int32Array.of(F16))).toThrow(/N \* rank/);
    call([a16], [b16], Int32Array.of(F16));
    expect(Array.from(y)).toEqual(new Array(N).fill(0));
  });
});
