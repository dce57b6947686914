/**
 * Writes random LoRA adapters for a synthetic base preset, in both formats users bring: a PEFT
 * folder (adapter_config.json + adapter_model.safetensors) and a llama.cpp GGUF LoRA file. The
 * values are a function of (seed, layer, module, rank) only, so the same options give the same
 * adapter in both formats — the GGUF form gets the converter's layout (Llama q/k B rows permuted).
 *
 * A ~ uniform with std 1/sqrt(in), so A·x has unit-scale components for a normalized x; B ~ uniform
 * with std strength·gain/sqrt(r), gain being the base model's output gain of that module (8 for
 * o/down, 1 otherwise, see hfTensors): with scale 1 the update is about `strength` (default 0.02)
 * of the base module's output. The tiny random presets are chaotic: merged into the base (all seven
 * modules, scale 1, seed 7, 32 greedy tokens) 0.02 first changes token 3 on tiny-llama3 and token 0
 * on tiny-qwen3; 0.003 changes nothing; 0.1 changes every token. Noticeable, not dominant.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { oerr } from "../errors.js";
import { GGML_TYPE, rowBytes } from "../formats/ggml-types.js";
import { type GgufEntry, type GgufTensorSpec, writeGguf } from "../formats/gguf-writer.js";
import { type SafetensorsTensorSpec, writeSafetensors } from "../formats/safetensors.js";
import { native } from "../native/index.js";
import { GGUF_MODULE, PEFT_MODULE, patternValue, peftModulePath, permuteQkRows } from "../adapters/formats/common.js";
import { LORA_MODULES, type LoraModule } from "../adapters/types.js";
import type { SynthPreset } from "./presets.js";
import { randomUniform, tensorSeed } from "./random.js";
import { getPreset } from "./synthesize.js";

export interface SynthAdapterOptions {
  seed: number;
  /** Default rank (PEFT `r`). */
  rank: number;
  /** PEFT `lora_alpha` / GGUF `adapter.lora.alpha`. */
  alpha: number;
  targets: LoraModule[];
  /** Per-module ranks, PEFT rank_pattern keys ("q_proj", "model.layers.1.mlp.down_proj", regexes). */
  rankPattern?: Record<string, number>;
  /** Only layers listed get the adapter (PEFT layers_to_transform); default all. */
  layers?: number[];
  /** Relative size of the update (see above); default 0.02. */
  strength?: number;
}

export interface SynthPeftOptions extends SynthAdapterOptions {
  dtype: "F32" | "F16" | "BF16";
  rsLora?: boolean;
  alphaPattern?: Record<string, number>;
  /** Written to base_model_name_or_path; default "openlora-synthetic/<preset>". */
  baseModel?: string;
}

export interface SynthGgufOptions extends SynthAdapterOptions {
  type: "f32" | "f16" | "q8_0";
  /** Written as alpha·sqrt(r) so that llama.cpp's alpha/r gives rsLoRA's alpha/sqrt(r); needs one rank. */
  rsLora?: boolean;
}

/** One module's matrices in Hugging Face layout (B rows not permuted). */
export interface SynthPair {
  layer: number;
  module: LoraModule;
  rank: number;
  inDim: number;
  outDim: number;
  /** [rank, inDim] */
  a: Float32Array;
  /** [outDim, rank] */
  b: Float32Array;
}



function dims(p: SynthPreset, m: LoraModule): { inDim: number; outDim: number } {
  const H = p.hiddenSize;
  const q = p.nHeads * p.headDim;
  const kv = p.nKvHeads * p.headDim;
  const F = p.intermediateSize;
  return { q: { inDim: H, outDim: q }, k: { inDim: H, outDim: kv }, v: { inDim: H, outDim: kv }, o: { inDim: q, outDim: H }, gate: { inDim: H, outDim: F }, up: { inDim: H, outDim: F }, down: { inDim: F, outDim: H } }[m];
}

/** The adapter's matrices for a preset, Hugging Face layout, in (layer, LORA_MODULES) order. */
export function synthLoraPairs(presetName: string, opts: SynthAdapterOptions): SynthPair[] {
  const p = getPreset(presetName);
  const strength = opts.strength ?? 0.02;
  const out: SynthPair[] = [];
  for (let layer = 0; layer < p.nLayers; layer++) {
    if (opts.layers && !opts.layers.includes(layer)) continue;
    for (const module of LORA_MODULES) {
      if (!opts.targets.includes(module)) continue;
      const { inDim, outDim } = dims(p, module);
      const rank = patternValue(opts.rankPattern, peftModulePath(layer, module)) ?? opts.rank;
      const gain = module === "o" || module === "down" ? 8 : 1;
      const key = `lora.${layer}.${module}.r${rank}`;
      out.push({
        layer, module, rank, inDim, outDim,
        a: randomUniform(rank * inDim, tensorSeed(opts.seed, `${key}.A`), 1 / Math.sqrt(inDim)),
        b: randomUniform(outDim * rank, tensorSeed(opts.seed, `${key}.B`), (strength * gain) / Math.sqrt(rank)),
      });
    }
  }
  return out;
}

