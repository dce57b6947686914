/**
 * Batched decoding with heterogeneous LoRA adapters (issue #3's speed target), engine only:
 * aggregate decode tokens/s of B sequences for (a) the base model, (b) one adapter for all,
 * (c) B distinct adapters of rank 16, (d) B distinct adapters of ranks 8–64; adapters on q/k/v/o.
 * Configurations run interleaved (a b c d a b c d …); ratios are per round.
 *
 * With --prefill N: prefill tokens/s of one N-token prompt in one forward step, base only vs one
 * rank-16 q/k/v/o adapter computed by the gathered (row by row) and the segmented LoRA path.
 *
 *   npx tsx bench/lora-batch.ts [--preset qwen3-0.6b] [--type q8_0] [--batch 32] [--steps 16] [--rounds 3] [--adapter-dtype f32|f16|bf16]
 *
 * --adapter-dtype f16 holds the adapters as f16 (what a F16 PEFT or GGUF LoRA file loads as).
 *   npx tsx bench/lora-batch.ts --prefill 512 [--rounds 5]
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { convertAdapter } from "../src/adapters/pair-storage.js";
import type { LoraAdapterWeights, LoraDtype } from "../src/adapters/types.js";
import { PagedKvCache } from "../src/engine/kv-cache.js";
import { type AppliedAdapter, buildBatch, type SequenceChunk } from "../src/model/llama.js";
import { type LoadedModel, loadModel } from "../src/model/load.js";
import { type LoraPath, native } from "../src/native/index.js";
import { cacheDir } from "../src/synth/default-model.js";
import { type GgufWeightType, writeGgufModel } from "../src/synth/synthesize.js";
import { randomAdapter } from "../test/helpers/random-adapter.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "qwen3-0.6b" }, type: { type: "string", default: "q8_0" },
    batch: { type: "string", default: "32" }, steps: { type: "string", default: "16" },
    rounds: { type: "string", default: "3" }, threads: { type: "string", default: "2" },
    prefill: { type: "string" },
    "adapter-dtype": { type: "string", default: "f32" },
  },
});
const B = Number(values.batch);
const steps = Number(values.steps);

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `${med.toFixed(2)} (${s[0]!.toFixed(2)}–${s[s.length - 1]!.toFixed(2)})`;
}

/** Prefills B 16-token prompts, then times `steps` lock-step decode steps; returns aggregate tok/s. */
function decodeRun(m: LoadedModel, adapters: (readonly AppliedAdapter[])[]): number {
  const bs = 16;
  const cache = new PagedKvCache({ nLayers: m.config.nLayers, kvDim: m.model.kvDim, numBlocks: B * Math.ceil((16 + steps + 1) / bs), blockSize: bs });
  const tables = adapters.map(() => [] as number[]);
  tables.forEach((t) => cache.ensureCapacity(t, 16 + steps));
  const chunk = (i: number, tokens: number[], startPos: number): SequenceChunk =>
    ({ tokens, startPos, blockTable: tables[i]!, wantLogits: true, ...(adapters[i]!.length ? { adapters: adapters[i] } : {}) });
  m.model.forward(buildBatch(adapters.map((_, i) => chunk(i, Array.from({ length: 16 }, (_, j) => 1000 + 37 * i + j), 0)), bs), cache);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    m.model.forward(buildBatch(adapters.map((_, i) => chunk(i, [2000 + i + s], 16 + s)), bs), cache);
  }
  return (B * steps) / ((performance.now() - t0) / 1000);
}

/** One forward step over an n-token prompt of one sequence; returns prefill tok/s and the ms spent in loraApply. */
function prefillRun(m: LoadedModel, n: number, adapters: readonly AppliedAdapter[], path: LoraPath): [number, number] {
  const bs = 16;
  const cache = new PagedKvCache({ nLayers: m.config.nLayers, kvDim: m.model.kvDim, numBlocks: Math.ceil(n / bs), blockSize: bs });
  const table: number[] = [];
  cache.ensureCapacity(table, n);
  const tokens = Array.from({ length: n }, (_, j) => 1000 + ((37 * j) % 5000));
  const batch = buildBatch([{ tokens, startPos: 0, blockTable: table, wantLogits: true, ...(adapters.length ? { adapters } : {}) }], bs);
  const loraApply = native.loraApply;
  let loraMs = 0;
  native.loraApply = (...args) => {
    const t = performance.now();
    loraApply.apply(native, args);
    loraMs += performance.now() - t;
  };
  native.setLoraPath(path);
  try {
    const t0 = performance.now();
    m.model.forward(batch, cache);
    return [n / ((performance.now() - t0) / 1000), loraMs];
  } finally {
    native.setLoraPath("auto");
    native.loraApply = loraApply;
  }
}

