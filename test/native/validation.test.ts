/** Every kernel rejects bad arguments with a TypeError / RangeError before touching memory. */
import { describe, expect, it } from "vitest";
import { GGML_TYPE, native } from "./helpers.js";

const f = (n: number) => new Float32Array(n);
const u8 = (n: number) => new Uint8Array(n);
const i32 = (...v: number[]) => new Int32Array(v);

describe("argument validation", () => {
  it("matmul", () => {
    const w = u8(4 * 34);
    expect(() => native.matmul(f(8), f(96), w, GGML_TYPE.Q8_0, 2, 4, 32)).toThrow(/x has length 96/);
    expect(() => native.matmul(f(7), f(32), w, GGML_TYPE.Q8_0, 1, 4, 32)).toThrow(/out has length 7/);
    expect(() => native.matmul(f(4), f(32), u8(4 * 34 - 1), GGML_TYPE.Q8_0, 1, 4, 32)).toThrow(/w has length/);
    expect(() => native.matmul(f(4), f(33), u8(4 * 34), GGML_TYPE.Q8_0, 1, 4, 33)).toThrow(/multiple of 32/);
    expect(() => native.matmul(f(4), f(32), w, 3, 1, 4, 32)).toThrow(/not a supported type/);
    expect(() => native.matmul(f(4), f(32), w, GGML_TYPE.Q8_0, -1, 4, 32)).toThrow(RangeError);
    expect(() => native.matmul(f(4), f(32), w, GGML_TYPE.Q8_0, 1.5, 4, 32)).toThrow(RangeError);
    expect(() => native.matmul(f(4) as never, new Float64Array(32) as never, w, GGML_TYPE.Q8_0, 1, 4, 32)).toThrow(TypeError);
    expect(() => native.matmul(f(4), f(32), new Uint16Array(68) as never, GGML_TYPE.Q8_0, 1, 4, 32)).toThrow(TypeError);
    expect(() => (native.matmul as (...a: unknown[]) => void)(f(4), f(32))).toThrow(TypeError);
    const buf = f(40);
    expect(() => native.matmul(buf.subarray(0, 4), buf.subarray(4, 36), w, GGML_TYPE.Q8_0, 1, 4, 32)).not.toThrow();
    expect(() => native.matmul(buf.subarray(0, 4), buf.subarray(2, 34), w, GGML_TYPE.Q8_0, 1, 4, 32)).toThrow(/overlap/);
  });

  it("getRows, quantize, dequantize", () => {
    expect(() => native.getRows(f(128), u8(2 * 34 * 2), GGML_TYPE.Q8_0, 64, i32(0, 2))).toThrow(/ids\[1\] = 2/);
    expect(() => native.getRows(f(128), u8(2 * 34 * 2), GGML_TYPE.Q8_0, 64, i32(-1, 0))).toThrow(RangeError);
    expect(() => native.getRows(f(64), u8(2 * 34 * 2 + 1), GGML_TYPE.Q8_0, 64, i32(0))).toThrow(/whole number of rows/);
    expect(() => native.getRows(f(63), u8(2 * 34 * 2), GGML_TYPE.Q8_0, 64, i32(0))).toThrow(/out has length/);
    expect(() => native.quantize(u8(34), f(33), GGML_TYPE.Q8_0)).toThrow(/multiple of the block size/);
    expect(() => native.quantize(u8(33), f(32), GGML_TYPE.Q8_0)).toThrow(/dst has length/);
    expect(() => native.dequantize(f(32), u8(35), GGML_TYPE.Q8_0)).toThrow(RangeError);
    expect(() => native.dequantize(f(31), u8(18), GGML_TYPE.Q4_0)).toThrow(RangeError);
    expect(() => native.quantize(u8(34), f(32), 99)).toThrow(RangeError);
  });

  it("rmsNorm, rope, kvStore, elementwise", () => {
    expect(() => native.rmsNorm(f(8), f(8), f(3), 2, 4, 1e-6)).toThrow(/weight has length/);
    expect(() => native.rmsNorm(f(8), f(9), f(4), 2, 4, 1e-6)).toThrow(RangeError);
    expect(() => native.rmsNorm(f(8), f(8), f(4), 2, 4, "x" as never)).toThrow(TypeError);
    expect(() => native.rope(f(16), i32(0, 1), 2, 4, 4, true, f(1))).toThrow(/invFreq/);
    expect(() => native.rope(f(16), i32(0, 1), 2, 4, 3, true, f(1))).toThrow(/even/);
    expect(() => native.rope(f(16), i32(0, 1), 2, 4, 6, true, f(3))).toThrow(RangeError);
    expect(() => native.rope(f(16), i32(0, 1), 2, 4, 4, 1 as never, f(2))).toThrow(TypeError);
    expect(() => native.kvStore(new Uint16Array(40), new Uint16Array(40), f(8), f(8), i32(0, 10), 4)).toThrow(/slots\[1\] = 10/);
    expect(() => native.kvStore(new Uint16Array(40), new Uint16Array(36), f(8), f(8), i32(0, 1), 4)).toThrow(/vPool/);
    expect(() => native.kvStore(new Uint16Array(40), new Uint16Array(40), f(8), f(4), i32(0, 1), 4)).toThrow(/v has length/);
    expect(() => native.siluMul(f(4), f(4), f(5))).toThrow(RangeError);
    expect(() => native.add(f(4), f(3), f(4))).toThrow(RangeError);
    expect(() => native.addBias(f(10), f(4), 2, 5)).toThrow(/bias/);
    const buf = f(8);
    expect(() => native.add(buf.subarray(0, 4), buf.subarray(2, 6), f(4))).toThrow(/overlap/);
  });

  it("attention", () => {
    const kv = () => new Uint16Array(8 * 2 * 4); // 8 slots, nKvHeads 2 · headDim 4
    const ok = (o: Partial<Record<string, unknown>> = {}) => () =>
      native.attention(
        (o.out as Float32Array) ?? f(2 * 4 * 4), f(2 * 4 * 4), kv(), (o.vPool as Uint16Array) ?? kv(),
        (o.rowSeq as Int32Array) ?? i32(0, 1), (o.rowPos as Int32Array) ?? i32(3, 2),
        (o.blockTables as Int32Array) ?? i32(1, 0), (o.tableOffsets as Int32Array) ?? i32(0, 1),
        (o.nHeads as number) ?? 4, 2, 4, 4, 0.5,
      );
    expect(ok()).not.toThrow();
    expect(ok({ rowSeq: i32(0, 2) })).toThrow(/rowSeq = 2/);
    expect(ok({ rowPos: i32(3, 8) })).toThrow(/outside blockTables/); // seq 1 would need 3 blocks
    expect(ok({ rowPos: i32(-1, 2) })).toThrow(/negative/);
    expect(ok({ blockTables: i32(2, 0) })).toThrow(/outside the pools/);
    expect(ok({ tableOffsets: i32(0, 5) })).toThrow(RangeError);
    expect(ok({ nHeads: 3 })).toThrow(/multiple of nKvHeads/);
    expect(ok({ out: f(31) })).toThrow(/out has length/);
    expect(ok({ vPool: new Uint16Array(60) })).toThrow(/vPool/);
  });

  it("configuration", () => {
    expect(() => native.setThreads(0)).toThrow(RangeError);
    expect(() => native.setKernelImpl("fast" as never)).toThrow(RangeError);
    expect(native.getThreads()).toBe(1);
  });
});
