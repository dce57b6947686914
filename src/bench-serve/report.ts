/**
 * Turns runs into the benchmark's outputs: the aggregated figures per (system, point) — median over
 * repeats, with min and max of throughput —, the one-object JSON summary, the markdown report and
 * the two SVG plots (throughput vs number of adapters; TTFT percentiles vs request rate).
 */
import { cpus, totalmem } from "node:os";
import type { RequestRecord } from "./client.js";
import { type Point, pointLabel, type ServeBenchOptions } from "./config.js";
import { median, type RunMetrics } from "./metrics.js";
import { type AdapterCounters, hitRate } from "./server-probe.js";
import { lineChartSvg, type Series } from "./svg-plot.js";
import { SYSTEMS } from "./systems.js";

/** The machine the runs shared; readBandwidthGBs from the native read probe, absent when not measured. */
export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryGiB: number;
  readBandwidthGBs?: number;
  /** Threads of the probe (the servers' thread count). */
  probeThreads?: number;
}

export function describeMachine(readBandwidthBytesPerS?: number, probeThreads?: number): MachineInfo {
  const cpu = cpus();
  return {
    cores: cpu.length, cpu: cpu[0]?.model ?? "unknown CPU", memoryGiB: Math.round(totalmem() / 2 ** 30),
    ...(readBandwidthBytesPerS !== undefined ? { readBandwidthGBs: Math.round(readBandwidthBytesPerS / 1e8) / 10, probeThreads } : {}),
  };
}

