/**
 * The Llama-family forward pass (Llama 2/3, Mistral, Qwen2, Qwen3) over a batch of rows from any
 * number of sequences, written as a sequence of native kernel calls. Every kernel reduces each
 * output element in a fixed order, so a row's logits do not depend on what else is in the batch
 * or on the thread count.
 *
 *   x = embed(tokens)                                   [T, hidden]
 *   per layer:  h = rmsnorm(x)·attnNorm
 *               q,k,v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)   [T, nHeads·hd], [T, nKv·hd]
 *               (qwen3) q,k = rmsnorm per head
 *               q,k = rope(q,k, positions);  cache ← k,v
 *               x += attention(q, cache)·Woᵀ
 *               h = rmsnorm(x)·ffnNorm;  x += (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ
 *   logits = rmsnorm(x[rows wanted])·outNorm · Woutᵀ     [R, vocab]
 */
import { oerr } from "../errors.js";
import { native } from "../native/index.js";
import type { LoraAdapterWeights, LoraModule } from "../adapters/types.js";
import { ggmlTypeOf } from "../adapters/pair-storage.js";
import type { PagedKvCache } from "../engine/kv-cache.js";
import { type ModelConfig, ropeInvFreq } from "./config.js";
import type { Linear, ModelWeights } from "./weights.js";

/** One forward step's rows. All arrays are per row [T] except the block tables. */
export interface ForwardBatch {
  tokens: Int32Array;
  positions: Int32Array;
  /** Index of each row's sequence into tableOffsets. */
  rowSeq: Int32Array;
  /** KV slot each row's key/value is written to. */
  slots: Int32Array;
  /** Concatenated block tables; sequence s owns blockTables[tableOffsets[s] .. tableOffsets[s+1]). */
  blockTables: Int32Array;
  tableOffsets: Int32Array;
  /** Rows whose logits are wanted, in the order the logits come back. */
  logitRows: Int32Array;
  /** LoRA terms, each row's in its own order (rows without terms use the base model). */
  lora: LoraTerm[];
}

/** One adapter applied to one row with a weight (several per row = a weighted composition). */
export interface LoraTerm {
  row: number;
  adapter: LoraAdapterWeights;
  weight: number;
}

/** An adapter (with its weight) applied to every token of a sequence. */
export interface AppliedAdapter {
  adapter: LoraAdapterWeights;
  weight: number;
}

/** A sequence's part of a step: its tokens start at `startPos`, its blocks already cover them. */
export interface SequenceChunk {
  tokens: readonly number[];
  startPos: number;
  blockTable: readonly number[];
  /** Whether logits for this chunk's last token are wanted. */
  wantLogits: boolean;
  /** Adapters for this sequence, applied in this order; none = the base model. */
  adapters?: readonly AppliedAdapter[];
}

/** Builds the flat arrays of a forward step from per-sequence chunks. */
export function buildBatch(chunks: readonly SequenceChunk[], blockSize: number): ForwardBatch {
  const T = chunks.reduce((a, c) => a + c.tokens.length, 0);
  const tokens = new Int32Array(T);
  const positions = new Int32Array(T);
  const rowSeq = new Int32Array(T);
  const slots = new Int32Array(T);
  const tableOffsets = new Int32Array(chunks.length + 1);
  const tableLen = chunks.reduce((a, c) => a + c.blockTable.length, 0);
  const blockTables = new Int32Array(tableLen);
  const logitRows: number[] = [];
  const lora: LoraTerm[] = [];
  let row = 0;
  let off = 0;
  chunks.forEach((c, s) => {
    tableOffsets[s] = off;
    blockTables.set(c.blockTable, off);
    off += c.blockTable.length;
    if (c.blockTable.length * blockSize < c.startPos + c.tokens.length) {
      throw oerr("INTERNAL", `sequence ${s}: block table covers ${c.blockTable.length * blockSize} positions, needs ${c.startPos + c.tokens.length}`);
    }
    for (let i = 0; i < c.tokens.length; i++, row++) {
      const pos = c.startPos + i;
      for (const a of c.adapters ?? []) lora.push({ row, adapter: a.adapter, weight: a.weight });
      tokens[row] = c.tokens[i]!;
      positions[row] = pos;
      rowSeq[row] = s;
      slots[row] = c.blockTable[Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize);
    }
    if (c.wantLogits && c.tokens.length > 0) logitRows.push(row - 1);
  });
  tableOffsets[chunks.length] = off;
  return { tokens, positions, rowSeq, slots, blockTables, tableOffsets, logitRows: Int32Array.from(logitRows), lora };
}

