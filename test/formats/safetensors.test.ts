import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isOpenLoraError, type ErrorCode } from "../../src/errors.js";
import { parseSafetensors, safetensorsData, writeSafetensors } from "../../src/formats/safetensors.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

function expectCode(fn: () => unknown, code: ErrorCode): void {
  let thrown: unknown;
  try { fn(); } catch (e) { thrown = e; }
  expect(isOpenLoraError(thrown), `expected ${code}, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code).toBe(code);
}

/** Builds a safetensors file from a raw header object and a data section. */
function craft(header: unknown, data: Uint8Array, lenOverride?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  return new Uint8Array(Buffer.concat([len, json, data]));
}

describe("safetensors", () => {
  it("round-trips tensors and metadata", () => {
    const path = join(dir, "ok.safetensors");
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = new Uint8Array([1, 2, 3, 4]);
    writeSafetensors(path, [
      { name: "a", dtype: "F32", shape: [2, 3], data: new Uint8Array(a.buffer) },
      { name: "b", dtype: "F16", shape: [2], data: b },
    ], { format: "pt" });
    const f = parseSafetensors(readFileSync(path), path);
    expect(f.metadata).toEqual({ format: "pt" });
    const ta = f.tensors.get("a")!;
    expect(ta.shape).toEqual([2, 3]);
    expect(Array.from(new Float32Array(safetensorsData(f, ta).slice().buffer))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(safetensorsData(f, f.tensors.get("b")!))).toEqual([1, 2, 3, 4]);
  });

  it("reads the same from a Uint8Array at an offset and from a whole-file ArrayBuffer (the > 4 GiB form)", () => {
    const path = join(dir, "views.safetensors");
    writeSafetensors(path, [
      { name: "x", dtype: "F32", shape: [3], data: new Uint8Array(new Float32Array([7, 8, 9]).buffer) },
      { name: "y", dtype: "U8", shape: [2], data: new Uint8Array([5, 6]) },
    ]);
    const file = readFileSync(path);
    const padded = new Uint8Array(file.length + 16);
    padded.set(file, 16);
    const whole = new ArrayBuffer(file.length);
    new Uint8Array(whole).set(file);
    for (const input of [padded.subarray(16), whole]) {
      const f = parseSafetensors(input, path);
      expect(Array.from(new Float32Array(safetensorsData(f, f.tensors.get("x")!).slice().buffer))).toEqual([7, 8, 9]);
      expect(Array.from(safetensorsData(f, f.tensors.get("y")!))).toEqual([5, 6]);
    }
    expectCode(() => parseSafetensors(whole.slice(0, file.length - 1), path), "SAFETENSORS_OFFSETS_INVALID");
  });

  it("rejects a header length larger than the file", () => {
    expectCode(() => parseSafetensors(craft({}, new Uint8Array(0), 1000n)), "SAFETENSORS_HEADER_INVALID");
    expectCode(() => parseSafetensors(craft({}, new Uint8Array(0), 1n << 62n)), "SAFETENSORS_HEADER_INVALID");
  });

  it("rejects a file too short for its length prefix", () => {
    expectCode(() => parseSafetensors(new Uint8Array(5)), "MODEL_FILE_TRUNCATED");
  });

  it("rejects a header that is not JSON or not an object", () => {
    expectCode(() => parseSafetensors(craft("{not json", new Uint8Array(0))), "SAFETENSORS_HEADER_INVALID");
    expectCode(() => parseSafetensors(craft("[1,2]", new Uint8Array(0))), "SAFETENSORS_HEADER_INVALID");
  });

  it("rejects offsets past the data, reversed, or disagreeing with the shape", () => {
    const data = new Uint8Array(16);
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }, data)), "SAFETENSORS_OFFSETS_INVALID");
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, data)), "SAFETENSORS_OFFSETS_INVALID");
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, data)), "SAFETENSORS_OFFSETS_INVALID");
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F32", shape: [2], data_offsets: [0, "8"] } }, data)), "SAFETENSORS_OFFSETS_INVALID");
  });

  it("rejects overlapping tensors", () => {
    const data = new Uint8Array(16);
    expectCode(() => parseSafetensors(craft({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, data)), "SAFETENSORS_OFFSETS_INVALID");
  });

  it("rejects unknown dtypes and bad shapes", () => {
    const data = new Uint8Array(16);
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F8_E4M3X", shape: [2], data_offsets: [0, 2] } }, data)), "MODEL_UNSUPPORTED_TENSOR_TYPE");
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, data)), "SAFETENSORS_HEADER_INVALID");
    expectCode(() => parseSafetensors(craft({ t: { dtype: "F32", shape: "2", data_offsets: [0, 8] } }, data)), "SAFETENSORS_HEADER_INVALID");
  });
});
