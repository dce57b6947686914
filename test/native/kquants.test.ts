/**
 * K-quant weights (Q4_K, Q6_K): ggml block layout (hand-built blocks, a TS encoder/decoder written
 * from the layout definition), dequantize / getRows, and matmul with Q8_K activations (vs an f64
 * dot, AVX2 vs reference bit for bit, batch and thread invariance bit for bit).
 */
import { describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16 } from "../../src/native/index.js";
import { type Block, encodeRows, packQ4K, packQ6K, type Q4KBlock, type Q6KBlock } from "../../src/formats/kquant-encode.js";
import { firstBitDiff, GGML_TYPE, hasAvx2, IMPLS, matmul, native, randomF32, rng, rowBytes, withConfig } from "./helpers.js";

const f = Math.fround;
const Q4_K = GGML_TYPE.Q4_K;
const Q6_K = GGML_TYPE.Q6_K;
const NAMES: Record<number, string> = { 12: "Q4_K", 14: "Q6_K" };

// ------------------------------------------------------------------ layout (written from ggml's definition)



/** ggml's f32 dequantization of one element. */
function q4kValue(b: Q4KBlock, e: number): number {
  const s = e >> 5;
  return f(f(f16ToF32(b.d) * b.sc[s]!) * b.q[e]! - f(f16ToF32(b.dmin) * b.mn[s]!));
}
function q6kValue(b: Q6KBlock, e: number): number {
  return f(f(f16ToF32(b.d) * b.sc[e >> 4]!) * (b.q[e]! - 32));
}
/** Exact (f64) value of one element. */
function q4kExact(b: Q4KBlock, e: number): number {
  const s = e >> 5;
  return f16ToF32(b.d) * b.sc[s]! * b.q[e]! - f16ToF32(b.dmin) * b.mn[s]!;
}
function q6kExact(b: Q6KBlock, e: number): number {
  return f16ToF32(b.d) * b.sc[e >> 4]! * (b.q[e]! - 32);
}

// ------------------------------------------------------------------ simple encoders for random data



function decodeRows(type: number, blocks: Block[], exact: boolean): Float64Array {
  const out = new Float64Array(blocks.length * 256);
  blocks.forEach((b, i) => {
    for (let e = 0; e < 256; e++) {
      out[256 * i + e] = type === Q4_K
        ? (exact ? q4kExact : q4kValue)(b as Q4KBlock, e)
        : (exact ? q6kExact : q6kValue)(b as Q6KBlock, e);
    }
  });
  return out;
}

/** Random K-quant weights [N, K] (random blocks of the layout, realistic value ranges). */
function randomKWeights(type: number, N: number, K: number, seed: number) {
  return encodeRows(type, randomF32(N * K, seed, 0.5), N, K);
}

// ------------------------------------------------------------------ dequantize / getRows

