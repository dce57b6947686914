import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readGgufLora } from "../../../src/adapters/formats/gguf-lora.js";
import { readPeftAdapter } from "../../../src/adapters/formats/peft.js";
import type { LoraModule } from "../../../src/adapters/types.js";
import { pairF32 } from "../../../src/adapters/pair-storage.js";
import { GGML_TYPE } from "../../../src/formats/ggml-types.js";
import { permuteRotaryRows } from "../../../src/model/weights.js";
import { synthLoraPairs, writeGgufLora, writePeftAdapter } from "../../../src/synth/adapters.js";
import { getPreset, hfTensors } from "../../../src/synth/synthesize.js";
import { tempDir } from "../../helpers/tmp.js";
import { pairsOf, presetShape } from "./helpers.js";

const dir = tempDir("openlora-adapters-");
const ALL: LoraModule[] = ["q", "k", "v", "o", "gate", "up", "down"];

describe.each(["tiny-llama3", "tiny-qwen3"])("PEFT and GGUF forms of one adapter (%s)", (preset) => {
  const opts = { seed: 7, rank: 8, alpha: 16, targets: ALL };

  it("load to bit-identical pairs (F32)", () => {
    const base = presetShape(dir, preset);
    const peft = readPeftAdapter(writePeftAdapter(join(dir, `${preset}-f32`), preset, { ...opts, dtype: "F32" }), "p", base, { maxRank: 64 });
    const gguf = readGgufLora(writeGgufLora(join(dir, `${preset}-f32.gguf`), preset, { ...opts, type: "f32" }), "g", base, { maxRank: 64 });
    expect(peft.format).toBe("peft");
    expect(gguf.format).toBe("gguf");
    expect(peft.targetModules).toEqual(ALL);
    expect(gguf.targetModules).toEqual(ALL);
    expect(peft.baseModel).toBe(`openlora-synthetic/${preset}`);
    expect(peft.weights.maxRank).toBe(8);
    expect(peft.weights.bytes).toBe(gguf.weights.bytes);
    const pp = pairsOf(peft);
    const gp = pairsOf(gguf);
    expect(pp.length).toBe(base.nLayers * 7);
    expect(gp.length).toBe(pp.length);
    for (let i = 0; i < pp.length; i++) {
      const [l, m, p] = pp[i]!;
      const [gl, gm, g] = gp[i]!;
      expect([gl, gm]).toEqual([l, m]);
      expect(p.scale).toBe(2);
      expect(g.scale).toBe(2);
      expect([p.rank, p.inDim, p.outDim]).toEqual([8, base.modules[m].inDim, base.modules[m].outDim]);
      expect([g.rank, g.inDim, g.outDim]).toEqual([p.rank, p.inDim, p.outDim]);
      expect(Buffer.from(g.a.buffer).equals(Buffer.from(p.a.buffer)), `${l} ${m} A`).toBe(true);
      expect(Buffer.from(g.b.buffer).equals(Buffer.from(p.b.buffer)), `${l} ${m} B`).toBe(true);
    }
  });

  it("agree in F16 (same f16 rounding) and with the F32 values within f16 precision", () => {
    const base = presetShape(dir, preset);
    const p16 = readPeftAdapter(writePeftAdapter(join(dir, `${preset}-f16`), preset, { ...opts, dtype: "F16" }), "p16", base, { maxRank: 64 });
    const g16 = readGgufLora(writeGgufLora(join(dir, `${preset}-f16.gguf`), preset, { ...opts, type: "f16" }), "g16", base, { maxRank: 64 });
    const p32 = readPeftAdapter(join(dir, `${preset}-f32`), "p32", base, { maxRank: 64 });
    const [a, b, c] = [pairsOf(p16), pairsOf(g16), pairsOf(p32)];
    // 16-bit files stay 16-bit in memory (half the bytes), f32 files stay f32.
    expect(p16.weights.bytes * 2).toBe(p32.weights.bytes);
    for (let i = 0; i < a.length; i++) {
      for (const [pair, dtype] of [[a[i]![2], "f16"], [b[i]![2], "f16"], [c[i]![2], "f32"]] as const) {
        expect(pair.dtype).toBe(dtype);
        expect(pair.a).toBeInstanceOf(dtype === "f16" ? Uint16Array : Float32Array);
        expect(pair.b).toBeInstanceOf(dtype === "f16" ? Uint16Array : Float32Array);
      }
      expect(Buffer.from(b[i]![2].a.buffer).equals(Buffer.from(a[i]![2].a.buffer))).toBe(true);
      expect(Buffer.from(b[i]![2].b.buffer).equals(Buffer.from(a[i]![2].b.buffer))).toBe(true);
      const wide = pairF32(a[i]![2]);
      for (const key of ["a", "b"] as const) {
        const x = wide[key];
        const y = c[i]![2][key];
        for (let j = 0; j < x.length; j++) expect(Math.abs(x[j]! - y[j]!)).toBeLessThanOrEqual(Math.abs(y[j]!) * 2 ** -11 + 2 ** -24);
      }
    }
  });

  it("reads Q8_0 GGUF LoRA within quantization error (rank 32 rows quantize; others fall back to F16)", () => {
    const base = presetShape(dir, preset);
    const o = { ...opts, rank: 32, alpha: 32 };
    const q = readGgufLora(writeGgufLora(join(dir, `${preset}-q8.gguf`), preset, { ...o, type: "q8_0" }), "q", base, { maxRank: 64 });
    const f = readGgufLora(writeGgufLora(join(dir, `${preset}-r32.gguf`), preset, { ...o, type: "f32" }), "f", base, { maxRank: 64 });
    const [qp, fp] = [pairsOf(q), pairsOf(f)];
    for (let i = 0; i < qp.length; i++) {
      for (const key of ["a", "b"] as const) {
        const x = qp[i]![2][key];
        const y = fp[i]![2][key];
        let max = 0;
        for (const v of y) max = Math.max(max, Math.abs(v));
        for (let j = 0; j < x.length; j++) expect(Math.abs(x[j]! - y[j]!)).toBeLessThanOrEqual(max / 127);
      }
    }
  });
});

