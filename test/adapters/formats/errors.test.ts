import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readGgufLora } from "../../../src/adapters/formats/gguf-lora.js";
import { readPeftAdapter } from "../../../src/adapters/formats/peft.js";
import { resolveInside, validateAdapterId } from "../../../src/adapters/validate.js";
import { GGML_TYPE } from "../../../src/formats/ggml-types.js";
import { type GgufEntry, type GgufTensorSpec, writeGguf } from "../../../src/formats/gguf-writer.js";
import { writeSafetensors } from "../../../src/formats/safetensors.js";
import { writeGgufLora, writePeftAdapter } from "../../../src/synth/adapters.js";
import { tempDir } from "../../helpers/tmp.js";
import { editJson, expectCode, presetShape } from "./helpers.js";

const dir = tempDir("openlora-adapter-errors-");
const LL = "tiny-llama3";
const opts = { seed: 9, rank: 4, alpha: 8, targets: ["q" as const, "down" as const] };
const max = { maxRank: 16 };
let n = 0;
const peftCopy = () => writePeftAdapter(join(dir, `peft${n++}`), LL, { ...opts, dtype: "F32" });
const cfgOf = (p: string) => join(p, "adapter_config.json");
const f32 = (n: number, v = 0.01) => new Uint8Array(new Float32Array(n).fill(v).buffer);

/** A PEFT folder with the given tensors (F32, filled) and config. */
function craftPeft(tensors: Array<[string, number[], number?]>, config: Record<string, unknown>): string {
  const d = join(dir, `craft${n++}`);
  mkdirSync(d, { recursive: true });
  writeSafetensors(join(d, "adapter_model.safetensors"), tensors.map(([name, shape, v]) => ({ name, dtype: "F32", shape, data: f32(shape[0]! * shape[1]!, v) })));
  writeFileSync(cfgOf(d), JSON.stringify({ peft_type: "LORA", r: 4, lora_alpha: 8, bias: "none", fan_in_fan_out: false, ...config }));
  return d;
}

/** A GGUF LoRA with the given tensors (F32) and metadata overrides. */
function craftGguf(tensors: Array<[string, number[]]>, meta: Record<string, GgufEntry | undefined> = {}, fill = 0.01): string {
  const path = join(dir, `craft${n++}.gguf`);
  const m: Record<string, GgufEntry> = {};
  const all: Record<string, GgufEntry | undefined> = {
    "general.architecture": { type: "string", value: "llama" }, "general.type": { type: "string", value: "adapter" },
    "adapter.type": { type: "string", value: "lora" }, "adapter.lora.alpha": { type: "f32", value: 8 }, ...meta,
  };
  for (const [k, v] of Object.entries(all)) if (v) m[k] = v;
  const specs: GgufTensorSpec[] = tensors.map(([name, dims]) => ({ name, dims, type: GGML_TYPE.F32, data: f32(dims[0]! * dims[1]!, fill) }));
  writeGguf(path, m, specs);
  return path;
}

const Q = "base_model.model.model.layers.0.self_attn.q_proj";

describe("adapter ids and paths", () => {
  it("rejects ids that are not plain names", () => {
    for (const id of ["../x", "a/b", "", "..", "a..b", ".hidden", "a\\b", "/abs", "x".repeat(129), "a b"]) expectCode(() => validateAdapterId(id), "ADAPTER_ID_INVALID");
    expectCode(() => validateAdapterId(3), "ADAPTER_ID_INVALID");
    for (const id of ["a", "my-adapter_v1.2", "X".repeat(128)]) validateAdapterId(id);
    const base = presetShape(dir, LL);
    const p = peftCopy();
    expectCode(() => readPeftAdapter(p, "../x", base, max), "ADAPTER_ID_INVALID");
    expectCode(() => readGgufLora(join(dir, "none.gguf"), "a/b", base, max), "ADAPTER_ID_INVALID");
  });

  it("resolveInside keeps paths (and symlinks) inside the root", () => {
    const root = join(dir, "root");
    mkdirSync(join(root, "inner"), { recursive: true });
    mkdirSync(join(dir, "outside"), { recursive: true });
    symlinkSync(join(dir, "outside"), join(root, "escape"));
    symlinkSync(join(root, "inner"), join(root, "alias"));
    expect(resolveInside(root, "inner")).toMatch(/root\/inner$/);
    expect(resolveInside(root, "alias")).toMatch(/root\/inner$/);
    expect(resolveInside(root, "not-yet")).toMatch(/root\/not-yet$/);
    for (const rel of ["../outside", "escape", "escape/x", "/etc/passwd", "", ".", "inner/../.."]) expectCode(() => resolveInside(root, rel), "ADAPTER_PATH_OUTSIDE_ROOT");
  });
});

