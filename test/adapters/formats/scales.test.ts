import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { patternValue } from "../../../src/adapters/formats/common.js";
import { readGgufLora } from "../../../src/adapters/formats/gguf-lora.js";
import { isTargeted, readPeftAdapter } from "../../../src/adapters/formats/peft.js";
import { writeGgufLora, writePeftAdapter } from "../../../src/synth/adapters.js";
import { tempDir } from "../../helpers/tmp.js";
import { editJson, pairsOf, presetShape } from "./helpers.js";

const dir = tempDir("openlora-adapter-scales-");
const preset = "tiny-qwen3";

describe("per-module rank and alpha", () => {
  it("rank_pattern and alpha_pattern pick each module's rank and alpha", () => {
    const base = presetShape(dir, preset);
    const path = writePeftAdapter(join(dir, "patterns"), preset, {
      seed: 3, rank: 8, alpha: 16, targets: ["q", "v", "down"], dtype: "F32",
      rankPattern: { v_proj: 4, "model.layers.1.mlp.down_proj": 2 },
      alphaPattern: { "layers\\.0\\.self_attn\\.q_proj": 4 },
    });
    const a = readPeftAdapter(path, "patterns", base, { maxRank: 16 });
    const got = pairsOf(a).map(([l, m, p]) => [l, m, p.rank, p.scale]);
    expect(got).toEqual([
      [0, "q", 8, 4 / 8], [0, "v", 4, 16 / 4], [0, "down", 8, 16 / 8],
      [1, "q", 8, 16 / 8], [1, "v", 4, 16 / 4], [1, "down", 2, 16 / 2],
    ]);
    expect(a.weights.maxRank).toBe(8);
    expect(a.targetModules).toEqual(["q", "v", "down"]);
    // The GGUF form (one alpha, per-tensor ranks) gives the same ranks and alpha/rank scales.
    const g = readGgufLora(writeGgufLora(join(dir, "patterns.gguf"), preset, {
      seed: 3, rank: 8, alpha: 16, targets: ["q", "v", "down"], type: "f32", rankPattern: { v_proj: 4, "model.layers.1.mlp.down_proj": 2 },
    }), "g", base, { maxRank: 16 });
    expect(pairsOf(g).map(([l, m, p]) => [l, m, p.rank, p.scale])).toEqual([
      [0, "q", 8, 2], [0, "v", 4, 4], [0, "down", 8, 2], [1, "q", 8, 2], [1, "v", 4, 4], [1, "down", 2, 8],
    ]);
  });

  it("rsLoRA scales by alpha / sqrt(r) (PEFT use_rslora; GGUF written with alpha·sqrt(r))", () => {
    const base = presetShape(dir, preset);
    const o = { seed: 4, rank: 16, alpha: 8, targets: ["o" as const] };
    const p = readPeftAdapter(writePeftAdapter(join(dir, "rs"), preset, { ...o, dtype: "BF16", rsLora: true }), "rs", base, { maxRank: 16 });
    for (const [, , pair] of pairsOf(p)) expect(pair.scale).toBe(8 / 4);
    const g = readGgufLora(writeGgufLora(join(dir, "rs.gguf"), preset, { ...o, type: "f16", rsLora: true }), "rs", base, { maxRank: 16 });
    for (const [, , pair] of pairsOf(g)) expect(pair.scale).toBeCloseTo(2, 6);
  });

  it("GGUF alpha 0 means scale 1 (llama.cpp)", () => {
    const base = presetShape(dir, preset);
    const g = readGgufLora(writeGgufLora(join(dir, "a0.gguf"), preset, { seed: 5, rank: 4, alpha: 0, targets: ["k"], type: "f32" }), "a0", base, { maxRank: 16 });
    expect(pairsOf(g).map(([, , p]) => p.scale)).toEqual([1, 1]);
  });

  it("layers_to_transform and regex target_modules", () => {
    const base = presetShape(dir, preset);
    const path = writePeftAdapter(join(dir, "layers"), preset, { seed: 6, rank: 4, alpha: 4, targets: ["gate", "up"], dtype: "F16", layers: [1] });
    expect(pairsOf(readPeftAdapter(path, "l", base, { maxRank: 8 })).map(([l, m]) => [l, m])).toEqual([[1, "gate"], [1, "up"]]);
    editJson(join(path, "adapter_config.json"), (j) => { j.target_modules = ".*\\.mlp\\.(gate|up)_proj"; });
    expect(pairsOf(readPeftAdapter(path, "l", base, { maxRank: 8 })).length).toBe(2);
    expect(isTargeted({ targetModules: ["q_proj"] }, "model.layers.0.self_attn.q_proj")).toBe(true);
    expect(isTargeted({ targetModules: ["q_proj"] }, "model.layers.0.self_attn.qq_proj")).toBe(false);
    expect(isTargeted({ targetModules: "all-linear" }, "model.layers.0.mlp.up_proj")).toBe(true);
    expect(isTargeted({ targetModules: "all-linear" }, "lm_head")).toBe(false);
    expect(patternValue({ "q_proj": 2, "layers.1.self_attn.q_proj": 3 }, "model.layers.1.self_attn.q_proj")).toBe(2);
    expect(patternValue({ "layers\\.1\\.self_attn\\.q_proj": 3, q_proj: 2 }, "model.layers.1.self_attn.q_proj")).toBe(3);
    expect(patternValue({ proj: 2 }, "model.layers.1.self_attn.q_proj")).toBeUndefined();
  });
});
