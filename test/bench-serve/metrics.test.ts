import { describe, expect, it } from "vitest";
import type { RequestRecord } from "../../src/bench-serve/client.js";
import { computeMetrics, distribution, measured, percentile, tpotOf, ttftOf } from "../../src/bench-serve/metrics.js";
import { classifyMetric, counterDelta, hitRate, parseAdapterCounters } from "../../src/bench-serve/server-probe.js";

function rec(index: number, start: number, first: number | null, end: number, tokens: number, over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    index, model: "a0000", adapterIndex: 0, promptTokens: 8, maxTokens: tokens, scheduledMs: start, startMs: start,
    firstTokenMs: first, tokenTimesMs: [], endMs: end, status: "ok", outputTokens: tokens, ...over,
  };
}

describe("percentiles", () => {
  it("interpolate linearly between order statistics", () => {
    expect(percentile([4, 1, 3, 2], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5], 90)).toBeCloseTo(4.6, 10);
    expect(percentile([10], 99)).toBe(10);
    expect(percentile([], 50)).toBeNaN();
    const xs = Array.from({ length: 101 }, (_, i) => i);
    expect(distribution(xs)).toEqual({ mean: 50, p50: 50, p90: 90, p99: 99 });
  });
});

describe("run metrics", () => {
  // Four requests: TTFTs 100, 300, 900 ms, one failure.
  const records = [
    rec(0, 0, 100, 1100, 11),
    rec(1, 500, 800, 2300, 7),
    rec(2, 1000, 1900, 4000, 8, { maxTokens: 10 }), // short: 8 of 10
    rec(3, 1500, null, 1600, 0, { status: "error", error: "boom", httpStatus: 500 }),
  ];

  it("TTFT, TPOT and end-to-end per request", () => {
    expect(ttftOf(records[0]!)).toBe(100);
    expect(tpotOf(records[0]!)).toBe(100); // (1100 − 100) / 10
    expect(tpotOf(records[1]!)).toBe(250); // (2300 − 800) / 6
    expect(tpotOf(records[3]!)).toBeNull();
    expect(tpotOf(rec(9, 0, 5, 5, 1))).toBeNull();
  });

  it("throughput over the window, distributions over successes, failures as SLO misses", () => {
    const m = computeMetrics(records, 500);
    expect(m.requests).toBe(4);
    expect(m.ok).toBe(3);
    expect(m.failed).toBe(1);
    expect(m.short).toBe(1);
    expect(m.windowS).toBe(4);
    expect(m.outputTokens).toBe(26);
    expect(m.outputTokPerS).toBe(6.5);
    expect(m.requestsPerS).toBe(0.75);
    expect(m.ttftMs.p50).toBe(300);
    expect(m.ttftMs.mean).toBeCloseTo(1300 / 3, 10);
    expect(m.tpotMs.p50).toBe(250);
    expect(m.e2eMs.p50).toBe(1800);
    // TTFT ≤ 500 ms: requests 0 and 1; request 2 is too slow and 3 failed → 2 of 4.
    expect(m.sloAttainment).toBe(0.5);
    expect(computeMetrics(records, 10_000).sloAttainment).toBe(0.75);
  });

  it("drops the warm-up by trace index", () => {
    expect(measured(records, 2).map((r) => r.index)).toEqual([2, 3]);
  });
});

describe("Prometheus adapter counters", () => {
  const text = `# HELP openlora_adapter_loads_total x
# TYPE openlora_adapter_loads_total counter
openlora_adapter_loads_total{format="gguf"} 3
openlora_adapter_loads_total{format="peft"} 2
openlora_adapter_evictions_total 1
openlora_adapter_cache_hits_total 40
openlora_adapter_misses_total 5
openlora_adapter_load_seconds_bucket{le="0.1"} 4
openlora_adapter_load_seconds_count 5
openlora_adapter_load_failures_total 7
openlora_adapters_resident 4
openlora_adapter_resident_bytes 123456
process_resident_memory_bytes 999
`;

  it("sums label sets and ignores histograms, bytes and unrelated metrics", () => {
    expect(parseAdapterCounters(text)).toEqual({ loads: 5, evictions: 1, hits: 40, misses: 5, resident: 4 });
    expect(classifyMetric("openlora_adapter_load_seconds_sum")).toBeUndefined();
    expect(classifyMetric("openlora_adapter_load_failures_total")).toBeUndefined();
    expect(parseAdapterCounters("process_cpu_seconds_total 3\n")).toBeUndefined();
  });

  it("deltas and hit rate", () => {
    const before = { loads: 1, evictions: 0, hits: 10, misses: 1 };
    const d = counterDelta(before, parseAdapterCounters(text));
    expect(d).toEqual({ loads: 4, evictions: 1, hits: 30, misses: 4, resident: 4 });
    expect(hitRate(d)).toBeCloseTo(30 / 34, 10);
    expect(hitRate({ loads: 0, evictions: 0, hits: 0, misses: 0 })).toBeUndefined();
    expect(counterDelta(before, undefined)).toBeUndefined();
  });
});