describe("K-quant layout on hand-built blocks", () => {
  it("Q4_K: literal bytes decode to d·sc·q − dmin·m per element", () => {
    const blk = new Uint8Array(144);
    blk[0] = 0x00; blk[1] = 0x3c; // d = 1.0
    blk[2] = 0x00; blk[3] = 0x38; // dmin = 0.5
    // sub-blocks 0..3: scale in bits 0..5 of bytes 0..3, min in bits 0..5 of bytes 4..7;
    // sub-blocks 4..7: low 4 bits in bytes 8..11 (scale low nibble, min high nibble), top 2 bits
    // in bits 6..7 of bytes 0..3 (scale) and 4..7 (min).
    blk[4] = 2 | (3 << 6);  // sc0 = 2, sc4 high bits = 3
    blk[5] = 5;             // sc1 = 5, sc5 high bits = 0
    blk[8] = 1 | (1 << 6);  // m0 = 1, m4 high bits = 1
    blk[9] = 63;            // m1 = 63
    blk[12] = 0x2a;         // sc4 = 0xa | 3 << 4 = 58, m4 = 2 | 1 << 4 = 18
    blk[16] = 0x73;         // element 0: q = 3, element 32: q = 7
    blk[16 + 31] = 0xf0;    // element 31: q = 0, element 63: q = 15
    blk[16 + 64] = 0x09;    // element 128 (sub-block 4): q = 9, element 160 (sub-block 5): q = 0
    const out = new Float32Array(256);
    native.dequantize(out, blk, Q4_K);
    expect(out[0]).toBe(1 * 2 * 3 - 0.5 * 1);
    expect(out[1]).toBe(-0.5);
    expect(out[31]).toBe(-0.5);
    expect(out[32]).toBe(5 * 7 - 0.5 * 63);
    expect(out[63]).toBe(5 * 15 - 0.5 * 63);
    expect(out[128]).toBe(58 * 9 - 0.5 * 18);
    expect(out[129]).toBe(-0.5 * 18);
    expect(out[160]).toBe(0);
    expect(out[255]).toBe(0);
  });

  it("Q6_K: literal bytes decode to d·scale·(q − 32) per element", () => {
    const blk = new Uint8Array(210);
    blk[208] = 0x00; blk[209] = 0x38; // d = 0.5
    for (let i = 0; i < 16; i++) blk[192 + i] = i + 1; // scales 1..16
    blk[192 + 15] = 0xfe; // scale 15 = −2
    // element 0: low 4 bits in ql[0] low nibble, high 2 bits in qh[0] bits 0..1
    blk[0] = 0x5 | (0xa << 4); // element 0 low = 5, element 64 low = 10
    blk[128] = 0b11_10_01_10;  // element 0 high = 2, element 32 high = 1, element 64 high = 2, element 96 high = 3
    blk[32] = 0x0f;            // element 32 low = 15, element 96 low = 0
    blk[64 + 63] = 0xff;       // ql of half 1, l = 31 + 32: elements 128 + 63 and 128 + 127 low = 15
    blk[128 + 32 + 31] = 0xff; // qh of half 1, l = 31: elements 128+31, +63, +95, +127 high = 3
    const out = new Float32Array(256);
    native.dequantize(out, blk, Q6_K);
    expect(out[0]).toBe(0.5 * 1 * ((5 | (2 << 4)) - 32));
    expect(out[32]).toBe(0.5 * 3 * ((15 | (1 << 4)) - 32));
    expect(out[64]).toBe(0.5 * 5 * ((10 | (2 << 4)) - 32));
    expect(out[96]).toBe(0.5 * 7 * ((0 | (3 << 4)) - 32));
    expect(out[1]).toBe(0.5 * 1 * -32);
    expect(out[16]).toBe(0.5 * 2 * -32);
    expect(out[128 + 31]).toBe(0.5 * 10 * (48 - 32));
    expect(out[128 + 63]).toBe(0.5 * 12 * (63 - 32));
    expect(out[128 + 95]).toBe(0.5 * 14 * (48 - 32));
    expect(out[128 + 127]).toBe(0.5 * -2 * (63 - 32));
  });

  it("quantize rejects K-quant types", () => {
    for (const t of [Q4_K, Q6_K]) expect(() => native.quantize(new Uint8Array(rowBytes(t, 256)), new Float32Array(256), t)).toThrow(RangeError);
  });
});

