/**
 * The native boundary: the declaration of build/Release/openlora_native.node, kept next to the C++
 * (test/native/binding-drift.test.ts fails when the exported names drift from this list).
 *
 * Conventions
 * - All calls are synchronous and run on the calling thread plus the native thread pool. Heavy
 *   ones are meant to be called from the engine's worker thread, never the HTTP event loop.
 * - Tensors are TypedArrays, row-major. Quantized weights are raw bytes in ggml's block layout;
 *   a weight matrix W has N rows (outputs) of K elements (inputs): W[n, k].
 * - Type ids are ggml's: F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30.
 *   Q4_K / Q6_K (super-blocks of 256) are weight-only: dequantize, getRows and matmul accept them,
 *   quantize does not.
 * - Determinism: every output element is reduced in one fixed order that depends only on K (never
 *   on M, on the thread count, or on which thread computes it). So a row's result is bit-identical
 *   alone or inside any batch, with any number of threads. The "amx", "avx512", "avx2" and
 *   "reference" kernels implement the same scheme (native/src/common.h) and give bit-identical results.
 * - Arguments are validated (lengths vs dimensions) before any memory is touched; violations throw
 *   a JS TypeError (wrong kind of argument) / RangeError (bad length, index or value), never crash.
 *   Lengths must match the dimensions exactly (pass subarray views of larger scratch buffers).
 *   Outputs must not overlap inputs, except where an alias is explicitly allowed (then it must be
 *   the very same array).
 */
export type KernelImpl = "amx" | "avx512" | "avx2" | "reference";
/** How loraApply computes runs of consecutive rows that share a term list (see setLoraPath). */
export type LoraPath = "auto" | "gathered" | "segmented";

/**
 * One product's LoRA terms for matmulMulti, each a (row, scale, registered pair): the same update
 * as loraApply's termRows / termScales / As / Bs / termTypes, with the matrices named by the ids
 * loraRegister returned.
 */
export interface LoraTerms {
  rows: Int32Array;
  scales: Float32Array;
  ids: Int32Array;
}

export interface OpenLoraNative {
  /** CPU features detected at load time. */
  cpuFeatures(): { avx2: boolean; fma: boolean; f16c: boolean; avx512: boolean; avx512vnni: boolean; amx: boolean };
  /**
   * The kernels in use: "amx" when the CPU has AMX-TILE/AMX-INT8 and the OS grants the tile state
   * (the avx512 kernels with batched Q8_0 products on AMX tiles; cpuFeatures().amx), else "avx512"
   * when it has AVX-512 F/BW/VL/VNNI (the avx2 kernels with VNNI batched Q4_0 products), else "avx2"
   * when it has AVX2+FMA+F16C, else "reference".
   */
  getKernelImpl(): KernelImpl;
  /** Force an implementation (parity tests, benchmarks). Throws if this CPU cannot run it. */
  setKernelImpl(impl: KernelImpl): void;
  /** Threads used by each kernel call (the caller plus n-1 pool workers). Default 1. */
  setThreads(n: number): void;
  getThreads(): number;

  /**
   * Maps a whole file privately (copy-on-write, so a stray write never reaches the file) and
   * returns it as an ArrayBuffer without copying; the mapping is released when the ArrayBuffer is
   * garbage-collected. Throws an Error with a Node-style `code` ('ENOENT', 'EACCES', 'EISDIR', ...;
   * 'EINVAL' for an empty file) and `path`, `syscall`, on a missing or empty file.
   */
  mapFile(path: string): ArrayBuffer;

  /**
   * out[m, n] = Σ_k x[m, k] · W[n, k]   x: [M, K] f32, W: [N, K] of type wType, out: [M, N] f32.
   * Like ggml, x is first rounded to W's dot type: Q8_0 for Q8_0/Q4_0 weights, Q8_K for Q4_K/Q6_K
   * (ggml's quantize_row_q8_K_ref: per 256, iscale = −127 / signed max, q = nearest even,
   * d = 1 / iscale in f32), F16 for F16, BF16 for BF16, none for F32. K must be a multiple of 32
   * for Q8_0/Q4_0 and of 256 for Q4_K/Q6_K.
   */
  matmul(out: Float32Array, x: Float32Array, w: Uint8Array, wType: number, M: number, N: number, K: number): void;

