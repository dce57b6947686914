/** quantize / dequantize / getRows: ggml block layout, reference rounding, round-trip error bounds. */
import { describe, expect, it } from "vitest";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/native/index.js";
import { GGML_TYPE, IMPLS, firstBitDiff, native, randomF32, rowBytes, withConfig } from "./helpers.js";

const ramp = Float32Array.from({ length: 32 }, (_, j) => (j - 16) * 0.25);

describe("ggml block layout on a hand-built block", () => {
  it("Q8_0: fp16 d then 32 int8, round half away from zero", () => {
    const dst = new Uint8Array(34);
    native.quantize(dst, ramp, GGML_TYPE.Q8_0);
    expect(dst[0] | (dst[1]! << 8)).toBe(0x2808); // fp16(4 / 127)
    const q = Array.from(new Int8Array(dst.buffer, 2, 32));
    expect(q).toEqual([
      -127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48, -40, -32, -24, -16, -8,
      0, 8, 16, 24, 32, 40, 48, 56, 64, 71, 79, 87, 95, 103, 111, 119,
    ]);
  });

  it("Q4_0: fp16 d = max / -8, low nibbles = elements 0..15, high = 16..31", () => {
    const dst = new Uint8Array(18);
    native.quantize(dst, ramp, GGML_TYPE.Q4_0);
    expect(dst[0] | (dst[1]! << 8)).toBe(0x3800); // d = -4 / -8 = 0.5
    expect(Array.from(dst.subarray(2))).toEqual([128, 145, 145, 162, 162, 179, 179, 196, 196, 213, 213, 230, 230, 247, 247, 248]);
    const back = new Float32Array(32);
    native.dequantize(back, dst, GGML_TYPE.Q4_0);
    expect(back[0]).toBe(-4);
    expect(back[31]).toBe(3.5); // clamped to 15 → (15 − 8) · 0.5
  });

  it("all-zero blocks quantize to zero scale and values", () => {
    for (const t of [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0]) {
      const dst = new Uint8Array(rowBytes(t, 32));
      native.quantize(dst, new Float32Array(32), t);
      const back = new Float32Array(32);
      native.dequantize(back, dst, t);
      expect(Array.from(back).every((v) => v === 0)).toBe(true);
    }
  });
});

describe("round trips", () => {
  const n = 32 * 257;
  const x = randomF32(n, 42, 3);
  it("Q8_0: |x − x̂| ≤ d/2 (d = amax/127, plus fp16 rounding of d)", () => {
    const q = new Uint8Array(rowBytes(GGML_TYPE.Q8_0, n));
    native.quantize(q, x, GGML_TYPE.Q8_0);
    const y = new Float32Array(n);
    native.dequantize(y, q, GGML_TYPE.Q8_0);
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
      const d = amax / 127;
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(d / 2 + amax * 2 ** -10);
      }
    }
  });

  it("Q4_0: |x − x̂| ≤ |d| (d = max/−8; the clamp at +8|d| costs a full step)", () => {
    const q = new Uint8Array(rowBytes(GGML_TYPE.Q4_0, n));
    native.quantize(q, x, GGML_TYPE.Q4_0);
    const y = new Float32Array(n);
    native.dequantize(y, q, GGML_TYPE.Q4_0);
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
      const d = amax / 8;
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(d * (1 + 2 ** -9));
      }
    }
  });

  it("F16 / BF16 conversions match the TS helpers (round to nearest even), F32 copies", () => {
    const special = [0, -0, 1, -1, 65504, 65519.99, 65520, 1e-8, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 6.1e-5, Infinity, -Infinity, 1 / 3, 1e30, -1e-30];
    const v = new Float32Array([...special, ...randomF32(1001, 3, 100)]);
    const h = new Uint8Array(v.length * 2);
    native.quantize(h, v, GGML_TYPE.F16);
    const hb = new Uint16Array(h.buffer);
    for (let i = 0; i < v.length; i++) expect(hb[i], `f16 of ${v[i]}`).toBe(f32ToF16(v[i]!));
    const back = new Float32Array(v.length);
    native.dequantize(back, h, GGML_TYPE.F16);
    for (let i = 0; i < v.length; i++) expect(back[i]).toBe(Math.fround(f16ToF32(hb[i]!)));
    native.quantize(h, v, GGML_TYPE.BF16);
    for (let i = 0; i < v.length; i++) expect(hb[i], `bf16 of ${v[i]}`).toBe(f32ToBf16(v[i]!));
    native.dequantize(back, h, GGML_TYPE.BF16);
    for (let i = 0; i < v.length; i++) expect(back[i]).toBe(bf16ToF32(hb[i]!));
    const raw = new Uint8Array(v.length * 4);
    native.quantize(raw, v, GGML_TYPE.F32);
    expect(firstBitDiff(new Float32Array(raw.buffer), v)).toBe(-1);
    // NaN stays NaN
    const nan = new Uint8Array(2);
    native.quantize(nan, new Float32Array([NaN]), GGML_TYPE.F16);
    expect(Number.isNaN(f16ToF32(nan[0]! | (nan[1]! << 8)))).toBe(true);
  });

  it("large tensors (multi-chunk, threaded) equal the single-threaded result", () => {
    const big = randomF32(32 * 5000, 8);
    for (const t of [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.F16]) {
      const a = new Uint8Array(rowBytes(t, big.length));
      const b = new Uint8Array(rowBytes(t, big.length));
      withConfig(IMPLS[0]!, 1, () => native.quantize(a, big, t));
      withConfig(IMPLS[0]!, 2, () => native.quantize(b, big, t));
      expect(Buffer.compare(a, b)).toBe(0);
    }
  });
});

describe("getRows", () => {
  for (const t of [GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.Q8_0, GGML_TYPE.Q4_0]) {
    it(`type ${t}: rows equal dequantize of the whole matrix`, () => {
      const K = 64, rows = 11;
      const w = new Uint8Array(rows * rowBytes(t, K));
      native.quantize(w, randomF32(rows * K, t + 1), t);
      const all = new Float32Array(rows * K);
      native.dequantize(all, w, t);
      const ids = new Int32Array([3, 0, 10, 3]);
      const out = new Float32Array(ids.length * K);
      native.getRows(out, w, t, K, ids);
      for (let i = 0; i < ids.length; i++) {
        expect(firstBitDiff(out.subarray(i * K, (i + 1) * K), all.subarray(ids[i]! * K, (ids[i]! + 1) * K))).toBe(-1);
      }
    });
  }
});

describe("activation quantization inside matmul (ties, exact multiples)", () => {
  it.skipIf(IMPLS.length < 2)("avx2 and reference round x identically", () => {
    const K = 256, N = 64;
    // Blocks whose amax is 127 so that x · id hits k + 0.5 exactly.
    const x = new Float32Array(K);
    for (let i = 0; i < K; i++) x[i] = i % 32 === 0 ? 127 : ((i * 37) % 255) / 2 - 63.5;
    const w = new Uint8Array(N * rowBytes(GGML_TYPE.Q8_0, K));
    native.quantize(w, randomF32(N * K, 5), GGML_TYPE.Q8_0);
    const a = new Float32Array(N), r = new Float32Array(N);
    withConfig("avx2", 1, () => native.matmul(a, x, w, GGML_TYPE.Q8_0, 1, N, K));
    withConfig("reference", 1, () => native.matmul(r, x, w, GGML_TYPE.Q8_0, 1, N, K));
    expect(firstBitDiff(a, r)).toBe(-1);
  });
});
