import { describe, expect, it } from "vitest";
import {
  adapterIndices, type ArrivalSpec, gammaInterArrivalsMs, generateTrace, popularityCounts, type PopularitySpec, streamRng, type WorkloadSpec,
} from "../../src/bench-serve/workload.js";

const spec = (over: Partial<WorkloadSpec> = {}): WorkloadSpec => ({
  seed: 5, requests: 200, adapters: 10, popularity: { pattern: "power", alpha: 1 }, arrival: { mode: "gamma", rate: 4, cv: 1 },
  promptLen: [8, 64], outputLen: [4, 16], ...over,
});

function meanCv(xs: number[]): { mean: number; cv: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
  return { mean, cv: sd / mean };
}

describe("workload generator", () => {
  it("is reproducible from its seed and changes with it", () => {
    expect(generateTrace(spec())).toEqual(generateTrace(spec()));
    expect(generateTrace(spec({ seed: 6 })).requests).not.toEqual(generateTrace(spec()).requests);
  });

  it("keeps arrivals, lengths and prompts when only the adapters change", () => {
    const a = generateTrace(spec({ adapters: 10 }));
    const b = generateTrace(spec({ adapters: 1000, popularity: { pattern: "skewed", zipf: 1.5 } }));
    const strip = (t: typeof a) => t.requests.map(({ adapterIndex: _x, ...r }) => r);
    expect(strip(b)).toEqual(strip(a));
  });

  it("draws lengths and prompt tokens inside their ranges; arrivals increase from 0", () => {
    const t = generateTrace(spec({ tokenRange: [100, 200] }));
    for (const r of t.requests) {
      expect(r.prompt.length).toBeGreaterThanOrEqual(8);
      expect(r.prompt.length).toBeLessThan(64);
      expect(r.maxTokens).toBeGreaterThanOrEqual(4);
      expect(r.maxTokens).toBeLessThan(16);
      expect(r.prompt.every((x) => x >= 100 && x < 200 && Number.isInteger(x))).toBe(true);
    }
    expect(t.requests[0]!.arrivalMs).toBe(0);
    for (let i = 1; i < t.requests.length; i++) expect(t.requests[i]!.arrivalMs!).toBeGreaterThanOrEqual(t.requests[i - 1]!.arrivalMs!);
  });

  it("closed loop has no arrival times", () => {
    const arrival: ArrivalSpec = { mode: "closed", concurrency: 4 };
    expect(generateTrace(spec({ arrival })).requests.every((r) => r.arrivalMs === undefined)).toBe(true);
  });

  it("identical → one adapter; distinct → all different (cycling past n); every index in range", () => {
    const counts = (pop: PopularitySpec, n: number, requests = 200) => popularityCounts(generateTrace(spec({ adapters: n, requests, popularity: pop })));
    expect([...counts({ pattern: "identical" }, 100).keys()]).toEqual([0]);
    const distinct = counts({ pattern: "distinct" }, 1000);
    expect(distinct.size).toBe(200);
    expect([...distinct.values()].every((c) => c === 1)).toBe(true);
    expect([...counts({ pattern: "distinct" }, 50).values()].every((c) => c === 4)).toBe(true);
    for (const pop of [{ pattern: "uniform" }, { pattern: "power", alpha: 0.3 }, { pattern: "skewed", zipf: 1.5 }] as PopularitySpec[]) {
      expect([...counts(pop, 7).keys()].every((k) => k >= 0 && k < 7)).toBe(true);
    }
  });

  it("uniform and power(α = 1) spread evenly; power(α) puts (k/n)^α of the traffic below k", () => {
    const N = 40_000;
    for (const pop of [{ pattern: "uniform" }, { pattern: "power", alpha: 1 }] as PopularitySpec[]) {
      const idx = adapterIndices(streamRng(1, "t"), N, 10, pop);
      for (let k = 0; k < 10; k++) expect(idx.filter((i) => i === k).length / N).toBeCloseTo(0.1, 1);
    }
    const idx = adapterIndices(streamRng(2, "t"), N, 100, { pattern: "power", alpha: 0.1 });
    expect(idx.filter((i) => i === 0).length / N).toBeGreaterThan(Math.pow(0.01, 0.1) - 0.02);
    expect(idx.filter((i) => i === 0).length / N).toBeLessThan(Math.pow(0.01, 0.1) + 0.02);
    expect(idx.filter((i) => i < 10).length / N).toBeCloseTo(Math.pow(0.1, 0.1), 1);
  });

  it("skewed follows Zipf: P(k) ∝ 1/k^s, most popular first", () => {
    const N = 40_000;
    const s = 1.5;
    const idx = adapterIndices(streamRng(3, "t"), N, 20, { pattern: "skewed", zipf: s });
    let h = 0;
    for (let k = 1; k <= 20; k++) h += 1 / Math.pow(k, s);
    for (const k of [0, 1, 2]) expect(idx.filter((i) => i === k).length / N).toBeCloseTo(1 / Math.pow(k + 1, s) / h, 1);
    const c = (k: number) => idx.filter((i) => i === k).length;
    expect(c(0)).toBeGreaterThan(c(1));
    expect(c(1)).toBeGreaterThan(c(2));
  });

  it("Gamma inter-arrivals have mean 1/λ and the requested coefficient of variation", () => {
    for (const [rate, cv] of [[4, 1], [2, 0.5], [10, 2], [1, 3]] as const) {
      const xs = gammaInterArrivalsMs(streamRng(9, `g${rate}/${cv}`), 50_000, rate, cv).map((ms) => ms / 1000);
      const m = meanCv(xs);
      expect(Math.abs(m.mean - 1 / rate) / (1 / rate)).toBeLessThan(0.05);
      expect(Math.abs(m.cv - cv) / cv).toBeLessThan(0.1);
      expect(xs.every((x) => x >= 0 && Number.isFinite(x))).toBe(true);
    }
  });
});