describe("PEFT adapter errors", () => {
  it("wrong base: a tiny-qwen3 adapter against tiny-llama3 shapes", () => {
    const p = writePeftAdapter(join(dir, "qwen"), "tiny-qwen3", { ...opts, dtype: "F32" });
    const d = expectCode(() => readPeftAdapter(p, "q", presetShape(dir, LL), max), "ADAPTER_SHAPE_MISMATCH");
    expect(d).toMatchObject({ module: "q", layer: 0 });
  });

  it("wrong shapes, rank/config disagreement, layers beyond the base", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [4, 64]], [`${Q}.lora_B.weight`, [32, 4]]], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [4, 64]], [`${Q}.lora_B.weight`, [64, 3]]], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [2, 64]], [`${Q}.lora_B.weight`, [64, 2]]], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    const d = expectCode(() => readPeftAdapter(craftPeft([
      ["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", [4, 64]], ["base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight", [64, 4]],
    ], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    expect(d).toMatchObject({ layer: 7, module: "q" });
  });

  it("rank above the maximum", () => {
    expectCode(() => readPeftAdapter(peftCopy(), "a", presetShape(dir, LL), { maxRank: 2 }), "ADAPTER_RANK_TOO_LARGE");
  });

  it("missing or unreadable files", () => {
    const base = presetShape(dir, LL);
    const p = peftCopy();
    rmSync(cfgOf(p));
    expectCode(() => readPeftAdapter(p, "a", base, max), "ADAPTER_INVALID");
    const q = peftCopy();
    rmSync(join(q, "adapter_model.safetensors"));
    expectCode(() => readPeftAdapter(q, "a", base, max), "ADAPTER_INVALID");
    writeFileSync(join(q, "adapter_model.bin"), "pickle");
    expectCode(() => readPeftAdapter(q, "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readPeftAdapter(join(dir, "nope"), "a", base, max), "ADAPTER_INVALID");
    const r = peftCopy();
    writeFileSync(cfgOf(r), "{not json");
    expectCode(() => readPeftAdapter(r, "a", base, max), "ADAPTER_INVALID");
  });

  it("truncated and hostile safetensors", () => {
    const base = presetShape(dir, LL);
    const p = peftCopy();
    const st = join(p, "adapter_model.safetensors");
    const bytes = readFileSync(st);
    writeFileSync(st, bytes.subarray(0, bytes.length - 100));
    expectCode(() => readPeftAdapter(p, "a", base, max), "SAFETENSORS_OFFSETS_INVALID");
    const lie = Buffer.from(bytes);
    lie.writeBigUInt64LE(BigInt(bytes.length * 4), 0);
    writeFileSync(st, lie);
    expectCode(() => readPeftAdapter(p, "a", base, max), "SAFETENSORS_HEADER_INVALID");
    writeFileSync(st, bytes.subarray(0, 5));
    expectCode(() => readPeftAdapter(p, "a", base, max), "MODEL_FILE_TRUNCATED");
  });

  it("NaN and infinite weights", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [4, 64], NaN], [`${Q}.lora_B.weight`, [64, 4]]], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_NONFINITE");
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [4, 64]], [`${Q}.lora_B.weight`, [64, 4], -Infinity]], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_NONFINITE");
  });

  it("targets matching nothing are an error, never a silent base-model fallback", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readPeftAdapter(craftPeft([], { target_modules: ["c_attn", "foo_proj"] }), "a", base, max), "ADAPTER_NO_TARGETS");
    expectCode(() => readPeftAdapter(craftPeft([], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_NO_TARGETS");
    const p = peftCopy();
    editJson(cfgOf(p), (j) => { j.layers_to_transform = [5]; });
    expectCode(() => readPeftAdapter(p, "a", base, max), "ADAPTER_NO_TARGETS");
  });

  it("embeddings / lm_head and other unsupported modules", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readPeftAdapter(craftPeft([
      ["base_model.model.lm_head.lora_A.weight", [4, 64]], ["base_model.model.lm_head.lora_B.weight", [128256, 4]],
    ].slice(0, 1) as Array<[string, number[]]>, { target_modules: ["lm_head"] }), "a", base, max), "ADAPTER_UNSUPPORTED_MODULE");
    expectCode(() => readPeftAdapter(craftPeft([
      [`${Q}.lora_A.weight`, [4, 64]], [`${Q}.lora_B.weight`, [64, 4]], ["base_model.model.lm_head.lora_A.weight", [4, 64]],
    ], { target_modules: "all-linear" }), "a", base, max), "ADAPTER_UNSUPPORTED_MODULE");
    expectCode(() => readPeftAdapter(craftPeft([
      [`${Q}.lora_A.weight`, [4, 64]], [`${Q}.lora_B.weight`, [64, 4]], ["base_model.model.model.embed_tokens.weight", [16, 64]],
    ], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_UNSUPPORTED_MODULE");
  });

  it("config features openlora cannot honour, and half pairs", () => {
    const base = presetShape(dir, LL);
    for (const edit of [{ fan_in_fan_out: true }, { bias: "all" }, { peft_type: "IA3" }, { r: 0 }, { target_modules: 5 }, { use_dora: true }, { rank_pattern: { q_proj: -1 } }]) {
      const p = peftCopy();
      editJson(cfgOf(p), (j) => Object.assign(j, edit));
      expectCode(() => readPeftAdapter(p, "a", base, max), "ADAPTER_INVALID");
    }
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [4, 64]]], { target_modules: ["q_proj"] }), "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readPeftAdapter(craftPeft([[`${Q}.lora_A.weight`, [4, 64]], [`${Q}.lora_B.weight`, [64, 4]]], { target_modules: ["v_proj"] }), "a", base, max), "ADAPTER_INVALID");
    // base_model_name_or_path is informational: a different name still loads when shapes match.
    const p = peftCopy();
    editJson(cfgOf(p), (j) => { j.base_model_name_or_path = "some/other-model"; });
    expect(readPeftAdapter(p, "a", base, max).baseModel).toBe("some/other-model");
  });
});

