/**
 * The storage of a LoRA pair's matrices (see LoraDtype): a 16-bit file keeps its 16 bits in host
 * memory; anything that computes with the values reads them through pairF32.
 */
import { GGML_TYPE } from "../formats/ggml-types.js";
import { native } from "../native/index.js";
import { decodeF32 } from "./formats/common.js";
import type { LoraAdapterWeights, LoraDtype, LoraModule, LoraPair } from "./types.js";
import { type CheckContext, checkValues } from "./validate.js";

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
 * A pair's two matrices in their resident dtype straight from the file's bytes, each checked in one
 * native pass for NaN / infinity and for |v| > MAX_ADAPTER_VALUE (validate.ts). Two 16-bit tensors of one type are copied as they are (no f32 round trip: a load
 * then allocates only what stays resident, which keeps V8's major GCs away while adapters stream
 * in); anything else is widened to f32 first. `transformB` (e.g. the Llama q/k row permutation)
 * forces the f32 path.
 */
export function residentPair(
  ctx: CheckContext, layer: number, module: LoraModule,
  a: { bytes: Uint8Array; type: number; n: number }, b: { bytes: Uint8Array; type: number; n: number },
  transformB?: (values: Float32Array) => Float32Array,
): { a: Float32Array | Uint16Array; b: Float32Array | Uint16Array; dtype: LoraDtype } {
  const dtype = residentDtype(a.type, b.type);
  if (dtype !== "f32" && !transformB) {
    const copy = (m: { bytes: Uint8Array; n: number }, which: "A" | "B"): Uint16Array => {
      const out = new Uint16Array(m.n);
      new Uint8Array(out.buffer).set(m.bytes.subarray(0, m.n * 2));
      checkValues(ctx, layer, module, which, out, a.type);
      return out;
    };
    return { a: copy(a, "A"), b: copy(b, "B"), dtype };
  }
  const av = decodeF32(a.bytes, a.type, a.n);
  checkValues(ctx, layer, module, "A", av, GGML_TYPE.F32);
  let bv = decodeF32(b.bytes, b.type, b.n);
  checkValues(ctx, layer, module, "B", bv, GGML_TYPE.F32);
  if (transformB) bv = transformB(bv);
  return { a: toResident(av, dtype), b: toResident(bv, dtype), dtype };
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
