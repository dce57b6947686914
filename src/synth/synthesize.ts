/**
 * Writes random-weight models in the real formats users bring: GGUF (F32/F16/BF16/Q8_0/Q4_0) and
 * Hugging Face folders (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).
 * The weights are a function of (seed, tensor name) only, so the same seed gives the same model in
 * every format — GGUF gets llama.cpp's converter layout (Llama Q/K rows permuted for its RoPE).
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { oerr } from "../errors.js";
import { GGML_TYPE, rowBytes, typeFromName } from "../formats/ggml-types.js";
import { type GgufEntry, type GgufTensorSpec, writeGguf } from "../formats/gguf-writer.js";
import { encodeRows } from "../formats/kquant-encode.js";
import { type SafetensorsTensorSpec, writeSafetensors } from "../formats/safetensors.js";
import { native } from "../native/index.js";
import { ggufTokenizerMetadata, tokenizerFamilies } from "../tokenizer/to-gguf.js";
import { llama3FreqFactors, type ModelConfig } from "../model/config.js";
import { toGgufRotaryLayout } from "../model/rotary-layout.js";
import { PRESETS, type SynthPreset, type Vocabulary } from "./presets.js";
import { randomUniform, tensorSeed } from "./random.js";

export function vocabularyFiles(v: Vocabulary): { tokenizerJson: string; tokenizerConfig: string } {
  const family = tokenizerFamilies().find((f) => f.name === v)!;
  return { tokenizerJson: family.tokenizerJsonPath, tokenizerConfig: family.tokenizerConfigPath };
}

export function getPreset(name: string): SynthPreset {
  const p = PRESETS[name];
  if (!p) throw oerr("INVALID_ARGUMENT", `unknown preset "${name}" (known: ${Object.keys(PRESETS).join(", ")})`);
  return p;
}



interface HfTensor {
  name: string;
  /** PyTorch order, outermost first. */
  shape: number[];
  values: () => Float32Array;
}

/** The model's tensors in Hugging Face naming and layout. */
export function hfTensors(p: SynthPreset, vocabSize: number, seed: number): HfTensor[] {
  const H = p.hiddenSize;
  const qDim = p.nHeads * p.headDim;
  const kvDim = p.nKvHeads * p.headDim;
  const F = p.intermediateSize;
  const t: HfTensor[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0) =>
    t.push({ name, shape, values: () => randomUniform(shape.reduce((a, b) => a * b, 1), tensorSeed(seed, name), std, mean) });
  // Logits get a standard deviation of about 16, so argmaxes are decisive and greedy parity tests
  // meaningful; residual branches get a gain of 8 so the stream is not dominated by the input
  // token's embedding (with tied embeddings that makes a random model repeat its input).
  const logitStd = 16;
  const gain = 8;
  add("model.embed_tokens.weight", [vocabSize, H], logitStd / Math.sqrt(H));
  for (let l = 0; l < p.nLayers; l++) {
    const pre = `model.layers.${l}.`;
    add(pre + "input_layernorm.weight", [H], 0.1, 1);
    add(pre + "self_attn.q_proj.weight", [qDim, H], 1 / Math.sqrt(H));
    add(pre + "self_attn.k_proj.weight", [kvDim, H], 1 / Math.sqrt(H));
    add(pre + "self_attn.v_proj.weight", [kvDim, H], 1 / Math.sqrt(H));
    if (p.modelType === "qwen2") {
      add(pre + "self_attn.q_proj.bias", [qDim], 0.5);
      add(pre + "self_attn.k_proj.bias", [kvDim], 0.5);
      add(pre + "self_attn.v_proj.bias", [kvDim], 0.5);
    }
    if (p.modelType === "qwen3") {
      add(pre + "self_attn.q_norm.weight", [p.headDim], 0.1, 1);
      add(pre + "self_attn.k_norm.weight", [p.headDim], 0.1, 1);
    }
    add(pre + "self_attn.o_proj.weight", [H, qDim], gain / Math.sqrt(qDim));
    add(pre + "post_attention_layernorm.weight", [H], 0.1, 1);
    add(pre + "mlp.gate_proj.weight", [F, H], 1 / Math.sqrt(H));
    add(pre + "mlp.up_proj.weight", [F, H], 1 / Math.sqrt(H));
    add(pre + "mlp.down_proj.weight", [H, F], gain / Math.sqrt(F));
  }
  add("model.norm.weight", [H], 0.1, 1);
  if (!p.tiedEmbeddings) add("lm_head.weight", [vocabSize, H], logitStd / Math.sqrt(H));
  return t;
}

