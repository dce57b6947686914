/**
 * Offline merging of LoRA adapters into one new adapter (PEFT `add_weighted_adapter` semantics,
 * /work/shared/reference/lora-math.md). Pure functions over in-memory adapters, module by module.
 * For each (layer, module) only the inputs that have that module take part (the merged adapter
 * covers the union of the inputs' modules); c_k = w_k·s_k is input k's weight times its scale.
 * Arithmetic is f64; each result is rounded once to f32. Every merged module has scale 1
 * (r = lora_alpha = its new rank when written as PEFT).
 *
 *   cat        A' = rows c_k·A_k stacked, B' = [B_1 … B_n]; rank Σ r_k. B'·A' = Σ c_k·B_k·A_k exactly
 *              (up to rounding c_k·A_k to f32).
 *   linear     A' = Σ sgn(c_k)·√|c_k|·A_k, B' = Σ √|c_k|·B_k. Needs equal ranks; has cross terms
 *              B_i·A_j, so it is NOT the weighted sum of updates.
 *   svd        ΔW = Σ c_k·B_k·A_k, truncated SVD to the target rank (default max r_k, at most
 *              min(Σ r_k, in, out)): B' = U·S, A' = Vᵀ. Computed through QR of the stacked
 *              factors (merge-linalg.ts), never forming ΔW.
 *   ties, dare_linear, dare_ties, magnitude_prune
 *              PEFT's "ties" family (not "ties_svd"): applied to the A matrices and, separately, to
 *              the B matrices, element by element; needs equal ranks. The task tensors are
 *              T_k = sgn(c_k)·A_k (resp. B_k) with weights λ_k = √|c_k| (for c_k ≥ 0 this is PEFT
 *              exactly: it weights A and B by √(w·s)).
 *                magnitude_prune: P_k = top-density(T_k); X' = Σ λ_k·P_k.
 *                ties:            P_k = top-density(T_k); per element the majority sign is
 *                                 sgn(Σ_k P_k) ("total", default) or sgn(Σ_k sgn P_k) ("frequency"),
 *                                 ≥ 0 counting as +; X' = Σ_{k agreeing} λ_k·P_k / max(1, #agreeing),
 *                                 an element agreeing when sgn(P_k) equals the majority sign (zeros
 *                                 never agree).
 *                dare_linear:     P_k = mask_k·T_k / density, mask_k Bernoulli(density) from a
 *                                 seeded PRNG (dareMask); X' = Σ λ_k·P_k.
 *                dare_ties:       the DARE P_k, then ties' election and disjoint mean.
 *              top-density(T) keeps the floor(density·n) elements of largest |value| (ties broken
 *              by lower index first) and zeroes the rest — PEFT's magnitude_based_pruning.
 *              The SVD variants (PEFT's ties_svd, dare_*_svd, magnitude_prune_svd: prune the ΔW_k,
 *              then truncate) are not implemented.
 */
import { oerr } from "../errors.js";
import { mulberry32 } from "../synth/random.js";
import { truncatedSvdOfProduct } from "./merge-linalg.js";
import { pairF32 } from "./pair-storage.js";
import { LORA_MODULES, type LoraAdapterWeights, type LoraModule, type LoraPair } from "./types.js";