export interface RunResult {
  system: string;
  point: Point;
  repeat: number;
  commandLine?: string;
  baseModelId?: string;
  startupMs?: number;
  metrics?: RunMetrics;
  peakRssBytes?: number;
  adapterCounters?: AdapterCounters;
  /** Share of the machine's CPU used by other processes during the run (shared-machine noise). */
  foreignCpu?: number;
  error?: string;
  records: RequestRecord[];
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface Aggregate {
  system: string;
  point: Point;
  runs: number;
  errors: string[];
  throughputTokS: Spread;
  requestsPerS: number;
  ttftMeanMs: number;
  ttftP50Ms: Spread;
  ttftP90Ms: number;
  ttftP99Ms: Spread;
  tpotP50Ms: number;
  e2eP50Ms: number;
  e2eP99Ms: number;
  sloAttainment: number;
  failed: number;
  short: number;
  peakRssBytes: number;
  loads?: number;
  evictions?: number;
  hitRate?: number;
  /** Highest share of CPU other processes took during any of the runs. */
  foreignCpu?: number;
}

function spread(xs: number[]): Spread {
  const v = xs.filter(Number.isFinite);
  return v.length ? { median: median(v), min: Math.min(...v), max: Math.max(...v) } : { median: NaN, min: NaN, max: NaN };
}

const samePoint = (a: Point, b: Point) => a.adapters === b.adapters && a.rate === b.rate && a.concurrency === b.concurrency;

export function aggregate(results: readonly RunResult[]): Aggregate[] {
  const out: Aggregate[] = [];
  for (const r of results) {
    if (out.some((a) => a.system === r.system && samePoint(a.point, r.point))) continue;
    const group = results.filter((x) => x.system === r.system && samePoint(x.point, r.point));
    const ok = group.filter((x) => x.metrics);
    const m = (f: (x: RunMetrics) => number) => ok.map((x) => f(x.metrics!));
    const counters = ok.map((x) => x.adapterCounters).filter((c): c is AdapterCounters => !!c);
    const rates = counters.map(hitRate).filter((x): x is number => x !== undefined);
    out.push({
      system: r.system, point: r.point, runs: ok.length, errors: group.map((x) => x.error).filter((e): e is string => !!e),
      throughputTokS: spread(m((x) => x.outputTokPerS)), requestsPerS: median(m((x) => x.requestsPerS)),
      ttftMeanMs: median(m((x) => x.ttftMs.mean)), ttftP50Ms: spread(m((x) => x.ttftMs.p50)), ttftP90Ms: median(m((x) => x.ttftMs.p90)),
      ttftP99Ms: spread(m((x) => x.ttftMs.p99)), tpotP50Ms: median(m((x) => x.tpotMs.p50)), e2eP50Ms: median(m((x) => x.e2eMs.p50)),
      e2eP99Ms: median(m((x) => x.e2eMs.p99)), sloAttainment: median(m((x) => x.sloAttainment)),
      failed: m((x) => x.failed).reduce((a, b) => a + b, 0), short: m((x) => x.short).reduce((a, b) => a + b, 0),
      peakRssBytes: Math.max(0, ...ok.map((x) => x.peakRssBytes ?? 0)),
      ...(counters.length ? { loads: median(counters.map((c) => c.loads)), evictions: median(counters.map((c) => c.evictions)) } : {}),
      ...(rates.length ? { hitRate: median(rates) } : {}),
      ...(ok.some((x) => x.foreignCpu !== undefined) ? { foreignCpu: Math.max(...ok.map((x) => x.foreignCpu ?? 0)) } : {}),
    });
  }
  return out;
}

const num = (x: number | undefined, d = 1): number | null => (x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

function entry(a: Aggregate, sloTtftMs: number): Record<string, unknown> {
  return {
    adapters: a.point.adapters, ...(a.point.rate !== undefined ? { rate: a.point.rate } : { concurrency: a.point.concurrency }),
    throughput_tok_s: num(a.throughputTokS.median), throughput_tok_s_min: num(a.throughputTokS.min), throughput_tok_s_max: num(a.throughputTokS.max),
    requests_s: num(a.requestsPerS, 3), ttft_mean_ms: num(a.ttftMeanMs), ttft_p50_ms: num(a.ttftP50Ms.median), ttft_p90_ms: num(a.ttftP90Ms),
    ttft_p99_ms: num(a.ttftP99Ms.median), tpot_p50_ms: num(a.tpotP50Ms), e2e_p50_ms: num(a.e2eP50Ms), e2e_p99_ms: num(a.e2eP99Ms),
    slo_attainment: num(a.sloAttainment, 3), slo_ttft_ms: sloTtftMs, failed: a.failed, short: a.short,
    peak_rss_mb: a.peakRssBytes ? num(a.peakRssBytes / 2 ** 20, 0) : null,
    adapter_loads: a.loads ?? null, adapter_evictions: a.evictions ?? null, adapter_hit_rate: num(a.hitRate, 3),
    other_processes_cpu: num(a.foreignCpu, 2), runs: a.runs,
    ...(a.errors.length ? { error: a.errors[0] } : {}),
  };
}

/** The points of the adapter sweep (at the reference rate) and of the rate sweep. */
function sweeps(aggs: readonly Aggregate[], o: ServeBenchOptions): { byAdapters: Aggregate[]; byRate: Aggregate[] } {
  const byAdapters = aggs.filter((a) => (o.concurrency !== undefined ? true : a.point.rate === o.rate) && o.adapterCounts.includes(a.point.adapters));
  const byRate = o.concurrency !== undefined ? [] : aggs.filter((a) => a.point.adapters === o.rateSweepAdapters && a.point.rate !== undefined);
  return { byAdapters, byRate };
}

export function jsonSummary(aggs: readonly Aggregate[], o: ServeBenchOptions, machine: MachineInfo = describeMachine()): Record<string, unknown> {
  const { byAdapters, byRate } = sweeps(aggs, o);
  const systems: Record<string, unknown> = {};
  for (const a of byAdapters) systems[`${a.system}@${a.point.adapters}`] = entry(a, o.sloTtftMs);
  const rateSweep: Record<string, unknown[]> = {};
  for (const a of [...byRate].sort((x, y) => x.point.rate! - y.point.rate!)) {
    (rateSweep[`${a.system}@${a.point.adapters}`] ??= []).push(entry(a, o.sloTtftMs));
  }
  return {
    systems, rate_sweep: rateSweep,
    machine: {
      cores: machine.cores, cpu: machine.cpu, memory_gib: machine.memoryGiB,
      ...(machine.readBandwidthGBs !== undefined ? { read_bandwidth_gb_s: machine.readBandwidthGBs, probe_threads: machine.probeThreads } : {}),
    },
    config: {
      mode: o.mode, preset: o.preset, weight_type: o.weightType, ranks: o.ranks, lora_type: o.loraType, threads: o.threads,
      popularity: o.popularity, arrival: o.concurrency !== undefined ? { mode: "closed", concurrency: o.concurrency } : { mode: "gamma", rate: o.rate, rates: o.rates, cv: o.cv },
      requests: o.requests, warmup: o.warmup, prompt_len: o.promptLen, output_len: o.outputLen, slo_ttft_ms: o.sloTtftMs,
      repeats: o.repeats, seed: o.seed, out_dir: o.outDir,
    },
  };
}

/** Above this share of CPU taken by other processes, a run's timings are not to be trusted. */
const NOISY = 0.1;

const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "–");
const pct = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "–" : `${(100 * x).toFixed(0)}%`);

