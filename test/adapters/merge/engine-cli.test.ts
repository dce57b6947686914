/**
 * Merged adapters in the engine and through the CLI: cat gives the tokens of the on-the-fly
 * composition (and its ΔW within f32 rounding), svd at full rank too; `openlora adapters merge`
 * end to end, run in-process through main().
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { mergeAdapters } from "../../../src/adapters/merge.js";
import { LORA_MODULES } from "../../../src/adapters/types.js";
import { main } from "../../../src/cli/main.js";
import { generate } from "../../../src/engine/generate.js";
import { type LoadedModel, loadModel } from "../../../src/model/load.js";
import { native } from "../../../src/native/index.js";
import { writePeftAdapter } from "../../../src/synth/adapters.js";
import { writeGgufModel } from "../../../src/synth/synthesize.js";
import { randomAdapter } from "../../helpers/random-adapter.js";
import { tempDir } from "../../helpers/tmp.js";
import { deltaOf, maxAbs, maxAbsDiff, weightedDelta } from "./helpers.js";

const dir = tempDir();
const modelPath = join(dir, "tiny-llama3.gguf");
let model: LoadedModel;

beforeAll(async () => {
  writeGgufModel(modelPath, "tiny-llama3", { seed: 5, type: "q8_0" });
  model = await loadModel(modelPath, { prefault: false });
  native.setThreads(2);
});

describe("merged adapters in the engine", () => {
  const prompt = "Merging adapters offline gives a new adapter.";
  it("cat and full-rank svd give the composition's tokens; cat's ΔW is Σ w·s·B·A within f32 rounding", () => {
    const a = randomAdapter(model.config, 8, 11, ["q", "k", "v", "o", "gate", "up", "down"], 16);
    const b = randomAdapter(model.config, 16, 12, ["q", "v", "down"], 8);
    const ins = [{ adapter: a, weight: 0.7 }, { adapter: b, weight: 0.3 }];
    const req = { prompt, maxTokens: 12, ignoreEos: true };
    const composed = generate(model, { ...req, adapters: ins }, { collectLogits: true });
    const base = generate(model, req);
    expect(composed.tokens).not.toEqual(base.tokens);
    const cat = mergeAdapters(ins, "cat");
    for (let l = 0; l < model.config.nLayers; l++) {
      for (const m of LORA_MODULES) {
        const want = weightedDelta(ins, l, m);
        if (!want) { expect(cat.layers[l]![m]).toBeUndefined(); continue; }
        expect(maxAbsDiff(deltaOf(cat.layers[l]![m]!), want), `${l} ${m}`).toBeLessThan(4e-7 * maxAbs(want) * 8);
      }
    }
    const viaCat = generate(model, { ...req, adapters: [{ adapter: cat, weight: 1 }] }, { collectLogits: true });
    expect(viaCat.tokens).toEqual(composed.tokens);
    expect(maxAbsDiff(viaCat.logits!.flatMap((x) => [...x]), composed.logits!.flatMap((x) => [...x]))).toBeLessThan(1e-3);
    const svd = mergeAdapters(ins, "svd", { targetRank: 24 });
    const viaSvd = generate(model, { ...req, adapters: [{ adapter: svd, weight: 1 }] }, { collectLogits: true });
    expect(viaSvd.tokens).toEqual(composed.tokens);
    expect(maxAbsDiff(viaSvd.logits!.flatMap((x) => [...x]), composed.logits!.flatMap((x) => [...x]))).toBeLessThan(1e-3);
  });
});

describe("openlora adapters merge (in-process)", () => {
  let out: string[] = [];
  let err: string[] = [];
  afterEach(() => vi.restoreAllMocks());
  async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    out = []; err = [];
    vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => { out.push(String(s)); return true; });
    vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => { err.push(String(s)); return true; });
    try {
      const code = await main(args);
      return { code, stdout: out.join(""), stderr: err.join("") };
    } finally {
      vi.restoreAllMocks();
    }
  }
  const adapters = join(dir, "adapters");
  const gen = (extra: string[]) => run(["generate", "--model", modelPath, "--prompt", "Hello merged adapters", "--max-tokens", "10", "--ignore-eos", "--json", "--threads", "2", ...extra]);

  beforeAll(() => {
    mkdirSync(adapters, { recursive: true });
    writePeftAdapter(join(adapters, "alpha"), "tiny-llama3", { seed: 1, rank: 8, alpha: 16, targets: ["q", "k", "v", "o"], dtype: "F32", strength: 0.1 });
    writePeftAdapter(join(adapters, "beta"), "tiny-llama3", { seed: 2, rank: 4, alpha: 4, targets: ["q", "up", "down"], dtype: "F32", strength: 0.1 });
  });

  it("cat-merges two PEFT adapters; generate with the merged adapter gives the composition's tokens", async () => {
    const merged = join(dir, "merged");
    const res = await run(["adapters", "merge", "--model", modelPath, "--out", merged, "--method", "cat", "--adapters", adapters, "--adapter", "alpha=0.7", "--adapter", join(adapters, "beta") + "=0.3", "--json"]);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ method: "cat", max_rank: 12, parents: [{ id: "alpha", weight: 0.7 }, { id: "beta", weight: 0.3 }] });
    const cfg = JSON.parse(readFileSync(join(merged, "adapter_config.json"), "utf8"));
    expect(cfg.openlora_parents).toEqual([{ id: "alpha", weight: 0.7 }, { id: "beta", weight: 0.3 }]);
    expect(cfg.target_modules).toEqual(["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]);
    const composed = JSON.parse((await gen(["--adapters", adapters, "--adapter", "alpha=0.7", "--adapter", "beta=0.3"])).stdout);
    const viaMerged = JSON.parse((await gen(["--adapter", merged])).stdout);
    const base = JSON.parse((await gen([])).stdout);
    expect(viaMerged.tokens).toEqual(composed.tokens);
    expect(composed.tokens).not.toEqual(base.tokens);
    // An existing output folder is refused without --force.
    const again = await run(["adapters", "merge", "--model", modelPath, "--out", merged, "--method", "cat", "--adapters", adapters, "--adapter", "alpha"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("[ADAPTER_ALREADY_EXISTS]");
    // list shows it with its rank and parents (and the base model file there as a bad adapter).
    const listed = await run(["adapters", "list", "--adapters", dir, "--model", modelPath, "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).adapters).toEqual([
      expect.objectContaining({ id: "merged", format: "peft", rank: 12, parents: cfg.openlora_parents }),
      expect.objectContaining({ id: "tiny-llama3", format: "gguf", error: "ADAPTER_INVALID" }),
    ]);
  });

  it("fails with INVALID_ARGUMENT (exit 2) for unequal ranks, a missing density or an unknown method", async () => {
    const base = ["adapters", "merge", "--model", modelPath, "--adapters", adapters, "--adapter", "alpha", "--adapter", "beta"];
    for (const extra of [["--method", "linear"], ["--method", "ties"], ["--method", "nope"], []]) {
      const r = await run([...base, "--out", join(dir, "bad"), ...extra]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain("[INVALID_ARGUMENT]");
    }
    const svd = await run([...base, "--out", join(dir, "svd"), "--method", "svd", "--rank", "6", "--json"]);
    expect(svd.code, svd.stderr).toBe(0);
    expect(JSON.parse(svd.stdout).max_rank).toBe(6);
  });
});
