/**
 * `openlora bench serve` end to end on a tiny model: openlora, its base-only ceiling and the
 * llama.cpp baseline, each launched as its own server process, driven over streaming HTTP with
 * the same closed-loop trace at 1 and 2 adapters; every output file written and consistent.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseServeBenchArgs } from "../../src/bench-serve/args.js";
import { executeServeBench } from "../../src/bench-serve/run.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-bench-harness-");

describe("bench serve harness", () => {
  it("runs three systems over the same trace and writes JSON, markdown and the plot", async () => {
    const model = writeGgufModel(join(dir, "tiny.gguf"), "tiny-llama3", { seed: 3, type: "q8_0" });
    for (const [i, id] of ["a0000", "a0001"].entries()) {
      writeGgufLora(join(dir, "loras", `${id}.gguf`), "tiny-llama3", { seed: 100 + i, rank: 4, alpha: 8, targets: ["q", "v"], type: "f16" });
    }
    const out = join(dir, "out");
    const o = parseServeBenchArgs([
      "--quick", "--model", model, "--adapter-dir", join(dir, "loras"), "--num-adapters", "1,2", "--concurrency", "2",
      "--requests", "6", "--warmup", "2", "--prompt-len", "4:9", "--output-len", "3:6", "--threads", "1",
      "--systems", "openlora,openlora-base,llamacpp", "--out", out,
    ]);
    const { summary, results, machine } = await executeServeBench(o, "openlora bench serve (test)");

    for (const r of results) expect(r.error, `${r.system} n=${r.point.adapters}`).toBeUndefined();
    expect(results).toHaveLength(6);
    for (const r of results) {
      expect(r.records).toHaveLength(6);
      for (const q of r.records) {
        expect(q.status, q.error).toBe("ok");
        expect(q.outputTokens).toBe(q.maxTokens);  // ignore_eos: forced to length
        expect(q.maxTokens).toBeGreaterThanOrEqual(3);
        expect(q.maxTokens).toBeLessThan(6);
      }
      expect(r.metrics!.outputTokPerS).toBeGreaterThan(0);
    }
    // Every system saw the same requests, in the same order, with the same lengths.
    const shape = (s: string, n: number) => results.find((r) => r.system === s && r.point.adapters === n)!.records.slice().sort((a, b) => a.index - b.index).map((q) => [q.index, q.promptTokens, q.maxTokens]);
    for (const n of [1, 2]) {
      expect(shape("openlora-base", n)).toEqual(shape("openlora", n));
      expect(shape("llamacpp", n)).toEqual(shape("openlora", n));
    }

    const systems = (summary as { systems: Record<string, { throughput_tok_s: number; slo_attainment: number; adapters: number }> }).systems;
    expect(Object.keys(systems).sort()).toEqual(["llamacpp@1", "llamacpp@2", "openlora-base@1", "openlora-base@2", "openlora@1", "openlora@2"]);
    for (const e of Object.values(systems)) {
      expect(e.throughput_tok_s).toBeGreaterThan(0);
      expect(e.slo_attainment).toBeGreaterThanOrEqual(0);
    }
    expect(machine.readBandwidthGBs).toBeGreaterThan(0);

    const written = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { machine: { read_bandwidth_gb_s: number }; runs: unknown[] };
    expect(written.machine.read_bandwidth_gb_s).toBe(machine.readBandwidthGBs);
    expect(written.runs).toHaveLength(6);
    const requests = JSON.parse(readFileSync(join(out, "requests.json"), "utf8")) as Array<{ system: string; requests: unknown[] }>;
    expect(requests.map((r) => r.requests.length)).toEqual([6, 6, 6, 6, 6, 6]);
    const md = readFileSync(join(out, "summary.md"), "utf8");
    for (const s of ["openlora", "openlora-base", "llamacpp"]) expect(md).toContain(`| ${s} |`);
    expect(md).toContain(`memory read bandwidth ${machine.readBandwidthGBs} GB/s`);
    expect(existsSync(join(out, "throughput-vs-adapters.svg"))).toBe(true);
  }, 180_000);
});
