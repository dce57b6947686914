/**
 * The weights of a Llama-family model, gathered by role from a GGUF file or a Hugging Face
 * safetensors set, with every shape checked against the configuration. Matrices stay views into
 * the mapped files (no copy) unless they must be rewritten (load-time quantization, or the Q/K row
 * permutation that gives Hugging Face Llama weights GGUF's rotary layout).
 */
import { oerr, quoted } from "../errors.js";
import { COMPUTE_TYPES, GGML_TYPE, rowBytes, typeName } from "../formats/ggml-types.js";
import { type GgufFile, tensorData } from "../formats/gguf.js";
import { type SafetensorsFile, type SafetensorsTensor, safetensorsData } from "../formats/safetensors.js";
import { native } from "../native/index.js";
import type { ModelConfig } from "./config.js";
import { toGgufRotaryLayout } from "./rotary-layout.js";

/** A weight matrix W[outDim, inDim] (rows of inDim elements) in a ggml type. */
export interface Linear {
  type: number;
  data: Uint8Array;
  outDim: number;
  inDim: number;
}

export interface LayerWeights {
  attnNorm: Float32Array;
  wq: Linear;
  wk: Linear;
  wv: Linear;
  wo: Linear;
  bq: Float32Array | undefined;
  bk: Float32Array | undefined;
  bv: Float32Array | undefined;
  /** Qwen3: RMSNorm weights over one head [headDim]. */
  qNorm: Float32Array | undefined;
  kNorm: Float32Array | undefined;
  ffnNorm: Float32Array;
  wGate: Linear;
  wUp: Linear;
  wDown: Linear;
}

export interface ModelWeights {
  /** [vocab, hidden]: row t is token t's embedding. */
  embedding: Linear;
  outputNorm: Float32Array;
  /** [vocab, hidden]; the embedding itself when tied. */
  output: Linear;
  layers: LayerWeights[];
  /** GGUF rope_freqs (Llama 3 scaling divisors), if the file has them. */
  ropeFreqFactors: Float32Array | undefined;
}

/** Load-time quantization of the matrices of a float model. */
export type LoadQuantization = "q8_0" | "q4_0" | undefined;

/** A raw tensor before role assignment: bytes, ggml type, and shape outermost-first. */
interface RawTensor {
  name: string;
  type: number;
  shape: number[];
  data: Uint8Array;
}

interface TensorSource {
  source: string;
  get(name: string): RawTensor | undefined;
}

function toF32(t: RawTensor): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.type === GGML_TYPE.F32) {
    if (t.data.byteOffset % 4 === 0) return new Float32Array(t.data.buffer, t.data.byteOffset, n);
    return new Float32Array(t.data.slice().buffer);
  }
  const out = new Float32Array(n);
  native.dequantize(out, t.data, t.type);
  return out;
}

class WeightBuilder {
  constructor(
    private readonly src: TensorSource,
    private readonly c: ModelConfig,
    private readonly quantize: LoadQuantization,
  ) {}

  raw(name: string, shape: number[], optional = false): RawTensor | undefined {
    const t = this.src.get(name);
    if (!t) {
      if (optional) return undefined;
      throw oerr("MODEL_MISSING_TENSOR", `${this.src.source}: tensor ${quoted(name)} is missing`, { tensor: quoted(name) });
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw oerr("MODEL_TENSOR_SHAPE_MISMATCH", `${this.src.source}: tensor ${quoted(name)} has shape [${t.shape}] but the configuration implies [${shape}]`, { tensor: quoted(name), shape: t.shape, expected: shape });
    }
    return t;
  }

  vector(name: string, dim: number): Float32Array;
  vector(name: string, dim: number, optional: true): Float32Array | undefined;
  vector(name: string, dim: number, optional = false): Float32Array | undefined {
    const t = this.raw(name, [dim], optional);
    if (!t) return undefined;
    this.requireComputeType(t);
    return toF32(t);
  }

