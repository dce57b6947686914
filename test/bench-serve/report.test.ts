/** The --json summary's shape and the aggregation over repeats, from hand-made runs; the CLI's argument checks. */
import { describe, expect, it } from "vitest";
import type { RequestRecord } from "../../src/bench-serve/client.js";
import { modeDefaults, sweepPoints } from "../../src/bench-serve/config.js";
import { computeMetrics } from "../../src/bench-serve/metrics.js";
import { aggregate, describeMachine, jsonSummary, markdownReport, plots, type RunResult } from "../../src/bench-serve/report.js";
import { parseServeBenchArgs } from "../../src/bench-serve/args.js";

function records(ttftMs: number, n = 4): RequestRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    index: i, model: "m", adapterIndex: 0, promptTokens: 8, maxTokens: 10, scheduledMs: i * 100, startMs: i * 100,
    firstTokenMs: i * 100 + ttftMs, tokenTimesMs: [], endMs: i * 100 + ttftMs + 900, status: "ok" as const, outputTokens: 10,
  }));
}

describe("report", () => {
  const o = { ...modeDefaults("quick"), adapterCounts: [1, 10], rate: 2, rates: [1, 2], rateSweepAdapters: 10, repeats: 2, sloTtftMs: 150 };
  const run = (system: string, adapters: number, rate: number, repeat: number, ttft: number): RunResult => ({
    system, point: { adapters, rate }, repeat, metrics: computeMetrics(records(ttft), o.sloTtftMs), records: records(ttft),
    peakRssBytes: 100 * 2 ** 20, adapterCounters: { loads: adapters, evictions: 0, hits: 4 - adapters / 10, misses: adapters / 10 },
  });
  const results: RunResult[] = [];
  for (const repeat of [0, 1]) {
    for (const p of sweepPoints(o)) {
      results.push(run("openlora", p.adapters, p.rate!, repeat, repeat ? 100 : 200));
      results.push(run("openlora-base", p.adapters, p.rate!, repeat, 50));
    }
  }
  results.push({ system: "llamacpp", point: { adapters: 1, rate: 2 }, repeat: 0, error: "llamacpp exited (1)", records: [] });

  it("sweep points: the adapter sweep at the reference rate, then the other rates", () => {
    expect(sweepPoints(o)).toEqual([{ adapters: 1, rate: 2 }, { adapters: 10, rate: 2 }, { adapters: 10, rate: 1 }]);
    expect(sweepPoints({ ...o, concurrency: 4 })).toEqual([{ adapters: 1, concurrency: 4 }, { adapters: 10, concurrency: 4 }]);
  });

  it("--json: one entry per system and adapter count with the agreed keys; medians over repeats", () => {
    const summary = jsonSummary(aggregate(results), o) as { systems: Record<string, Record<string, unknown>>; rate_sweep: Record<string, unknown[]> };
    expect(Object.keys(summary.systems).sort()).toEqual(["llamacpp@1", "openlora-base@1", "openlora-base@10", "openlora@1", "openlora@10"]);
    const e = summary.systems["openlora@10"]!;
    for (const k of ["adapters", "throughput_tok_s", "ttft_p50_ms", "ttft_p99_ms", "slo_attainment"]) expect(e).toHaveProperty(k);
    expect(e.adapters).toBe(10);
    expect(e.ttft_p50_ms).toBe(150); // median of 200 and 100
    expect(e.slo_attainment).toBe(0.5); // 0 and 1
    expect(e.adapter_hit_rate).toBe(0.75);
    expect(e.peak_rss_mb).toBe(100);
    expect(summary.systems["llamacpp@1"]).toMatchObject({ adapters: 1, throughput_tok_s: null, error: "llamacpp exited (1)" });
    expect(summary.rate_sweep["openlora@10"]!.map((x) => (x as { rate: number }).rate)).toEqual([1, 2]);
    expect(() => JSON.stringify(summary)).not.toThrow();
  });

  it("describes the machine, its measured read bandwidth included, in the JSON and the markdown", () => {
    const machine = describeMachine(12.34e9, 2);
    expect(machine).toMatchObject({ readBandwidthGBs: 12.3, probeThreads: 2 });
    expect(machine.cores).toBeGreaterThan(0);
    const summary = jsonSummary(aggregate(results), o, machine) as { machine: Record<string, unknown> };
    expect(summary.machine).toMatchObject({ cores: machine.cores, read_bandwidth_gb_s: 12.3, probe_threads: 2 });
    expect(markdownReport(aggregate(results), results, o, "x", machine)).toContain("memory read bandwidth 12.3 GB/s (native read probe, 2 threads");
    const unmeasured = describeMachine();
    expect(unmeasured.readBandwidthGBs).toBeUndefined();
    expect(markdownReport(aggregate(results), results, o, "x", unmeasured)).toContain("memory read bandwidth not measured");
  });

  it("markdown and plots name every system", () => {
    const aggs = aggregate(results);
    const md = markdownReport(aggs, results, o, "openlora bench serve --quick");
    for (const s of ["openlora", "openlora-base", "llamacpp"]) expect(md).toContain(`| ${s} |`);
    const svgs = plots(aggs, o);
    expect(Object.keys(svgs).sort()).toEqual(["throughput-vs-adapters.svg", "ttft-vs-rate.svg"]);
    expect(svgs["ttft-vs-rate.svg"]).toContain('data-name="openlora p99"');
  });
});

describe("bench serve arguments", () => {
  it("quick by default, full on request, flags over the mode's defaults", () => {
    expect(parseServeBenchArgs([]).mode).toBe("quick");
    const full = parseServeBenchArgs(["--full", "--systems", "llamacpp,openlora", "--num-adapters", "1,5", "--prompt-len", "4:9", "--pattern", "skewed", "--zipf", "2"]);
    expect(full).toMatchObject({ mode: "full", preset: "qwen3-0.6b", systems: ["llamacpp", "openlora"], adapterCounts: [1, 5], promptLen: [4, 9], popularity: { pattern: "skewed", zipf: 2 } });
    expect(parseServeBenchArgs(["--concurrency", "3"]).concurrency).toBe(3);
  });

  it("rejects bad values with INVALID_ARGUMENT", () => {
    for (const argv of [["--systems", "vllm"], ["--prompt-len", "9:4"], ["--rate", "0"], ["--quick", "--full"], ["--warmup", "30", "--requests", "10"], ["--pattern", "zipf"]]) {
      expect(() => parseServeBenchArgs(argv), argv.join(" ")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
  });
});
