/**
 * What HTTP, the worker channel and the scheduler cost (issue #4): the same batch of B requests run
 * (a) by the engine alone in this process (generateBatch: one batch, no scheduler, no HTTP) and
 * (b) through `openlora serve` (spawned, same model, same threads) by B concurrent streaming HTTP
 * clients; rounds interleaved (a b a b …), ratios per round. Also time to first token of a short
 * prompt on an idle server vs the engine alone producing one token for the same prompt.
 *
 *   npx tsx bench/serve-overhead.ts [--preset smollm2-135m] [--type q8_0] [--batch 32] [--tokens 64]
 *                                   [--prompt-tokens 16] [--rounds 5] [--ttft-runs 20] [--threads 2]
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generate, generateBatch, type GenerateRequest } from "../src/engine/generate.js";
import { loadModel } from "../src/model/load.js";
import { native } from "../src/native/index.js";
import { cacheDir } from "../src/synth/default-model.js";
import { type GgufWeightType, writeGgufModel } from "../src/synth/synthesize.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "smollm2-135m" }, type: { type: "string", default: "q8_0" },
    batch: { type: "string", default: "32" }, tokens: { type: "string", default: "64" }, "prompt-tokens": { type: "string", default: "16" },
    rounds: { type: "string", default: "5" }, "ttft-runs": { type: "string", default: "20" }, threads: { type: "string", default: "2" },
  },
});
const B = Number(values.batch);
const N = Number(values.tokens);
const P = Number(values["prompt-tokens"]);
const threads = Number(values.threads);

function summary(xs: number[], digits = 1): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `${med.toFixed(digits)} (${s[0]!.toFixed(digits)}–${s.at(-1)!.toFixed(digits)})`;
}

function prompts(vocab: number): number[][] {
  let x = 12345;
  const next = () => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x; };
  return Array.from({ length: B }, () => Array.from({ length: P }, () => 1000 + (next() % (vocab - 2000))));
}

async function startServer(model: string): Promise<{ port: number; stop: () => void }> {
  const bin = join(import.meta.dirname, "..", "bin", "openlora.js");
  const child = spawn(process.execPath, [bin, "serve", "--model", model, "--port", "0", "--threads", String(threads), "--max-running", String(Math.max(64, B))], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.setEncoding("utf8");
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr.on("data", (d: string) => {
      err += d;
      const m = /ready: .* on http:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
  return { port, stop: () => child.kill("SIGTERM") };
}

/** Streams one completion; returns [ms to first token, ms to end, tokens]. */
async function streamOne(port: number, modelId: string, prompt: number[], maxTokens: number): Promise<[number, number, number]> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: modelId, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let first = 0;
  let tokens = 0;
  let buf = "";
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    buf += decoder.decode(part as Uint8Array, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6)) as { choices: unknown[]; usage?: { completion_tokens: number } };
      if (!first && chunk.choices.length) first = performance.now() - t0;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return [first, performance.now() - t0, tokens];
}

async function main(): Promise<void> {
  const dir = join(cacheDir(), "bench");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${values.preset}-${values.type}.gguf`);
  if (!existsSync(path)) writeGgufModel(path, values.preset!, { seed: 1, type: values.type as GgufWeightType });
  native.setThreads(threads);
  const loaded = await loadModel(path);
  const ps = prompts(loaded.config.vocabSize);
  const reqs: GenerateRequest[] = ps.map((p) => ({ prompt: p, maxTokens: N, ignoreEos: true }));
  const server = await startServer(path);
  console.log(`model ${values.preset} ${values.type}, batch ${B} × (${P} prompt + ${N} generated) tokens, ${threads} threads, ${values.rounds} rounds`);
  try {
    const modelId = loaded.id;
    await Promise.all(ps.slice(0, 4).map((p) => streamOne(server.port, modelId, p, 4))); // warm-up
    generateBatch(loaded, reqs.slice(0, 4).map((r) => ({ ...r, maxTokens: 4 })));
    const engine: number[] = [];
    const http: number[] = [];
    const ratio: number[] = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      let t = performance.now();
      const out = generateBatch(loaded, reqs);
      const e = out.reduce((a, o) => a + o.tokens.length, 0) / ((performance.now() - t) / 1000);
      t = performance.now();
      const results = await Promise.all(ps.map((p) => streamOne(server.port, modelId, p, N)));
      const h = results.reduce((a, x) => a + x[2], 0) / ((performance.now() - t) / 1000);
      engine.push(e);
      http.push(h);
      ratio.push(h / e);
      console.log(`round ${r + 1}: engine ${e.toFixed(1)} tok/s, server ${h.toFixed(1)} tok/s, ratio ${(h / e).toFixed(3)}`);
    }
    const ttftServer: number[] = [];
    const ttftEngine: number[] = [];
    const short = ps[0]!.slice(0, 8);
    for (let r = 0; r < Number(values["ttft-runs"]); r++) {
      const t = performance.now();
      generate(loaded, { prompt: short, maxTokens: 1, ignoreEos: true });
      ttftEngine.push(performance.now() - t);
      ttftServer.push((await streamOne(server.port, modelId, short, 1))[0]);
    }
    console.log("\n| measure | engine alone | openlora serve (HTTP) | serve / engine |");
    console.log("|---|---|---|---|");
    console.log(`| aggregate tok/s, batch ${B} | ${summary(engine)} | ${summary(http)} | ${summary(ratio, 3)} |`);
    console.log(`| time to first token, 8-token prompt, idle (ms) | ${summary(ttftEngine)} | ${summary(ttftServer)} | |`);
  } finally {
    server.stop();
  }
}

await main();
