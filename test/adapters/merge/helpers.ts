/** Small in-memory adapters and f64 reference arithmetic for the merge tests. */
import type { LoraAdapterWeights, LoraModule, LoraPair } from "../../../src/adapters/types.js";
import { LORA_MODULES } from "../../../src/adapters/types.js";
import { randomUniform } from "../../../src/synth/random.js";

export const DIMS: Record<LoraModule, { inDim: number; outDim: number }> = {
  q: { inDim: 24, outDim: 24 }, k: { inDim: 24, outDim: 12 }, v: { inDim: 24, outDim: 12 }, o: { inDim: 24, outDim: 24 },
  gate: { inDim: 24, outDim: 40 }, up: { inDim: 24, outDim: 40 }, down: { inDim: 40, outDim: 24 },
};

/** An adapter over 2 layers with the given modules, rank and scale (values from `seed`). */
export function smallAdapter(seed: number, rank: number, modules: LoraModule[], scale = 2, nLayers = 2): LoraAdapterWeights {
  let bytes = 0;
  const layers = Array.from({ length: nLayers }, (_, l) => {
    const out: Partial<Record<LoraModule, LoraPair>> = {};
    for (const m of modules) {
      const { inDim, outDim } = DIMS[m];
      const s = seed * 1009 + l * 31 + LORA_MODULES.indexOf(m);
      const pair: LoraPair = { rank, inDim, outDim, a: randomUniform(rank * inDim, s * 2 + 1, 0.3), b: randomUniform(outDim * rank, s * 2 + 2, 0.2), dtype: "f32", scale };
      bytes += pair.a.byteLength + pair.b.byteLength;
      out[m] = pair;
    }
    return out;
  });
  return { layers, maxRank: rank, bytes };
}

/** ΔW = scale·B·A of one pair, f64 [out, in]. */
export function deltaOf(p: LoraPair): Float64Array {
  const d = new Float64Array(p.outDim * p.inDim);
  for (let o = 0; o < p.outDim; o++) {
    for (let i = 0; i < p.inDim; i++) {
      let s = 0;
      for (let r = 0; r < p.rank; r++) s += p.b[o * p.rank + r]! * p.a[r * p.inDim + i]!;
      d[o * p.inDim + i] = p.scale * s;
    }
  }
  return d;
}

/** Σ w_k·ΔW_k over the inputs that have (layer, module). */
export function weightedDelta(inputs: Array<{ adapter: LoraAdapterWeights; weight: number }>, layer: number, m: LoraModule): Float64Array | undefined {
  let sum: Float64Array | undefined;
  for (const { adapter, weight } of inputs) {
    const p = adapter.layers[layer]![m];
    if (!p) continue;
    const d = deltaOf(p);
    sum ??= new Float64Array(d.length);
    for (let i = 0; i < d.length; i++) sum[i]! += weight * d[i]!;
  }
  return sum;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
