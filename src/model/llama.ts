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
import { type LoraTerms, native } from "../native/index.js";
import { loraPairId } from "./lora-pairs.js";
import type { LoraAdapterWeights, LoraModule, LoraPair } from "../adapters/types.js";
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
  /** The last step's LoRA terms: decode steps usually repeat them, and resolving them is not free. */
  private lastLora?: BatchLora;

  constructor(config: ModelConfig, weights: ModelWeights) {
    this.config = config;
    this.weights = weights;
    this.invFreq = ropeInvFreq(config, weights.ropeFreqFactors);
    this.ropeNeox = config.architecture !== "llama";
  }

  get kvDim(): number {
    return this.config.nKvHeads * this.config.headDim;
  }

  /**
   * Runs one step; returns logits [logitRows.length, vocab], written into `logitsOut` when it is
   * long enough (a caller's reused buffer: a fresh 3 MB array per step makes V8 run major GCs).
   */
  forward(batch: ForwardBatch, cache: PagedKvCache, logitsOut?: Float32Array): Float32Array {
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

    let lora: BatchLora | undefined;
    if (batch.lora.length) {
      lora = this.lastLora?.sameTerms(batch.lora) ? this.lastLora : new BatchLora(batch.lora, c.nLayers);
      this.lastLora = lora;
    }
    const emb = this.weights.embedding;
    native.getRows(x, emb.data, emb.type, H, batch.tokens);
    const scale = 1 / Math.sqrt(c.headDim);

    for (let l = 0; l < c.nLayers; l++) {
      const w = this.weights.layers[l]!;
      native.rmsNorm(h, x, w.attnNorm, T, H, c.rmsEps);
      matmulShared([q, k, v], h, [w.wq, w.wk, w.wv], T, lora?.call(l, 0));
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
      if (lora) matmulShared([proj], attn, [w.wo], T, lora.call(l, 1));
      else matmul(proj, attn, w.wo, T);
      native.add(x, x, proj);
      native.rmsNorm(h, x, w.ffnNorm, T, H, c.rmsEps);
      matmulShared([gate, up], h, [w.wGate, w.wUp], T, lora?.call(l, 2));
      native.siluMul(gate, gate, up);
      if (lora) matmulShared([proj], gate, [w.wDown], T, lora.call(l, 3));
      else matmul(proj, gate, w.wDown, T);
      native.add(x, x, proj);
    }

    const R = batch.logitRows.length;
    const last = new Float32Array(R * H);
    for (let r = 0; r < R; r++) {
      const row = batch.logitRows[r]!;
      last.set(x.subarray(row * H, (row + 1) * H), r * H);
    }
    native.rmsNorm(last, last, this.weights.outputNorm, R, H, c.rmsEps);
    const n = R * c.vocabSize;
    const logits = logitsOut && logitsOut.length >= n ? logitsOut.subarray(0, n) : new Float32Array(n);
    matmul(logits, last, this.weights.output, R);
    return logits;
  }
}

function matmul(out: Float32Array, x: Float32Array, w: Linear, M: number): void {
  native.matmul(out, x, w.data, w.type, M, w.outDim, w.inDim);
}

/**
 * Products sharing one input, each with its LoRA terms (if any) added: one native call when the
 * weights share a type (the LoRA fused into it), else one each followed by its loraApply.
 */
function matmulShared(outs: Float32Array[], x: Float32Array, ws: Linear[], M: number, lora?: (ProductTerms | null)[]): void {
  const type = ws[0]!.type;
  const anyLora = lora?.some((t) => t !== null) ? lora : undefined;
  if (ws.every((w) => w.type === type && w.inDim === ws[0]!.inDim)) {
    native.matmulMulti(outs, x, ws.map((w) => w.data), type, M, ws[0]!.inDim, anyLora);
    return;
  }
  ws.forEach((w, i) => {
    matmul(outs[i]!, x, w, M);
    const t = anyLora?.[i];
    if (t) {
      const types = Int32Array.from(t.pairs, (p) => ggmlTypeOf(p.dtype));
      native.loraApply(outs[i]!, x, M, w.inDim, w.outDim, t.rows, t.scales, t.pairs.map((p) => p.a), t.pairs.map((p) => p.b), types);
    }
  });
}

/** The products of a layer that share an input, in forward order (one native call each). */
const CALLS: readonly (readonly LoraModule[])[] = [["q", "k", "v"], ["o"], ["gate", "up"], ["down"]];

/** One product's term list: the native form, plus the pairs themselves for the unfused fallback. */
type ProductTerms = LoraTerms & { pairs: LoraPair[] };

/**
 * The LoRA terms of one forward step, resolved per (layer, module) into native term lists:
 * y[row] += weight · scale · B·(A·x[row]) for each term, each row's in order.
 */
class BatchLora {
  /** Every call's term lists, resolved up front: one pass over the adapters' objects while they
   * are in cache, instead of one per call after the kernels have swept the caches. */
  private readonly calls: (ProductTerms | null)[][] = [];

  constructor(readonly all: readonly LoraTerm[], nLayers: number) {
    // Every list is a view into three arrays shared by the whole step: one allocation each instead
    // of three per (layer, module), which V8 would otherwise track and sweep one by one.
    const found: { pairs: LoraPair[]; of: LoraTerm[] }[][] = [];
    let total = 0;
    for (let l = 0; l < nLayers; l++) {
      for (const modules of CALLS) {
        found.push(modules.map((m) => {
          const pairs: LoraPair[] = [];
          const of: LoraTerm[] = [];
          for (const t of this.all) {
            const pair = t.adapter.layers[l]?.[m];
            if (pair) { pairs.push(pair); of.push(t); }
          }
          total += pairs.length;
          return { pairs, of };
        }));
      }
    }
    const rowsAll = new Int32Array(total), scalesAll = new Float32Array(total), idsAll = new Int32Array(total);
    let off = 0;
    for (const call of found) {
      this.calls.push(call.map(({ pairs, of }) => {
        const count = pairs.length;
        if (count === 0) return null;
        for (let j = 0; j < count; j++) {
          rowsAll[off + j] = of[j]!.row;
          scalesAll[off + j] = of[j]!.weight * pairs[j]!.scale;
          idsAll[off + j] = loraPairId(pairs[j]!);
        }
        const v = { rows: rowsAll.subarray(off, off + count), scales: scalesAll.subarray(off, off + count), ids: idsAll.subarray(off, off + count), pairs };
        off += count;
        return v;
      }));
    }
  }

  /** Whether `terms` are this step's terms again (same rows, adapter objects and weights). */
  sameTerms(terms: readonly LoraTerm[]): boolean {
    if (terms.length !== this.all.length) return false;
    for (let i = 0; i < terms.length; i++) {
      const a = terms[i]!, b = this.all[i]!;
      if (a.row !== b.row || a.adapter !== b.adapter || a.weight !== b.weight) return false;
    }
    return true;
  }

  /** Call `call` (an index into CALLS) of `layer`: one term list per product, null where no row has a term. */
  call(layer: number, call: number): (ProductTerms | null)[] {
    return this.calls[layer * CALLS.length + call]!;
  }
}