  linear(name: string, outDim: number, inDim: number, permuteHeads?: number): Linear;
  linear(name: string, outDim: number, inDim: number, permuteHeads: number | undefined, optional: true): Linear | undefined;
  linear(name: string, outDim: number, inDim: number, permuteHeads?: number, optional = false): Linear | undefined {
    const t = this.raw(name, [outDim, inDim], optional);
    if (!t) return undefined;
    this.requireComputeType(t);
    let lin: Linear = { type: t.type, data: t.data, outDim, inDim };
    if (permuteHeads) lin = permuteRotaryRows(lin, permuteHeads);
    if (this.quantize) lin = quantizeLinear(lin, this.quantize === "q8_0" ? GGML_TYPE.Q8_0 : GGML_TYPE.Q4_0);
    return lin;
  }

  private requireComputeType(t: RawTensor): void {
    if (!COMPUTE_TYPES.has(t.type)) {
      throw oerr("MODEL_UNSUPPORTED_TENSOR_TYPE", `${this.src.source}: tensor ${quoted(t.name)} is ${typeName(t.type)}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K`, { tensor: quoted(t.name), type: typeName(t.type) });
    }
  }
}

/**
 * Hugging Face Llama checkpoints rotate halves of each head ("rotate_half"); GGUF and our kernel
 * rotate adjacent pairs. Reordering the rows of W_q / W_k per head (row 2i ← i, 2i+1 ← half + i)
 * makes them equivalent, exactly as llama.cpp's converter does.
 */
export function permuteRotaryRows(w: Linear, nHeads: number): Linear {
  return { ...w, data: toGgufRotaryLayout(w.data, w.outDim, rowBytes(w.type, w.inDim), nHeads) };
}


export function quantizeLinear(w: Linear, type: number): Linear {
  if (w.type === type) return w;
  const n = w.outDim * w.inDim;
  const f32 = new Float32Array(n);
  native.dequantize(f32, w.data, w.type);
  const out = new Uint8Array(rowBytes(type, w.inDim) * w.outDim);
  native.quantize(out, f32, type);
  return { ...w, type, data: out };
}

function assemble(b: WeightBuilder, c: ModelConfig, names: (layer: number, role: string) => string, top: { embd: string; norm: string; output: string }, permuteLlama: boolean, ropeFreqs?: string): ModelWeights {
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const permute = permuteLlama && c.architecture === "llama";
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const n = (role: string) => names(l, role);
    let bq = c.qkvBias ? b.vector(n("bq"), qDim) : undefined;
    let bk = c.qkvBias ? b.vector(n("bk"), kvDim) : undefined;
    if (permute && bq && bk) {
      bq = toGgufRotaryLayout(bq, bq.length, 1, c.nHeads);
      bk = toGgufRotaryLayout(bk, bk.length, 1, c.nKvHeads);
    }
    layers.push({
      attnNorm: b.vector(n("attn_norm"), c.hiddenSize),
      wq: b.linear(n("wq"), qDim, c.hiddenSize, permute ? c.nHeads : undefined),
      wk: b.linear(n("wk"), kvDim, c.hiddenSize, permute ? c.nKvHeads : undefined),
      wv: b.linear(n("wv"), kvDim, c.hiddenSize),
      wo: b.linear(n("wo"), c.hiddenSize, qDim),
      bq,
      bk,
      bv: c.qkvBias ? b.vector(n("bv"), kvDim) : undefined,
      qNorm: c.qkNorm ? b.vector(n("q_norm"), c.headDim) : undefined,
      kNorm: c.qkNorm ? b.vector(n("k_norm"), c.headDim) : undefined,
      ffnNorm: b.vector(n("ffn_norm"), c.hiddenSize),
      wGate: b.linear(n("gate"), c.intermediateSize, c.hiddenSize),
      wUp: b.linear(n("up"), c.intermediateSize, c.hiddenSize),
      wDown: b.linear(n("down"), c.hiddenSize, c.intermediateSize),
    });
  }
  const embedding = b.linear(top.embd, c.vocabSize, c.hiddenSize);
  const output = c.tiedEmbeddings ? embedding : b.linear(top.output, c.vocabSize, c.hiddenSize);
  return {
    embedding,
    outputNorm: b.vector(top.norm, c.hiddenSize),
    output,
    layers,
    ropeFreqFactors: ropeFreqs ? b.vector(ropeFreqs, c.ropeDim / 2, true) : undefined,
  };
}

