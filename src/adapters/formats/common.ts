/**
 * Pieces both adapter readers (and the synthetic adapter writer) share: the module names of each
 * format, PEFT's rank/alpha pattern matching, tensor decoding to f32, and the Llama q/k row
 * permutation applied to B.
 */
import { GGML_TYPE } from "../../formats/ggml-types.js";
import { native } from "../../native/index.js";
import type { LoraModule } from "../types.js";
import { toGgufRotaryLayout } from "../../model/rotary-layout.js";

/** What both readers take besides the path, id and base shape. */
export interface ReadOptions {
  /** Largest rank accepted (ADAPTER_RANK_TOO_LARGE above). */
  maxRank: number;
  /**
   * The adapters folder the adapter was registered from: every file the reader opens must resolve
   * (realpath) inside it, else ADAPTER_PATH_OUTSIDE_ROOT. Absent for a path a local user named.
   */
  root?: string;
}

/** PEFT / Hugging Face module names. */
export const PEFT_MODULE: Record<LoraModule, { group: "self_attn" | "mlp"; name: string }> = {
  q: { group: "self_attn", name: "q_proj" },
  k: { group: "self_attn", name: "k_proj" },
  v: { group: "self_attn", name: "v_proj" },
  o: { group: "self_attn", name: "o_proj" },
  gate: { group: "mlp", name: "gate_proj" },
  up: { group: "mlp", name: "up_proj" },
  down: { group: "mlp", name: "down_proj" },
};

/** GGUF (llama.cpp) tensor base names. */
export const GGUF_MODULE: Record<LoraModule, string> = {
  q: "attn_q", k: "attn_k", v: "attn_v", o: "attn_output", gate: "ffn_gate", up: "ffn_up", down: "ffn_down",
};

/** The module's path inside the Hugging Face model, as PEFT matches it: "model.layers.3.self_attn.q_proj". */
export function peftModulePath(layer: number, m: LoraModule): string {
  const { group, name } = PEFT_MODULE[m];
  return `model.layers.${layer}.${group}.${name}`;
}

/** The GGUF architecture name a base model architecture is stored under. */
export function ggufArchitecture(arch: string): string {
  return arch === "mistral" ? "llama" : arch;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * PEFT's `get_pattern_key`: the first key k of a rank_pattern / alpha_pattern for which
 * `re.match(rf"(.*\.)?({k})$", path)` holds. Keys are regular expressions in PEFT; a key that is
 * not a valid JavaScript regex is matched literally.
 */
export function patternValue(pattern: Record<string, number> | undefined, path: string): number | undefined {
  if (!pattern) return undefined;
  for (const [key, value] of Object.entries(pattern)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch {
      re = new RegExp(`^(?:.*\\.)?(?:${escapeRegex(key)})$`);
    }
    if (re.test(path)) return value;
  }
  return undefined;
}

/** Converts raw tensor bytes (F32/F16/BF16/Q8_0, little-endian) to a fresh f32 array of n values. */
export function decodeF32(bytes: Uint8Array, ggmlType: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (ggmlType === GGML_TYPE.F32) {
    new Uint8Array(out.buffer).set(bytes.subarray(0, n * 4));
  } else {
    native.dequantize(out, bytes, ggmlType);
  }
  return out;
}

/**
 * llama.cpp's converter permutation of Llama q/k rows (per head, row i → 2i, row half + i → 2i + 1),
 * the same as `permuteRotaryRows` applies to the base W_q / W_k; here on an f32 [rows, cols] matrix.
 */
export function permuteQkRows(values: Float32Array, rows: number, cols: number, nHeads: number): Float32Array {
  return toGgufRotaryLayout(values, rows, cols, nHeads);
}

/** The number of q/k heads whose rows B must be permuted with, or 0 when none. */
export function qkPermuteHeads(m: LoraModule, base: { permuteQk: boolean; nHeads: number; nKvHeads: number }): number {
  if (!base.permuteQk) return 0;
  return m === "q" ? base.nHeads : m === "k" ? base.nKvHeads : 0;
}
