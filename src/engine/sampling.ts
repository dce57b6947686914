/**
 * Token sampling from one row of logits. Pure and deterministic: the same logits, history,
 * parameters and RNG state give the same token. Order of operations (as in llama.cpp's default
 * chain): penalties → greedy shortcut → top-k → temperature → softmax → top-p → min-p → draw.
 *
 * Contract: for finite logits and any parameters validateSampling accepts (however extreme:
 * temperature 1e-300 or 1e308, repetition_penalty 1e-300 or 1e300, top_k 2^53 − 1, top_p 1e-300)
 * the result is a token id in [0, logits.length). Penalised logits are clamped to the finite f32
 * range, so no Infinity − Infinity can empty the candidate list; the engine checks each row's
 * logits for NaN / infinity before sampling (LOGITS_NONFINITE).
 */
import { oerr } from "../errors.js";
import { native } from "../native/index.js";

export interface SamplingParams {
  /** 0 = greedy. Default 0. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK?: number;
  /** Keep the smallest set whose probability reaches p; 1 = off. */
  topP?: number;
  /** Drop tokens below minP × the top probability; 0 = off. */
  minP?: number;
  /** Divides positive logits (multiplies negative ones) of tokens seen; 1 = off. */
  repetitionPenalty?: number;
  /** Subtracted once from the logit of every token seen; 0 = off. */
  presencePenalty?: number;
  /** Subtracted per occurrence of a token seen; 0 = off. */
  frequencyPenalty?: number;
  /** How many of the most recent tokens the penalties look at. Default 64; -1 = all. */
  penaltyWindow?: number;
  seed?: number;
}

export function validateSampling(p: SamplingParams): void {
  const bad = (msg: string) => { throw oerr("INVALID_ARGUMENT", msg); };
  const t = p.temperature ?? 0;
  if (!Number.isFinite(t) || t < 0) bad(`temperature must be >= 0, got ${t}`);
  if (p.topK !== undefined && (!Number.isInteger(p.topK) || p.topK < 0)) bad(`top_k must be a non-negative integer, got ${p.topK}`);
  if (p.topP !== undefined && !(p.topP > 0 && p.topP <= 1)) bad(`top_p must be in (0, 1], got ${p.topP}`);
  if (p.minP !== undefined && !(p.minP >= 0 && p.minP <= 1)) bad(`min_p must be in [0, 1], got ${p.minP}`);
  if (p.repetitionPenalty !== undefined && !(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) bad(`repetition_penalty must be > 0, got ${p.repetitionPenalty}`);
  for (const [k, v] of [["presence_penalty", p.presencePenalty], ["frequency_penalty", p.frequencyPenalty]] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= -2 && v <= 2)) bad(`${k} must be in [-2, 2], got ${v}`);
  }
  if (p.seed !== undefined && !Number.isSafeInteger(p.seed)) bad(`seed must be an integer, got ${p.seed}`);
}

/** xoshiro128** seeded through splitmix32: small, fast, and identical on every platform. */
export class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    let z = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b) >>> 0;
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (t ^ (t >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1) with 32 bits of randomness. */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!; s[3]! ^= s[1]!; s[1]! ^= s[2]!; s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result / 2 ** 32;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The first index of the largest logit (NaN never wins; 0 when none exceeds −Infinity). */
export function argmax(logits: Float32Array): number {
  return native.argmax(logits);
}

/** The largest finite f32. */
const F32_MAX = 3.4028234663852886e38;

function applyPenalties(logits: Float32Array, history: readonly number[], p: SamplingParams): Float32Array {
  const rep = p.repetitionPenalty ?? 1;
  const pres = p.presencePenalty ?? 0;
  const freq = p.frequencyPenalty ?? 0;
  if ((rep === 1 && pres === 0 && freq === 0) || history.length === 0) return logits;
  const window = p.penaltyWindow ?? 64;
  const recent = window < 0 ? history : history.slice(Math.max(0, history.length - window));
  const counts = new Map<number, number>();
  for (const t of recent) counts.set(t, (counts.get(t) ?? 0) + 1);
  const out = logits.slice();
  for (const [t, n] of counts) {
    if (t < 0 || t >= out.length) continue;
    let v = out[t]!;
    if (rep !== 1) v = v > 0 ? v / rep : v * rep;
    v -= n * freq + pres;
    out[t] = v > F32_MAX ? F32_MAX : v < -F32_MAX ? -F32_MAX : v;
  }
  return out;
}

/** Picks the next token. `history` = prompt and generated tokens so far (for penalties). */
export function sampleToken(logits: Float32Array, history: readonly number[], p: SamplingParams, rng: Rng): number {
  const l = applyPenalties(logits, history, p);
  const temperature = p.temperature ?? 0;
  if (temperature === 0) return argmax(l);

  // Candidates: tokens whose probability is within e^-30 of the best (the rest carry at most
  // vocab · 1e-13 of the mass), sorted by logit descending, ties by lower id, so the order is total.
  const maxL = l[argmax(l)]!;
  const cutoff = maxL - 30 * temperature;
  let ids: number[] = [];
  for (let i = 0; i < l.length; i++) if (l[i]! >= cutoff) ids.push(i);
  if (ids.length === 0) return argmax(l); // only for logits the engine refuses before sampling (NaN)
  const topK = p.topK ?? 0;
  ids.sort((a, b) => l[b]! - l[a]! || a - b);
  if (topK > 0 && topK < ids.length) ids = ids.slice(0, topK);

  const maxLogit = l[ids[0]!]!;
  const probs = ids.map((i) => Math.exp((l[i]! - maxLogit) / temperature));
  let sum = probs.reduce((a, b) => a + b, 0);
  let n = ids.length;

  const topP = p.topP ?? 1;
  if (topP < 1) {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      acc += probs[i]! / sum;
      if (acc >= topP) { n = i + 1; break; }
    }
  }
  const minP = p.minP ?? 0;
  if (minP > 0) {
    const floor = (probs[0]! / sum) * minP;
    let keep = 1;
    while (keep < n && probs[keep]! / sum >= floor) keep++;
    n = keep;
  }
  sum = 0;
  for (let i = 0; i < n; i++) sum += probs[i]!;
  let r = rng.next() * sum;
  for (let i = 0; i < n; i++) {
    r -= probs[i]!;
    if (r < 0) return ids[i]!;
  }
  return ids[n - 1]!;
}
