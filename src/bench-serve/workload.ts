/**
 * Seeded serving workloads in the S-LoRA / Punica / LoRAX manner (../shared/reference/workload.md):
 * which adapter each request names, when it arrives, how long its prompt and output are. Arrival
 * times, lengths, prompts and adapter choices come from separate streams of one seed, so changing
 * the number of adapters or the popularity pattern leaves arrivals and lengths as they were: two
 * points of a sweep differ only in what the sweep varies.
 */
import { mulberry32, tensorSeed } from "../synth/random.js";

export type PopularitySpec =
  /** adapter = floor(n·X), X ~ power(α) (density α·x^(α−1) on [0,1)): α = 1 uniform, small α concentrates. */
  | { pattern: "power"; alpha: number }
  /** Every request its own adapter (cycling once all n are used). */
  | { pattern: "distinct" }
  | { pattern: "uniform" }
  /** Zipf over the n adapters: P(rank k) ∝ 1/k^s (Punica's "skewed" uses s = 1.5). */
  | { pattern: "skewed"; zipf: number }
  /** All requests name adapter 0. */
  | { pattern: "identical" };

export type ArrivalSpec =
  /** Open loop: Gamma inter-arrival times, shape 1/cv², scale cv²/rate (cv = 1 is Poisson). */
  | { mode: "gamma"; rate: number; cv: number }
  /** Closed loop: C clients, each sending its next request when its previous one ends. */
  | { mode: "closed"; concurrency: number };

export interface WorkloadSpec {
  seed: number;
  requests: number;
  adapters: number;
  popularity: PopularitySpec;
  arrival: ArrivalSpec;
  /** Prompt tokens, uniform integer in [lo, hi). */
  promptLen: [number, number];
  /** Output tokens, uniform integer in [lo, hi); enforced by ignore_eos. */
  outputLen: [number, number];
  /** Prompt token ids are drawn uniformly from [lo, hi): ordinary tokens of every vocabulary used here. */
  tokenRange?: [number, number];
}

export interface TraceRequest {
  index: number;
  /** Open loop: when to send, ms after the trace starts. Closed loop: undefined. */
  arrivalMs: number | undefined;
  /** 0..n−1 */
  adapterIndex: number;
  prompt: number[];
  maxTokens: number;
}

export interface Trace {
  spec: WorkloadSpec;
  requests: TraceRequest[];
}

export const DEFAULT_TOKEN_RANGE: [number, number] = [1000, 20000];

/** The adapter id the harness gives adapter i (file a0000.gguf → id a0000). */
export function adapterId(i: number): string {
  return `a${String(i).padStart(4, "0")}`;
}

export type Rng = () => number;

export function streamRng(seed: number, name: string): Rng {
  return mulberry32(tensorSeed(seed, name));
}

/** Uniform integer in [lo, hi) (hi ≤ lo gives lo). */
export function uniformInt(rng: Rng, lo: number, hi: number): number {
  return hi <= lo ? lo : lo + Math.floor(rng() * (hi - lo));
}

/** Standard normal (Box–Muller). */
function normal(rng: Rng): number {
  const u = 1 - rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Gamma(shape, scale) by Marsaglia–Tsang; shape < 1 through the Gamma(shape+1)·U^(1/shape) boost. */
export function sampleGamma(rng: Rng, shape: number, scale: number): number {
  if (shape < 1) return sampleGamma(rng, shape + 1, scale) * Math.pow(1 - rng(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v * scale;
  }
}

/** Inter-arrival times (ms) for `rate` requests/s with coefficient of variation `cv`. */
export function gammaInterArrivalsMs(rng: Rng, count: number, rate: number, cv: number): number[] {
  const shape = 1 / (cv * cv);
  const scale = (cv * cv) / rate;
  return Array.from({ length: count }, () => sampleGamma(rng, shape, scale) * 1000);
}

/** Adapter index (0..n−1) of each of `count` requests under a popularity pattern. */
export function adapterIndices(rng: Rng, count: number, n: number, pop: PopularitySpec): number[] {
  if (n < 1) throw new Error("a workload needs at least one adapter");
  switch (pop.pattern) {
    case "identical": return new Array<number>(count).fill(0);
    case "distinct": return Array.from({ length: count }, (_, i) => i % n);
    case "uniform": return Array.from({ length: count }, () => Math.floor(rng() * n));
    case "power": {
      if (!(pop.alpha > 0)) throw new Error("power-law alpha must be > 0");
      return Array.from({ length: count }, () => Math.min(n - 1, Math.floor(n * Math.pow(rng(), 1 / pop.alpha))));
    }
    case "skewed": {
      const cdf: number[] = [];
      let total = 0;
      for (let k = 1; k <= n; k++) cdf.push((total += 1 / Math.pow(k, pop.zipf)));
      return Array.from({ length: count }, () => {
        const u = rng() * total;
        let lo = 0;
        let hi = n - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (cdf[mid]! > u) hi = mid; else lo = mid + 1;
        }
        return lo;
      });
    }
  }
}

export function generateTrace(spec: WorkloadSpec): Trace {
  const { seed, requests: count } = spec;
  const arrivals = spec.arrival.mode === "gamma"
    ? gammaInterArrivalsMs(streamRng(seed, "arrivals"), count, spec.arrival.rate, spec.arrival.cv)
    : undefined;
  const adapters = adapterIndices(streamRng(seed, `adapters/${spec.popularity.pattern}`), count, spec.adapters, spec.popularity);
  const lengths = streamRng(seed, "lengths");
  const [tokLo, tokHi] = spec.tokenRange ?? DEFAULT_TOKEN_RANGE;
  let t = 0;
  const requests = Array.from({ length: count }, (_, index): TraceRequest => {
    // The first request is sent at once; later ones after their inter-arrival gaps.
    if (arrivals && index > 0) t += arrivals[index]!;
    const promptLen = uniformInt(lengths, spec.promptLen[0], spec.promptLen[1]);
    const maxTokens = uniformInt(lengths, spec.outputLen[0], spec.outputLen[1]);
    const words = streamRng(seed, `prompt/${index}`);
    return {
      index,
      arrivalMs: arrivals ? t : undefined,
      adapterIndex: adapters[index]!,
      prompt: Array.from({ length: promptLen }, () => uniformInt(words, tokLo, tokHi)),
      maxTokens,
    };
  });
  return { spec, requests };
}

/** Requests per adapter index (for reports and tests). */
export function popularityCounts(trace: Trace): Map<number, number> {
  const counts = new Map<number, number>();
  for (const r of trace.requests) counts.set(r.adapterIndex, (counts.get(r.adapterIndex) ?? 0) + 1);
  return counts;
}
