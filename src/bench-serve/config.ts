/**
 * What one serving-benchmark run does, and the two stock configurations: quick (a few minutes on
 * a 2-core machine, SmolLM2-135M-shaped model) and full (Qwen3-0.6B-shaped, adapters up to 1000,
 * S-LoRA-like lengths; hours on 2 cores, meant for a quiet, larger machine).
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { LoraModule } from "../adapters/types.js";
import { cacheDir } from "../synth/default-model.js";
import type { GgufWeightType } from "../synth/synthesize.js";
import type { PopularitySpec } from "./workload.js";

export interface ServeBenchOptions {
  mode: "quick" | "full";
  preset: string;
  weightType: GgufWeightType;
  /** Bring your own files instead of the synthetic ones. */
  modelPath?: string;
  adapterDir?: string;
  ranks: number[];
  loraType: "f32" | "f16" | "q8_0";
  targets: LoraModule[];
  /** The adapter sweep, at `rate`. */
  adapterCounts: number[];
  rate: number;
  /** The request-rate sweep, at `rateSweepAdapters` adapters. */
  rates: number[];
  rateSweepAdapters: number;
  cv: number;
  /** Closed loop with this many clients instead of Gamma arrivals (no rate sweep then). */
  concurrency?: number;
  popularity: PopularitySpec;
  requests: number;
  /** First requests of every run left out of the metrics. */
  warmup: number;
  seed: number;
  promptLen: [number, number];
  outputLen: [number, number];
  sloTtftMs: number;
  threads: number;
  /** The whole sweep is run this many times, systems interleaved (A B C A B C …). */
  repeats: number;
  systems: string[];
  outDir: string;
  json: boolean;
  promptFormat: "tokens" | "text";
  openloraBin: string;
  llamacpp: { maxContexts: number; sequences: number; baseSequences: number };
  startupTimeoutS: number;
  requestTimeoutS: number;
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

export function modeDefaults(mode: "quick" | "full"): ServeBenchOptions {
  const common = {
    weightType: "q8_0" as const, loraType: "f16" as const, targets: ["q", "k", "v", "o"] as LoraModule[],
    cv: 1, popularity: { pattern: "power", alpha: 1 } as PopularitySpec, seed: 1,
    threads: availableParallelism(), repeats: 1, systems: [], json: false, promptFormat: "tokens" as const,
    openloraBin: "bin/openlora.js", outDir: join(cacheDir(), "bench-serve", "results", stamp()),
    llamacpp: { maxContexts: 16, sequences: 4, baseSequences: 16 }, requestTimeoutS: 600,
  };
  if (mode === "quick") {
    return {
      ...common, mode, preset: "smollm2-135m", ranks: [16], adapterCounts: [1, 10, 100], rate: 3, rates: [1.5, 3, 6],
      rateSweepAdapters: 10, requests: 20, warmup: 4, promptLen: [8, 64], outputLen: [8, 32], sloTtftMs: 1000,
      startupTimeoutS: 120,
    };
  }
  return {
    ...common, mode, preset: "qwen3-0.6b", ranks: [16], adapterCounts: [1, 10, 100, 1000], rate: 1, rates: [0.25, 0.5, 1, 2],
    rateSweepAdapters: 100, requests: 200, warmup: 20, promptLen: [8, 256], outputLen: [8, 128], sloTtftMs: 6000,
    startupTimeoutS: 600,
  };
}

export interface Point {
  adapters: number;
  /** Requests/s (open loop) — absent in closed loop. */
  rate?: number;
  concurrency?: number;
}

export function pointLabel(p: Point): string {
  return p.concurrency !== undefined ? `n=${p.adapters} C=${p.concurrency}` : `n=${p.adapters} λ=${p.rate}/s`;
}

/** The adapter sweep at the reference rate, then the rate sweep (its reference point not repeated). */
export function sweepPoints(o: ServeBenchOptions): Point[] {
  if (o.concurrency !== undefined) return o.adapterCounts.map((adapters) => ({ adapters, concurrency: o.concurrency }));
  const pts: Point[] = o.adapterCounts.map((adapters) => ({ adapters, rate: o.rate }));
  for (const rate of o.rates) {
    if (!pts.some((p) => p.adapters === o.rateSweepAdapters && p.rate === rate)) pts.push({ adapters: o.rateSweepAdapters, rate });
  }
  return pts;
}
