/**
 * matmul: every weight type against an f64 dot product of the rounded operands, the AVX2,
 * AVX-512 and AMX kernels against the reference twin (bit-exact: both follow the reduction scheme of native/src/common.h),
 * and batch / thread invariance (bit-exact).
 */
import { describe, expect, it } from "vitest";
import {
  dequantized, FAST_IMPLS, firstBitDiff, GGML_TYPE, hasAmx, hasAvx2, hasAvx512, IMPLS, matmul, matmulF64, native, randomF32, randomWeights,
  roundedX, withConfig,
} from "./helpers.js";

const FLOAT_TYPES = [GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16];
const BLOCK_TYPES = [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0];
const NAMES: Record<number, string> = { 0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 30: "BF16" };
const MS = [1, 3, 7, 32, 33];

function shapes(type: number): number[] {
  return FLOAT_TYPES.includes(type as never) ? [1, 7, 45, 130] : [32, 96, 160];
}

describe("matmul vs f64 on the rounded operands", () => {
  for (const type of [...FLOAT_TYPES, ...BLOCK_TYPES]) {
    for (const impl of IMPLS) {
      it(`${NAMES[type]} ${impl}`, () => {
        withConfig(impl, 2, () => {
          for (const K of shapes(type)) {
            for (const M of [1, 3, 33]) {
              const N = 37;
              const w = randomWeights(type, N, K, 1000 + K);
              const x = randomF32(M * K, 2000 + K + M);
              const out = matmul(type, w, x, M, N, K);
              const { out: ref, mag } = matmulF64(roundedX(type, x, K), dequantized(type, w, N, K), M, N, K);
              // f32 accumulation in 8 lanes: about K/8 roundings per lane plus 3 in the final sum.
              const tolFactor = (K / 8 + 8) * 2 ** -23;
              for (let i = 0; i < M * N; i++) {
                const err = Math.abs(out[i]! - ref[i]!);
                if (err > tolFactor * mag[i]! + 1e-30) {
                  throw new Error(`${NAMES[type]} K=${K} M=${M} i=${i}: ${out[i]} vs ${ref[i]} (err ${err}, tol ${tolFactor * mag[i]!})`);
                }
              }
            }
          }
        });
      });
    }
  }
});

describe.skipIf(!hasAvx2)("SIMD kernels equal the reference kernels bit for bit", () => {
  for (const impl of FAST_IMPLS) {
    for (const type of [...FLOAT_TYPES, ...BLOCK_TYPES]) {
      it(`${NAMES[type]!} ${impl}`, () => {
        for (const K of shapes(type)) {
          for (const M of MS) {
            for (const N of [1, 5, 37]) {
              const w = randomWeights(type, N, K, 31 * K + N);
              const x = randomF32(M * K, 77 * M + K);
              const a = withConfig(impl, 2, () => matmul(type, w, x, M, N, K));
              const r = withConfig("reference", 1, () => matmul(type, w, x, M, N, K));
              const d = firstBitDiff(a, r);
              expect(d, `${NAMES[type]} M=${M} N=${N} K=${K} at ${d}: ${a[d]} vs ${r[d]}`).toBe(-1);
            }
          }
        }
      });
    }
  }
});

describe.skipIf(!hasAvx512)("avx512 batched block products: every tile remainder equals the reference", () => {
  // Row pairs are tiled 4 at a time and weight rows 3 at a time: M from 2 to 9 and 64..66 (the
  // 64-row task split), N from 1 to 7, extreme weights (−128 is legal in a hostile Q8_0 file).
  for (const type of BLOCK_TYPES) {
    it(NAMES[type]!, () => {
      const K = 96;
      for (const M of [2, 3, 4, 5, 6, 7, 8, 9, 64, 65, 66]) {
        for (const N of [1, 2, 3, 4, 7]) {
          const w = randomWeights(type, N, K, 13 * M + N);
          if (type === GGML_TYPE.Q8_0) for (let i = 2; i < w.length; i += 34) w.fill(0x80, i, i + 3);
          const x = randomF32(M * K, 5 * M + N);
          const a = withConfig("avx512", 2, () => matmul(type, w, x, M, N, K));
          const r = withConfig("reference", 1, () => matmul(type, w, x, M, N, K));
          expect(firstBitDiff(a, r), `${NAMES[type]} M=${M} N=${N}`).toBe(-1);
        }
      }
    });
  }

  it("rows too long for the precomputed weight scales fall back to the avx2 path, same bits", () => {
    const K = 88_000, N = 4, M = 3;
    for (const type of BLOCK_TYPES) {
      const w = randomWeights(type, N, K, 41);
      const x = randomF32(M * K, 42);
      const a = withConfig("avx512", 2, () => matmul(type, w, x, M, N, K));
      const r = withConfig("reference", 1, () => matmul(type, w, x, M, N, K));
      expect(firstBitDiff(a, r), NAMES[type]).toBe(-1);
    }
  });
});

