/** `openlora bench serve`'s arguments: usage text and parsing into ServeBenchOptions (no heavy imports). */
import { parseArgs } from "node:util";
import { LORA_MODULES, type LoraModule } from "../adapters/types.js";
import type { ServeBenchOptions } from "./config.js";
import { modeDefaults } from "./config.js";
import { SYSTEMS } from "./systems.js";
import type { PopularitySpec } from "./workload.js";
import type { GgufWeightType } from "../synth/synthesize.js";
import { oerr } from "../errors.js";
import { choiceArg, intArg, numArg } from "../cli/args.js";

export const BENCH_SERVE_USAGE = `openlora bench serve [--quick | --full] [--json] [--systems ${SYSTEMS.map((s) => s.name).join(",")}]
        [--num-adapters 1,10,100] [--rate R] [--rates R1,R2,...] [--rate-sweep-adapters N] [--cv CV] [--concurrency C]
        [--pattern power|distinct|uniform|skewed|identical] [--alpha A] [--zipf S] [--requests N] [--warmup N] [--seed S]
        [--prompt-len LO:HI] [--output-len LO:HI] [--slo-ttft-ms MS] [--threads N] [--repeats K] [--out DIR]
        [--preset NAME] [--type q8_0|...] [--model GGUF] [--adapter-dir DIR] [--ranks 8,16] [--lora-type f32|f16|q8_0]
        [--targets q,k,v,o] [--prompt-format tokens|text] [--openlora-bin bin/openlora.js]
        [--llamacpp-max-contexts N] [--llamacpp-sequences N] [--llamacpp-base-sequences N]
        [--startup-timeout-s S] [--request-timeout-s S]
    Serving benchmark over the OpenAI HTTP API (S-LoRA/Punica method): every system is started in turn and driven
    with the same seeded trace. --quick (default): SmolLM2-135M-shaped, a few minutes on 2 cores; --full: Qwen3-0.6B-shaped,
    up to 1000 adapters. Writes summary.md, results.json, requests.json and SVG plots to --out; --json prints
    {"systems": {"<system>@<adapters>": {...}}, ...} on stdout.
`;

function list(v: string | undefined, name: string): string[] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(",").map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw oerr("INVALID_ARGUMENT", `--${name} needs at least one value`);
  return parts;
}

function numbers(v: string | undefined, name: string, min: number, integer: boolean): number[] | undefined {
  return list(v, name)?.map((s) => {
    const n = Number(s);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw oerr("INVALID_ARGUMENT", `--${name}: "${s}" is not ${integer ? "an integer" : "a number"} >= ${min}`);
    }
    return n;
  });
}

function range(v: string | undefined, name: string): [number, number] | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[2]) <= Number(m[1])) throw oerr("INVALID_ARGUMENT", `--${name} must be LO:HI with 1 <= LO < HI (HI exclusive), got "${v}"`);
  return [Number(m[1]), Number(m[2])];
}

function positive(v: string | undefined, name: string): number | undefined {
  const n = numArg(v, name);
  if (n !== undefined && !(n > 0)) throw oerr("INVALID_ARGUMENT", `--${name} must be > 0, got "${v}"`);
  return n;
}