  /**
   * out_i = x · W_iᵀ for 1..8 weights of one type that share the input (q/k/v, gate/up):
   * x: [M, K]; ws[i]: [N_i, K] (N_i = ws[i].length / row bytes); outs[i]: [M, N_i]. x is rounded
   * once and all products run in one parallel region; bit-identical to separate matmul calls.
   *
   * lora (optional, one entry per product, null for none) fuses the LoRA update of each product:
   * the result is bit-identical to matmulMulti without it followed, per product i, by loraApply
   * on outs[i] with lora[i]'s terms (the registered pairs' matrices and types). Rows the gathered
   * path computes (decode rows) get their expand inside the product's column tasks, with their B
   * rows prefetched while the base tiles compute, so the adapters' memory traffic overlaps the
   * compute-bound base product instead of following it. Every pair must be registered for this
   * product's K and N_i.
   */
  matmulMulti(
    outs: Float32Array[], x: Float32Array, ws: Uint8Array[], wType: number, M: number, K: number,
    lora?: (LoraTerms | null)[],
  ): void;

  /**
   * Registers one LoRA pair for matmulMulti's term lists: a [rank, K], b [N, rank], Float32Arrays
   * for type 0 (F32) or Uint16Arrays of f16 (1) / bf16 (30) bits; rank <= 1024. Returns its id. The
   * registry keeps both arrays alive until loraRelease(id); ids belong to the calling thread and
   * are reused after release. The arrays must not change while registered.
   */
  loraRegister(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array, type: number, K: number, N: number): number;
  /** Forgets a registered pair (its arrays may then be collected). Throws for an unknown id. */
  loraRelease(id: number): void;

  /**
   * Heterogeneous batched LoRA: for each term t in list order,
   *   y[termRows[t], :] += termScales[t] · Bs[t] · (As[t] · x[termRows[t], :])
   * y: [M, N]; x: [M, K]; As[t]: [rank_t, K]; Bs[t]: [N, rank_t] (f32, ranks may differ per term,
   * rank <= 1024; the same matrices may appear in many terms). A row may have no term, one, or
   * several (a weighted composition: the exact sum of the updates). A row's result depends only on
   * its own terms, in their list order: bit-identical alone or in any batch, with any threads, and
   * whichever path (setLoraPath) computes it. Runs of consecutive rows with the same term list
   * (a prefill chunk) are found here, so one call per (layer, module) covers the whole batch.
   * termTypes (optional, one per term: 0 = F32, 1 = F16, 30 = BF16) lets a term's As/Bs be
   * Uint16Arrays of f16 / bf16 bits; the values widen to f32 exactly, so the result is bit-identical
   * to passing their f32 copies, at half the bytes read. Without it every matrix is a Float32Array.
   */
  loraApply(
    y: Float32Array, x: Float32Array, M: number, K: number, N: number,
    termRows: Int32Array, termScales: Float32Array, As: (Float32Array | Uint16Array)[], Bs: (Float32Array | Uint16Array)[],
    termTypes?: Int32Array,
  ): void;

  /**
   * How loraApply computes the rows (all paths give bit-identical results; for tests and
   * benchmarks). "gathered": row by row (shrink per term, expand per row). "segmented": each run of
   * consecutive rows with the same term list (same matrices, scales and order) as small
   * register-tiled products over the run. "auto" (default): segmented for runs of 4 rows or more
   * (prefill chunks, or decode rows that happen to share adapters), gathered otherwise.
   */
  setLoraPath(path: LoraPath): void;
  getLoraPath(): LoraPath;

  /** out[i, :] = dequantize(W[ids[i], :])   W: [rows, K] of type wType, out: [ids.length, K]. */
  getRows(out: Float32Array, w: Uint8Array, wType: number, K: number, ids: Int32Array): void;

  /**
   * Quantizes src (length a multiple of the type's block) into dst in ggml's layout (ggml's reference
   * rounding). F32, F16, BF16, Q8_0, Q4_0 only: K-quant types throw a RangeError.
   */
  quantize(dst: Uint8Array, src: Float32Array, type: number): void;
  /** Inverse of quantize; also converts F16/BF16 to F32. */
  dequantize(dst: Float32Array, src: Uint8Array, type: number): void;