/** Scratch activations, grown to the largest batch seen and then reused. */
class Scratch {
  rows = 0;
  x!: Float32Array; h!: Float32Array; q!: Float32Array; k!: Float32Array; v!: Float32Array;
  attn!: Float32Array; proj!: Float32Array; gate!: Float32Array; up!: Float32Array;
  ensure(T: number, c: ModelConfig): void {
    if (T <= this.rows) return;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    this.rows = T;
    this.x = new Float32Array(T * c.hiddenSize);
    this.h = new Float32Array(T * c.hiddenSize);
    this.q = new Float32Array(T * qDim);
    this.k = new Float32Array(T * kvDim);
    this.v = new Float32Array(T * kvDim);
    this.attn = new Float32Array(T * qDim);
    this.proj = new Float32Array(T * c.hiddenSize);
    this.gate = new Float32Array(T * c.intermediateSize);
    this.up = new Float32Array(T * c.intermediateSize);
  }
}

export class LlamaModel {
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  private readonly invFreq: Float32Array;
  /** Qwen pairs (i, i + d/2); GGUF-layout Llama pairs (2i, 2i+1). */
  private readonly ropeNeox: boolean;
  private readonly scratch = new Scratch();

  constructor(config: ModelConfig, weights: ModelWeights) {
    this.config = config;
    this.weights = weights;
    this.invFreq = ropeInvFreq(config, weights.ropeFreqFactors);
    this.ropeNeox = config.architecture !== "llama";
  }

  get kvDim(): number {
    return this.config.nKvHeads * this.config.headDim;
  }

