/**
 * Adapter values and scales are bounded at load (validate.ts MAX_ADAPTER_VALUE, MAX_ADAPTER_SCALE):
 * exactly ±1024 loads, the next value up in each stored type is ADAPTER_VALUE_OUT_OF_RANGE, in
 * PEFT F32/F16/BF16 (on the f32 path of q, which Llama permutes, and the 16-bit path of v) and GGUF
 * F32/F16/BF16/Q8_0; scales (alpha / r, rsLoRA alpha / √r, GGUF alpha / r) likewise.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readGgufLora } from "../../../src/adapters/formats/gguf-lora.js";
import { readPeftAdapter } from "../../../src/adapters/formats/peft.js";
import { MAX_ADAPTER_SCALE, MAX_ADAPTER_VALUE } from "../../../src/adapters/validate.js";
import { GGML_TYPE } from "../../../src/formats/ggml-types.js";
import { writeGguf } from "../../../src/formats/gguf-writer.js";
import { type SafetensorsDtype, writeSafetensors } from "../../../src/formats/safetensors.js";
import { tempDir } from "../../helpers/tmp.js";
import { expectCode, presetShape } from "./helpers.js";

const dir = tempDir("openlora-bounds-");
const max = { maxRank: 16 };
let n = 0;
const R = 4;

/** 1024 and the next representable magnitude above it, as stored bits. */
const EDGE = {
  F32: { at: 0x44800000, above: 0x44800001 },
  F16: { at: 0x6400, above: 0x6401 },
  BF16: { at: 0x4480, above: 0x4481 },
} as const;

/** `count` elements of 0.01-ish bits with `special` bits at index `at` (and its negation at 0). */
function tensor(dtype: keyof typeof EDGE, count: number, special: number, at: number): Uint8Array {
  const small = dtype === "F32" ? 0x3c23d70a : dtype === "F16" ? 0x211f : 0x3c24;
  const sign = dtype === "F32" ? 0x80000000 : 0x8000;
  const bits = dtype === "F32" ? new Uint32Array(count).fill(small) : new Uint16Array(count).fill(small);
  bits[0] = (EDGE[dtype].at | sign) >>> 0;
  bits[at] = special;
  return new Uint8Array(bits.buffer);
}

function peft(module: "q" | "v", dtype: SafetensorsDtype & keyof typeof EDGE, bBits: number, config: Record<string, unknown> = {}): string {
  const d = join(dir, `peft${n++}`);
  mkdirSync(d);
  const H = 64, out = module === "q" ? 64 : 32;
  const pre = `base_model.model.model.layers.1.self_attn.${module}_proj`;
  writeSafetensors(join(d, "adapter_model.safetensors"), [
    { name: `${pre}.lora_A.weight`, dtype, shape: [R, H], data: tensor(dtype, R * H, EDGE[dtype].at, 5) },
    { name: `${pre}.lora_B.weight`, dtype, shape: [out, R], data: tensor(dtype, out * R, bBits, 77) },
  ]);
  writeFileSync(join(d, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: R, lora_alpha: 8, target_modules: [`${module}_proj`], ...config }));
  return d;
}

function gguf(type: number, aData: Uint8Array, alpha = 8, bType = type, bData?: Uint8Array): string {
  const p = join(dir, `g${n++}.gguf`);
  writeGguf(p, {
    "general.architecture": { type: "string", value: "llama" }, "general.type": { type: "string", value: "adapter" },
    "adapter.type": { type: "string", value: "lora" }, "adapter.lora.alpha": { type: "f32", value: alpha },
  }, [
    { name: "blk.0.attn_v.weight.lora_a", dims: [64, R], type, data: aData },
    { name: "blk.0.attn_v.weight.lora_b", dims: [R, 32], type: bType, data: bData ?? aData.subarray(0, (aData.length / 2)) },
  ]);
  return p;
}

/** Q8_0 blocks (fp16 d, 32 × int8 q) with d's bits `dBits` and every q = 127 (−127 in block 0). */
function q8(count: number, dBits: number): Uint8Array {
  const out = new Uint8Array((count / 32) * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < count / 32; b++) {
    view.setUint16(b * 34, dBits, true);
    out.fill(b === 0 ? 0x81 : 127, b * 34 + 2, b * 34 + 34);
  }
  return out;
}

