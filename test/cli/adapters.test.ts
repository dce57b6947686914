/** `openlora generate --adapter` through the npm bin: ids from --adapters, paths, weights, errors. */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { writeGgufLora, writePeftAdapter } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const model = join(dir, "tiny-llama3.gguf");
const adapters = join(dir, "adapters");

const cli = (args: string[]) => runCli(args, { OPENLORA_CACHE: dir });

const gen = (extra: string[]) => cli(["generate", "--model", model, "--prompt", "Hello adapters", "--max-tokens", "8", "--ignore-eos", "--json", ...extra]);

beforeAll(() => {
  writeGgufModel(model, "tiny-llama3", { seed: 5, type: "q8_0" });
  mkdirSync(adapters, { recursive: true });
  writePeftAdapter(join(adapters, "support-bot"), "tiny-llama3", { seed: 1, rank: 8, alpha: 16, targets: ["q", "k", "v", "o"], dtype: "F32" });
  writeGgufLora(join(adapters, "legal.gguf"), "tiny-llama3", { seed: 2, rank: 16, alpha: 16, targets: ["q", "v", "up", "down"], type: "f32" });
  writeGgufLora(join(dir, "qwen-only.gguf"), "tiny-qwen3", { seed: 3, rank: 8, alpha: 8, targets: ["q"], type: "f32" });
});

describe("openlora generate --adapter", () => {
  it("applies adapters by id (from --adapters) or by path, with weights", async () => {
    const base = JSON.parse((await gen([])).stdout);
    const byId = await gen(["--adapters", adapters, "--adapter", "support-bot"]);
    expect(byId.code).toBe(0);
    const one = JSON.parse(byId.stdout);
    expect(one.adapters).toEqual([{ id: "support-bot", weight: 1 }]);
    expect(one.tokens).not.toEqual(base.tokens);
    const byPath = JSON.parse((await gen(["--adapter", join(adapters, "support-bot")])).stdout);
    expect(byPath.tokens).toEqual(one.tokens);
    const zero = JSON.parse((await gen(["--adapters", adapters, "--adapter", "support-bot=0"])).stdout);
    expect(zero.tokens).toEqual(base.tokens);
    const both = await gen(["--adapters", adapters, "--adapter", "support-bot=0.7", "--adapter", "legal=0.3"]);
    expect(both.code).toBe(0);
    expect(JSON.parse(both.stdout).adapters).toEqual([{ id: "support-bot", weight: 0.7 }, { id: "legal", weight: 0.3 }]);
  });

  it("fails with typed errors for unknown ids, wrong bases and ranks above the maximum", async () => {
    const unknown = await gen(["--adapters", adapters, "--adapter", "nope"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("[ADAPTER_NOT_FOUND]");
    const wrongBase = await gen(["--adapter", join(dir, "qwen-only.gguf")]);
    expect(wrongBase.code).toBe(1);
    expect(wrongBase.stderr).toMatch(/ADAPTER_BASE_MISMATCH|ADAPTER_SHAPE_MISMATCH/);
    const rank = await gen(["--adapters", adapters, "--adapter", "legal", "--max-lora-rank", "8"]);
    expect(rank.code).toBe(1);
    expect(rank.stderr).toContain("ADAPTER_RANK_TOO_LARGE");
  });
});