describe.skipIf(!hasAmx)("amx batched Q8_0 products: every tile remainder equals the reference", () => {
  // Tiles are 16 weight rows × 16 activation rows, blocks taken two at a time: M from 3 (the
  // smallest the AMX table sends to the tiles) through two tiles and the 64-row task split, N
  // around 16 and 32 (a short last group is zero-padded), odd and even block counts, extreme
  // weights (−128 is legal in a hostile Q8_0 file).
  const type = GGML_TYPE.Q8_0;
  for (const K of [32, 96, 128]) {
    it(`K=${K}`, () => {
      for (const M of [3, 4, 15, 16, 17, 31, 33, 64, 65, 66]) {
        for (const N of [1, 3, 15, 16, 17, 33]) {
          const w = randomWeights(type, N, K, 17 * M + N + K);
          for (let i = 2; i < w.length; i += 34 * 3) w.fill(0x80, i, i + 5);
          const x = randomF32(M * K, 7 * M + N + K);
          const r = withConfig("reference", 1, () => matmul(type, w, x, M, N, K));
          for (const threads of [1, 2]) {
            const a = withConfig("amx", threads, () => matmul(type, w, x, M, N, K));
            expect(firstBitDiff(a, r), `M=${M} N=${N} K=${K} threads ${threads}`).toBe(-1);
          }
        }
      }
    });
  }

  it("successive products with new activations of the same shape never reuse a stale repacked x", () => {
    const M = 20, N = 48, K = 64;
    const w = randomWeights(type, N, K, 3);
    for (let round = 0; round < 4; round++) {
      const x = randomF32(M * K, 100 + round);
      const r = withConfig("reference", 1, () => matmul(type, w, x, M, N, K));
      const a = withConfig("amx", 2, () => matmul(type, w, x, M, N, K));
      expect(firstBitDiff(a, r), `round ${round}`).toBe(-1);
    }
  });
});

describe("batch and thread invariance (bit-exact)", () => {
  for (const type of [...FLOAT_TYPES, ...BLOCK_TYPES]) {
    for (const impl of IMPLS) {
      it(`${NAMES[type]} ${impl}`, () => {
        const K = type === GGML_TYPE.F32 || type === GGML_TYPE.F16 || type === GGML_TYPE.BF16 ? 200 : 192;
        const N = 67;
        const w = randomWeights(type, N, K, 5);
        const Mmax = 33;
        const x = randomF32(Mmax * K, 6);
        // Each row alone, one thread: the baseline.
        const alone = withConfig(impl, 1, () => {
          const rows: Float32Array[] = [];
          for (let m = 0; m < Mmax; m++) rows.push(matmul(type, w, x.subarray(m * K, (m + 1) * K), 1, N, K));
          return rows;
        });
        for (const threads of [1, 2, 3]) {
          for (const M of MS) {
            // Rows 0..M-1, and also a batch starting at an offset so rows land in different tiles.
            for (const start of [0, Mmax - M]) {
              const out = withConfig(impl, threads, () => matmul(type, w, x.subarray(start * K, (start + M) * K), M, N, K));
              for (let m = 0; m < M; m++) {
                const d = firstBitDiff(out.subarray(m * N, (m + 1) * N), alone[start + m]!);
                expect(d, `${NAMES[type]} threads=${threads} M=${M} start=${start} row ${m} col ${d}`).toBe(-1);
              }
            }
          }
        }
      });
    }
  }
});