describe("adapter values are bounded at load", () => {
  it("states the bounds", () => {
    expect(MAX_ADAPTER_VALUE).toBe(1024);
    expect(MAX_ADAPTER_SCALE).toBe(1024);
  });

  for (const dtype of ["F32", "F16", "BF16"] as const) {
    for (const module of ["q", "v"] as const) {
      it(`PEFT ${dtype} ${module}: ±1024 loads, the next value up is refused with its index`, () => {
        const base = presetShape(dir, "tiny-llama3");
        const ok = readPeftAdapter(peft(module, dtype, EDGE[dtype].at), "ok", base, max);
        expect(ok.weights.layers[1]![module]).toBeDefined();
        const d = expectCode(() => readPeftAdapter(peft(module, dtype, EDGE[dtype].above), "bad", base, max), "ADAPTER_VALUE_OUT_OF_RANGE");
        expect(d).toMatchObject({ layer: 1, module, matrix: "B", max: 1024 });
        // The Llama q rows are permuted after the check: the index is the file's.
        expect(d!.index).toBe(77);
      });
    }
  }

  for (const [name, type, dtype] of [["F32", GGML_TYPE.F32, "F32"], ["F16", GGML_TYPE.F16, "F16"], ["BF16", GGML_TYPE.BF16, "BF16"]] as const) {
    it(`GGUF ${name}: ±1024 loads, the next value up is refused`, () => {
      const base = presetShape(dir, "tiny-llama3");
      expect(readGgufLora(gguf(type, tensor(dtype, 64 * R, EDGE[dtype].at, 9)), "ok", base, max).targetModules).toEqual(["v"]);
      const d = expectCode(() => readGgufLora(gguf(type, tensor(dtype, 64 * R, EDGE[dtype].above, 9)), "bad", base, max), "ADAPTER_VALUE_OUT_OF_RANGE");
      expect(d).toMatchObject({ matrix: "A", index: 9 });
    });
  }

  it("GGUF Q8_0: block scale × 127 within 1024 loads, above it is refused", () => {
    const base = presetShape(dir, "tiny-llama3");
    const b = tensor("F32", R * 32, 0x3c23d70a, 1);
    // fp16 8.0625 (0x4808) × 127 = 1023.9; 8.125 (0x4810) × 127 = 1031.9.
    expect(readGgufLora(gguf(GGML_TYPE.Q8_0, q8(64 * R, 0x4808), 8, GGML_TYPE.F32, b), "ok", base, max).targetModules).toEqual(["v"]);
    const d = expectCode(() => readGgufLora(gguf(GGML_TYPE.Q8_0, q8(64 * R, 0x4810), 8, GGML_TYPE.F32, b), "bad", base, max), "ADAPTER_VALUE_OUT_OF_RANGE");
    expect(d).toMatchObject({ matrix: "A", index: 0 });
  });
});

describe("adapter scales are bounded at load", () => {
  const cases: Array<[string, Record<string, unknown>, boolean]> = [
    ["alpha / r = 1024", { lora_alpha: 4096 }, true],
    ["alpha / r = −1024", { lora_alpha: -4096 }, true],
    ["alpha / r = 1024.25", { lora_alpha: 4097 }, false],
    ["rsLoRA alpha / √r = 1024", { lora_alpha: 2048, use_rslora: true }, true],
    ["rsLoRA alpha / √r = 1024.5", { lora_alpha: 2049, use_rslora: true }, false],
    ["lora_alpha 1e300", { lora_alpha: 1e300 }, false],
    ["alpha_pattern 1e12", { alpha_pattern: { v_proj: 1e12 } }, false],
  ];
  for (const [what, config, ok] of cases) {
    it(`PEFT ${what}: ${ok ? "loads" : "ADAPTER_VALUE_OUT_OF_RANGE"}`, () => {
      const base = presetShape(dir, "tiny-llama3");
      const p = peft("v", "F32", EDGE.F32.at, config);
      if (ok) expect(Math.abs(readPeftAdapter(p, "ok", base, max).weights.layers[1]!.v!.scale)).toBe(1024);
      else expect(expectCode(() => readPeftAdapter(p, "bad", base, max), "ADAPTER_VALUE_OUT_OF_RANGE")).toMatchObject({ module: "v", layer: 1, max: 1024 });
    });
  }

  it("GGUF alpha / r: 1024 loads, above it (and a huge alpha) is refused", () => {
    const base = presetShape(dir, "tiny-llama3");
    const a = tensor("F32", 64 * R, 0x3c23d70a, 1);
    expect(readGgufLora(gguf(GGML_TYPE.F32, a, 4096), "ok", base, max).weights.layers[0]!.v!.scale).toBe(1024);
    expectCode(() => readGgufLora(gguf(GGML_TYPE.F32, a, 4100), "bad", base, max), "ADAPTER_VALUE_OUT_OF_RANGE");
    expectCode(() => readGgufLora(gguf(GGML_TYPE.F32, a, 3e38), "bad", base, max), "ADAPTER_VALUE_OUT_OF_RANGE");
  });
});
