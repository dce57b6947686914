/**
 * llama.cpp through node-llama-cpp, the independent implementation our engine is compared with.
 * Always CPU, prebuilt binary, threads set explicitly (its default oversubscribes 2 cores).
 */
import { getLlama, type Llama, type LlamaContext, type LlamaModel, type Token } from "node-llama-cpp";
import { PagedKvCache } from "../../src/engine/kv-cache.js";
import { type AppliedAdapter, buildBatch } from "../../src/model/llama.js";
import type { LoadedModel } from "../../src/model/load.js";

type LoadedModelLike = Pick<LoadedModel, "config" | "model">;

let llama: Promise<Llama> | undefined;

export function llamaCpp(threads = 2): Promise<Llama> {
  llama ??= getLlama({ gpu: false, build: "never", maxThreads: threads, logLevel: "error" as never, progressLogs: false });
  return llama;
}

export interface LlamaCppRun {
  promptTokens: number[];
  tokens: number[];
  /** Raw logits of llama.cpp's top-20 candidates at the probed steps: step → [token, logit][]. */
  topLogits: Map<number, Array<[number, number]>>;
}

/** Greedy generation of n tokens (end-of-generation tokens included), recording top raw logits at `probeSteps`. */
export async function llamaCppGreedy(
  model: LlamaModel, promptTokens: number[], n: number, probeSteps: number[], threads = 2,
  lora?: Array<{ filePath: string; scale: number }>,
): Promise<LlamaCppRun> {
  const ctx: LlamaContext = await model.createContext({
    contextSize: 512, threads, batchSize: 512, sequences: 1, flashAttention: false,
    ...(lora ? { lora: { adapters: lora } } : {}),
  });
  try {
    const seq = ctx.getSequence();
    const tokens: number[] = [];
    const topLogits = new Map<number, Array<[number, number]>>();
    let input: Token[] = promptTokens as Token[];
    for (let step = 0; step < n; step++) {
      const probe = probeSteps.includes(step);
      const items = input.map((t, i) => (i === input.length - 1
        ? [t, { generateNext: { token: true, ...(probe ? { logits: { filter: { tokens: [], includeTop: 20 } } } : {}), options: { temperature: 0 } } }] as const
        : t));
      const out = await seq.controlledEvaluate(items as never);
      const last = out[input.length - 1];
      if (!last?.next?.token && last?.next?.token !== 0) throw new Error(`llama.cpp produced no token at step ${step}`);
      const token = last.next.token as number;
      if (probe) {
        if (!last.next.logits) throw new Error("llama.cpp returned no logits");
        topLogits.set(step, [...last.next.logits].map(([t, l]) => [t as number, l]));
      }
      tokens.push(token);
      input = [token as Token];
    }
    return { promptTokens, tokens, topLogits };
  } finally {
    await ctx.dispose();
  }
}

/**
 * Whether llama.cpp computes quantized products with the same arithmetic as ours. Our kernels
 * follow ggml's AVX2 path; on CPUs with AVX-512/AMX ggml loads another variant (other activation
 * and accumulation paths), whose results differ by an occasional activation-rounding flip — enough,
 * on these deliberately chaotic random models, to make a long free-running greedy run diverge.
 */
export async function llamaCppSharesOurArithmetic(): Promise<boolean> {
  const info = String((await llamaCpp(2)).systemInfo ?? "");
  return !/AVX512 = 1|AMX_INT8 = 1/.test(info);
}

/**
 * Our logits at each of llama.cpp's steps, fed llama.cpp's own tokens (teacher forcing): step s
 * sees the prompt and ref tokens [0, s). One decode step per token, exactly as generation does.
 */
export function teacherForcedLogits(loaded: LoadedModelLike, prompt: readonly number[], tokens: readonly number[], adapters?: readonly AppliedAdapter[]): Float32Array[] {
  const blockSize = 16;
  const cache = new PagedKvCache({ nLayers: loaded.config.nLayers, kvDim: loaded.model.kvDim, numBlocks: Math.ceil((prompt.length + tokens.length) / blockSize) + 1, blockSize });
  const table: number[] = [];
  const out: Float32Array[] = [];
  let pos = 0;
  let input: readonly number[] = prompt;
  for (let s = 0; s < tokens.length; s++) {
    cache.ensureCapacity(table, pos + input.length);
    const batch = buildBatch([{ tokens: input, startPos: pos, blockTable: table, wantLogits: true, ...(adapters?.length ? { adapters } : {}) }], blockSize);
    out.push(loaded.model.forward(batch, cache).slice());
    pos += input.length;
    input = [tokens[s]!];
  }
  return out;
}

/**
 * Worst |our logit − llama.cpp's| over its top-20 at every step, and the worst gap between our best
 * logit and our logit of the token llama.cpp chose (0 when we would pick the same token).
 */
export function compareSteps(ours: readonly Float32Array[], ref: LlamaCppRun): { worstDiff: number; worstChoiceGap: number } {
  let worstDiff = 0;
  let worstChoiceGap = 0;
  ours.forEach((logits, s) => {
    for (const [t, l] of ref.topLogits.get(s) ?? []) worstDiff = Math.max(worstDiff, Math.abs(logits[t]! - l));
    let best = -Infinity;
    for (const v of logits) if (v > best) best = v;
    worstChoiceGap = Math.max(worstChoiceGap, best - logits[ref.tokens[s]!]!);
  });
  return { worstDiff, worstChoiceGap };
}