describe("K-quant round trips through a TS encoder", () => {
  for (const type of [Q4_K, Q6_K]) {
    it(`${NAMES[type]}: native dequantize equals the TS decoder bit for bit; error small`, () => {
      const n = 256 * 67;
      const x = randomF32(n, 42 + type, 3);
      const { bytes, blocks } = encodeRows(type, x, 1, n);
      const y = new Float32Array(n);
      native.dequantize(y, bytes, type);
      const want = decodeRows(type, blocks, false);
      for (let i = 0; i < n; i++) if (y[i] !== want[i]) throw new Error(`${NAMES[type]} element ${i}: ${y[i]} vs ${want[i]}`);
      let se = 0, sx = 0;
      for (let i = 0; i < n; i++) { se += (x[i]! - y[i]!) ** 2; sx += x[i]! ** 2; }
      expect(Math.sqrt(se / sx)).toBeLessThan(type === Q4_K ? 0.12 : 0.03);
    });

    it(`${NAMES[type]}: getRows equals dequantize of the selected rows`, () => {
      const K = 512, N = 9;
      const { bytes } = randomKWeights(type, N, K, 7 + type);
      const all = new Float32Array(N * K);
      native.dequantize(all, bytes, type);
      const ids = Int32Array.from([8, 0, 3, 3]);
      const out = new Float32Array(ids.length * K);
      native.getRows(out, bytes, type, K, ids);
      for (let i = 0; i < ids.length; i++) {
        expect(firstBitDiff(out.subarray(i * K, (i + 1) * K), all.subarray(ids[i]! * K, (ids[i]! + 1) * K))).toBe(-1);
      }
      expect(() => native.getRows(new Float32Array(100), bytes, type, 100, Int32Array.from([0]))).toThrow(RangeError);
    });
  }
});

// ------------------------------------------------------------------ matmul

/** x quantized to Q8_K as ggml's quantize_row_q8_K_ref: per 256, returns d and q. */
function q8k(x: Float32Array): { d: Float32Array; q: Int8Array } {
  const nb = x.length / 256;
  const d = new Float32Array(nb), q = new Int8Array(x.length);
  for (let b = 0; b < nb; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 256; j++) {
      const ax = Math.abs(x[256 * b + j]!);
      if (ax > amax) { amax = ax; max = x[256 * b + j]!; }
    }
    if (amax === 0) continue;
    const iscale = f(-127 / max);
    for (let j = 0; j < 256; j++) {
      const v = f(iscale * x[256 * b + j]!);
      let r = Math.round(v);
      if (r - v === 0.5 && r % 2 !== 0) r -= 1; // ties to even
      q[256 * b + j] = Math.min(127, r);
    }
    d[b] = f(1 / iscale);
  }
  return { d, q };
}

describe("K-quant matmul vs f64 on the exact operands", () => {
  for (const type of [Q4_K, Q6_K]) {
    for (const impl of IMPLS) {
      it(`${NAMES[type]} ${impl}`, () => {
        withConfig(impl, 2, () => {
          for (const K of [256, 768, 2048]) {
            const N = 13;
            const { bytes, blocks } = randomKWeights(type, N, K, 1000 + K);
            const wExact = decodeRows(type, blocks, true);
            for (const M of [1, 3, 33]) {
              const x = randomF32(M * K, 2000 + K + M);
              const out = matmul(type, bytes, x, M, N, K);
              for (let m = 0; m < M; m++) {
                const { d, q } = q8k(x.subarray(m * K, (m + 1) * K));
                for (let n = 0; n < N; n++) {
                  // Σ dx·q·w in f64; the bound's magnitude counts the scale and min terms of Q4_K separately.
                  let s = 0, mag = 0;
                  for (let k = 0; k < K; k++) {
                    const xv = d[k >> 8]! * q[k]!;
                    s += xv * wExact[n * K + k]!;
                    const blk = blocks[(n * K + k) >> 8]!;
                    const e = k & 255;
                    if (type === Q4_K) {
                      const b = blk as Q4KBlock;
                      mag += Math.abs(xv * f16ToF32(b.d) * b.sc[e >> 5]! * b.q[e]!) + Math.abs(xv * f16ToF32(b.dmin) * b.mn[e >> 5]!);
                    } else {
                      mag += Math.abs(xv * wExact[n * K + k]!);
                    }
                  }
                  // Per lane: the f32 product dx·d (1 rounding) and one or two FMAs per block; 3 adds at the end.
                  const tol = (2 * (K / 256) + 8) * 2 ** -23 * mag + 1e-30;
                  const got = out[m * N + n]!;
                  if (Math.abs(got - s) > tol) throw new Error(`${NAMES[type]} K=${K} M=${M} m=${m} n=${n}: ${got} vs ${s} (tol ${tol})`);
                }
              }
            }
          }
        });
      });
    }
  }

  it("all-zero activation blocks give zero", () => {
    for (const type of [Q4_K, Q6_K]) {
      const { bytes } = randomKWeights(type, 3, 512, 1);
      for (const impl of IMPLS) {
        const out = withConfig(impl, 1, () => matmul(type, bytes, new Float32Array(512), 1, 3, 512));
        expect(Array.from(out)).toEqual([0, 0, 0]);
      }
    }
  });

  it("rejects K not a multiple of 256", () => {
    const { bytes } = randomKWeights(Q4_K, 1, 256, 1);
    expect(() => native.matmul(new Float32Array(1), new Float32Array(128), bytes.subarray(0, 72), Q4_K, 1, 1, 128)).toThrow(RangeError);
  });
});