const GGUF_ROLE: Record<string, string> = {
  attn_norm: "attn_norm.weight", wq: "attn_q.weight", wk: "attn_k.weight", wv: "attn_v.weight",
  wo: "attn_output.weight", bq: "attn_q.bias", bk: "attn_k.bias", bv: "attn_v.bias",
  q_norm: "attn_q_norm.weight", k_norm: "attn_k_norm.weight", ffn_norm: "ffn_norm.weight",
  gate: "ffn_gate.weight", up: "ffn_up.weight", down: "ffn_down.weight",
};

export function weightsFromGguf(file: GgufFile, c: ModelConfig, quantize?: LoadQuantization): ModelWeights {
  const src: TensorSource = {
    source: file.source,
    get(name) {
      const info = file.tensorsByName.get(name);
      if (!info) return undefined;
      return { name, type: info.type, shape: [...info.dims].reverse(), data: tensorData(file, info) };
    },
  };
  return assemble(new WeightBuilder(src, c, quantize), c, (l, role) => `blk.${l}.${GGUF_ROLE[role]}`,
    { embd: "token_embd.weight", norm: "output_norm.weight", output: "output.weight" }, false, "rope_freqs.weight");
}

const HF_ROLE: Record<string, string> = {
  attn_norm: "input_layernorm.weight", wq: "self_attn.q_proj.weight", wk: "self_attn.k_proj.weight",
  wv: "self_attn.v_proj.weight", wo: "self_attn.o_proj.weight", bq: "self_attn.q_proj.bias",
  bk: "self_attn.k_proj.bias", bv: "self_attn.v_proj.bias", q_norm: "self_attn.q_norm.weight",
  k_norm: "self_attn.k_norm.weight", ffn_norm: "post_attention_layernorm.weight",
  gate: "mlp.gate_proj.weight", up: "mlp.up_proj.weight", down: "mlp.down_proj.weight",
};

const SAFETENSORS_TO_GGML: Record<string, number> = { F32: GGML_TYPE.F32, F16: GGML_TYPE.F16, BF16: GGML_TYPE.BF16 };

export function weightsFromSafetensors(files: SafetensorsFile[], c: ModelConfig, source: string, quantize?: LoadQuantization): ModelWeights {
  const index = new Map<string, { file: SafetensorsFile; t: SafetensorsTensor }>();
  for (const file of files) for (const t of file.tensors.values()) index.set(t.name, { file, t });
  const src: TensorSource = {
    source,
    get(name) {
      const hit = index.get(name);
      if (!hit) return undefined;
      const type = SAFETENSORS_TO_GGML[hit.t.dtype];
      if (type === undefined) {
        throw oerr("MODEL_UNSUPPORTED_TENSOR_TYPE", `${hit.file.source}: tensor ${quoted(name)} is ${hit.t.dtype}; supported: F32, F16, BF16`, { tensor: quoted(name) });
      }
      return { name, type, shape: hit.t.shape, data: safetensorsData(hit.file, hit.t) };
    },
  };
  return assemble(new WeightBuilder(src, c, quantize), c, (l, role) => `model.layers.${l}.${HF_ROLE[role]}`,
    { embd: "model.embed_tokens.weight", norm: "model.norm.weight", output: "lm_head.weight" }, true);
}