/** The ModelConfig the loader will read back for this preset (used for rope factors here). */
function presetConfig(p: SynthPreset, vocabSize: number): ModelConfig {
  return {
    architecture: p.modelType === "mistral" ? "llama" : p.modelType, modelType: p.modelType, vocabSize,
    hiddenSize: p.hiddenSize, intermediateSize: p.intermediateSize, nLayers: p.nLayers, nHeads: p.nHeads,
    nKvHeads: p.nKvHeads, headDim: p.headDim, contextLength: p.contextLength, rmsEps: p.rmsEps,
    ropeTheta: p.ropeTheta, ropeDim: p.headDim, ropeScaling: p.ropeScaling, qkvBias: p.modelType === "qwen2",
    qkNorm: p.modelType === "qwen3", tiedEmbeddings: p.tiedEmbeddings,
  };
}

function vocabSizeOf(tokenizerJson: Record<string, unknown>): number {
  const model = tokenizerJson.model as { vocab: Record<string, number> };
  let max = -1;
  for (const id of Object.values(model.vocab)) max = Math.max(max, id);
  for (const t of (tokenizerJson.added_tokens as Array<{ id: number }> | undefined) ?? []) max = Math.max(max, t.id);
  return max + 1;
}

function loadVocabulary(v: Vocabulary): { json: Record<string, unknown>; config: Record<string, unknown>; files: ReturnType<typeof vocabularyFiles> } {
  const files = vocabularyFiles(v);
  return {
    json: JSON.parse(readFileSync(files.tokenizerJson, "utf8")),
    config: JSON.parse(readFileSync(files.tokenizerConfig, "utf8")),
    files,
  };
}

// ---- Hugging Face folder ----

export type HfDtype = "F32" | "F16" | "BF16";

function encodeFloat(values: Float32Array, dtype: HfDtype | "F32"): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 2);
  native.quantize(out, values, dtype === "F16" ? GGML_TYPE.F16 : GGML_TYPE.BF16);
  return out;
}

export function writeHfModel(outDir: string, presetName: string, opts: { seed?: number; dtype?: HfDtype } = {}): string {
  const p = getPreset(presetName);
  const seed = opts.seed ?? 1;
  const dtype = opts.dtype ?? "F32";
  const vocab = loadVocabulary(p.vocabulary);
  const vocabSize = vocabSizeOf(vocab.json);
  mkdirSync(outDir, { recursive: true });
  const specs: SafetensorsTensorSpec[] = hfTensors(p, vocabSize, seed).map((t) => ({
    name: t.name,
    dtype: t.shape.length === 1 ? "F32" : dtype,
    shape: t.shape,
    data: () => encodeFloat(t.values(), t.shape.length === 1 ? "F32" : dtype),
  }));
  writeSafetensors(join(outDir, "model.safetensors"), specs, { format: "pt" });
  const config: Record<string, unknown> = {
    architectures: [{ llama: "LlamaForCausalLM", mistral: "MistralForCausalLM", qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM" }[p.modelType]],
    model_type: p.modelType, vocab_size: vocabSize, hidden_size: p.hiddenSize, intermediate_size: p.intermediateSize,
    num_hidden_layers: p.nLayers, num_attention_heads: p.nHeads, num_key_value_heads: p.nKvHeads, head_dim: p.headDim,
    max_position_embeddings: p.contextLength, rms_norm_eps: p.rmsEps, rope_theta: p.ropeTheta,
    tie_word_embeddings: p.tiedEmbeddings, torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype],
    hidden_act: "silu", attention_bias: p.modelType === "qwen2",
    rope_scaling: p.ropeScaling ? {
      rope_type: "llama3", factor: p.ropeScaling.factor, low_freq_factor: p.ropeScaling.lowFreqFactor,
      high_freq_factor: p.ropeScaling.highFreqFactor, original_max_position_embeddings: p.ropeScaling.originalContextLength,
    } : null,
    openlora_synthetic: { preset: p.name, seed },
  };
  writeFileSync(join(outDir, "config.json"), JSON.stringify(config, null, 2));
  copyFileSync(vocab.files.tokenizerJson, join(outDir, "tokenizer.json"));
  copyFileSync(vocab.files.tokenizerConfig, join(outDir, "tokenizer_config.json"));
  return outDir;
}

// ---- GGUF ----

export type GgufWeightType = "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_k" | "q6_k";
/** general.file_type values (llama.cpp's LLAMA_FTYPE_*); q4_k is written like Q4_K_M-ish: Q6_K output. */
const FILE_TYPE: Record<GgufWeightType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32, q4_k: 15, q6_k: 18 };

