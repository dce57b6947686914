/**
 * The CLI as a user runs it: `bin/openlora.js` (the npm bin, over the compiled dist/) in a child
 * process, on a generated model.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const model = join(dir, "tiny-qwen3.gguf");

const cli = (args: string[]) => runCli(args, { OPENLORA_CACHE: dir });

beforeAll(() => { writeGgufModel(model, "tiny-qwen3", { seed: 2, type: "q8_0" }); });

describe("openlora generate", () => {
  it("--json prints one object with text, prompt ids and generated ids", async () => {
    const r = await cli(["generate", "--model", model, "--prompt", "Hello there", "--max-tokens", "6", "--threads", "2", "--json"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!);
    expect(out.prompt_tokens.length).toBeGreaterThan(0);
    expect(out.tokens.length).toBeGreaterThan(0);
    expect(out.tokens.length).toBeLessThanOrEqual(6);
    expect(typeof out.text).toBe("string");
    // Greedy is deterministic: the same command gives the same ids.
    const again = JSON.parse((await cli(["generate", "--model", model, "--prompt", "Hello there", "--max-tokens", "6", "--threads", "1", "--json"])).stdout);
    expect(again.tokens).toEqual(out.tokens);
  });

  it("streams text without --json and reports the speed on stderr", async () => {
    const r = await cli(["generate", "--model", model, "--prompt", "Hello", "--max-tokens", "4", "--ignore-eos", "--temperature", "0.8", "--seed", "3"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/4 tokens in .* tok\/s/);
  });

  it("exits 1 with a typed error for a bad model and 2 for a bad argument", async () => {
    const missing = await cli(["generate", "--model", join(dir, "nope.gguf"), "--prompt", "x"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("[MODEL_NOT_FOUND]");
    const bad = await cli(["generate", "--model", model, "--prompt", "x", "--max-tokens", "zero"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("[INVALID_ARGUMENT]");
    const overflow = await cli(["generate", "--model", model, "--prompt", "x", "--max-tokens", "99999"]);
    expect(overflow.code).toBe(1);
    expect(overflow.stderr).toContain("[CONTEXT_OVERFLOW]");
  });
});

describe("openlora synth", () => {
  it("writes a model the engine loads", async () => {
    const out = join(dir, "synth-hf");
    const r = await cli(["synth", "--preset", "tiny-llama3", "--format", "hf", "--type", "bf16", "--out", out]);
    expect(r.code).toBe(0);
    const g = await cli(["generate", "--model", out, "--prompt", "Hi", "--max-tokens", "2", "--json"]);
    expect(g.code).toBe(0);
    expect(JSON.parse(g.stdout).tokens.length).toBeGreaterThan(0);
  });
});
