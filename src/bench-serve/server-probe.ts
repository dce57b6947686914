/**
 * What the harness learns about a server from outside: readiness (GET /health), its base model id
 * (GET /v1/models), adapter-cache counters (GET /metrics, Prometheus text, names matched loosely
 * because the server's exact names may still move), and the peak resident memory of its process
 * (/proc/<pid>/status VmHWM, with sampled VmRSS as a fallback). On a shared machine it also
 * accounts for CPU time spent by processes other than the server and the harness during a run:
 * llama.cpp-style thread pools slow down by large factors when cores are oversubscribed, so such a
 * run's timings are flagged rather than trusted.
 */
import { readFileSync } from "node:fs";

export interface AdapterCounters {
  loads: number;
  evictions: number;
  hits: number;
  misses: number;
  /** Gauge: adapters resident now, when exposed. */
  resident?: number;
}

type CounterKey = "loads" | "evictions" | "hits" | "misses" | "resident";

/** Which adapter counter a metric name is, if any (histogram parts and byte gauges excluded). */
export function classifyMetric(name: string): CounterKey | undefined {
  const n = name.toLowerCase();
  if (!n.includes("adapter") || /_(bucket|sum|count|created)$/.test(n) || n.includes("bytes") || n.includes("seconds")) return undefined;
  if (/evict/.test(n)) return "evictions";
  if (/(^|_)hits?(_total)?$/.test(n)) return "hits";
  if (/(^|_)miss(es)?(_total)?$/.test(n)) return "misses";
  if (/(^|_)loads?(_total)?$/.test(n) || /loaded_total$/.test(n)) return "loads";
  if (/resident(_adapters)?$/.test(n) || /adapters_resident/.test(n)) return "resident";
  return undefined;
}

/** Sums adapter counters over all label sets; undefined when the text has none of them. */
export function parseAdapterCounters(text: string): AdapterCounters | undefined {
  const out: AdapterCounters = { loads: 0, evictions: 0, hits: 0, misses: 0 };
  let found = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const key = classifyMetric(m[1]!);
    const value = Number(m[3]);
    if (!key || !Number.isFinite(value)) continue;
    found = true;
    out[key] = (out[key] ?? 0) + value;
  }
  return found ? out : undefined;
}

export function counterDelta(before: AdapterCounters | undefined, after: AdapterCounters | undefined): AdapterCounters | undefined {
  if (!after) return undefined;
  const b = before ?? { loads: 0, evictions: 0, hits: 0, misses: 0 };
  return {
    loads: after.loads - b.loads, evictions: after.evictions - b.evictions, hits: after.hits - b.hits, misses: after.misses - b.misses,
    ...(after.resident !== undefined ? { resident: after.resident } : {}),
  };
}

export function hitRate(c: AdapterCounters | undefined): number | undefined {
  if (!c || c.hits + c.misses === 0) return undefined;
  return c.hits / (c.hits + c.misses);
}

async function get(url: string, timeoutMs = 5000): Promise<{ status: number; text: string } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  } catch {
    return undefined;
  }
}

export async function scrapeAdapterCounters(origin: string): Promise<AdapterCounters | undefined> {
  const res = await get(`${origin}/metrics`);
  return res && res.status === 200 ? parseAdapterCounters(res.text) : undefined;
}

/** Polls GET /health until 200; rejects on timeout or when `exited()` reports the process gone. */
export async function waitForHealth(origin: string, timeoutMs: number, exited: () => string | undefined): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const gone = exited();
    if (gone) throw new Error(gone);
    const res = await get(`${origin}/health`, 2000);
    if (res?.status === 200) return;
    if (Date.now() > until) throw new Error(`no 200 from ${origin}/health within ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The base model's id: the first /v1/models entry that is not one of the adapters. */
export async function baseModelId(origin: string, adapterIds: ReadonlySet<string>, fallback: string): Promise<string> {
  const res = await get(`${origin}/v1/models`);
  if (res?.status !== 200) return fallback;
  try {
    const data = (JSON.parse(res.text) as { data?: Array<{ id?: string }> }).data ?? [];
    return data.map((m) => m.id).find((id): id is string => typeof id === "string" && !adapterIds.has(id)) ?? fallback;
  } catch {
    return fallback;
  }
}

function statusKb(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Samples a process's resident memory; peak() = max(VmHWM, sampled VmRSS) in bytes. */
export class MemorySampler {
  private maxKb = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number, intervalMs = 100) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  private sample(): void {
    this.maxKb = Math.max(this.maxKb, statusKb(this.pid, "VmRSS") ?? 0, statusKb(this.pid, "VmHWM") ?? 0);
  }

  /** Call before the process exits: VmHWM is gone afterwards. */
  stop(): number | undefined {
    this.sample();
    clearInterval(this.timer);
    return this.maxKb ? this.maxKb * 1024 : undefined;
  }
}

/** Busy and total jiffies of all CPUs (/proc/stat), or undefined off Linux. */
function machineJiffies(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return undefined;
  }
}

/** utime + stime of a process and all its threads, in jiffies. */
function processJiffies(pid: number | "self"): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/**
 * Share of the machine's CPU capacity used by other processes between start() and stop():
 * (all busy time − the server's − this process's) / all time. 0.5 on 2 cores = one core taken.
 */
export class ForeignCpuMeter {
  private readonly m0 = machineJiffies();
  private readonly s0: number;
  private readonly self0 = processJiffies("self");

  constructor(private readonly pid: number) {
    this.s0 = processJiffies(pid);
  }

  stop(): number | undefined {
    const m1 = machineJiffies();
    if (!this.m0 || !m1 || m1.total <= this.m0.total) return undefined;
    const ours = processJiffies(this.pid) - this.s0 + (processJiffies("self") - this.self0);
    return Math.max(0, (m1.busy - this.m0.busy - ours) / (m1.total - this.m0.total));
  }
}
