/**
 * The storage of a LoRA pair's matrices (see LoraDtype): a 16-bit file keeps its 16 bits in host
 * memory; anything that computes with the values reads them through pairF32.
 */
import { GGML_TYPE } from "../formats/ggml-types.js";
import { native } from "../native/index.js";
import { decodeF32 } from "./formats/common.js";
import type { LoraAdapterWeights, LoraDtype, LoraModule, LoraPair } from "./types.js";

/** The GGML type id the native kernels take for a dtype. */
export function ggmlTypeOf(dtype: LoraDtype): number {
  return dtype === "f16" ? GGML_TYPE.F16 : dtype === "bf16" ? GGML_TYPE.BF16 : GGML_TYPE.F32;
}

/** The dtype a pair is held in, given its A and B tensors' GGML types: 16-bit only when both are. */
export function residentDtype(typeA: number, typeB: number): LoraDtype {
  if (typeA === GGML_TYPE.F16 && typeB === GGML_TYPE.F16) return "f16";
  if (typeA === GGML_TYPE.BF16 && typeB === GGML_TYPE.BF16) return "bf16";
  return "f32";
}

/**
 * f32 values in the dtype's storage: 16-bit bits rounded to nearest even (exact for values that
 * came from a 16-bit tensor, which is how the readers use it).
 */
export function toResident(values: Float32Array, dtype: LoraDtype): Float32Array | Uint16Array {
  if (dtype === "f32") return values;
  const out = new Uint16Array(values.length);
  native.quantize(new Uint8Array(out.buffer), values, ggmlTypeOf(dtype));
  return out;
}

function widen(m: Float32Array | Uint16Array, dtype: LoraDtype): Float32Array {
  if (dtype === "f32") return m as Float32Array;
  return decodeF32(new Uint8Array(m.buffer, m.byteOffset, m.byteLength), ggmlTypeOf(dtype), m.length);
}

/** The pair's matrices as f32 (the arrays themselves when already f32, else widened copies). */
export function pairF32(p: LoraPair): { a: Float32Array; b: Float32Array } {
  return { a: widen(p.a, p.dtype), b: widen(p.b, p.dtype) };
}

/**
 * The adapter held in another dtype. To 16 bits this rounds every value to nearest even (lossy,
 * like converting the file); to f32 it widens exactly.
 */
export function convertAdapter(w: LoraAdapterWeights, dtype: LoraDtype): LoraAdapterWeights {
  let bytes = 0;
  const layers = w.layers.map((layer) => {
    const out: Partial<Record<LoraModule, LoraPair>> = {};
    for (const [m, p] of Object.entries(layer) as [LoraModule, LoraPair][]) {
      const { a, b } = pairF32(p);
      const q: LoraPair = { ...p, a: toResident(a, dtype), b: toResident(b, dtype), dtype };
      bytes += q.a.byteLength + q.b.byteLength;
      out[m] = q;
    }
    return out;
  });
  return { ...w, layers, bytes };
}
