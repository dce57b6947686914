/**
 * matmulMulti with LoRA terms (registered pairs): the fused call gives exactly the bits of the base
 * products followed by loraApply per product — for decode rows (gathered, expanded inside the
 * product's column tasks with their B rows prefetched), prefill runs (segmented), compositions,
 * f32 / f16 / bf16 pairs, batches above one 64-row block, every kernel table, 1 and 2 threads.
 * And the registry: ids resolve only while registered, shapes are checked.
 */
import { describe, expect, it } from "vitest";
import { f32ToBf16, f32ToF16, type LoraPath, type LoraTerms } from "../../src/native/index.js";
import { firstBitDiff, GGML_TYPE, IMPLS, native, randomF32, randomWeights, rng, withConfig } from "./helpers.js";

const F32 = 0, F16 = 1, BF16 = 30;

interface Pair { a: Float32Array | Uint16Array; b: Float32Array | Uint16Array; type: number; rank: number }

function matrix(n: number, seed: number, scale: number, type: number): Float32Array | Uint16Array {
  const f = randomF32(n, seed, scale);
  if (type === F32) return f;
  return Uint16Array.from(f, (v) => (type === F16 ? f32ToF16(v) : f32ToBf16(v)));
}

function pair(K: number, N: number, rank: number, seed: number, type: number): Pair {
  return { a: matrix(rank * K, seed, 1 / Math.sqrt(K), type), b: matrix(N * rank, seed + 1, 0.5, type), type, rank };
}

interface Term { row: number; scale: number; pair: Pair }

/**
 * Terms over M rows: rows in runs of 4–9 sharing one adapter (prefill chunks), single rows with
 * their own adapter (decode), some rows composing two or three, some rows without any.
 */
function randomTerms(M: number, pool: Pair[], seed: number): Term[] {
  const r = rng(seed);
  const pick = () => pool[Math.floor(r() * pool.length)]!;
  const terms: Term[] = [];
  for (let row = 0; row < M;) {
    const kind = r();
    if (kind < 0.25) {
      const p = pick(), len = Math.min(M - row, 4 + Math.floor(r() * 6));
      for (let i = 0; i < len; i++) terms.push({ row: row + i, scale: 0.5, pair: p });
      row += len;
    } else if (kind < 0.35) {
      row++; // base model only
    } else {
      const n = kind < 0.45 ? 2 + Math.floor(r() * 2) : 1;
      for (let i = 0; i < n; i++) terms.push({ row, scale: Math.fround(r() * 2 - 0.5), pair: pick() });
      row++;
    }
  }
  return terms;
}

function unfused(outs: Float32Array[], x: Float32Array, ws: Uint8Array[], type: number, M: number, K: number, Ns: number[], terms: Term[][]): void {
  native.matmulMulti(outs, x, ws, type, M, K);
  terms.forEach((ts, i) => {
    if (!ts.length) return;
    native.loraApply(outs[i]!, x, M, K, Ns[i]!, Int32Array.from(ts, (t) => t.row), Float32Array.from(ts, (t) => t.scale),
      ts.map((t) => t.pair.a), ts.map((t) => t.pair.b), Int32Array.from(ts, (t) => t.pair.type));
  });
}

function registerAll(terms: Term[][], K: number, Ns: number[]): { lists: (LoraTerms | null)[]; ids: number[] } {
  const idOf = new Map<Pair, number>();
  const lists = terms.map((ts, i) => {
    if (!ts.length) return null;
    const ids = Int32Array.from(ts, (t) => {
      let id = idOf.get(t.pair);
      if (id === undefined) idOf.set(t.pair, (id = native.loraRegister(t.pair.a, t.pair.b, t.pair.type, K, Ns[i]!)));
      return id;
    });
    return { rows: Int32Array.from(ts, (t) => t.row), scales: Float32Array.from(ts, (t) => t.scale), ids };
  });
  return { lists, ids: [...idOf.values()] };
}

describe("matmulMulti with registered LoRA terms", () => {
  const K = 96;
  const Ns = [80, 40, 40];
  for (const wType of [GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.F16]) {
    const ws = Ns.map((N, i) => randomWeights(wType, N, K, 100 + i));
    for (const M of [1, 3, 32, 77]) {
      it(`type ${wType}, M=${M}: bit-identical to matmulMulti then loraApply, every table, path and thread count`, () => {
        // One pool per product (a pair belongs to one product's shapes), mixed ranks and dtypes.
        const pools = Ns.map((N, i) => [1, 8, 16, 33].flatMap((rank, j) => [F32, F16, BF16].map((t, k) => pair(K, N, rank, 1000 * i + 10 * j + k, t))));
        const terms = Ns.map((_, i) => (i === 2 && M > 1 ? [] : randomTerms(M, pools[i]!, 7 * M + i)));
        const x = randomF32(M * K, 5 + M);
        const { lists, ids } = registerAll(terms, K, Ns);
        try {
          for (const impl of IMPLS) {
            for (const threads of [1, 2]) {
              for (const path of ["auto", "gathered", "segmented"] as LoraPath[]) {
                native.setLoraPath(path);
                try {
                  const want = Ns.map((N) => new Float32Array(M * N));
                  const got = Ns.map((N) => new Float32Array(M * N).fill(Number.NaN));
                  withConfig(impl, threads, () => {
                    unfused(want, x, ws, wType, M, K, Ns, terms);
                    native.matmulMulti(got, x, ws, wType, M, K, lists);
                  });
                  got.forEach((g, i) => expect(firstBitDiff(g, want[i]!), `${impl} ${threads} thr ${path} product ${i}`).toBe(-1));
                } finally {
                  native.setLoraPath("auto");
                }
              }
            }
          }
        } finally {
          ids.forEach((id) => native.loraRelease(id));
        }
      });
    }
  }

  it("adds nothing for null or empty term lists", () => {
    const ws = [randomWeights(GGML_TYPE.Q8_0, 16, 64, 1)];
    const x = randomF32(2 * 64, 2);
    const a = [new Float32Array(32)], b = [new Float32Array(32)];
    native.matmulMulti(a, x, ws, GGML_TYPE.Q8_0, 2, 64);
    native.matmulMulti(b, x, ws, GGML_TYPE.Q8_0, 2, 64, [null]);
    expect(firstBitDiff(a[0]!, b[0]!)).toBe(-1);
    native.matmulMulti(b, x, ws, GGML_TYPE.Q8_0, 2, 64, [{ rows: new Int32Array(0), scales: new Float32Array(0), ids: new Int32Array(0) }]);
    expect(firstBitDiff(a[0]!, b[0]!)).toBe(-1);
  });
});

