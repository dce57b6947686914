import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { oerr } from "../errors.js";
import { generate } from "../engine/generate.js";
import { loadModel } from "../model/load.js";
import { native } from "../native/index.js";
import { ensureDefaultModel } from "../synth/default-model.js";
import { baseShapeOf } from "../adapters/base-shape.js";
import { AdapterCache } from "../adapters/cache.js";
import { compositionWeight } from "../adapters/composition.js";
import { createAdapterLoader, parseAdapterArg, resolveAdapterRef } from "../adapters/loader.js";
import { AdapterRegistry } from "../adapters/registry.js";
import type { LoraAdapter } from "../adapters/types.js";
import type { LoadedModel } from "../model/load.js";
import { choiceArg, intArg, numArg, progressLine } from "./args.js";

export async function runGenerate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, prompt: { type: "string" }, "max-tokens": { type: "string" },
      temperature: { type: "string" }, "top-k": { type: "string" }, "top-p": { type: "string" },
      "min-p": { type: "string" }, seed: { type: "string" }, "repeat-penalty": { type: "string" },
      "presence-penalty": { type: "string" }, "frequency-penalty": { type: "string" },
      stop: { type: "string", multiple: true }, "ignore-eos": { type: "boolean" },
      quantize: { type: "string" }, threads: { type: "string" }, json: { type: "boolean" },
      adapter: { type: "string", multiple: true }, adapters: { type: "string" }, "max-lora-rank": { type: "string" },
    },
  });
  if (values.prompt === undefined) throw oerr("INVALID_ARGUMENT", "generate needs --prompt");
  const threads = intArg(values.threads, "threads", 1, availableParallelism())!;
  native.setThreads(threads);
  const quiet = values.json === true;
  const log = (msg: string) => { if (!quiet) process.stderr.write(`${msg}\n`); };
  const modelPath = values.model ?? ensureDefaultModel(log, !quiet && process.stderr.isTTY ? progressLine("generating") : undefined);
  if (!values.model) log(`using the embedded default model ${modelPath} (random weights: the text is noise, the machinery is real)`);
  const loaded = await loadModel(modelPath, {
    quantize: choiceArg(values.quantize, "quantize", ["q8_0", "q4_0"] as const),
    ...(quiet || !process.stderr.isTTY ? {} : { onProgress: progressLine("loading model") }),
  });
  const applied = await resolveAdapters(loaded, values.adapter ?? [], values.adapters, intArg(values["max-lora-rank"], "max-lora-rank", 1));
  if (applied.length) log(`adapters: ${applied.map((a) => `${a.id}=${a.weight}`).join(", ")}`);
  const start = performance.now();
  let firstTokenAt = 0;
  const result = generate(loaded, {
    prompt: values.prompt,
    maxTokens: intArg(values["max-tokens"], "max-tokens", 1, 128)!,
    sampling: {
      temperature: numArg(values.temperature, "temperature") ?? 0,
      ...(values["top-k"] !== undefined ? { topK: intArg(values["top-k"], "top-k", 0) } : {}),
      ...(values["top-p"] !== undefined ? { topP: numArg(values["top-p"], "top-p") } : {}),
      ...(values["min-p"] !== undefined ? { minP: numArg(values["min-p"], "min-p") } : {}),
      ...(values["repeat-penalty"] !== undefined ? { repetitionPenalty: numArg(values["repeat-penalty"], "repeat-penalty") } : {}),
      ...(values["presence-penalty"] !== undefined ? { presencePenalty: numArg(values["presence-penalty"], "presence-penalty") } : {}),
      ...(values["frequency-penalty"] !== undefined ? { frequencyPenalty: numArg(values["frequency-penalty"], "frequency-penalty") } : {}),
      seed: intArg(values.seed, "seed", 0, 0)!,
    },
    stop: values.stop ?? [],
    ignoreEos: values["ignore-eos"] === true,
    adapters: applied.map((a) => ({ adapter: a.adapter.weights, weight: a.weight })),
  }, quiet ? {} : { onText: (t) => { if (!firstTokenAt) firstTokenAt = performance.now(); process.stdout.write(t); } });
  const seconds = (performance.now() - start) / 1000;
  if (quiet) {
    process.stdout.write(JSON.stringify({
      text: result.text, prompt_tokens: result.promptTokens, tokens: result.tokens, finish_reason: result.finishReason,
      adapters: applied.map((a) => ({ id: a.id, weight: a.weight })),
    }) + "\n");
  } else {
    process.stdout.write("\n");
    log(`[${result.tokens.length} tokens in ${seconds.toFixed(2)} s, ${(result.tokens.length / seconds).toFixed(1)} tok/s, prompt ${result.promptTokens.length} tokens, finish: ${result.finishReason}, ${threads} threads]`);
  }
  return 0;
}

/** `--adapters <dir>` registers a directory; each `--adapter <id or path>[=<weight>]` is loaded. */
async function resolveAdapters(loaded: LoadedModel, args: string[], dir: string | undefined, maxRank: number | undefined): Promise<Array<{ id: string; weight: number; adapter: LoraAdapter }>> {
  if (args.length === 0) return [];
  const registry = new AdapterRegistry();
  if (dir) await registry.scanDirectory(dir);
  const cache = new AdapterCache({
    registry,
    loader: createAdapterLoader(baseShapeOf(loaded.config), maxRank ? { maxRank } : {}),
    budgetBytes: Number.MAX_SAFE_INTEGER,
  });
  const out: Array<{ id: string; weight: number; adapter: LoraAdapter }> = [];
  for (const arg of args) {
    const { ref, weight: raw } = parseAdapterArg(arg);
    const weight = compositionWeight(raw, `--adapter ${ref}'s weight`);
    const id = resolveAdapterRef(registry, ref);
    const lease = await cache.acquire(id);
    out.push({ id, weight, adapter: lease.adapter });
  }
  return out;
}
