/**
 * Each merge method against a plain reference written here (element loops, f64, then one rounding
 * to f32), plus cat/svd against the weighted sum of updates, DARE's seeding, and typed errors.
 */
import { describe, expect, it } from "vitest";
import { dareMask, mergeAdapters, type MergeMethod } from "../../../src/adapters/merge.js";
import type { LoraAdapterWeights, LoraModule, LoraPair } from "../../../src/adapters/types.js";
import { LORA_MODULES } from "../../../src/adapters/types.js";
import { isOpenLoraError } from "../../../src/errors.js";
import { deltaOf, maxAbs, maxAbsDiff, smallAdapter, weightedDelta } from "./helpers.js";

type Input = { adapter: LoraAdapterWeights; weight: number };

/** Reference top-k: sort indices by |x| descending then index ascending, keep floor(density·n). */
function refPrune(t: number[], density: number): number[] {
  const k = Math.floor(density * t.length);
  const idx = t.map((_, i) => i).sort((x, y) => Math.abs(t[y]!) - Math.abs(t[x]!) || x - y);
  const out = t.map(() => 0);
  for (const i of idx.slice(0, k)) out[i] = t[i]!;
  return out;
}

/** PEFT's generalized task arithmetic on one matrix (A or B) of one module, written plainly. */
function refMatrix(inputs: Input[], layer: number, m: LoraModule, which: "A" | "B", method: MergeMethod, density: number, seed: number, freq = false): Float32Array {
  const present: Array<{ p: LoraPair; c: number; k: number }> = [];
  inputs.forEach((x, k) => { const p = x.adapter.layers[layer]![m]; if (p) present.push({ p, c: x.weight * p.scale, k }); });
  const tasks = present.map(({ p, c }) => Array.from(which === "A" ? p.a : p.b, (v) => (which === "A" && c < 0 ? -v : v)));
  const lam = present.map(({ c }) => Math.sqrt(Math.abs(c)));
  const n = tasks[0]!.length;
  let pruned: number[][];
  if (method === "linear") pruned = tasks;
  else if (method === "ties" || method === "magnitude_prune") pruned = tasks.map((t) => refPrune(t, density));
  else pruned = tasks.map((t, i) => { const keep = dareMask(seed, layer, m, present[i]!.k, which, n, density); return t.map((v, e) => (keep[e] ? v / density : 0)); });
  const out = new Float32Array(n);
  for (let e = 0; e < n; e++) {
    if (method === "ties" || method === "dare_ties") {
      let vote = 0;
      for (const p of pruned) vote += freq ? Math.sign(p[e]!) : p[e]!;
      const maj = vote >= 0 ? 1 : -1;
      let sum = 0, cnt = 0;
      for (let i = 0; i < pruned.length; i++) if (Math.sign(pruned[i]![e]!) === maj) { sum += lam[i]! * pruned[i]![e]!; cnt++; }
      out[e] = sum / Math.max(1, cnt);
    } else {
      let sum = 0;
      for (let i = 0; i < pruned.length; i++) sum += lam[i]! * pruned[i]![e]!;
      out[e] = sum;
    }
  }
  return out;
}

