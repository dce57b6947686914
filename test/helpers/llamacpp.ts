/**
 * llama.cpp through node-llama-cpp, the independent implementation our engine is compared with.
 * Always CPU, prebuilt binary, threads set explicitly (its default oversubscribes 2 cores).
 */
import { getLlama, type Llama, type LlamaContext, type LlamaModel, type Token } from "node-llama-cpp";

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
