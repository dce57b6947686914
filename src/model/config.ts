/**
 * The hyper-parameters of a Llama-family model, read from GGUF metadata or a Hugging Face
 * config.json, and checked for consistency before any tensor is touched.
 */
import { oerr, quoted } from "../errors.js";
import { type GgufFile, metaNumber, metaString, requireNumber } from "../formats/gguf.js";

/** Architectures with their own compute differences. Mistral computes as Llama. */
export type Architecture = "llama" | "qwen2" | "qwen3";

export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalContextLength: number;
}

export interface ModelConfig {
  architecture: Architecture;
  /** What the files call it (llama, mistral, qwen2, qwen3), for display. */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  contextLength: number;
  rmsEps: number;
  ropeTheta: number;
  /** Rotated dims per head (usually headDim). */
  ropeDim: number;
  /** Llama 3.1+ frequency scaling; in GGUF files it arrives as the rope_freqs tensor instead. */
  ropeScaling: Llama3RopeScaling | undefined;
  /** Qwen2: q/k/v projections have biases. */
  qkvBias: boolean;
  /** Qwen3: per-head RMSNorm on q and k before RoPE. */
  qkNorm: boolean;
  tiedEmbeddings: boolean;
}

const ARCH_BY_NAME: Record<string, Architecture> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
};

export function architectureOf(name: string, source: string): Architecture {
  const arch = ARCH_BY_NAME[name.toLowerCase()];
  if (!arch) {
    throw oerr("MODEL_UNSUPPORTED_ARCHITECTURE", `${source}: architecture ${quoted(name)} is not supported (supported: ${Object.keys(ARCH_BY_NAME).join(", ")})`, { architecture: quoted(name) });
  }
  return arch;
}

function check(cond: boolean, source: string, msg: string): void {
  if (!cond) throw oerr("MODEL_CONFIG_INVALID", `${source}: ${msg}`);
}

export function validateConfig(c: ModelConfig, source: string): ModelConfig {
  const positive: Array<keyof ModelConfig> = ["vocabSize", "hiddenSize", "intermediateSize", "nLayers", "nHeads", "nKvHeads", "headDim", "contextLength", "ropeDim"];
  for (const k of positive) {
    const v = c[k];
    check(typeof v === "number" && Number.isSafeInteger(v) && v > 0, source, `${k} must be a positive integer, got ${String(v)}`);
  }
  check(c.nHeads % c.nKvHeads === 0, source, `attention heads (${c.nHeads}) must be a multiple of key/value heads (${c.nKvHeads})`);
  check(c.headDim % 2 === 0 && c.ropeDim % 2 === 0 && c.ropeDim <= c.headDim, source, `head dim ${c.headDim} / rope dim ${c.ropeDim} must be even, rope dim <= head dim`);
  check(c.rmsEps > 0 && c.rmsEps < 1, source, `rms_norm_eps ${c.rmsEps} out of range`);
  check(c.ropeTheta > 0, source, `rope theta ${c.ropeTheta} must be positive`);
  check(c.nLayers <= 1024 && c.hiddenSize <= 1 << 16 && c.vocabSize <= 1 << 22, source, "dimensions are implausibly large");
  return c;
}

/** Reads the configuration from GGUF metadata (keys prefixed by general.architecture). */
export function configFromGguf(file: GgufFile, vocabFromTokens?: number): ModelConfig {
  const src = file.source;
  const archName = metaString(file, "general.architecture");
  if (!archName) throw oerr("MODEL_METADATA_INVALID", `${src}: general.architecture is missing`);
  const architecture = architectureOf(archName, src);
  const k = (s: string) => `${archName}.${s}`;
  const hiddenSize = requireNumber(file, k("embedding_length"));
  const nHeads = requireNumber(file, k("attention.head_count"));
  const headDim = metaNumber(file, k("attention.key_length")) ?? hiddenSize / nHeads;
  const embd = file.tensorsByName.get("token_embd.weight");
  const vocabSize = metaNumber(file, k("vocab_size")) ?? vocabFromTokens ?? embd?.dims[1];
  if (vocabSize === undefined) throw oerr("MODEL_METADATA_INVALID", `${src}: cannot tell the vocabulary size`);
  return validateConfig({
    architecture,
    modelType: archName,
    vocabSize,
    hiddenSize,
    intermediateSize: requireNumber(file, k("feed_forward_length")),
    nLayers: requireNumber(file, k("block_count")),
    nHeads,
    nKvHeads: metaNumber(file, k("attention.head_count_kv")) ?? nHeads,
    headDim,
    contextLength: metaNumber(file, k("context_length")) ?? 4096,
    rmsEps: metaNumber(file, k("attention.layer_norm_rms_epsilon")) ?? 1e-5,
    ropeTheta: metaNumber(file, k("rope.freq_base")) ?? 10000,
    ropeDim: metaNumber(file, k("rope.dimension_count")) ?? headDim,
    ropeScaling: undefined,
    qkvBias: file.tensorsByName.has("blk.0.attn_q.bias"),
    qkNorm: file.tensorsByName.has("blk.0.attn_q_norm.weight"),
    tiedEmbeddings: !file.tensorsByName.has("output.weight"),
  }, src);
}

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, source: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw oerr("MODEL_CONFIG_INVALID", `${source}: ${quoted(key)} is missing from config.json`);
  }
  if (typeof v !== "number" || !Number.isFinite(v)) throw oerr("MODEL_CONFIG_INVALID", `${source}: ${quoted(key)} should be a number, got ${quoted(v)}`);
  return v;
}