function table(rows: readonly Aggregate[], all: readonly Aggregate[], o: ServeBenchOptions): string {
  const ceiling = (a: Aggregate) => all.find((b) => b.system === "openlora-base" && samePoint(a.point, b.point));
  const lines = [
    `| system | point | req/s | output tok/s (min–max) | ÷ openlora-base | TTFT mean | p50 | p90 | p99 ms | TPOT p50 ms | E2E p50 | p99 ms | SLO TTFT ≤ ${o.sloTtftMs} ms | failed / short | peak RSS MiB | loads / evictions | hit rate | other CPU |`,
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const a of rows) {
    if (a.runs === 0) {
      lines.push(`| ${a.system} | ${pointLabel(a.point)} | failed: ${(a.errors[0] ?? "").split("\n")[0]!.slice(0, 160).replace(/\|/g, "/")} ||||||||||||||||`);
      continue;
    }
    const c = ceiling(a);
    const ratio = c && c.runs && c !== a ? f(a.throughputTokS.median / c.throughputTokS.median, 2) : "–";
    const t = a.throughputTokS;
    lines.push(`| ${a.system} | ${pointLabel(a.point)} | ${f(a.requestsPerS, 2)} | ${f(t.median, 1)}${o.repeats > 1 ? ` (${f(t.min, 1)}–${f(t.max, 1)})` : ""} | ${ratio} | `
      + `${f(a.ttftMeanMs)} | ${f(a.ttftP50Ms.median)} | ${f(a.ttftP90Ms)} | ${f(a.ttftP99Ms.median)} | ${f(a.tpotP50Ms, 1)} | ${f(a.e2eP50Ms)} | ${f(a.e2eP99Ms)} | `
      + `${pct(a.sloAttainment)} | ${a.failed} / ${a.short} | ${a.peakRssBytes ? f(a.peakRssBytes / 2 ** 20) : "–"} | `
      + `${a.loads ?? "–"} / ${a.evictions ?? "–"} | ${pct(a.hitRate)} | ${pct(a.foreignCpu)}${(a.foreignCpu ?? 0) > NOISY ? " ⚠" : ""} |`);
  }
  return lines.join("\n");
}