export function parseServeBenchArgs(argv: string[]): ServeBenchOptions {
  const s = { type: "string" } as const;
  const { values } = parseArgs({
    args: argv, allowPositionals: false,
    options: {
      quick: { type: "boolean" }, full: { type: "boolean" }, json: { type: "boolean" }, systems: s, "num-adapters": s, rate: s, rates: s,
      "rate-sweep-adapters": s, cv: s, concurrency: s, pattern: s, alpha: s, zipf: s, requests: s, warmup: s, seed: s,
      "prompt-len": s, "output-len": s, "slo-ttft-ms": s, threads: s, repeats: s, out: s, preset: s, type: s, model: s,
      "adapter-dir": s, ranks: s, "lora-type": s, targets: s, "prompt-format": s, "openlora-bin": s,
      "llamacpp-max-contexts": s, "llamacpp-sequences": s, "llamacpp-base-sequences": s, "startup-timeout-s": s, "request-timeout-s": s,
    },
  });
  if (values.quick && values.full) throw oerr("INVALID_ARGUMENT", "--quick and --full exclude each other");
  const d = modeDefaults(values.full ? "full" : "quick");
  const systems = list(values.systems, "systems");
  for (const name of systems ?? []) {
    if (!SYSTEMS.some((x) => x.name === name)) throw oerr("INVALID_ARGUMENT", `--systems: unknown system "${name}" (known: ${SYSTEMS.map((x) => x.name).join(", ")})`);
  }
  const targets = list(values.targets, "targets");
  for (const t of targets ?? []) if (!(LORA_MODULES as readonly string[]).includes(t)) throw oerr("INVALID_ARGUMENT", `--targets: unknown module "${t}" (known: ${LORA_MODULES.join(", ")})`);
  const pattern = choiceArg(values.pattern, "pattern", ["power", "distinct", "uniform", "skewed", "identical"] as const) ?? d.popularity.pattern;
  const popularity: PopularitySpec = pattern === "power" ? { pattern, alpha: positive(values.alpha, "alpha") ?? 1 }
    : pattern === "skewed" ? { pattern, zipf: positive(values.zipf, "zipf") ?? 1.5 } : { pattern };
  const o: ServeBenchOptions = {
    ...d,
    json: values.json ?? false,
    systems: systems ?? d.systems,
    adapterCounts: numbers(values["num-adapters"], "num-adapters", 1, true) ?? d.adapterCounts,
    rate: positive(values.rate, "rate") ?? d.rate,
    rates: numbers(values.rates, "rates", 0, false)?.filter((r) => r > 0) ?? d.rates,
    rateSweepAdapters: intArg(values["rate-sweep-adapters"], "rate-sweep-adapters", 1) ?? d.rateSweepAdapters,
    cv: positive(values.cv, "cv") ?? d.cv,
    ...(values.concurrency !== undefined ? { concurrency: intArg(values.concurrency, "concurrency", 1)! } : {}),
    popularity,
    requests: intArg(values.requests, "requests", 1) ?? d.requests,
    warmup: intArg(values.warmup, "warmup", 0) ?? d.warmup,
    seed: intArg(values.seed, "seed", 0) ?? d.seed,
    promptLen: range(values["prompt-len"], "prompt-len") ?? d.promptLen,
    outputLen: range(values["output-len"], "output-len") ?? d.outputLen,
    sloTtftMs: positive(values["slo-ttft-ms"], "slo-ttft-ms") ?? d.sloTtftMs,
    threads: intArg(values.threads, "threads", 1) ?? d.threads,
    repeats: intArg(values.repeats, "repeats", 1) ?? d.repeats,
    outDir: values.out ?? d.outDir,
    preset: values.preset ?? d.preset,
    weightType: choiceArg(values.type, "type", ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"] as const satisfies readonly GgufWeightType[]) ?? d.weightType,
    ...(values.model ? { modelPath: values.model } : {}),
    ...(values["adapter-dir"] ? { adapterDir: values["adapter-dir"] } : {}),
    ranks: numbers(values.ranks, "ranks", 1, true) ?? d.ranks,
    loraType: choiceArg(values["lora-type"], "lora-type", ["f32", "f16", "q8_0"] as const) ?? d.loraType,
    targets: (targets as LoraModule[] | undefined) ?? d.targets,
    promptFormat: choiceArg(values["prompt-format"], "prompt-format", ["tokens", "text"] as const) ?? d.promptFormat,
    openloraBin: values["openlora-bin"] ?? d.openloraBin,
    llamacpp: {
      maxContexts: intArg(values["llamacpp-max-contexts"], "llamacpp-max-contexts", 1) ?? d.llamacpp.maxContexts,
      sequences: intArg(values["llamacpp-sequences"], "llamacpp-sequences", 1) ?? d.llamacpp.sequences,
      baseSequences: intArg(values["llamacpp-base-sequences"], "llamacpp-base-sequences", 1) ?? d.llamacpp.baseSequences,
    },
    startupTimeoutS: positive(values["startup-timeout-s"], "startup-timeout-s") ?? d.startupTimeoutS,
    requestTimeoutS: positive(values["request-timeout-s"], "request-timeout-s") ?? d.requestTimeoutS,
  };
  if (o.warmup >= o.requests) throw oerr("INVALID_ARGUMENT", `--warmup (${o.warmup}) must be below --requests (${o.requests})`);
  if (o.rates.length === 0) throw oerr("INVALID_ARGUMENT", "--rates needs at least one rate > 0");
  return o;
}