describe("GGUF LoRA errors", () => {
  const A = "blk.0.attn_q.weight.lora_a";
  const B = "blk.0.attn_q.weight.lora_b";

  it("a base model GGUF, or general.type \"model\", is not an adapter", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readGgufLora(join(dir, `${LL}-base.gguf`), "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]]], { "general.type": { type: "string", value: "model" } }), "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]]], { "adapter.type": { type: "string", value: "control_vector" } }), "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readGgufLora(join(dir, "missing.gguf"), "a", base, max), "ADAPTER_INVALID");
  });

  it("wrong architecture", () => {
    const base = presetShape(dir, LL);
    const q = writeGgufLora(join(dir, "qwen.gguf"), "tiny-qwen3", { ...opts, type: "f32" });
    expectCode(() => readGgufLora(q, "a", base, max), "ADAPTER_BASE_MISMATCH");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]]], { "general.architecture": { type: "string", value: "qwen2" } }), "a", base, max), "ADAPTER_BASE_MISMATCH");
    expectCode(() => readGgufLora(writeGgufLora(join(dir, "llama.gguf"), LL, { ...opts, type: "f32" }), "a", presetShape(dir, "tiny-qwen3"), max), "ADAPTER_BASE_MISMATCH");
  });

  it("transposed pairs, half pairs, wrong shapes, rank, layers", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readGgufLora(craftGguf([[A, [4, 64]], [B, [64, 4]]]), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]]]), "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readGgufLora(craftGguf([[B, [4, 64]]]), "a", base, max), "ADAPTER_INVALID");
    expectCode(() => readGgufLora(craftGguf([["blk.0.ffn_down.weight.lora_a", [64, 4]], ["blk.0.ffn_down.weight.lora_b", [4, 64]]]), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    expectCode(() => readGgufLora(craftGguf([["blk.2.attn_q.weight.lora_a", [64, 4]], ["blk.2.attn_q.weight.lora_b", [4, 64]]]), "a", base, max), "ADAPTER_SHAPE_MISMATCH");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 32]], [B, [32, 64]]]), "a", base, max), "ADAPTER_RANK_TOO_LARGE");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]], ["blk.0.attn_q.weight", [64, 64]]]), "a", base, max), "ADAPTER_INVALID");
    expect(readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]]]), "ok", base, max).targetModules).toEqual(["q"]);
  });

  it("token_embd / output LoRA and unknown modules", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readGgufLora(craftGguf([["token_embd.weight.lora_a", [64, 4]], ["token_embd.weight.lora_b", [4, 128256]]].slice(0, 1) as Array<[string, number[]]>), "a", base, max), "ADAPTER_UNSUPPORTED_MODULE");
    expectCode(() => readGgufLora(craftGguf([["output.weight.lora_a", [64, 4]], ["output.weight.lora_b", [4, 64]]]), "a", base, max), "ADAPTER_UNSUPPORTED_MODULE");
    expectCode(() => readGgufLora(craftGguf([["blk.0.attn_qkv.weight.lora_a", [64, 4]], ["blk.0.attn_qkv.weight.lora_b", [4, 64]]]), "a", base, max), "ADAPTER_UNSUPPORTED_MODULE");
  });

  it("16-bit tensors: kept bit for bit; a NaN or infinity anywhere is ADAPTER_NONFINITE with its index", () => {
    const base = presetShape(dir, LL);
    const halves = (n: number, start: number) => Uint16Array.from({ length: n }, (_, i) => start + (i % 700));
    const write = (type: number, a: Uint16Array, b: Uint16Array): string => {
      const path = join(dir, `craft${n++}.gguf`);
      const meta: Record<string, GgufEntry> = {
        "general.architecture": { type: "string", value: "llama" }, "general.type": { type: "string", value: "adapter" },
        "adapter.type": { type: "string", value: "lora" }, "adapter.lora.alpha": { type: "f32", value: 8 },
      };
      const bytes = (h: Uint16Array) => new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
      writeGguf(path, meta, [{ name: A, dims: [64, 4], type, data: bytes(a) }, { name: B, dims: [4, 64], type, data: bytes(b) }]);
      return path;
    };
    // f16 0x3c00 = 1.0 (0x2000.. small normals); bf16 0x3f80 = 1.0.
    for (const [type, start, inf, nan, dtype] of [[GGML_TYPE.F16, 0x2000, 0x7c00, 0x7e01, "f16"], [GGML_TYPE.BF16, 0x3c00, 0x7f80, 0xffc1, "bf16"]] as const) {
      const a = halves(256, start), b = halves(256, start + 3);
      const ok = readGgufLora(write(type, a, b), "ok", base, max).weights.layers[0]!.q!;
      expect(ok.dtype).toBe(dtype);
      expect(Array.from(ok.a as Uint16Array)).toEqual(Array.from(a));
      expect(Array.from(ok.b as Uint16Array)).toEqual(Array.from(b));
      for (const [which, bad] of [["A", inf], ["B", nan]] as const) {
        const a2 = a.slice(), b2 = b.slice();
        (which === "A" ? a2 : b2)[77] = bad;
        try {
          readGgufLora(write(type, a2, b2), "bad", base, max);
          throw new Error("expected ADAPTER_NONFINITE");
        } catch (e) {
          expect((e as { code?: string }).code).toBe("ADAPTER_NONFINITE");
          expect((e as { details?: Record<string, unknown> }).details).toMatchObject({ matrix: which, index: 77, layer: 0, module: "q" });
        }
      }
    }
  });

  it("NaN / Inf weights and an adapter with no tensors", () => {
    const base = presetShape(dir, LL);
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]]], {}, NaN), "a", base, max), "ADAPTER_NONFINITE");
    expectCode(() => readGgufLora(craftGguf([[A, [64, 4]], [B, [4, 64]]], {}, Infinity), "a", base, max), "ADAPTER_NONFINITE");
    expectCode(() => readGgufLora(craftGguf([]), "a", base, max), "ADAPTER_NO_TARGETS");
  });

  it("truncated GGUF keeps the format's own code", () => {
    const base = presetShape(dir, LL);
    const p = writeGgufLora(join(dir, "trunc.gguf"), LL, { ...opts, type: "f32" });
    const bytes = readFileSync(p);
    const t = join(dir, "trunc2.gguf");
    writeFileSync(t, bytes.subarray(0, bytes.length - 64));
    expectCode(() => readGgufLora(t, "a", base, max), "MODEL_TENSOR_OUT_OF_BOUNDS");
    writeFileSync(t, bytes.subarray(0, 3));
    expectCode(() => readGgufLora(t, "a", base, max), "MODEL_FILE_TRUNCATED");
    cpSync(p, t);
    expect(readGgufLora(t, "a", base, max).targetModules).toEqual(["q", "down"]);
  });
});