export function markdownReport(
  aggs: readonly Aggregate[], results: readonly RunResult[], o: ServeBenchOptions, command: string, machine: MachineInfo = describeMachine(),
): string {
  const { byAdapters, byRate } = sweeps(aggs, o);
  const pop = o.popularity;
  const popText = pop.pattern === "power" ? `power law α = ${pop.alpha}` : pop.pattern === "skewed" ? `skewed (Zipf s = ${pop.zipf})` : pop.pattern;
  const arrivals = o.concurrency !== undefined ? `closed loop, ${o.concurrency} clients` : `Gamma arrivals, cv = ${o.cv}`;
  const commands = new Map<string, string>();
  for (const r of results) if (r.commandLine && !commands.has(r.system)) commands.set(r.system, r.commandLine);
  const parts = [
    `# Serving benchmark (${o.mode})`, "",
    `Reproduce: \`${command}\``, "",
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB RAM; memory read bandwidth ${machine.readBandwidthGBs !== undefined
      ? `${machine.readBandwidthGBs} GB/s (native read probe, ${machine.probeThreads} threads, before the runs)` : "not measured"}. Threads per server: ${o.threads}.`, "",
    `Workload (seed ${o.seed}, identical for every system): ${o.requests} requests per run, first ${o.warmup} dropped as warm-up; ${arrivals}; `
      + `adapter popularity ${popText}; prompt ${o.promptLen[0]}–${o.promptLen[1] - 1} tokens, output ${o.outputLen[0]}–${o.outputLen[1] - 1} tokens `
      + `forced by ignore_eos, greedy; base ${o.modelPath ?? `${o.preset}-shaped ${o.weightType}`}, adapters ${o.adapterDir ?? `GGUF LoRA rank ${o.ranks.join("/")} on ${o.targets.join(",")} (${o.loraType})`}. `
      + `SLO: TTFT ≤ ${o.sloTtftMs} ms, failed requests count as misses. Systems run one at a time, interleaved per point${o.repeats > 1 ? `, ${o.repeats} repeats (median, min–max)` : ""}.`, "",
    "Systems:", "",
    ...SYSTEMS.filter((s) => o.systems.includes(s.name) || aggs.some((a) => a.system === s.name)).map((s) => `- **${s.name}**: ${s.description}${commands.has(s.name) ? ` — \`${commands.get(s.name)}\`` : ""}`), "",
    `## Throughput vs number of adapters${o.concurrency === undefined ? ` (λ = ${o.rate} requests/s)` : ""}`, "",
    table(byAdapters, aggs, o), "",
    "![throughput vs adapters](throughput-vs-adapters.svg)", "",
  ];
  if (byRate.length) {
    parts.push(`## TTFT vs request rate (${o.rateSweepAdapters} adapters)`, "", table([...byRate].sort((a, b) => a.system.localeCompare(b.system) || a.point.rate! - b.point.rate!), aggs, o), "",
      "![TTFT vs rate](ttft-vs-rate.svg)", "");
  }
  const noisy = aggs.filter((a) => (a.foreignCpu ?? 0) > NOISY);
  if (noisy.length) {
    parts.push(`⚠ Other processes used more than ${100 * NOISY}% of the machine's CPU during ${noisy.length} of ${aggs.length} rows ("other CPU"): `
      + "thread pools oversubscribed by foreign load slow down by large factors, so those rows measure the machine, not the system. Re-run them at a quiet moment.", "");
  }
  parts.push("Throughput counts output tokens of successful measured requests over the window from the first measured request's start to the last one's end. "
    + "TTFT is measured at the client from sending the request to the first streamed token; TPOT = (end − first token) / (tokens − 1). "
    + "Peak RSS is the server process's VmHWM. Adapter loads/evictions/hit rate come from the server's /metrics (deltas over the run) when it exposes them.", "");
  return parts.join("\n");
}

export function plots(aggs: readonly Aggregate[], o: ServeBenchOptions): Record<string, string> {
  const { byAdapters, byRate } = sweeps(aggs, o);
  const systems = [...new Set(aggs.map((a) => a.system))];
  const out: Record<string, string> = {};
  out["throughput-vs-adapters.svg"] = lineChartSvg({
    title: `Output throughput vs number of adapters${o.concurrency === undefined ? ` (λ = ${o.rate}/s)` : ""}`,
    xLabel: "adapters", yLabel: "output tokens/s", logX: true,
    series: systems.map((s) => ({ name: s, points: byAdapters.filter((a) => a.system === s && a.runs).map((a) => [a.point.adapters, a.throughputTokS.median] as [number, number]) })),
  });
  if (byRate.length) {
    const series: Series[] = [];
    systems.forEach((s) => {
      const rows = byRate.filter((a) => a.system === s && a.runs);
      series.push({ name: `${s} p50`, points: rows.map((a) => [a.point.rate!, a.ttftP50Ms.median]) });
      series.push({ name: `${s} p99`, points: rows.map((a) => [a.point.rate!, a.ttftP99Ms.median]), dashed: true });
    });
    // Same colour for a system's p50 and p99 lines.
    const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
    series.forEach((s, i) => { s.color = palette[Math.floor(i / 2) % palette.length]!; });
    out["ttft-vs-rate.svg"] = lineChartSvg({
      title: `TTFT vs request rate (${o.rateSweepAdapters} adapters; solid p50, dashed p99)`, xLabel: "requests/s", yLabel: "TTFT ms", series, xFromZero: true,
    });
  }
  return out;
}