function encode(values: Float32Array, type: number): Uint8Array {
  if (type === GGML_TYPE.F32) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const cols = values.length; // callers pass whole tensors; rows are checked by rowBytes below
  const out = new Uint8Array(rowBytes(type, cols));
  native.quantize(out, values, type);
  return out;
}

/** Writes the adapter as a PEFT folder; returns the folder. */
export function writePeftAdapter(dir: string, presetName: string, opts: SynthPeftOptions): string {
  const p = getPreset(presetName);
  const pairs = synthLoraPairs(presetName, opts);
  const type = { F32: GGML_TYPE.F32, F16: GGML_TYPE.F16, BF16: GGML_TYPE.BF16 }[opts.dtype];
  mkdirSync(dir, { recursive: true });
  const specs: SafetensorsTensorSpec[] = [];
  for (const s of pairs) {
    const pre = `base_model.model.${peftModulePath(s.layer, s.module)}`;
    specs.push({ name: `${pre}.lora_A.weight`, dtype: opts.dtype, shape: [s.rank, s.inDim], data: () => encode(s.a, type) });
    specs.push({ name: `${pre}.lora_B.weight`, dtype: opts.dtype, shape: [s.outDim, s.rank], data: () => encode(s.b, type) });
  }
  writeSafetensors(join(dir, "adapter_model.safetensors"), specs, { format: "pt" });
  const config: Record<string, unknown> = {
    peft_type: "LORA", task_type: "CAUSAL_LM", base_model_name_or_path: opts.baseModel ?? `openlora-synthetic/${p.name}`,
    r: opts.rank, lora_alpha: opts.alpha, lora_dropout: 0, use_rslora: opts.rsLora ?? false, use_dora: false,
    target_modules: opts.targets.map((m) => PEFT_MODULE[m].name), rank_pattern: opts.rankPattern ?? {},
    alpha_pattern: opts.alphaPattern ?? {}, fan_in_fan_out: false, bias: "none", inference_mode: true,
    ...(opts.layers ? { layers_to_transform: opts.layers } : {}),
    openlora_synthetic: { preset: p.name, seed: opts.seed },
  };
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
  return dir;
}

/** Writes the adapter as a llama.cpp GGUF LoRA file; returns the path. */
export function writeGgufLora(path: string, presetName: string, opts: SynthGgufOptions): string {
  const p = getPreset(presetName);
  const arch = p.modelType === "mistral" ? "llama" : p.modelType;
  const pairs = synthLoraPairs(presetName, opts);
  const want = { f32: GGML_TYPE.F32, f16: GGML_TYPE.F16, q8_0: GGML_TYPE.Q8_0 }[opts.type];
  let alpha = opts.alpha;
  if (opts.rsLora) {
    if (new Set(pairs.map((s) => s.rank)).size > 1) throw oerr("INVALID_ARGUMENT", "GGUF LoRA holds one alpha: rsLoRA needs a single rank");
    alpha = opts.alpha * Math.sqrt(opts.rank);
  }
  // Like gguf-py, a row that is not a whole number of Q8_0 blocks falls back to F16.
  const typeFor = (cols: number) => (want === GGML_TYPE.Q8_0 && cols % 32 !== 0 ? GGML_TYPE.F16 : want);
  const tensors: GgufTensorSpec[] = [];
  for (const s of pairs) {
    const name = `blk.${s.layer}.${GGUF_MODULE[s.module]}.weight`;
    const heads = arch === "llama" ? (s.module === "q" ? p.nHeads : s.module === "k" ? p.nKvHeads : 0) : 0;
    const ta = typeFor(s.inDim);
    const tb = typeFor(s.rank);
    tensors.push({ name: `${name}.lora_a`, dims: [s.inDim, s.rank], type: ta, data: () => encode(s.a, ta) });
    tensors.push({ name: `${name}.lora_b`, dims: [s.rank, s.outDim], type: tb, data: () => encode(heads ? permuteQkRows(s.b, s.outDim, s.rank, heads) : s.b, tb) });
  }
  const meta: Record<string, GgufEntry> = {
    "general.architecture": { type: "string", value: arch },
    "general.type": { type: "string", value: "adapter" },
    "general.name": { type: "string", value: `openlora-synthetic-lora-${p.name}` },
    "adapter.type": { type: "string", value: "lora" },
    "adapter.lora.alpha": { type: "f32", value: alpha },
  };
  mkdirSync(dirname(path), { recursive: true });
  writeGguf(path, meta, tensors);
  return path;
}