function prefillMain(m: LoadedModel, n: number): void {
  const one = [{ adapter: randomAdapter(m.config, 16, 1), weight: 1 }];
  const configs: [string, readonly AppliedAdapter[], LoraPath][] = [
    ["base only", [], "auto"],
    ["rank-16 adapter, gathered path", one, "gathered"],
    ["rank-16 adapter, segmented path", one, "segmented"],
  ];
  console.log(`${values.preset} ${values.type}, one ${n}-token prompt in one step, adapter on q/k/v/o, ${values.threads} threads, kernels ${native.getKernelImpl()}`);
  for (const [, a, p] of configs) prefillRun(m, n, a, p); // warm-up
  const res = configs.map(() => [] as number[]);
  const lora = configs.map(() => [] as number[]);
  for (let r = 0; r < Number(values.rounds); r++) {
    configs.forEach(([, a, p], i) => {
      const [tps, ms] = prefillRun(m, n, a, p);
      res[i]!.push(tps);
      lora[i]!.push(ms);
    });
  }
  const seg = res[2]!, gat = res[1]!;
  console.log("| configuration | prefill tok/s | ratio to base | ms in loraApply per prompt | segmented / gathered tok/s |");
  console.log("|---|---|---|---|---|");
  configs.forEach(([name], i) => {
    const xs = res[i]!;
    const vsPath = i === 2 ? stats(seg.map((x, j) => x / gat[j]!)) : "";
    console.log(`| ${name} | ${stats(xs)} | ${stats(xs.map((x, j) => x / res[0]![j]!))} | ${i ? stats(lora[i]!) : ""} | ${vsPath} |`);
  });
}

async function main(): Promise<void> {
  native.setThreads(Number(values.threads));
  const dir = join(cacheDir(), "bench");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${values.preset}-${values.type}.gguf`);
  if (!existsSync(path)) writeGgufModel(path, values.preset!, { seed: 1, type: values.type as GgufWeightType });
  const m = await loadModel(path);
  if (values.prefill) return prefillMain(m, Number(values.prefill));
  const dtype = values["adapter-dtype"] as LoraDtype;
  if (!["f32", "f16", "bf16"].includes(dtype)) throw new Error(`--adapter-dtype must be f32, f16 or bf16, got ${dtype}`);
  const make = (rank: number, seed: number) => convertAdapter(randomAdapter(m.config, rank, seed), dtype);
  const one = make(16, 1);
  const distinct16: LoraAdapterWeights[] = Array.from({ length: B }, (_, i) => make(16, 10 + i));
  const ranks = [8, 16, 32, 64];
  const mixed: LoraAdapterWeights[] = Array.from({ length: B }, (_, i) => make(ranks[i % 4]!, 100 + i));
  const configs: Record<string, (readonly AppliedAdapter[])[]> = {
    "(a) base only": Array.from({ length: B }, () => []),
    "(b) one adapter for all": Array.from({ length: B }, () => [{ adapter: one, weight: 1 }]),
    "(c) distinct, rank 16": distinct16.map((a) => [{ adapter: a, weight: 1 }]),
    "(d) distinct, ranks 8-64": mixed.map((a) => [{ adapter: a, weight: 1 }]),
  };
  console.log(`${values.preset} ${values.type}, batch ${B}, ${steps} decode steps, adapters on q/k/v/o held as ${dtype}, ${values.threads} threads, kernels ${native.getKernelImpl()}`);
  decodeRun(m, configs["(a) base only"]!); // warm-up
  const res = new Map<string, number[]>(Object.keys(configs).map((k) => [k, []]));
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const [name, cfg] of Object.entries(configs)) res.get(name)!.push(decodeRun(m, cfg));
  }
  const base = res.get("(a) base only")!;
  console.log("| configuration | aggregate decode tok/s | ratio to (a) |");
  console.log("|---|---|---|");
  for (const [name, xs] of res) console.log(`| ${name} | ${stats(xs)} | ${stats(xs.map((x, i) => x / base[i]!))} |`);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
