/**
 * Single-stream decode and prefill speed, openlora vs llama.cpp (node-llama-cpp), same GGUF file,
 * same threads, interleaved runs (A B A B …) so drift on a shared machine hits both alike.
 *
 *   npx tsx bench/engine-vs-llamacpp.ts [--preset qwen3-0.6b] [--types q8_0,q4_0] [--threads 2]
 *                                       [--runs 5] [--prompt-tokens 128] [--decode-tokens 64]
 *
 * Prints median/min/max per system and the ratios, plus decode weight bytes/s as a fraction of the
 * machine's memory bandwidth (measured by the native read probe in the same run).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, type Token } from "node-llama-cpp";
import { PagedKvCache } from "../src/engine/kv-cache.js";
import { buildBatch } from "../src/model/llama.js";
import { type LoadedModel, loadModel } from "../src/model/load.js";
import { native } from "../src/native/index.js";
import { cacheDir } from "../src/synth/default-model.js";
import { type GgufWeightType, writeGgufModel } from "../src/synth/synthesize.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "qwen3-0.6b" }, types: { type: "string", default: "q8_0,q4_0" },
    threads: { type: "string", default: "2" }, runs: { type: "string", default: "5" },
    "prompt-tokens": { type: "string", default: "128" }, "decode-tokens": { type: "string", default: "64" },
  },
});
const threads = Number(values.threads);
const runs = Number(values.runs);
const promptLen = Number(values["prompt-tokens"]);
const decodeLen = Number(values["decode-tokens"]);

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}
const fmt = (x: { median: number; min: number; max: number }, d = 1) => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;

/** Bytes of weights one decode step reads: every layer matrix and the output matrix. */
function decodeBytes(m: LoadedModel): number {
  const w = m.model.weights;
  let n = w.output.data.byteLength;
  for (const l of w.layers) for (const x of [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown]) n += x.data.byteLength;
  return n;
}

function oursOnce(m: LoadedModel, prompt: number[]): { prefill: number; decode: number } {
  const bs = 16;
  const cache = new PagedKvCache({ nLayers: m.config.nLayers, kvDim: m.model.kvDim, numBlocks: Math.ceil((prompt.length + decodeLen + 1) / bs), blockSize: bs });
  const table: number[] = [];
  cache.ensureCapacity(table, prompt.length + decodeLen);
  let t0 = performance.now();
  let logits = m.model.forward(buildBatch([{ tokens: prompt, startPos: 0, blockTable: table, wantLogits: true }], bs), cache);
  const prefill = prompt.length / ((performance.now() - t0) / 1000);
  let pos = prompt.length;
  t0 = performance.now();
  for (let i = 0; i < decodeLen; i++) {
    let best = 0;
    for (let v = 1; v < m.config.vocabSize; v++) if (logits[v]! > logits[best]!) best = v;
    logits = m.model.forward(buildBatch([{ tokens: [best], startPos: pos, blockTable: table, wantLogits: true }], bs), cache);
    pos++;
  }
  return { prefill, decode: decodeLen / ((performance.now() - t0) / 1000) };
}

async function main(): Promise<void> {
  native.setThreads(threads);
  const bandwidth = native.memoryBandwidth(threads);
  console.log(`machine: ${threads} threads, kernels ${native.getKernelImpl()}, measured read bandwidth ${(bandwidth / 1e9).toFixed(1)} GB/s`);
  console.log(`workload: ${values.preset}, prompt ${promptLen} tokens, decode ${decodeLen} tokens, ${runs} interleaved runs\n`);
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, progressLogs: false, logLevel: "error" as never });
  const dir = join(cacheDir(), "bench");
  mkdirSync(dir, { recursive: true });
  const rows: string[] = [];
  for (const type of values.types!.split(",") as GgufWeightType[]) {
    const path = join(dir, `${values.preset}-${type}.gguf`);
    if (!existsSync(path)) {
      console.log(`writing ${path} …`);
      writeGgufModel(path, values.preset!, { seed: 1, type });
    }
    const ours = await loadModel(path);
    const cppModel = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: true });
    const ctx = await cppModel.createContext({ contextSize: promptLen + decodeLen + 16, threads, batchSize: Math.max(512, promptLen), sequences: 1 });
    const seq = ctx.getSequence();
    const text = "The history of computing is a story of ideas, machines and people. ".repeat(40);
    const prompt = ours.tokenizer.encode(text).slice(0, promptLen);
    const res = { oursPrefill: [] as number[], oursDecode: [] as number[], cppPrefill: [] as number[], cppDecode: [] as number[] };
    for (let r = 0; r <= runs; r++) {
      const o = oursOnce(ours, prompt);
      await seq.clearHistory();
      let t0 = performance.now();
      const out = await seq.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t as Token, { generateNext: { token: true } }] : t as Token)) as never);
      const cppPrefill = prompt.length / ((performance.now() - t0) / 1000);
      let next = (out[prompt.length - 1] as { next: { token: Token } }).next.token;
      t0 = performance.now();
      for (let i = 0; i < decodeLen; i++) {
        const o2 = await seq.controlledEvaluate([[next, { generateNext: { token: true } }]] as never);
        next = (o2[0] as { next: { token: Token } }).next.token;
      }
      const cppDecode = decodeLen / ((performance.now() - t0) / 1000);
      await seq.clearHistory();
      if (r === 0) continue; // warm-up
      res.oursPrefill.push(o.prefill); res.oursDecode.push(o.decode);
      res.cppPrefill.push(cppPrefill); res.cppDecode.push(cppDecode);
    }
    await ctx.dispose();
    await cppModel.dispose();
    const bytes = decodeBytes(ours);
    const od = stats(res.oursDecode), cd = stats(res.cppDecode), op = stats(res.oursPrefill), cp = stats(res.cppPrefill);
    const ratio = (a: number[], b: number[]) => stats(a.map((x, i) => x / b[i]!));
    console.log(`${type}: weights read per decoded token ${(bytes / 1e6).toFixed(1)} MB`);
    console.log(`  decode  tok/s  openlora ${fmt(od)}   llama.cpp ${fmt(cd)}   ratio ${fmt(ratio(res.oursDecode, res.cppDecode), 2)}`);
    console.log(`  prefill tok/s  openlora ${fmt(op)}   llama.cpp ${fmt(cp)}   ratio ${fmt(ratio(res.oursPrefill, res.cppPrefill), 2)}`);
    console.log(`  decode bandwidth  openlora ${(od.median * bytes / 1e9).toFixed(1)} GB/s = ${(100 * od.median * bytes / bandwidth).toFixed(0)}%   llama.cpp ${(cd.median * bytes / 1e9).toFixed(1)} GB/s = ${(100 * cd.median * bytes / bandwidth).toFixed(0)}%`);
    rows.push(`| ${values.preset} ${type} | ${fmt(od)} | ${fmt(cd)} | ${fmt(ratio(res.oursDecode, res.cppDecode), 2)} | ${fmt(op)} | ${fmt(cp)} | ${fmt(ratio(res.oursPrefill, res.cppPrefill), 2)} | ${(100 * od.median * bytes / bandwidth).toFixed(0)}% / ${(100 * cd.median * bytes / bandwidth).toFixed(0)}% |`);
  }
  console.log("\n| model | decode openlora | decode llama.cpp | ratio | prefill openlora | prefill llama.cpp | ratio | bandwidth used (ours / llama.cpp) |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
