/**
 * A LoRA adapter in host memory, in the engine's own layout, whatever file format it came from.
 *
 * For a base linear layer y = W·x (W: [outDim, inDim]) the adapter adds
 *     y += scale · B·(A·x)     A: [rank, inDim], B: [outDim, rank]   (row-major f32)
 * with scale = alpha / rank (rsLoRA: alpha / sqrt(rank); GGUF LoRA with alpha 0: 1) already
 * resolved per module. For Llama-architecture bases, B's rows for q and k are permuted exactly like
 * the base W_q / W_k (llama.cpp's rotary layout), so the update lines up with the loaded weights.
 */
import type { Hex } from "../formats/sha256.js";

export type LoraModule = "q" | "k" | "v" | "o" | "gate" | "up" | "down";
export const LORA_MODULES: readonly LoraModule[] = ["q", "k", "v", "o", "gate", "up", "down"];

/**
 * How a pair's matrices are held: f32, or the f16 / bf16 bits the file stored (kept 16-bit when
 * both A and B came that way: the kernels widen them exactly, so the output bits are those of the
 * f32 copy, at half the host memory and half the bytes read per step).
 */
export type LoraDtype = "f32" | "f16" | "bf16";

export interface LoraPair {
  rank: number;
  inDim: number;
  outDim: number;
  /** [rank, inDim]: Float32Array for "f32", Uint16Array of f16 / bf16 bits otherwise */
  a: Float32Array | Uint16Array;
  /** [outDim, rank], like a */
  b: Float32Array | Uint16Array;
  dtype: LoraDtype;
  scale: number;
}

export interface LoraAdapterWeights {
  /** Per base layer: the modules this adapter changes (absent = unchanged). */
  layers: Array<Partial<Record<LoraModule, LoraPair>>>;
  /** Largest rank over its modules. */
  maxRank: number;
  /** Host bytes held by all A and B matrices. */
  bytes: number;
}

export interface LoraAdapterInfo {
  /** The adapter's id: a plain name, never a path. */
  id: string;
  format: "peft" | "gguf";
  /** Folder (PEFT) or file (GGUF) it was read from. */
  path: string;
  /**
   * SHA-256 content hash of what was parsed, computed from the very bytes the reader read (never a
   * second read of the path), by the rule of src/attribution/content-hash.ts: a GGUF LoRA's file
   * bytes; a PEFT folder's SHA-256(SHA-256(adapter_config.json) ‖ SHA-256(adapter_model.safetensors)).
   * What receipts record as the adapter's identity.
   */
  contentHash: Hex;
  /** What the files say the base model is (PEFT base_model_name_or_path, GGUF general.basename…), if anything. */
  baseModel: string | undefined;
  /** Modules it targets, for listing. */
  targetModules: LoraModule[];
  /** Parents of a merged adapter (recorded in its config by `adapters merge`). */
  parents?: Array<{ id: string; weight: number }>;
}

export interface LoraAdapter extends LoraAdapterInfo {
  weights: LoraAdapterWeights;
}

/** What an adapter is checked against: the base model's shapes. */
export interface BaseModelShape {
  architecture: string;
  nLayers: number;
  /** in/out dims of each module, same for every layer. */
  modules: Record<LoraModule, { inDim: number; outDim: number }>;
  /** For the Llama-layout row permutation of q/k B matrices. */
  nHeads: number;
  nKvHeads: number;
  /** True for Llama-architecture bases, whose q/k rows are permuted (see above). */
  permuteQk: boolean;
}