  /** Runs one step; returns logits [logitRows.length, vocab]. */
  forward(batch: ForwardBatch, cache: PagedKvCache): Float32Array {
    const c = this.config;
    const T = batch.tokens.length;
    if (T === 0) return new Float32Array(0);
    for (let i = 0; i < T; i++) {
      const t = batch.tokens[i]!;
      if (t < 0 || t >= c.vocabSize) throw oerr("INVALID_ARGUMENT", `token id ${t} is outside the vocabulary (0..${c.vocabSize - 1})`);
    }
    this.scratch.ensure(T, c);
    const s = this.scratch;
    const H = c.hiddenSize;
    const qDim = c.nHeads * c.headDim;
    const kvDim = this.kvDim;
    const F = c.intermediateSize;
    const x = s.x.subarray(0, T * H);
    const h = s.h.subarray(0, T * H);
    const q = s.q.subarray(0, T * qDim);
    const k = s.k.subarray(0, T * kvDim);
    const v = s.v.subarray(0, T * kvDim);
    const attn = s.attn.subarray(0, T * qDim);
    const proj = s.proj.subarray(0, T * H);
    const gate = s.gate.subarray(0, T * F);
    const up = s.up.subarray(0, T * F);

    const lora = batch.lora.length ? new BatchLora(batch.lora, T) : undefined;
    const emb = this.weights.embedding;
    native.getRows(x, emb.data, emb.type, H, batch.tokens);
    const scale = 1 / Math.sqrt(c.headDim);

    for (let l = 0; l < c.nLayers; l++) {
      const w = this.weights.layers[l]!;
      native.rmsNorm(h, x, w.attnNorm, T, H, c.rmsEps);
      matmulShared([q, k, v], h, [w.wq, w.wk, w.wv], T);
      if (lora) {
        lora.apply(l, "q", q, h);
        lora.apply(l, "k", k, h);
        lora.apply(l, "v", v, h);
      }
      if (w.bq) native.addBias(q, w.bq, T, qDim);
      if (w.bk) native.addBias(k, w.bk, T, kvDim);
      if (w.bv) native.addBias(v, w.bv, T, kvDim);
      if (w.qNorm && w.kNorm) {
        native.rmsNorm(q, q, w.qNorm, T * c.nHeads, c.headDim, c.rmsEps);
        native.rmsNorm(k, k, w.kNorm, T * c.nKvHeads, c.headDim, c.rmsEps);
      }
      native.rope(q, batch.positions, c.nHeads, c.headDim, c.ropeDim, this.ropeNeox, this.invFreq);
      native.rope(k, batch.positions, c.nKvHeads, c.headDim, c.ropeDim, this.ropeNeox, this.invFreq);
      native.kvStore(cache.keys[l]!, cache.values[l]!, k, v, batch.slots, kvDim);
      native.attention(attn, q, cache.keys[l]!, cache.values[l]!, batch.rowSeq, batch.positions,
        batch.blockTables, batch.tableOffsets, c.nHeads, c.nKvHeads, c.headDim, cache.blockSize, scale);
      matmul(proj, attn, w.wo, T);
      lora?.apply(l, "o", proj, attn);
      native.add(x, x, proj);
      native.rmsNorm(h, x, w.ffnNorm, T, H, c.rmsEps);
      matmulShared([gate, up], h, [w.wGate, w.wUp], T);
      if (lora) {
        lora.apply(l, "gate", gate, h);
        lora.apply(l, "up", up, h);
      }
      native.siluMul(gate, gate, up);
      matmul(proj, gate, w.wDown, T);
      lora?.apply(l, "down", proj, gate);
      native.add(x, x, proj);
    }

    const R = batch.logitRows.length;
    const last = new Float32Array(R * H);
    for (let r = 0; r < R; r++) {
      const row = batch.logitRows[r]!;
      last.set(x.subarray(row * H, (row + 1) * H), r * H);
    }
    native.rmsNorm(last, last, this.weights.outputNorm, R, H, c.rmsEps);
    const logits = new Float32Array(R * c.vocabSize);
    matmul(logits, last, this.weights.output, R);
    return logits;
  }
}

function matmul(out: Float32Array, x: Float32Array, w: Linear, M: number): void {
  native.matmul(out, x, w.data, w.type, M, w.outDim, w.inDim);
}

/** Products sharing one input: one native call when the weights share a type, else one each. */
function matmulShared(outs: Float32Array[], x: Float32Array, ws: Linear[], M: number): void {
  const type = ws[0]!.type;
  if (ws.every((w) => w.type === type && w.inDim === ws[0]!.inDim)) {
    native.matmulMulti(outs, x, ws.map((w) => w.data), type, M, ws[0]!.inDim);
  } else {
    ws.forEach((w, i) => matmul(outs[i]!, x, w, M));
  }
}

/**
 * The LoRA terms of one forward step, resolved per (layer, module) into the flat arguments of
 * native.loraApply: y[row] += weight · scale · B·(A·x[row]) for each term, each row's in order.
 */
class BatchLora {
  constructor(private readonly terms: readonly LoraTerm[], private readonly rows: number) {}

  apply(layer: number, module: LoraModule, y: Float32Array, x: Float32Array): void {
    const rows: number[] = [];
    const scales: number[] = [];
    const as: (Float32Array | Uint16Array)[] = [];
    const bs: (Float32Array | Uint16Array)[] = [];
    const types: number[] = [];
    let inDim = 0;
    let outDim = 0;
    for (const t of this.terms) {
      const pair = t.adapter.layers[layer]?.[module];
      if (!pair) continue;
      rows.push(t.row);
      scales.push(t.weight * pair.scale);
      as.push(pair.a);
      bs.push(pair.b);
      types.push(ggmlTypeOf(pair.dtype));
      inDim = pair.inDim;
      outDim = pair.outDim;
    }
    if (rows.length === 0) return;
    native.loraApply(y, x, this.rows, inDim, outDim, Int32Array.from(rows), Float32Array.from(scales), as, bs, Int32Array.from(types));
  }
}
