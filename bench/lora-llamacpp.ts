/**
 * Many distinct LoRA adapters at once (issue #3): openlora's heterogeneous batching vs llama.cpp
 * (node-llama-cpp) served the best way it allows, same GGUF base, same GGUF LoRA files, same
 * prompts, same threads, greedy, end-of-sequence ignored so every system does the same work.
 *
 *   (i)   openlora: all B requests in one engine batch (generateBatch), each with its own adapter
 *   (ii)  llama.cpp: one context per adapter sharing the loaded model (its best strategy for
 *         distinct adapters), all B contexts evaluating concurrently in lock-step
 *   (iii) llama.cpp: base model only, B sequences in ONE context, batch items sorted by sequence id
 *         (its batched ceiling; see /work/shared/reference/workload.md)
 *
 * Configurations run interleaved (i ii iii i ii iii …); ratios are per round. Contexts are
 * created once, outside the timed region. Reported: aggregate output tok/s over the whole request
 * (prefill + decode), and the decode phase alone.
 *
 *   npx tsx bench/lora-llamacpp.ts [--preset qwen3-0.6b] [--type q8_0] [--adapters 32] [--rank 16] [--adapter-type f32|f16]
 *                                  [--prompt-tokens 16] [--decode-tokens 16] [--rounds 3] [--threads 2]
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, type LlamaContext, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { baseShapeOf } from "../src/adapters/base-shape.js";
import { readGgufLora } from "../src/adapters/formats/gguf-lora.js";
import type { LoraAdapterWeights } from "../src/adapters/types.js";
import { generateBatch } from "../src/engine/generate.js";
import { type LoadedModel, loadModel } from "../src/model/load.js";
import { bySequenceId } from "../src/bench-serve/llamacpp-pool.js";
import { native } from "../src/native/index.js";
import { writeGgufLora } from "../src/synth/adapters.js";
import { cacheDir } from "../src/synth/default-model.js";
import { type GgufWeightType, writeGgufModel } from "../src/synth/synthesize.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "qwen3-0.6b" }, type: { type: "string", default: "q8_0" },
    adapters: { type: "string", default: "32" }, rank: { type: "string", default: "16" },
    "adapter-type": { type: "string", default: "f32" },
    "prompt-tokens": { type: "string", default: "16" }, "decode-tokens": { type: "string", default: "16" },
    rounds: { type: "string", default: "3" }, threads: { type: "string", default: "2" },
  },
});
const B = Number(values.adapters);
const rank = Number(values.rank);
const promptLen = Number(values["prompt-tokens"]);
const N = Number(values["decode-tokens"]);
const threads = Number(values.threads);

interface Run { total: number; decode: number; prefillMs: number; tokens: number[][] }

function stats(xs: number[], d = 1): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `${med.toFixed(d)} (${s[0]!.toFixed(d)}–${s[s.length - 1]!.toFixed(d)})`;
}

function writeOnce(path: string, write: (tmp: string) => void): string {
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    write(tmp);
    renameSync(tmp, path);
  }
  return path;
}

/** (i): one generateBatch over all requests; the first forward (all prompts) is the prefill. */
function openloraRun(m: LoadedModel, prompts: number[][], adapters: LoraAdapterWeights[]): Run {
  const model = m.model as { forward: (...a: never[]) => Float32Array };
  const orig = model.forward;
  const times: number[] = [];
  model.forward = function (this: unknown, ...a: never[]) {
    const t = performance.now();
    const r = orig.apply(this, a);
    times.push(performance.now() - t);
    return r;
  };
  try {
    const t0 = performance.now();
    const res = generateBatch(m, prompts.map((p, i) => ({
      prompt: p, maxTokens: N, ignoreEos: true, adapters: [{ adapter: adapters[i]!, weight: 1 }],
    })));
    const ms = performance.now() - t0;
    const decodeMs = times.slice(1).reduce((a, b) => a + b, 0);
    // the prefill step samples each sequence's first output token; the N-1 later steps are decode
    return { total: (B * N) / (ms / 1000), decode: (B * (N - 1)) / (decodeMs / 1000), prefillMs: times[0]!, tokens: res.map((r) => r.tokens) };
  } finally {
    model.forward = orig;
  }
}

type Step = { next: { token: Token } };
const evalNext = (s: LlamaContextSequence, toks: number[]) =>
  s.controlledEvaluate(toks.map((t, j) => (j === toks.length - 1 ? [t as Token, { generateNext: { token: true } }] : t as Token)) as never)
    .then((out) => (out[toks.length - 1] as Step).next.token as number);

/** (ii)/(iii): lock-step over llama.cpp sequences (one per context, or all in one context). */
async function llamaRun(seqs: LlamaContextSequence[], prompts: number[][]): Promise<Run> {
  await Promise.all(seqs.map((s) => s.clearHistory()));
  const tokens = prompts.map(() => [] as number[]);
  const t0 = performance.now();
  let next = await Promise.all(seqs.map((s, i) => evalNext(s, prompts[i]!)));
  const t1 = performance.now();
  next.forEach((t, i) => tokens[i]!.push(t));
  for (let step = 1; step < N; step++) {
    next = await Promise.all(seqs.map((s, i) => evalNext(s, [next[i]!])));
    next.forEach((t, i) => tokens[i]!.push(t));
  }
  const t2 = performance.now();
  return { total: (B * N) / ((t2 - t0) / 1000), decode: (B * (N - 1)) / ((t2 - t1) / 1000), prefillMs: t1 - t0, tokens };
}