const GGUF_NAME: Array<[RegExp, string]> = [
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/, "blk.$1.attn_$2.$3"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, "blk.$1.attn_output.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.([qk])_norm\.weight$/, "blk.$1.attn_$2_norm.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/, "blk.$1.ffn_$2.weight"],
];

function ggufName(hf: string): string {
  for (const [re, to] of GGUF_NAME) if (re.test(hf)) return hf.replace(re, to);
  throw oerr("INTERNAL", `no GGUF name for ${hf}`);
}


export function writeGgufModel(outPath: string, presetName: string, opts: { seed?: number; type?: GgufWeightType; onProgress?: (fraction: number, message: string) => void } = {}): string {
  const p = getPreset(presetName);
  const seed = opts.seed ?? 1;
  const wtype = opts.type ?? "f32";
  const ggmlType = typeFromName(wtype)!;
  const vocab = loadVocabulary(p.vocabulary);
  const vocabSize = vocabSizeOf(vocab.json);
  const arch = p.modelType === "mistral" ? "llama" : p.modelType;
  const isLlama = arch === "llama";
  mkdirSync(dirname(outPath), { recursive: true });

  const tensors: GgufTensorSpec[] = [];
  const kquant = ggmlType === GGML_TYPE.Q4_K || ggmlType === GGML_TYPE.Q6_K;
  if (kquant && [p.hiddenSize, p.intermediateSize, p.nHeads * p.headDim].some((d) => d % 256 !== 0)) {
    throw oerr("INVALID_ARGUMENT", `preset ${p.name}: K-quants need every matrix row to be a multiple of 256 elements`);
  }
  const all = [...hfTensors(p, vocabSize, seed)];
  let written = 0;
  for (const t of all) {
    const name = ggufName(t.name);
    const is2d = t.shape.length === 2;
    const isOutput = name === "output.weight" || (p.tiedEmbeddings && name === "token_embd.weight");
    const type = !is2d ? GGML_TYPE.F32 : kquant && isOutput ? GGML_TYPE.Q6_K : ggmlType;
    const perm = isLlama && /attn_[qk]\.(weight|bias)$/.test(name) ? (name.includes("attn_q") ? p.nHeads : p.nKvHeads) : 0;
    tensors.push({
      name,
      dims: [...t.shape].reverse(),
      type,
      data: () => {
        opts.onProgress?.(written++ / all.length, name);
        let v = t.values();
        if (perm) v = toGgufRotaryLayout(v, t.shape[0]!, is2d ? t.shape[1]! : 1, perm);
        if (type === GGML_TYPE.F32) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
        if (type === GGML_TYPE.Q4_K || type === GGML_TYPE.Q6_K) return encodeRows(type, v, t.shape[0]!, t.shape[1]!).bytes;
        const out = new Uint8Array(rowBytes(type, t.shape[1]!) * t.shape[0]!);
        native.quantize(out, v, type);
        return out;
      },
    });
  }
  if (p.ropeScaling) {
    const factors = llama3FreqFactors(presetConfig(p, vocabSize));
    tensors.push({ name: "rope_freqs.weight", dims: [factors.length], type: GGML_TYPE.F32, data: new Uint8Array(factors.buffer) });
  }

  const k = (s: string) => `${arch}.${s}`;
  const meta: Record<string, GgufEntry> = {
    "general.architecture": { type: "string", value: arch },
    "general.name": { type: "string", value: `openlora-synthetic-${p.name}` },
    "general.file_type": { type: "u32", value: FILE_TYPE[wtype] },
    "general.quantization_version": { type: "u32", value: 2 },
    [k("vocab_size")]: { type: "u32", value: vocabSize },
    [k("context_length")]: { type: "u32", value: p.contextLength },
    [k("embedding_length")]: { type: "u32", value: p.hiddenSize },
    [k("block_count")]: { type: "u32", value: p.nLayers },
    [k("feed_forward_length")]: { type: "u32", value: p.intermediateSize },
    [k("attention.head_count")]: { type: "u32", value: p.nHeads },
    [k("attention.head_count_kv")]: { type: "u32", value: p.nKvHeads },
    [k("attention.key_length")]: { type: "u32", value: p.headDim },
    [k("attention.value_length")]: { type: "u32", value: p.headDim },
    [k("rope.dimension_count")]: { type: "u32", value: p.headDim },
    [k("rope.freq_base")]: { type: "f32", value: p.ropeTheta },
    [k("attention.layer_norm_rms_epsilon")]: { type: "f32", value: p.rmsEps },
    ...ggufTokenizerMetadata(vocab.json, vocab.config),
  };
  writeGguf(outPath, meta, tensors);
  opts.onProgress?.(1, "done");
  return outPath;
}