describe("matmul edge cases", () => {
  it("large N and M with many tasks matches the single-thread result", () => {
    const type = GGML_TYPE.Q4_0;
    const K = 256, N = 1001, M = 70;
    const w = randomWeights(type, N, K, 9);
    const x = randomF32(M * K, 10);
    const one = withConfig(IMPLS[0]!, 1, () => matmul(type, w, x, M, N, K));
    const two = withConfig(IMPLS[0]!, 2, () => matmul(type, w, x, M, N, K));
    expect(firstBitDiff(one, two)).toBe(-1);
  });

  it.skipIf(!hasAvx2)("very long rows (K > 32768, the Q4_0 decode fallback path) equal the reference", () => {
    const K = 33024, N = 9;
    for (const type of [GGML_TYPE.Q4_0, GGML_TYPE.Q8_0]) {
      const w = randomWeights(type, N, K, 21);
      const x = randomF32(K, 22);
      const a = withConfig("avx2", 2, () => matmul(type, w, x, 1, N, K));
      const r = withConfig("reference", 1, () => matmul(type, w, x, 1, N, K));
      expect(firstBitDiff(a, r)).toBe(-1);
    }
  });

  it.skipIf(!hasAvx2)("batched block products across row groups, and past the precomputed-scale limit (K > 8192), equal the reference", () => {
    for (const K of [8192, 8224]) {
      for (const type of [GGML_TYPE.Q4_0, GGML_TYPE.Q8_0]) {
        const N = 70, M = 9;
        const w = randomWeights(type, N, K, 23);
        const x = randomF32(M * K, 24);
        const r = withConfig("reference", 1, () => matmul(type, w, x, M, N, K));
        for (const impl of FAST_IMPLS) {
          const a = withConfig(impl, 2, () => matmul(type, w, x, M, N, K));
          expect(firstBitDiff(a, r), `${NAMES[type]} K=${K} ${impl}`).toBe(-1);
        }
      }
    }
  });

  it("zero rows of activations and all-zero blocks", () => {
    const K = 64, N = 3;
    const w = randomWeights(GGML_TYPE.Q8_0, N, K, 1);
    native.matmul(new Float32Array(0), new Float32Array(0), w, GGML_TYPE.Q8_0, 0, N, K);
    const out = matmul(GGML_TYPE.Q8_0, w, new Float32Array(K), 1, N, K);
    expect(Array.from(out)).toEqual([0, 0, 0]);
  });
});

describe("matmulMulti", () => {
  for (const type of [GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.Q8_0, GGML_TYPE.Q4_0]) {
    it(`equals separate matmul calls bit for bit (type ${type}, M 1 and 7, threads 1 and 2)`, () => {
      const K = 96;
      const Ns = [40, 8, 8];
      const ws = Ns.map((N, i) => randomWeights(type, N, K, 70 + i));
      for (const M of [1, 7]) {
        const x = randomF32(M * K, 90 + M);
        for (const threads of [1, 2]) {
          withConfig(native.getKernelImpl(), threads, () => {
            const fused = Ns.map((N) => new Float32Array(M * N));
            native.matmulMulti(fused, x, ws, type, M, K);
            Ns.forEach((N, i) => {
              const single = new Float32Array(M * N);
              native.matmul(single, x, ws[i]!, type, M, N, K);
              expect(firstBitDiff(fused[i]!, single)).toBe(-1);
            });
          });
        }
      }
    });
  }

  it("rejects mismatched lists, wrong output sizes and aliasing", () => {
    const K = 32;
    const w = randomWeights(GGML_TYPE.F32, 4, K, 1);
    const x = randomF32(K, 2);
    expect(() => native.matmulMulti([new Float32Array(4)], x, [w, w], GGML_TYPE.F32, 1, K)).toThrow(RangeError);
    expect(() => native.matmulMulti([new Float32Array(5)], x, [w], GGML_TYPE.F32, 1, K)).toThrow(RangeError);
    const shared = new Float32Array(8);
    expect(() => native.matmulMulti([shared.subarray(0, 4), shared.subarray(2, 6)], x, [w, w], GGML_TYPE.F32, 1, K)).toThrow(RangeError);
    expect(() => native.matmulMulti([], x, [], GGML_TYPE.F32, 1, K)).toThrow(RangeError);
  });
});
