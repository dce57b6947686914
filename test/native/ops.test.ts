/** rmsNorm, rope, kvStore, siluMul, argmax, add, addBias against plain f64 / JS references. */
import { describe, expect, it } from "vitest";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/native/index.js";
import { FAST_IMPLS, firstBitDiff, hasAvx2, IMPLS, native, randomF32, rng, withConfig } from "./helpers.js";

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

describe("rmsNorm rows: the SIMD tables sum four rows at once, the same bits as the reference", () => {
  it("every row count and dimension (tails of the 4-row groups and of the 4-element steps)", () => {
    for (const dim of [1, 5, 8, 63, 576]) {
      for (const rows of [1, 3, 4, 5, 9, 40]) {
        const x = randomF32(rows * dim, rows * 100 + dim, 3), w = randomF32(dim, dim, 1);
        const run = () => { const o = new Float32Array(rows * dim); native.rmsNorm(o, x, w, rows, dim, 1e-6); return o; };
        const r = withConfig("reference", 1, run);
        for (const impl of FAST_IMPLS) expect(firstBitDiff(withConfig(impl, 2, run), r), `${impl} rows=${rows} dim=${dim}`).toBe(-1);
      }
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

describe("rope angle table", () => {
  it("angles from the table equal angles computed directly (a position past the cap), bit for bit; a new invFreq rebuilds it", () => {
    const nHeads = 2, headDim = 8, ropeDim = 8;
    const invFreq = Float32Array.from({ length: ropeDim / 2 }, (_, i) => Math.pow(10000, (-2 * i) / ropeDim));
    const other = invFreq.map((v) => v * 0.5);
    const x = randomF32(nHeads * headDim, 9);
    // A call with a position past the table's cap computes every row's angles directly; the same
    // position alone comes from the table. Both must give the same bits.
    const single = (pos: number, inv: Float32Array): Float32Array => {
      const y = x.slice();
      native.rope(y, new Int32Array([pos]), nHeads, headDim, ropeDim, false, inv);
      return y;
    };
    for (const inv of [invFreq, other, invFreq]) {
      for (const pos of [0, 5, 3000, 65535]) {
        const batch = new Float32Array(3 * nHeads * headDim);
        for (let r = 0; r < 3; r++) batch.set(x, r * nHeads * headDim);
        native.rope(batch, new Int32Array([70_000, pos, 2]), nHeads, headDim, ropeDim, false, inv);
        expect(firstBitDiff(batch.subarray(nHeads * headDim, 2 * nHeads * headDim), single(pos, inv)), `pos ${pos}`).toBe(-1);
      }
      // Past the cap: direct angles, still equal to the f32 formula within rounding.
      const far = single(70_000, inv);
      for (let i = 0; i < ropeDim / 2; i++) {
        const ang = Math.fround(70_000 * inv[i]!);
        const want = x[2 * i]! * Math.cos(ang) - x[2 * i + 1]! * Math.sin(ang);
        expect(Math.abs(far[2 * i]! - want)).toBeLessThanOrEqual(2e-5);
      }
    }
    // A changed invFreq rebuilds the table: the same position under `other` differs from `invFreq`.
    expect(firstBitDiff(single(3000, invFreq), single(3000, other))).not.toBe(-1);
  });
});

describe("siluMul: one exp polynomial, the same bits in every table", () => {
  it("every SIMD table equals the reference bit for bit, incl. tails, ±inf and the clamp range", () => {
    const special = [0, -0, 1e-30, -1e-30, 87, 88, 89, -87, -88, -89, -200, 200, Infinity, -Infinity, 20, -20];
    for (const n of [1, 7, 8, 9, 31, 4097]) {
      const g = randomF32(n, 10 + n, 30), u = randomF32(n, 20 + n, 2);
      special.forEach((v, i) => { if (i < n) g[i] = v; });
      const r = withConfig("reference", 1, () => { const o = new Float32Array(n); native.siluMul(o, g, u); return o; });
      for (const impl of FAST_IMPLS) {
        const a = withConfig(impl, 2, () => { const o = new Float32Array(n); native.siluMul(o, g, u); return o; });
        expect(firstBitDiff(a, r), `${impl} n=${n}`).toBe(-1);
      }
    }
  });

  it("is within 2 ulp-ish (4e-7 relative) of silu in f64 over [-80, 80]", () => {
    const n = 20_001;
    const g = Float32Array.from({ length: n }, (_, i) => -80 + (160 * i) / (n - 1));
    const u = new Float32Array(n).fill(1);
    const out = new Float32Array(n);
    native.siluMul(out, g, u);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const ref = g[i]! / (1 + Math.exp(-g[i]!));
      worst = Math.max(worst, Math.abs(out[i]! - ref) / Math.max(Math.abs(ref), 1e-30));
    }
    expect(worst).toBeLessThan(4e-7);
  });

  it("NaN stays NaN", () => {
    const out = new Float32Array(9);
    const g = new Float32Array(9).fill(NaN);
    for (const impl of IMPLS) {
      withConfig(impl, 1, () => native.siluMul(out, g, new Float32Array(9).fill(1)));
      expect(Array.from(out).every(Number.isNaN), impl).toBe(true);
    }
  });
});

describe("argmax", () => {
  const jsArgmax = (x: Float32Array): number => {
    let best = 0, bestV = -Infinity;
    for (let i = 0; i < x.length; i++) if (x[i]! > bestV) { bestV = x[i]!; best = i; }
    return best;
  };
  it("the first index of the maximum in every table: ties, NaN, ±inf, all −inf, short and long rows", () => {
    for (const n of [0, 1, 5, 8, 9, 17, 64, 1000, 49_152]) {
      for (let trial = 0; trial < 6; trial++) {
        const x = randomF32(n, 31 * n + trial, 5);
        if (trial === 1 && n > 3) { x[n - 1] = 99; x[2] = 99; x[n >> 1] = 99; }  // ties: the first wins
        if (trial === 2) x.fill(NaN, 0, Math.min(n, 3));
        if (trial === 3) x.fill(-Infinity);
        if (trial === 4) x.fill(NaN);
        if (trial === 5 && n > 0) { x.fill(7); x[n - 1] = Infinity; }
        const want = jsArgmax(x);
        for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.argmax(x)), `${impl} n=${n} trial ${trial}`).toBe(want);
      }
    }
  });
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

describe("firstOutOfRange", () => {
  const F32 = 0, F16 = 1, BF16 = 30;
  const nonFinite = { [F32]: [0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001], [F16]: [0x7c00, 0xfc00, 0x7e00, 0x7c01], [BF16]: [0x7f80, 0xff80, 0x7fc0, 0x7f81] } as const;
  // Largest finite values, subnormals, zeros: exponent bits not all set.
  const finite = { [F32]: [0x7f7fffff, 0x00000001, 0x80000000], [F16]: [0x7bff, 0x0001, 0x8000], [BF16]: [0x7f7f, 0x0001, 0x8000] } as const;
  const widen = (type: number, bits: number): number => (type === F32 ? new Float32Array(new Uint32Array([bits]).buffer)[0]! : type === F16 ? f16ToF32(bits) : bf16ToF32(bits));
  /** The definition, on values: the first element for which |v| <= maxAbs does not hold (NaN never holds). */
  const reference = (type: number, bits: Uint32Array | Uint16Array, maxAbs: number): number => {
    for (let i = 0; i < bits.length; i++) if (!(Math.abs(widen(type, bits[i]!)) <= maxAbs)) return i;
    return -1;
  };
  const view = (type: number, bits: Uint32Array | Uint16Array): Float32Array | Uint16Array => (type === F32 ? new Float32Array(bits.buffer) : (bits as Uint16Array));

  it("with maxAbs = Infinity finds the first NaN or infinity at every position of short and long arrays, in every table", () => {
    for (const type of [F32, F16, BF16] as const) {
      for (const n of [0, 1, 7, 16, 31, 32, 33, 64, 65, 1000]) {
        const make = (): Uint32Array | Uint16Array => {
          const bits = type === F32 ? new Uint32Array(n) : new Uint16Array(n);
          for (let i = 0; i < n; i++) bits[i] = finite[type][i % 3]!;
          return bits;
        };
        for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.firstOutOfRange(view(type, make()), type, Infinity)), `${impl} type ${type} n=${n}`).toBe(-1);
        for (const at of n === 0 ? [] : [0, n >> 1, n - 1]) {
          for (const bad of nonFinite[type]) {
            const bits = make();
            bits[at] = bad;
            if (at + 1 < n) bits[n - 1] = bad;  // a later one too: the first wins
            for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.firstOutOfRange(view(type, bits), type, Infinity)), `${impl} type ${type} n=${n} at ${at}`).toBe(at);
          }
        }
      }
    }
  });

  it("equals the definition on values (|v| <= maxAbs, NaN never) for random bits and bounds, in every table", () => {
    const r = rng(5);
    const bounds = [0, 1, 0.1, 1024, 1023.9, 65504, 65505, 3.4028234663852886e38, 1e300, 2 ** -140];
    for (const type of [F32, F16, BF16] as const) {
      for (const maxAbs of bounds) {
        for (let trial = 0; trial < 40; trial++) {
          const n = Math.floor(r() * 300);
          const bits = type === F32 ? new Uint32Array(n) : new Uint16Array(n);
          // Mostly values at or below the bound (as a real adapter), then one random pattern anywhere.
          for (let i = 0; i < n; i++) {
            const v = (r() * 2 - 1) * Math.min(maxAbs, 1e30);
            bits[i] = type === F32 ? new Uint32Array(new Float32Array([v]).buffer)[0]! : type === F16 ? f32ToF16(v) : f32ToBf16(v);
            if (!(Math.abs(widen(type, bits[i]!)) <= maxAbs)) bits[i] = 0;
          }
          if (n > 0 && trial % 4 !== 0) bits[Math.floor(r() * n)] = Math.floor(r() * (type === F32 ? 2 ** 32 : 2 ** 16));
          const want = reference(type, bits, maxAbs);
          for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.firstOutOfRange(view(type, bits), type, maxAbs)), `${impl} type ${type} max ${maxAbs}`).toBe(want);
        }
      }
    }
  });

  it("accepts ±maxAbs itself and finds the next value up at any position, in every table", () => {
    for (const type of [F32, F16, BF16] as const) {
      const bound = type === F32 ? 0x44800000 : type === F16 ? 0x6400 : 0x4480; // 1024 in each type
      const sign = type === F32 ? 0x80000000 : 0x8000;
      for (const n of [1, 31, 32, 33, 64, 100]) {
        for (const at of [0, n >> 1, n - 1]) {
          const bits = type === F32 ? new Uint32Array(n) : new Uint16Array(n);
          bits.fill(bound);
          bits[n >> 1] = (bound | sign) >>> 0;
          for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.firstOutOfRange(view(type, bits), type, 1024)), `${impl} ${type} n=${n}`).toBe(-1);
          bits[at] = bound + 1;
          for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.firstOutOfRange(view(type, bits), type, 1024)), `${impl} ${type} n=${n} at ${at}`).toBe(at);
          bits[at] = ((bound + 1) | sign) >>> 0;
          for (const impl of IMPLS) expect(withConfig(impl, 1, () => native.firstOutOfRange(view(type, bits), type, 1024)), `${impl} ${type} n=${n} at ${at} negative`).toBe(at);
        }
      }
    }
  });

  it("long arrays (scanned in chunks across the pool) give the first hit for any thread count, in every table", () => {
    const n = 5 * 65536 + 123;
    for (const type of [F32, F16] as const) {
      const bits = type === F32 ? new Uint32Array(n) : new Uint16Array(n);
      const clean = (): void => { bits.fill(type === F32 ? 0x3f800000 : 0x3c00); };
      for (const at of [[], [0], [65535], [65536, 65536 * 3], [65536 * 4 + 7, 65536 * 2 - 1], [n - 1]]) {
        clean();
        for (const i of at) bits[i] = type === F32 ? 0x7fc00000 : 0x7e00;
        const want = at.length ? Math.min(...at) : -1;
        for (const impl of IMPLS) for (const threads of [1, 2, 3]) {
          expect(withConfig(impl, threads, () => native.firstOutOfRange(view(type, bits), type, Infinity)), `${impl} ${threads}t at ${at}`).toBe(want);
        }
      }
    }
  });

  it("rejects a mismatched array, type or bound", () => {
    expect(() => native.firstOutOfRange(new Float32Array(4), F16, 1)).toThrow(TypeError);
    expect(() => native.firstOutOfRange(new Uint16Array(4), F32, 1)).toThrow(TypeError);
    expect(() => native.firstOutOfRange(new Float32Array(4), 8, 1)).toThrow(RangeError);
    expect(() => native.firstOutOfRange(new Float32Array(4), F32, -1)).toThrow(RangeError);
    expect(() => native.firstOutOfRange(new Float32Array(4), F32, Number.NaN)).toThrow(RangeError);
    expect(() => (native.firstOutOfRange as (x: Float32Array, t: number) => number)(new Float32Array(4), F32)).toThrow(TypeError);
  });
});