describe("LoRA pair registry", () => {
  const K = 64, N = 16, M = 2;
  const ws = [randomWeights(GGML_TYPE.Q8_0, N, K, 3)];
  const x = randomF32(M * K, 4);
  const outs = [new Float32Array(M * N)];
  const terms = (id: number): LoraTerms[] => [{ rows: Int32Array.of(1), scales: Float32Array.of(1), ids: Int32Array.of(id) }];

  it("rejects matrices of the wrong shape or kind", () => {
    expect(() => native.loraRegister(new Float32Array(4 * K), new Float32Array(N * 4), F32, K, N)).not.toThrow();
    expect(() => native.loraRegister(new Float32Array(4 * K + 1), new Float32Array(N * 4), F32, K, N)).toThrow(RangeError);
    expect(() => native.loraRegister(new Float32Array(4 * K), new Float32Array(N * 5), F32, K, N)).toThrow(RangeError);
    expect(() => native.loraRegister(new Float32Array(4 * K), new Float32Array(N * 4), F16, K, N)).toThrow(TypeError);
    expect(() => native.loraRegister(new Uint16Array(4 * K), new Uint16Array(N * 4), 8, K, N)).toThrow(RangeError);
    expect(() => native.loraRegister(new Float32Array(2000 * K), new Float32Array(N * 2000), F32, K, N)).toThrow(/rank 2000 > 1024/);
  });

  it("resolves an id only while it is registered and for its own shapes", () => {
    const id = native.loraRegister(new Float32Array(4 * K).fill(0.01), new Float32Array(N * 4).fill(1), F32, K, N);
    native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, terms(id));
    const other = native.loraRegister(new Float32Array(4 * 32), new Float32Array(N * 4), F32, 32, N);
    expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, terms(other))).toThrow(/K = 32, N = 16, the product has K = 64/);
    native.loraRelease(other);
    native.loraRelease(id);
    expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, terms(id))).toThrow(/is not a registered LoRA pair/);
    expect(() => native.loraRelease(id)).toThrow(RangeError);
    expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, terms(-1))).toThrow(RangeError);
  });

  it("checks rows, lengths and the output against the matrices", () => {
    const b = new Float32Array(N * 4 + M * N);
    const id = native.loraRegister(new Float32Array(4 * K), b.subarray(0, N * 4), F32, K, N);
    try {
      expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, [{ rows: Int32Array.of(M), scales: Float32Array.of(1), ids: Int32Array.of(id) }])).toThrow(/outside/);
      expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, [{ rows: Int32Array.of(0), scales: new Float32Array(2), ids: Int32Array.of(id) }])).toThrow(RangeError);
      expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, [])).toThrow(TypeError);
      expect(() => native.matmulMulti(outs, x, ws, GGML_TYPE.Q8_0, M, K, [{ rows: Int32Array.of(0), scales: Float32Array.of(1) } as unknown as LoraTerms])).toThrow(TypeError);
      const aliased = [b.subarray(0, M * N)];
      expect(() => native.matmulMulti(aliased, x, ws, GGML_TYPE.Q8_0, M, K, [{ rows: Int32Array.of(0), scales: Float32Array.of(1), ids: Int32Array.of(id) }])).toThrow(/overlaps its matrices/);
    } finally {
      native.loraRelease(id);
    }
  });

  it("reuses released ids for new pairs, which then resolve to the new matrices", () => {
    const first = native.loraRegister(new Float32Array(K), new Float32Array(N), F32, K, N);
    native.loraRelease(first);
    const a = new Float32Array(K).fill(1 / K), bm = new Float32Array(N).fill(2);
    const second = native.loraRegister(a, bm, F32, K, N);
    try {
      expect(second).toBe(first);
      const got = [new Float32Array(M * N)], want = [new Float32Array(M * N)];
      native.matmulMulti(got, x, ws, GGML_TYPE.Q8_0, M, K, terms(second));
      native.matmulMulti(want, x, ws, GGML_TYPE.Q8_0, M, K);
      native.loraApply(want[0]!, x, M, K, N, Int32Array.of(1), Float32Array.of(1), [a], [bm]);
      expect(firstBitDiff(got[0]!, want[0]!)).toBe(-1);
    } finally {
      native.loraRelease(second);
    }
  });
});