function agreement(a: number[][], b: number[][]): string {
  let same = 0, firstSame = 0;
  a.forEach((x, i) => {
    x.forEach((t, j) => { if (b[i]![j] === t) same++; });
    if (b[i]![0] === x[0]) firstSame++;
  });
  return `${firstSame}/${a.length} first tokens equal, ${same}/${B * N} tokens equal`;
}

async function main(): Promise<void> {
  native.setThreads(threads);
  const dir = join(cacheDir(), "bench");
  mkdirSync(dir, { recursive: true });
  const modelPath = writeOnce(join(dir, `${values.preset}-${values.type}.gguf`), (tmp) => writeGgufModel(tmp, values.preset!, { seed: 1, type: values.type as GgufWeightType }));
  let t = performance.now();
  const loraType = values["adapter-type"] as "f32" | "f16";
  if (loraType !== "f32" && loraType !== "f16") throw new Error(`--adapter-type must be f32 or f16, got ${loraType}`);
  const suffix = loraType === "f32" ? "" : `-${loraType}`;
  const loraPaths = Array.from({ length: B }, (_, i) => writeOnce(join(dir, "lora-gguf", `${values.preset}-r${rank}-qkvo-seed${1000 + i}${suffix}.gguf`),
    (tmp) => writeGgufLora(tmp, values.preset!, { seed: 1000 + i, rank, alpha: 2 * rank, targets: ["q", "k", "v", "o"], type: loraType })));
  console.log(`adapters ready in ${((performance.now() - t) / 1000).toFixed(1)} s (${dir}/lora-gguf)`);

  const ours = await loadModel(modelPath);
  const shape = baseShapeOf(ours.config);
  const adapters = loraPaths.map((p, i) => readGgufLora(p, `a${i}`, shape, { maxRank: 256 }).weights);
  const text = "The history of computing is a story of ideas, machines and people who changed the world. ".repeat(20);
  const all = ours.tokenizer.encode(text);
  const prompts = Array.from({ length: B }, (_, i) => all.slice(i, i + promptLen));

  t = performance.now();
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, progressLogs: false, logLevel: "error" as never });
  const cppModel = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
  const ctxSize = promptLen + N + 8;
  const perAdapter: LlamaContext[] = [];
  for (const filePath of loraPaths) {
    perAdapter.push(await cppModel.createContext({ contextSize: ctxSize, batchSize: Math.max(32, promptLen), threads, sequences: 1, lora: { adapters: [{ filePath, scale: 1 }] } }));
  }
  const distinctSeqs = perAdapter.map((c) => c.getSequence());
  // Base ceiling: one context, B sequences; each batch's items sorted by sequence id so llama.cpp
  // packs them into one micro-batch (the strategy sees items in the order of the context's queue).
  const baseRef: { ctx?: LlamaContext } = {};
  const baseCtxReady = await cppModel.createContext({
    contextSize: ctxSize, batchSize: Math.max(512, B * promptLen), threads, sequences: B,
    batching: {
      itemPrioritizationStrategy: bySequenceId(baseRef),
    },
  });
  baseRef.ctx = baseCtxReady;
  const baseSeqs = Array.from({ length: B }, () => baseCtxReady.getSequence());
  console.log(`llama.cpp: ${B} contexts with one LoRA each + 1 context of ${B} sequences created in ${((performance.now() - t) / 1000).toFixed(1)} s (outside the timed region)`);
  console.log(`workload: ${values.preset} ${values.type}, ${B} requests, ${B} distinct rank-${rank} adapters on q/k/v/o (GGUF LoRA ${loraType}, the same files for both), prompt ${promptLen} tokens, ${N} output tokens greedy, ${threads} threads, kernels ${native.getKernelImpl()}, ${values.rounds} interleaved rounds after a warm-up\n`);

  const names = ["(i) openlora, one batch, distinct adapters", "(ii) llama.cpp, context per adapter", "(iii) llama.cpp, base only, one context"] as const;
  const res: Record<string, Run[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r <= Number(values.rounds); r++) {
    const a = openloraRun(ours, prompts, adapters);
    const b = await llamaRun(distinctSeqs, prompts);
    const c = await llamaRun(baseSeqs, prompts);
    const line = (x: Run) => `${x.total.toFixed(1)} tok/s (decode ${x.decode.toFixed(1)}, prefill ${(x.prefillMs / 1000).toFixed(2)} s)`;
    console.log(`round ${r === 0 ? "warm-up" : r}: (i) ${line(a)}  (ii) ${line(b)}  (iii) ${line(c)}`);
    if (r === 0) {
      console.log(`  greedy agreement openlora vs llama.cpp with the same adapters: ${agreement(a.tokens, b.tokens)}`);
      continue;
    }
    res[names[0]]!.push(a); res[names[1]]!.push(b); res[names[2]]!.push(c);
  }
  const ii = res[names[1]]!;
  console.log("\n| configuration | output tok/s (prefill + decode) | decode-phase tok/s | prefill s | ratio to (ii), whole request | ratio to (ii), decode |");
  console.log("|---|---|---|---|---|---|");
  for (const n of names) {
    const xs = res[n]!;
    console.log(`| ${n} | ${stats(xs.map((x) => x.total))} | ${stats(xs.map((x) => x.decode))} | ${stats(xs.map((x) => x.prefillMs / 1000), 2)} | ${stats(xs.map((x, i) => x.total / ii[i]!.total), 2)} | ${stats(xs.map((x, i) => x.decode / ii[i]!.decode), 2)} |`);
  }
  for (const c of perAdapter) await c.dispose();
  await baseCtxReady.dispose();
  await cppModel.dispose();
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
