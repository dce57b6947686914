import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isOpenLoraError, type ErrorCode } from "../../src/errors.js";
import { GGML_TYPE } from "../../src/formats/ggml-types.js";
import { parseGguf, tensorData } from "../../src/formats/gguf.js";
import { type GgufEntry, writeGguf } from "../../src/formats/gguf-writer.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function expectCode(fn: () => unknown, code: ErrorCode): void {
  try {
    fn();
  } catch (e) {
    if (!isOpenLoraError(e)) throw e;
    expect(e.code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

const meta: Record<string, GgufEntry> = {
  "general.architecture": { type: "string", value: "llama" },
  "llama.block_count": { type: "u32", value: 2 },
  "test.f32": { type: "f32", value: 0.5 },
  "test.bool": { type: "bool", value: true },
  "test.i64": { type: "i64", value: -5 },
  "test.strings": { type: "string[]", value: ["a", "héllo", "🙂", ""] },
  "test.ints": { type: "i32[]", value: [1, -2, 3] },
  "test.floats": { type: "f32[]", value: [0.25, -1] },
};

function sample(name = "ok.gguf"): { path: string; bytes: Buffer } {
  const path = join(dir, name);
  const a = new Float32Array(64 * 3).map((_, i) => i * 0.5);
  const b = new Uint8Array(34 * 2 * 2); // Q8_0, 2 rows of 64
  writeGguf(path, meta, [
    { name: "a", dims: [64, 3], type: GGML_TYPE.F32, data: new Uint8Array(a.buffer) },
    { name: "b", dims: [64, 2], type: GGML_TYPE.Q8_0, data: b },
  ]);
  return { path, bytes: readFileSync(path) };
}

/** Byte position of the u64 offset field of tensor `name` in the header. */
function offsetFieldOf(bytes: Buffer, name: string, nDims: number): number {
  const nameBytes = Buffer.from(name);
  let at = -1;
  for (let i = 0; i < bytes.length - 8; i++) {
    if (bytes.readBigUInt64LE(i) === BigInt(nameBytes.length) && bytes.subarray(i + 8, i + 8 + nameBytes.length).equals(nameBytes)) { at = i; break; }
  }
  if (at < 0) throw new Error("tensor not found");
  return at + 8 + nameBytes.length + 4 + 8 * nDims + 4;
}

describe("GGUF reader", () => {
  it("round-trips metadata and tensor infos written by the writer", () => {
    const { path, bytes } = sample();
    const f = parseGguf(bytes, path);
    expect(f.version).toBe(3);
    expect(f.metadata.get("general.architecture")).toBe("llama");
    expect(f.metadata.get("llama.block_count")).toBe(2);
    expect(f.metadata.get("test.f32")).toBe(0.5);
    expect(f.metadata.get("test.bool")).toBe(true);
    expect(f.metadata.get("test.i64")).toBe(-5);
    expect(f.metadata.get("test.strings")).toEqual(["a", "héllo", "🙂", ""]);
    expect(Array.from(f.metadata.get("test.ints") as Int32Array)).toEqual([1, -2, 3]);
    expect(Array.from(f.metadata.get("test.floats") as Float32Array)).toEqual([0.25, -1]);
    const a = f.tensorsByName.get("a")!;
    expect(a.dims).toEqual([64, 3]);
    expect(a.offset % 32).toBe(0);
    const data = new Float32Array(tensorData(f, a).slice().buffer);
    expect(data[5]).toBe(2.5);
    expect(f.tensorsByName.get("b")!.byteLength).toBe(34 * 4);
  });

  it("rejects a wrong magic", () => {
    const { bytes } = sample("magic.gguf");
    const bad = Buffer.from(bytes);
    bad.write("GGUX", 0);
    expectCode(() => parseGguf(bad), "MODEL_BAD_MAGIC");
    expectCode(() => parseGguf(Buffer.from("PK\x03\x04 this is a zip")), "MODEL_BAD_MAGIC");
  });

  it("rejects an unsupported version", () => {
    const bad = Buffer.from(sample("ver.gguf").bytes);
    bad.writeUInt32LE(9, 4);
    expectCode(() => parseGguf(bad), "MODEL_UNSUPPORTED_VERSION");
  });

  it("rejects files truncated anywhere in the header", () => {
    const { bytes } = sample("trunc.gguf");
    const f = parseGguf(bytes);
    for (const cut of [2, 6, 12, 20, 40, 100, f.dataOffset - 40]) {
      expectCode(() => parseGguf(bytes.subarray(0, cut)), "MODEL_FILE_TRUNCATED");
    }
  });

  it("rejects a file whose data section is cut short", () => {
    const { bytes } = sample("short.gguf");
    expectCode(() => parseGguf(bytes.subarray(0, bytes.length - 40)), "MODEL_TENSOR_OUT_OF_BOUNDS");
  });

  it("rejects tensor offsets past the end of the file", () => {
    const bad = Buffer.from(sample("off.gguf").bytes);
    bad.writeBigUInt64LE(1n << 40n, offsetFieldOf(bad, "b", 2));
    expectCode(() => parseGguf(bad), "MODEL_TENSOR_OUT_OF_BOUNDS");
    bad.writeBigUInt64LE(0xffffffffffffffe0n, offsetFieldOf(bad, "b", 2));
    expectCode(() => parseGguf(bad), "MODEL_TENSOR_OUT_OF_BOUNDS");
  });

  it("rejects overlapping tensors and misaligned offsets", () => {
    const bad = Buffer.from(sample("overlap.gguf").bytes);
    bad.writeBigUInt64LE(0n, offsetFieldOf(bad, "b", 2));
    expectCode(() => parseGguf(bad), "MODEL_TENSOR_OVERLAP");
    bad.writeBigUInt64LE(3n, offsetFieldOf(bad, "b", 2));
    expectCode(() => parseGguf(bad), "MODEL_METADATA_INVALID");
  });

  it("rejects unknown tensor types and rows that are not whole blocks", () => {
    const bad = Buffer.from(sample("type.gguf").bytes);
    const typeField = offsetFieldOf(bad, "b", 2) - 4;
    bad.writeUInt32LE(99, typeField);
    expectCode(() => parseGguf(bad), "MODEL_UNSUPPORTED_TENSOR_TYPE");
    const bad2 = Buffer.from(sample("rows.gguf").bytes);
    bad2.writeBigUInt64LE(48n, offsetFieldOf(bad2, "b", 2) - 4 - 16); // ne0 = 48: not a multiple of 32
    expectCode(() => parseGguf(bad2), "MODEL_TENSOR_SHAPE_MISMATCH");
  });

  it("rejects absurd counts and lengths before allocating anything", () => {
    const bad = Buffer.from(sample("count.gguf").bytes);
    bad.writeBigUInt64LE(1n << 50n, 8); // tensor count
    expectCode(() => parseGguf(bad), "MODEL_FILE_TRUNCATED");
    const bad2 = Buffer.from(sample("kv.gguf").bytes);
    bad2.writeBigUInt64LE(1n << 60n, 24); // first key's string length
    expectCode(() => parseGguf(bad2), "MODEL_FILE_TRUNCATED");
  });

  it("rejects bad dimension counts and unknown value types", () => {
    const bad = Buffer.from(sample("dims.gguf").bytes);
    bad.writeUInt32LE(7, offsetFieldOf(bad, "b", 2) - 4 - 16 - 4);
    expect(() => parseGguf(bad)).toThrow();
    const bad2 = Buffer.from(sample("vt.gguf").bytes);
    // first KV: key string at 24, value type after it
    const keyLen = Number(bad2.readBigUInt64LE(24));
    bad2.writeUInt32LE(77, 32 + keyLen);
    expectCode(() => parseGguf(bad2), "MODEL_METADATA_INVALID");
  });

  it("never throws anything but a typed error on random corruption", () => {
    const { bytes } = sample("fuzz.gguf");
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 300; i++) {
      const bad = Buffer.from(bytes);
      const flips = 1 + Math.floor(rand() * 4);
      for (let j = 0; j < flips; j++) bad[Math.floor(rand() * 400)] = Math.floor(rand() * 256);
      try {
        parseGguf(bad);
      } catch (e) {
        expect(isOpenLoraError(e), String(e)).toBe(true);
      }
    }
  });
});

describe("GGUF writer", () => {
  it("writes files whose reparse is byte-identical in tensor data", () => {
    const path = join(dir, "w.gguf");
    const data = new Uint8Array(18 * 4).map((_, i) => i);
    writeGguf(path, { "general.architecture": { type: "string", value: "qwen3" } }, [
      { name: "q", dims: [64, 2], type: GGML_TYPE.Q4_0, data },
    ], 64);
    const f = parseGguf(readFileSync(path));
    expect(f.alignment).toBe(64);
    expect(Array.from(tensorData(f, f.tensors[0]!))).toEqual(Array.from(data));
    writeFileSync(join(dir, "x"), "");
  });
});