  /** out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · weight   x, out: [rows, dim]; out may alias x. */
  rmsNorm(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): void;

  /**
   * Rotary embedding in place. x: [rows, nHeads, headDim], rows = positions.length. The first
   * ropeDim dims of each head rotate with angle positions[r] · invFreq[i], i < ropeDim/2.
   * neox = true pairs (i, i + ropeDim/2) (Qwen2/3, HF "rotate_half" layout); false pairs (2i, 2i+1)
   * (GGUF llama layout, whose q/k weights are permuted at conversion).
   */
  rope(x: Float32Array, positions: Int32Array, nHeads: number, headDim: number, ropeDim: number, neox: boolean, invFreq: Float32Array): void;

  /**
   * Writes rows of K and V into the paged f16 pools. kPool, vPool: [numSlots, kvDim] f16 bits;
   * k, v: [T, kvDim] f32; slots[t] = block · blockSize + offset for row t.
   */
  kvStore(kPool: Uint16Array, vPool: Uint16Array, k: Float32Array, v: Float32Array, slots: Int32Array, kvDim: number): void;

  /**
   * Causal attention over the paged cache, for T query rows of S sequences.
   *   q, out: [T, nHeads, headDim] f32; kPool, vPool: [numSlots, nKvHeads · headDim] f16 bits.
   *   Row t belongs to sequence rowSeq[t] and sits at position rowPos[t]; it attends to positions
   *   0..rowPos[t] of that sequence, whose position p lives in slot
   *   blockTables[tableOffsets[s] + floor(p / blockSize)] · blockSize + p % blockSize.
   *   Head h reads kv head floor(h / (nHeads / nKvHeads)) (grouped-query attention).
   *   out = softmax(scale · q·Kᵀ) · V, softmax in f32 with max subtraction. As in ggml, the
   *   operands multiplied with the f16 cache are rounded to f16 first: q before q·Kᵀ, and the
   *   softmax weights before the weighted sum of V. headDim <= 1024.
   */
  attention(
    out: Float32Array, q: Float32Array, kPool: Uint16Array, vPool: Uint16Array,
    rowSeq: Int32Array, rowPos: Int32Array, blockTables: Int32Array, tableOffsets: Int32Array,
    nHeads: number, nKvHeads: number, headDim: number, blockSize: number, scale: number,
  ): void;

  /**
   * out = silu(gate) ⊙ up, elementwise; out may alias gate or up. silu(g) = g / (1 + e^−g) with
   * e^x from a fixed polynomial (about 1 ulp; native/src/common.h exp_poly), the same bits in every
   * kernel table.
   */
  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array): void;
  /** The first index of the largest element (NaN never wins; 0 when nothing exceeds −Infinity). */
  argmax(x: Float32Array): number;
  /**
   * The index of the first element of x that is NaN, infinite, or of magnitude above maxAbs; -1
   * when there is none. maxAbs >= 0 (Infinity: finiteness only); an element equal to ±maxAbs
   * passes. type: the GGML type of the elements, F32 (0) for a Float32Array, F16 (1) or BF16 (30)
   * for a Uint16Array of their bits. One pass over the bits, no widening: the magnitude bits
   * (sign cleared) are compared with those of the largest value of the type <= maxAbs (adapter
   * validation, the engine's check of each step's logits).
   */
  firstOutOfRange(x: Float32Array | Uint16Array, type: number, maxAbs: number): number;
  /** out = a + b, elementwise; out may alias a or b. */
  add(out: Float32Array, a: Float32Array, b: Float32Array): void;
  /** x[r, :] += bias, x: [rows, dim]. */
  addBias(x: Float32Array, bias: Float32Array, rows: number, dim: number): void;

  /**
   * Benchmark helper: reads a native buffer of `bytes` bytes (rounded down to 4 KiB, at least
   * 1 MiB) with the current thread count, `reps` times; returns each rep's GB/s (1e9 bytes/s).
   */
  measureReadBandwidth(bytes: number, reps: number): Float64Array;
  /**
   * The machine's read bandwidth in bytes/s: the best of a few passes over a 256 MiB buffer with
   * `threads` threads (the thread count set by setThreads is restored afterwards).
   */
  memoryBandwidth(threads: number): number;
}