describe("the Llama q/k permutation of B", () => {
  it("makes W·x + s·B·(A·x) equal the permuted HF merge (W_hf + s·B_hf·A)", () => {
    const preset = "tiny-llama3";
    const p = getPreset(preset);
    const base = presetShape(dir, preset);
    const peft = readPeftAdapter(join(dir, `${preset}-f32`), "p", base, { maxRank: 64 });
    const raw = synthLoraPairs(preset, { seed: 7, rank: 8, alpha: 16, targets: ALL });
    for (const [module, heads, name] of [["q", p.nHeads, "q_proj"], ["k", p.nKvHeads, "k_proj"], ["v", 0, "v_proj"]] as const) {
      const layer = 1;
      const pair = peft.weights.layers[layer]![module]!;
      const hf = raw.find((r) => r.layer === layer && r.module === module)!;
      const { inDim, outDim } = pair;
      const Whf = hfTensors(p, 16, 1).find((t) => t.name === `model.layers.${layer}.self_attn.${name}.weight`)!.values();
      // Merged in Hugging Face layout from the raw (unpermuted) PEFT tensors, then the base loader's permutation.
      const merged = new Float32Array(Whf);
      for (let o = 0; o < outDim; o++) {
        for (let i = 0; i < inDim; i++) {
          let d = 0;
          for (let r = 0; r < hf.rank; r++) d += hf.b[o * hf.rank + r]! * hf.a[r * inDim + i]!;
          merged[o * inDim + i] = merged[o * inDim + i]! + pair.scale * d;
        }
      }
      const lin = (v: Float32Array) => ({ type: GGML_TYPE.F32, data: new Uint8Array(v.buffer), outDim, inDim });
      const perm = (v: Float32Array) => (heads ? new Float32Array(permuteRotaryRows(lin(v), heads).data.buffer) : v);
      const Wm = perm(merged);
      const W = perm(Whf);
      const x = Float32Array.from({ length: inDim }, (_, i) => Math.sin(i * 0.37 + 1));
      const ax = new Float64Array(pair.rank);
      for (let r = 0; r < pair.rank; r++) for (let i = 0; i < inDim; i++) ax[r] += pair.a[r * inDim + i]! * x[i]!;
      let maxDelta = 0;
      for (let o = 0; o < outDim; o++) {
        let y = 0;
        let ym = 0;
        for (let i = 0; i < inDim; i++) { y += W[o * inDim + i]! * x[i]!; ym += Wm[o * inDim + i]! * x[i]!; }
        let upd = 0;
        for (let r = 0; r < pair.rank; r++) upd += pair.b[o * pair.rank + r]! * ax[r]!;
        maxDelta = Math.max(maxDelta, Math.abs(pair.scale * upd));
        expect(Math.abs(y + pair.scale * upd - ym), `${module} row ${o}`).toBeLessThan(1e-4);
      }
      expect(maxDelta).toBeGreaterThan(0.01); // the update is not trivially zero
    }
  });

  it("is really applied: unpermuted B would not match (q rows differ)", () => {
    const preset = "tiny-llama3";
    const base = presetShape(dir, preset);
    const peft = readPeftAdapter(join(dir, `${preset}-f32`), "p", base, { maxRank: 64 });
    const hf = synthLoraPairs(preset, { seed: 7, rank: 8, alpha: 16, targets: ALL }).find((r) => r.layer === 0 && r.module === "q")!;
    expect(Buffer.from(peft.weights.layers[0]!.q!.b.buffer).equals(Buffer.from(hf.b.buffer))).toBe(false);
    const qwen = readPeftAdapter(join(dir, "tiny-qwen3-f32"), "p", presetShape(dir, "tiny-qwen3"), { maxRank: 64 });
    const hq = synthLoraPairs("tiny-qwen3", { seed: 7, rank: 8, alpha: 16, targets: ALL }).find((r) => r.layer === 0 && r.module === "q")!;
    expect(Buffer.from(qwen.weights.layers[0]!.q!.b.buffer).equals(Buffer.from(hq.b.buffer))).toBe(true);
  });
});