export const MERGE_METHODS = ["cat", "linear", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"] as const;
export type MergeMethod = (typeof MERGE_METHODS)[number];

export interface MergeParams {
  /** Fraction of elements kept (0 < density ≤ 1); required by ties, dare_*, magnitude_prune. */
  density?: number;
  /** DARE's PRNG seed (default 0). */
  seed?: number;
  /** svd: the merged rank (default: the largest input rank of the module). */
  targetRank?: number;
  /** ties / dare_ties sign election (default "total"). */
  majoritySign?: "total" | "frequency";
}

export interface MergeInput {
  adapter: LoraAdapterWeights;
  weight: number;
}

const NEEDS_EQUAL_RANKS = new Set<MergeMethod>(["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]);
const NEEDS_DENSITY = new Set<MergeMethod>(["ties", "dare_linear", "dare_ties", "magnitude_prune"]);

/** Merges the inputs into one new adapter (see the file comment for each method). */
export function mergeAdapters(inputs: readonly MergeInput[], method: MergeMethod, params: MergeParams = {}): LoraAdapterWeights {
  if (!(MERGE_METHODS as readonly string[]).includes(method)) {
    throw oerr("INVALID_ARGUMENT", `unknown merge method ${JSON.stringify(method)}; one of ${MERGE_METHODS.join(", ")}`);
  }
  if (inputs.length === 0) throw oerr("INVALID_ARGUMENT", "merging needs at least one adapter");
  for (const { weight } of inputs) if (!Number.isFinite(weight)) throw oerr("INVALID_ARGUMENT", `merge weight ${weight} is not a finite number`);
  const nLayers = inputs[0]!.adapter.layers.length;
  if (inputs.some((x) => x.adapter.layers.length !== nLayers)) throw oerr("INVALID_ARGUMENT", "the adapters to merge have different numbers of layers (different base models?)");
  const density = params.density;
  if (NEEDS_DENSITY.has(method)) {
    if (density === undefined) throw oerr("INVALID_ARGUMENT", `merge method ${method} needs a density (0 < density ≤ 1)`);
    if (!(density > 0 && density <= 1)) throw oerr("INVALID_ARGUMENT", `density must be in (0, 1], got ${density}`);
  } else if (density !== undefined && !(density > 0 && density <= 1)) {
    throw oerr("INVALID_ARGUMENT", `density must be in (0, 1], got ${density}`);
  }
  if (params.targetRank !== undefined && !(Number.isSafeInteger(params.targetRank) && params.targetRank >= 1)) {
    throw oerr("INVALID_ARGUMENT", `the target rank must be a positive integer, got ${params.targetRank}`);
  }
  if (params.majoritySign !== undefined && params.majoritySign !== "total" && params.majoritySign !== "frequency") {
    throw oerr("INVALID_ARGUMENT", `majoritySign must be "total" or "frequency"`);
  }

  const layers: Array<Partial<Record<LoraModule, LoraPair>>> = [];
  let maxRank = 0;
  let bytes = 0;
  for (let l = 0; l < nLayers; l++) {
    const out: Partial<Record<LoraModule, LoraPair>> = {};
    for (const m of LORA_MODULES) {
      const present: Array<{ pair: LoraPair; c: number; k: number }> = [];
      inputs.forEach((x, k) => {
        const pair = x.adapter.layers[l]![m];
        // Merging computes on values: 16-bit pairs are widened first.
        if (pair) present.push({ pair: { ...pair, ...pairF32(pair), dtype: "f32" }, c: x.weight * pair.scale, k });
      });
      if (present.length === 0) continue;
      const { inDim, outDim } = present[0]!.pair;
      if (present.some((p) => p.pair.inDim !== inDim || p.pair.outDim !== outDim)) {
        throw oerr("INVALID_ARGUMENT", `layer ${l} ${m}: the adapters disagree on the module's shape (different base models?)`);
      }
      if (NEEDS_EQUAL_RANKS.has(method) && present.some((p) => p.pair.rank !== present[0]!.pair.rank)) {
        throw oerr("INVALID_ARGUMENT", `merge method ${method} needs equal ranks, but layer ${l} ${m} has ranks ${present.map((p) => p.pair.rank).join(", ")} (use cat or svd)`, { layer: l, module: m, method });
      }
      const pair = mergeModule(present, method, params, l, m);
      out[m] = pair;
      maxRank = Math.max(maxRank, pair.rank);
      bytes += pair.a.byteLength + pair.b.byteLength;
    }
    layers.push(out);
  }
  return { layers, maxRank, bytes };
}

function mergeModule(present: Array<{ pair: LoraPair; c: number; k: number }>, method: MergeMethod, params: MergeParams, layer: number, module: LoraModule): LoraPair {
  const { inDim, outDim } = present[0]!.pair;
  if (method === "cat") {
    const rank = present.reduce((s, p) => s + p.pair.rank, 0);
    const a = new Float32Array(rank * inDim);
    const b = new Float32Array(outDim * rank);
    let off = 0;
    for (const { pair, c } of present) {
      for (let i = 0; i < pair.rank * inDim; i++) a[off * inDim + i] = c * pair.a[i]!;
      for (let o = 0; o < outDim; o++) b.set(pair.b.subarray(o * pair.rank, (o + 1) * pair.rank), o * rank + off);
      off += pair.rank;
    }
    return { rank, inDim, outDim, a, b, dtype: "f32", scale: 1 };
  }
  if (method === "svd") {
    const R = present.reduce((s, p) => s + p.pair.rank, 0);
    const bc = new Float64Array(outDim * R);
    const ac = new Float64Array(R * inDim);
    let off = 0;
    for (const { pair, c } of present) {
      for (let i = 0; i < pair.rank * inDim; i++) ac[off * inDim + i] = c * pair.a[i]!;
      for (let o = 0; o < outDim; o++) for (let j = 0; j < pair.rank; j++) bc[o * R + off + j] = pair.b[o * pair.rank + j]!;
      off += pair.rank;
    }
    const want = params.targetRank ?? Math.max(...present.map((p) => p.pair.rank));
    const rank = Math.min(want, R, inDim, outDim);
    const r = truncatedSvdOfProduct(bc, ac, outDim, inDim, R, rank);
    return { rank, inDim, outDim, a: Float32Array.from(r.a), b: Float32Array.from(r.b), dtype: "f32", scale: 1 };
  }
  // The A/B families: each of A and B merged element-wise with weights λ_k = √|c_k|.
  const rank = present[0]!.pair.rank;
  const lambdas = present.map((p) => Math.sqrt(Math.abs(p.c)));
  const signs = present.map((p) => (p.c < 0 ? -1 : 1));
  const merge = (which: "A" | "B"): Float32Array => {
    const tasks = present.map((p, i) => {
      const src = which === "A" ? p.pair.a : p.pair.b;
      const t = new Float64Array(src.length);
      const sg = which === "A" ? signs[i]! : 1;
      for (let e = 0; e < src.length; e++) t[e] = sg * src[e]!;
      return t;
    });
    return mergeTensors(tasks, lambdas, method, params, (i, n) => dareMask(params.seed ?? 0, layer, module, present[i]!.k, which, n, params.density!));
  };
  return { rank, inDim, outDim, a: merge("A"), b: merge("B"), dtype: "f32", scale: 1 };
}

/** The generalized task arithmetic of one tensor stack (linear, ties, dare_*, magnitude_prune). */
function mergeTensors(
  tasks: Float64Array[], lambdas: number[], method: MergeMethod, params: MergeParams,
  mask: (inputIndex: number, n: number) => Uint8Array,
): Float32Array {
  const n = tasks[0]!.length;
  const density = params.density ?? 1;
  let pruned: Float64Array[];
  if (method === "linear") pruned = tasks;
  else if (method === "ties" || method === "magnitude_prune") pruned = tasks.map((t) => topDensity(t, density));
  else {
    pruned = tasks.map((t, i) => {
      const keep = mask(i, n);
      const p = new Float64Array(n);
      for (let e = 0; e < n; e++) if (keep[e]) p[e] = t[e]! / density;
      return p;
    });
  }
  const out = new Float32Array(n);
  if (method === "ties" || method === "dare_ties") {
    const frequency = params.majoritySign === "frequency";
    for (let e = 0; e < n; e++) {
      let vote = 0;
      for (const p of pruned) vote += frequency ? Math.sign(p[e]!) : p[e]!;
      const major = vote >= 0 ? 1 : -1;
      let sum = 0, count = 0;
      pruned.forEach((p, i) => {
        if (Math.sign(p[e]!) === major) { sum += lambdas[i]! * p[e]!; count++; }
      });
      out[e] = sum / Math.max(1, count);
    }
  } else {
    for (let e = 0; e < n; e++) {
      let sum = 0;
      for (let i = 0; i < pruned.length; i++) sum += lambdas[i]! * pruned[i]![e]!;
      out[e] = sum;
    }
  }
  return out;
}

/** Keeps the floor(density·n) elements of largest magnitude (ties: lower index first), zeroes the rest. */
export function topDensity(t: Float64Array, density: number): Float64Array {
  const n = t.length;
  const k = Math.floor(density * n);
  const out = new Float64Array(n);
  if (k <= 0) return out;
  if (k >= n) { out.set(t); return out; }
  const mags = new Float64Array(n);
  for (let e = 0; e < n; e++) mags[e] = Math.abs(t[e]!);
  const sorted = Float64Array.from(mags).sort();
  const threshold = sorted[n - k]!; // the k-th largest magnitude
  let above = 0;
  for (let e = 0; e < n; e++) if (mags[e]! > threshold) above++;
  let atThreshold = k - above; // how many elements equal to the threshold are kept, by index
  for (let e = 0; e < n; e++) {
    if (mags[e]! > threshold) out[e] = t[e]!;
    else if (mags[e] === threshold && atThreshold > 0) { out[e] = t[e]!; atThreshold--; }
  }
  return out;
}

/** A 32-bit mix of the inputs (murmur3's finalizer over a running hash). */
function hash32(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/**
 * DARE's keep mask for input `inputIndex`'s A or B at (layer, module): element e is kept when the
 * e-th draw of mulberry32(hash(seed, layer, module, input, A|B)) is < density. The stream depends
 * on nothing else, so a merge is reproducible for a seed whatever the order of work.
 */
export function dareMask(seed: number, layer: number, module: LoraModule, inputIndex: number, which: "A" | "B", n: number, density: number): Uint8Array {
  const rand = mulberry32(hash32(seed, Math.floor(seed / 4294967296), layer, LORA_MODULES.indexOf(module), inputIndex, which === "A" ? 0 : 1));
  const keep = new Uint8Array(n);
  for (let e = 0; e < n; e++) keep[e] = rand() < density ? 1 : 0;
  return keep;
}