/** Reads a Hugging Face config.json. */
export function configFromHf(cfg: Json, source: string): ModelConfig {
  const modelType = typeof cfg.model_type === "string" ? cfg.model_type : undefined;
  if (!modelType) throw oerr("MODEL_CONFIG_INVALID", `${source}: config.json has no model_type`);
  const architecture = architectureOf(modelType, source);
  const hiddenSize = num(cfg, "hidden_size", source);
  const nHeads = num(cfg, "num_attention_heads", source);
  const headDim = num(cfg, "head_dim", source, hiddenSize / nHeads);
  let ropeScaling: Llama3RopeScaling | undefined;
  const rs = cfg.rope_scaling as Json | null | undefined;
  if (rs && typeof rs === "object") {
    const type = rs.rope_type ?? rs.type;
    if (type !== "llama3" && type !== "default") {
      throw oerr("MODEL_CONFIG_INVALID", `${source}: rope_scaling type ${quoted(type)} is not supported (supported: llama3)`);
    }
    if (type === "llama3") {
      ropeScaling = {
        factor: num(rs, "factor", source),
        lowFreqFactor: num(rs, "low_freq_factor", source),
        highFreqFactor: num(rs, "high_freq_factor", source),
        originalContextLength: num(rs, "original_max_position_embeddings", source),
      };
    }
  }
  return validateConfig({
    architecture,
    modelType,
    vocabSize: num(cfg, "vocab_size", source),
    hiddenSize,
    intermediateSize: num(cfg, "intermediate_size", source),
    nLayers: num(cfg, "num_hidden_layers", source),
    nHeads,
    nKvHeads: num(cfg, "num_key_value_heads", source, nHeads),
    headDim,
    contextLength: num(cfg, "max_position_embeddings", source, 4096),
    rmsEps: num(cfg, "rms_norm_eps", source, 1e-6),
    ropeTheta: num(cfg, "rope_theta", source, 10000),
    ropeDim: headDim,
    ropeScaling,
    qkvBias: architecture === "qwen2" || cfg.attention_bias === true,
    qkNorm: architecture === "qwen3",
    tiedEmbeddings: cfg.tie_word_embeddings === true,
  }, source);
}

/**
 * Per-dimension-pair inverse frequencies θ_i = base^(−2i/ropeDim), divided by the Llama 3
 * scaling factors (from the config, or from a GGUF rope_freqs tensor when given).
 */
export function ropeInvFreq(c: ModelConfig, freqFactors?: Float32Array): Float32Array {
  const half = c.ropeDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    let f = Math.pow(c.ropeTheta, (-2 * i) / c.ropeDim);
    if (freqFactors) f /= freqFactors[i]!;
    out[i] = f;
  }
  if (!freqFactors && c.ropeScaling) {
    const factors = llama3FreqFactors(c);
    for (let i = 0; i < half; i++) out[i] = Math.pow(c.ropeTheta, (-2 * i) / c.ropeDim) / factors[i]!;
  }
  return out;
}

/** The divisors Llama 3.1+ applies to each rotary frequency (what GGUF stores as rope_freqs). */
export function llama3FreqFactors(c: ModelConfig): Float32Array {
  const s = c.ropeScaling;
  const half = c.ropeDim / 2;
  const out = new Float32Array(half).fill(1);
  if (!s) return out;
  const lowWavelen = s.originalContextLength / s.lowFreqFactor;
  const highWavelen = s.originalContextLength / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const freq = Math.pow(c.ropeTheta, (-2 * i) / c.ropeDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalContextLength / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}
