/** writePeftAdapterFolder: read(write(x)) == x bit for bit (Llama: q/k rows un-permuted and back). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writePeftAdapterFolder } from "../../../src/adapters/formats/peft-writer.js";
import { readPeftAdapter } from "../../../src/adapters/formats/peft.js";
import { mergeAdapters } from "../../../src/adapters/merge.js";
import type { LoraAdapter } from "../../../src/adapters/types.js";
import { writePeftAdapter } from "../../../src/synth/adapters.js";
import { pairsOf, presetShape } from "../formats/helpers.js";
import { tempDir } from "../../helpers/tmp.js";

const dir = tempDir();

function expectSame(x: LoraAdapter, y: LoraAdapter): void {
  const px = pairsOf(x), py = pairsOf(y);
  expect(py.map(([l, m, p]) => [l, m, p.rank, p.inDim, p.outDim])).toEqual(px.map(([l, m, p]) => [l, m, p.rank, p.inDim, p.outDim]));
  px.forEach(([l, m, p], i) => {
    const q = py[i]![2];
    expect(q.scale, `${l} ${m} scale`).toBe(p.scale);
    expect(Buffer.from(q.a.buffer, q.a.byteOffset, q.a.byteLength).equals(Buffer.from(p.a.buffer, p.a.byteOffset, p.a.byteLength)), `${l} ${m} A`).toBe(true);
    expect(Buffer.from(q.b.buffer, q.b.byteOffset, q.b.byteLength).equals(Buffer.from(p.b.buffer, p.b.byteOffset, p.b.byteLength)), `${l} ${m} B`).toBe(true);
  });
  expect(y.targetModules).toEqual(x.targetModules);
  expect(y.weights.maxRank).toBe(x.weights.maxRank);
  expect(y.weights.bytes).toBe(x.weights.bytes);
}

describe("writePeftAdapterFolder", () => {
  for (const preset of ["tiny-llama3", "tiny-qwen3"]) {
    it(`round-trips bit for bit on ${preset} (rank_pattern and alpha_pattern)`, () => {
      const base = presetShape(dir, preset);
      const src = writePeftAdapter(join(dir, `${preset}-src`), preset, {
        seed: 3, rank: 8, alpha: 16, targets: ["q", "k", "v", "o", "gate", "down"], dtype: "F32",
        rankPattern: { k_proj: 4, "model.layers.1.mlp.down_proj": 2 }, alphaPattern: { v_proj: 5, q_proj: 3 },
      });
      const x = readPeftAdapter(src, "x", base, { maxRank: 64 });
      const out = writePeftAdapterFolder(join(dir, `${preset}-out`), x.weights, base, { baseModel: "some/base", parents: [{ id: "p1", weight: 0.5 }] });
      const y = readPeftAdapter(out, "y", base, { maxRank: 64 });
      expectSame(x, y);
      expect(y.parents).toEqual([{ id: "p1", weight: 0.5 }]);
      expect(y.baseModel).toBe("some/base");
      // And a second round trip writes identical bytes.
      const again = writePeftAdapterFolder(join(dir, `${preset}-again`), y.weights, base, { baseModel: "some/base", parents: [{ id: "p1", weight: 0.5 }] });
      expect(readFileSync(join(again, "adapter_model.safetensors")).equals(readFileSync(join(out, "adapter_model.safetensors")))).toBe(true);
      // Llama's q/k B rows go back to Hugging Face layout: the written tensor equals the source file's.
      expect(readFileSync(join(out, "adapter_model.safetensors")).length).toBe(readFileSync(join(src, "adapter_model.safetensors")).length);
      const cfg = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
      expect(cfg).toMatchObject({ peft_type: "LORA", bias: "none", openlora_parents: [{ id: "p1", weight: 0.5 }] });
    });
  }

  it("writes Hugging Face layout: a Llama adapter's written B equals the synthetic source file's tensors", () => {
    const base = presetShape(dir, "tiny-llama3");
    const src = writePeftAdapter(join(dir, "hf-src"), "tiny-llama3", { seed: 9, rank: 4, alpha: 4, targets: ["q", "k"], dtype: "F32" });
    const x = readPeftAdapter(src, "x", base, { maxRank: 64 });
    const out = writePeftAdapterFolder(join(dir, "hf-out"), x.weights, base);
    // Same tensors, same order, same F32 bytes (the headers differ only in __metadata__ if at all).
    const tail = (p: string) => { const b = readFileSync(join(p, "adapter_model.safetensors")); const n = Number(b.readBigUInt64LE(0)); return b.subarray(8 + n); };
    expect(tail(out).equals(tail(src))).toBe(true);
  });

  it("a merged adapter (scale 1, mixed ranks) is written with r = lora_alpha per module", () => {
    const base = presetShape(dir, "tiny-qwen3");
    const a = readPeftAdapter(writePeftAdapter(join(dir, "m-a"), "tiny-qwen3", { seed: 1, rank: 4, alpha: 8, targets: ["q", "v"], dtype: "F32" }), "a", base, { maxRank: 64 });
    const b = readPeftAdapter(writePeftAdapter(join(dir, "m-b"), "tiny-qwen3", { seed: 2, rank: 2, alpha: 2, targets: ["q"], dtype: "F32" }), "b", base, { maxRank: 64 });
    const merged = mergeAdapters([{ adapter: a.weights, weight: 0.6 }, { adapter: b.weights, weight: 0.4 }], "cat");
    const out = writePeftAdapterFolder(join(dir, "m-out"), merged, base, { parents: [{ id: "a", weight: 0.6 }, { id: "b", weight: 0.4 }] });
    const cfg = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    expect(cfg.target_modules).toEqual(["q_proj", "v_proj"]);
    const y = readPeftAdapter(out, "m", base, { maxRank: 64 });
    for (const [, m, p] of pairsOf(y)) {
      expect(p.scale).toBe(1);
      expect(p.rank).toBe(m === "q" ? 6 : 4);
    }
    expect(y.parents).toEqual([{ id: "a", weight: 0.6 }, { id: "b", weight: 0.4 }]);
  });
});
