/**
 * Serving metrics from per-request records: throughput over the measured window, TTFT, time per
 * output token, end-to-end latency and SLO attainment. Percentiles interpolate linearly between
 * order statistics (numpy's default), so p50 of [1, 2, 3, 4] is 2.5.
 */
import type { RequestRecord } from "./client.js";

export interface Distribution {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface RunMetrics {
  /** Requests measured (after the warm-up). */
  requests: number;
  ok: number;
  failed: number;
  /** Ended without error but with fewer tokens than asked (ignore_eos not honoured, or cut short). */
  short: number;
  /** From the first measured request's start to the last one's end. */
  windowS: number;
  requestsPerS: number;
  outputTokPerS: number;
  outputTokens: number;
  ttftMs: Distribution;
  /** (end − first token) / (tokens − 1), over requests with at least two tokens. */
  tpotMs: Distribution;
  e2eMs: Distribution;
  sloTtftMs: number;
  /** Share of measured requests that succeeded with TTFT ≤ the bound; failures are misses. */
  sloAttainment: number;
}

/** Linear-interpolated percentile of already sorted values; NaN when empty. */
export function percentileSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function percentile(values: readonly number[], p: number): number {
  return percentileSorted([...values].sort((a, b) => a - b), p);
}

export function distribution(values: readonly number[]): Distribution {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
  return { mean, p50: percentileSorted(s, 50), p90: percentileSorted(s, 90), p99: percentileSorted(s, 99) };
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function ttftOf(r: RequestRecord): number | null {
  return r.firstTokenMs === null ? null : r.firstTokenMs - r.startMs;
}

export function tpotOf(r: RequestRecord): number | null {
  if (r.firstTokenMs === null || r.outputTokens < 2) return null;
  return (r.endMs - r.firstTokenMs) / (r.outputTokens - 1);
}

/** Drops the first `warmup` requests by trace order (they warm caches and threads). */
export function measured(records: readonly RequestRecord[], warmup: number): RequestRecord[] {
  return records.filter((r) => r.index >= warmup);
}

export function computeMetrics(records: readonly RequestRecord[], sloTtftMs: number): RunMetrics {
  const ok = records.filter((r) => r.status === "ok");
  const start = Math.min(...records.map((r) => r.startMs));
  const end = Math.max(...records.map((r) => r.endMs));
  const windowS = records.length ? Math.max(1e-9, (end - start) / 1000) : 0;
  const outputTokens = ok.reduce((a, r) => a + r.outputTokens, 0);
  const ttfts = ok.map(ttftOf).filter((x): x is number => x !== null);
  const tpots = ok.map(tpotOf).filter((x): x is number => x !== null);
  const withinSlo = ok.filter((r) => { const t = ttftOf(r); return t !== null && t <= sloTtftMs; }).length;
  return {
    requests: records.length,
    ok: ok.length,
    failed: records.length - ok.length,
    short: ok.filter((r) => r.outputTokens < r.maxTokens).length,
    windowS,
    requestsPerS: windowS ? ok.length / windowS : 0,
    outputTokPerS: windowS ? outputTokens / windowS : 0,
    outputTokens,
    ttftMs: distribution(ttfts),
    tpotMs: distribution(tpots),
    e2eMs: distribution(ok.map((r) => r.endMs - r.startMs)),
    sloTtftMs,
    sloAttainment: records.length ? withinSlo / records.length : 0,
  };
}