describe.skipIf(!hasAvx2)("K-quant avx2 kernels equal the reference kernels bit for bit", () => {
  for (const type of [Q4_K, Q6_K]) {
    it(NAMES[type]!, () => {
      for (const K of [256, 1280]) {
        for (const M of [1, 2, 3, 4, 5, 7, 32, 33]) {
          for (const N of [1, 5, 37]) {
            const { bytes } = randomKWeights(type, N, K, 31 * K + N);
            const x = randomF32(M * K, 77 * M + K);
            const a = withConfig("avx2", 2, () => matmul(type, bytes, x, M, N, K));
            const r = withConfig("reference", 1, () => matmul(type, bytes, x, M, N, K));
            const d = firstBitDiff(a, r);
            expect(d, `${NAMES[type]} M=${M} N=${N} K=${K} at ${d}: ${a[d]} vs ${r[d]}`).toBe(-1);
          }
        }
      }
    });
  }

  it("extreme blocks (all scales and quants at their limits) equal the reference", () => {
    const r = rng(5);
    for (const type of [Q4_K, Q6_K]) {
      const K = 512, N = 6;
      const bytes = new Uint8Array(N * rowBytes(type, K));
      for (let i = 0; i < bytes.length; i++) bytes[i] = r() < 0.5 ? 0xff : Math.floor(r() * 256);
      // keep the fp16 scales finite
      const bb = type === Q4_K ? 144 : 210;
      for (let o = 0; o < bytes.length; o += bb) {
        if (type === Q4_K) { bytes[o + 1] = 0x3c; bytes[o + 3] = 0x38; } else { bytes[o + 209] = 0x3c; }
      }
      const x = new Float32Array(4 * K);
      for (let i = 0; i < x.length; i++) x[i] = r() < 0.5 ? -1 : 1;
      const a = withConfig("avx2", 2, () => matmul(type, bytes, x, 4, N, K));
      const b = withConfig("reference", 1, () => matmul(type, bytes, x, 4, N, K));
      expect(firstBitDiff(a, b)).toBe(-1);
    }
  });
});

describe("K-quant batch and thread invariance (bit-exact)", () => {
  for (const type of [Q4_K, Q6_K]) {
    for (const impl of IMPLS) {
      it(`${NAMES[type]} ${impl}`, () => {
        const K = 512, N = 67, Mmax = 33;
        const { bytes } = randomKWeights(type, N, K, 5);
        const x = randomF32(Mmax * K, 6);
        const alone = withConfig(impl, 1, () => {
          const rows: Float32Array[] = [];
          for (let m = 0; m < Mmax; m++) rows.push(matmul(type, bytes, x.subarray(m * K, (m + 1) * K), 1, N, K));
          return rows;
        });
        for (const threads of [1, 2, 3]) {
          for (const M of [1, 3, 7, 32, 33]) {
            for (const start of [0, Mmax - M]) {
              const out = withConfig(impl, threads, () => matmul(type, bytes, x.subarray(start * K, (start + M) * K), M, N, K));
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