function bitsEqual(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): boolean {
  // Merged pairs are f32: a 16-bit result would itself be a failure.
  return a instanceof Float32Array && b instanceof Float32Array && a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function code(fn: () => unknown): string | undefined {
  try { fn(); } catch (e) { return isOpenLoraError(e) ? e.code : String(e); }
  return undefined;
}

// Three rank-4 adapters with overlapping module sets, one with a negative weight.
const x = smallAdapter(1, 4, ["q", "v", "down"], 2);
const y = smallAdapter(2, 4, ["q", "k", "down"], 0.5);
const z = smallAdapter(3, 4, ["q", "gate"], 1.25);
const inputs: Input[] = [{ adapter: x, weight: 0.7 }, { adapter: y, weight: 0.3 }, { adapter: z, weight: -0.4 }];

describe("element-wise methods (PEFT's ties family, on A and B separately)", () => {
  const cases: Array<[MergeMethod, number, boolean]> = [
    ["linear", 1, false], ["magnitude_prune", 0.4, false], ["ties", 0.5, false], ["ties", 0.5, true], ["ties", 1, false],
    ["dare_linear", 0.6, false], ["dare_ties", 0.3, false], ["dare_ties", 0.7, true],
  ];
  for (const [method, density, freq] of cases) {
    it(`${method} (density ${density}${freq ? ", frequency sign" : ""}) matches the reference bit for bit`, () => {
      const seed = 42;
      const merged = mergeAdapters(inputs, method, { density, seed, ...(freq ? { majoritySign: "frequency" as const } : {}) });
      let modules = 0;
      for (let l = 0; l < 2; l++) {
        for (const m of LORA_MODULES) {
          const p = merged.layers[l]![m];
          const anyInput = inputs.some((i) => i.adapter.layers[l]![m]);
          expect(!!p, `${l} ${m}`).toBe(anyInput);
          if (!p) continue;
          modules++;
          expect(p.scale).toBe(1);
          expect(p.rank).toBe(4);
          expect(bitsEqual(p.a, refMatrix(inputs, l, m, "A", method, density, seed, freq)), `${l} ${m} A`).toBe(true);
          expect(bitsEqual(p.b, refMatrix(inputs, l, m, "B", method, density, seed, freq)), `${l} ${m} B`).toBe(true);
        }
      }
      expect(modules).toBe(2 * 5); // union: q, k, v, gate, down
    });
  }

  it("linear with one input of weight w is √(w·s)·A, √(w·s)·B: its update is w·s·B·A", () => {
    const merged = mergeAdapters([{ adapter: x, weight: 0.7 }], "linear");
    const want = weightedDelta([{ adapter: x, weight: 0.7 }], 1, "down")!;
    expect(maxAbsDiff(deltaOf(merged.layers[1]!.down!), want)).toBeLessThan(1e-6 * maxAbs(want));
  });

  it("magnitude_prune keeps floor(density·n) elements of each input", () => {
    const merged = mergeAdapters([{ adapter: x, weight: 1 }], "magnitude_prune", { density: 0.25 });
    const a = merged.layers[0]!.q!.a;
    expect(a.filter((v) => v !== 0).length).toBe(Math.floor(0.25 * a.length));
  });

  it("DARE is reproducible for a seed, differs across seeds, and keeps about density of the elements", () => {
    const one = mergeAdapters(inputs, "dare_linear", { density: 0.5, seed: 7 });
    const again = mergeAdapters(inputs, "dare_linear", { density: 0.5, seed: 7 });
    const other = mergeAdapters(inputs, "dare_linear", { density: 0.5, seed: 8 });
    expect(bitsEqual(one.layers[0]!.q!.a, again.layers[0]!.q!.a)).toBe(true);
    expect(bitsEqual(one.layers[1]!.down!.b, again.layers[1]!.down!.b)).toBe(true);
    expect(bitsEqual(one.layers[0]!.q!.a, other.layers[0]!.q!.a)).toBe(false);
    const mask = dareMask(7, 0, "gate", 0, "B", 20000, 0.3);
    const kept = mask.reduce((s, v) => s + v, 0) / mask.length;
    expect(Math.abs(kept - 0.3)).toBeLessThan(0.02);
    // The single-input survivors are the originals rescaled by 1/density.
    const single = mergeAdapters([{ adapter: z, weight: 1 }], "dare_linear", { density: 0.5, seed: 3 });
    const src = z.layers[0]!.gate!, got = single.layers[0]!.gate!;
    const lam = Math.sqrt(src.scale);
    for (let e = 0; e < got.b.length; e++) if (got.b[e] !== 0) expect(got.b[e]).toBe(Math.fround((lam * src.b[e]!) / 0.5));
  });
});

describe("cat and svd", () => {
  it("cat reproduces Σ w·s·B·A (ranks may differ) with rank Σ r", () => {
    const ins: Input[] = [{ adapter: smallAdapter(4, 3, ["q", "down"], 2), weight: 0.7 }, { adapter: smallAdapter(5, 8, ["q", "o"], 0.25), weight: -0.3 }];
    const merged = mergeAdapters(ins, "cat");
    expect(merged.layers[0]!.q!.rank).toBe(11);
    expect(merged.layers[0]!.down!.rank).toBe(3);
    expect(merged.maxRank).toBe(11);
    for (let l = 0; l < 2; l++) for (const m of ["q", "o", "down"] as const) {
      const want = weightedDelta(ins, l, m)!;
      expect(maxAbsDiff(deltaOf(merged.layers[l]![m]!), want), `${l} ${m}`).toBeLessThan(1e-6 * maxAbs(want));
    }
  });

  it("svd at full rank equals Σ w·s·B·A; truncated, it is the best rank-k approximation", () => {
    const ins: Input[] = [{ adapter: smallAdapter(6, 3, ["q", "down", "k"], 2), weight: 0.7 }, { adapter: smallAdapter(7, 5, ["q", "down"], 0.25), weight: -0.3 }];
    const full = mergeAdapters(ins, "svd", { targetRank: 8 });
    expect(full.layers[0]!.q!.rank).toBe(8);
    expect(full.layers[0]!.k!.rank).toBe(3);
    for (let l = 0; l < 2; l++) for (const m of ["q", "k", "down"] as const) {
      const want = weightedDelta(ins, l, m)!;
      expect(maxAbsDiff(deltaOf(full.layers[l]![m]!), want), `${l} ${m}`).toBeLessThan(1e-5 * maxAbs(want));
    }
    // Default rank = the largest input rank (5); the A rows are orthonormal.
    const trunc = mergeAdapters(ins, "svd");
    const p = trunc.layers[1]!.down!;
    expect(p.rank).toBe(5);
    for (let i = 0; i < p.rank; i++) for (let j = 0; j < p.rank; j++) {
      let d = 0;
      for (let c = 0; c < p.inDim; c++) d += p.a[i * p.inDim + c]! * p.a[j * p.inDim + c]!;
      expect(Math.abs(d - (i === j ? 1 : 0))).toBeLessThan(1e-5);
    }
    // Residual is orthogonal to the kept subspace: ‖ΔW − B'A'‖² = ‖ΔW‖² − ‖B'A'‖².
    const want = weightedDelta(ins, 1, "down")!;
    const got = deltaOf(p);
    let res = 0, all = 0, kept = 0;
    for (let i = 0; i < want.length; i++) { res += (want[i]! - got[i]!) ** 2; all += want[i]! ** 2; kept += got[i]! ** 2; }
    expect(Math.abs(res - (all - kept))).toBeLessThan(1e-4 * all);
    expect(res).toBeGreaterThan(0);
  });
});

describe("svd when Σ r exceeds a module dimension", () => {
  it("is exact at rank min(out, in, Σ r) for both tall and wide small matrices", () => {
    // k: out 12 < Σ r = 16 ≤ in 24 (wide core); down: in 40, out 24, Σ r = 26 > 24 (tall core, clamped).
    const ins: Input[] = [{ adapter: smallAdapter(10, 8, ["k"]), weight: 0.5 }, { adapter: smallAdapter(11, 8, ["k"]), weight: -1.5 },
      { adapter: smallAdapter(12, 13, ["down"]), weight: 1 }, { adapter: smallAdapter(13, 13, ["down"]), weight: 2 }];
    const merged = mergeAdapters(ins, "svd", { targetRank: 64 });
    expect(merged.layers[0]!.k!.rank).toBe(12);
    expect(merged.layers[0]!.down!.rank).toBe(24);
    for (const m of ["k", "down"] as const) {
      const want = weightedDelta(ins, 1, m)!;
      expect(maxAbsDiff(deltaOf(merged.layers[1]![m]!), want), m).toBeLessThan(1e-5 * maxAbs(want));
    }
  });
});

describe("typed errors", () => {
  const r4 = smallAdapter(8, 4, ["q"]);
  const r8 = smallAdapter(9, 8, ["q"]);
  it("unequal ranks where a method needs equal ranks → INVALID_ARGUMENT", () => {
    for (const m of ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"] as const) {
      expect(code(() => mergeAdapters([{ adapter: r4, weight: 1 }, { adapter: r8, weight: 1 }], m, { density: 0.5 }))).toBe("INVALID_ARGUMENT");
    }
    expect(code(() => mergeAdapters([{ adapter: r4, weight: 1 }, { adapter: r8, weight: 1 }], "cat"))).toBeUndefined();
    expect(code(() => mergeAdapters([{ adapter: r4, weight: 1 }, { adapter: r8, weight: 1 }], "svd"))).toBeUndefined();
  });
  it("bad density, weights, ranks, methods and empty input → INVALID_ARGUMENT", () => {
    const one = [{ adapter: r4, weight: 1 }];
    expect(code(() => mergeAdapters(one, "ties"))).toBe("INVALID_ARGUMENT");
    expect(code(() => mergeAdapters(one, "ties", { density: 0 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => mergeAdapters(one, "dare_linear", { density: 1.5 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => mergeAdapters([{ adapter: r4, weight: NaN }], "cat"))).toBe("INVALID_ARGUMENT");
    expect(code(() => mergeAdapters(one, "svd", { targetRank: 0 }))).toBe("INVALID_ARGUMENT");
    expect(code(() => mergeAdapters(one, "nope" as MergeMethod))).toBe("INVALID_ARGUMENT");
    expect(code(() => mergeAdapters([], "cat"))).toBe("INVALID_ARGUMENT");
  });
});
