import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, GGML_TYPE, type KernelImpl, native, rowBytes } from "../../src/native/index.js";
import { mulberry32 as rng } from "../../src/synth/random.js";

export { rng };

export { native, GGML_TYPE, rowBytes };


/** Uniform values in [-scale, scale), with a few outliers like real activations. */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale * (r() < 0.02 ? 8 : 1);
  return out;
}

/** A weight matrix [N, K] of the given type built from random f32 values. */
export function randomWeights(type: number, N: number, K: number, seed: number): Uint8Array {
  const f = randomF32(N * K, seed, 0.5);
  const w = new Uint8Array(N * rowBytes(type, K));
  native.quantize(w, f, type);
  return w;
}

export function dequantized(type: number, w: Uint8Array, N: number, K: number): Float32Array {
  const out = new Float32Array(N * K);
  native.dequantize(out, w, type);
  return out;
}

/** x rounded to the weight's dot type, as the kernels do (Q8_0 for block types). */
export function roundedX(type: number, x: Float32Array, K: number): Float32Array {
  if (type === GGML_TYPE.F32) return x.slice();
  if (type === GGML_TYPE.F16) return x.map((v) => f16ToF32(f32ToF16(v)));
  if (type === GGML_TYPE.BF16) return x.map((v) => bf16ToF32(f32ToBf16(v)));
  // Activations quantize as ggml's x86 runtime does: id = 127 / amax, round half to even.
  const out = new Float32Array(x.length);
  const f = Math.fround;
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
    const d = f16ToF32(f32ToF16(f(amax / 127)));
    const id = amax !== 0 ? f(127 / amax) : 0;
    for (let j = 0; j < 32; j++) {
      const v = f(x[b + j]! * id);
      let r = Math.round(v);
      if (r - v === 0.5 && r % 2 !== 0) r -= 1; // Math.round sends ties up; ties go to even
      out[b + j] = f(Math.max(-128, Math.min(127, r)) * d);
    }
  }
  void K;
  return out;
}

/** Σ x·w in f64, and Σ |x·w| (for error bounds), for each (m, n). */
export function matmulF64(x: Float32Array, w: Float32Array, M: number, N: number, K: number): { out: Float64Array; mag: Float64Array } {
  const out = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      out[m * N + n] = s;
      mag[m * N + n] = a;
    }
  }
  return { out, mag };
}

export function matmul(type: number, w: Uint8Array, x: Float32Array, M: number, N: number, K: number): Float32Array {
  const out = new Float32Array(M * N);
  native.matmul(out, x, w, type, M, N, K);
  return out;
}

/** Runs fn under each kernel implementation this CPU supports and thread counts, restoring state. */
export function withConfig<T>(impl: KernelImpl, threads: number, fn: () => T): T {
  const prevImpl = native.getKernelImpl();
  const prevThreads = native.getThreads();
  native.setKernelImpl(impl);
  native.setThreads(threads);
  try {
    return fn();
  } finally {
    native.setKernelImpl(prevImpl);
    native.setThreads(prevThreads);
  }
}

export const hasAvx2 = (() => {
  const f = native.cpuFeatures();
  return f.avx2 && f.fma && f.f16c;
})();

export const hasAvx512 = (() => {
  const f = native.cpuFeatures();
  return hasAvx2 && f.avx512 && f.avx512vnni;
})();

export const hasAmx = hasAvx512 && native.cpuFeatures().amx;

/** The SIMD tables this CPU runs (each must equal the reference bit for bit). */
export const FAST_IMPLS: KernelImpl[] = [
  ...(hasAmx ? (["amx"] as const) : []),
  ...(hasAvx512 ? (["avx512"] as const) : []),
  ...(hasAvx2 ? (["avx2"] as const) : []),
];

export const IMPLS: KernelImpl[] = [...FAST_IMPLS, "reference"];

/** Bitwise equality of two float arrays; returns the first differing index or -1. */
export function firstBitDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}
