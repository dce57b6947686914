/**
 * `openlora adapters merge|list`.
 *
 *   merge  loads the inputs through the registry and loader (ids from --adapters, or paths),
 *          merges them (src/adapters/merge.ts) and writes a PEFT folder recording its parents.
 *   list   prints the registry of an adapters directory (id, format, path); with --model each
 *          adapter is also read and checked against the base (rank, modules, or its error code).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { isOpenLoraError, oerr } from "../errors.js";
import { baseShapeOf } from "../adapters/base-shape.js";
import { writePeftAdapterFolder } from "../adapters/formats/peft-writer.js";
import { createAdapterLoader, parseAdapterArg, resolveAdapterRef } from "../adapters/loader.js";
import { MERGE_METHODS, mergeAdapters, type MergeMethod } from "../adapters/merge.js";
import { AdapterRegistry } from "../adapters/registry.js";
import type { BaseModelShape, LoraAdapter } from "../adapters/types.js";
import { openFileBytes } from "../formats/file-bytes.js";
import { parseGguf } from "../formats/gguf.js";
import { configFromGguf, configFromHf } from "../model/config.js";
import { ensureDefaultModel } from "../synth/default-model.js";
import { choiceArg, intArg, numArg } from "./args.js";

const ADAPTERS_USAGE = `Usage:
  openlora adapters merge [--model <base>] --out <dir> --method <${MERGE_METHODS.join("|")}>
                          --adapter <id or path>[=<weight>] ... [--adapters <dir>]
                          [--density D] [--seed S] [--rank R] [--majority-sign total|frequency]
                          [--max-lora-rank R] [--force] [--json]
  openlora adapters list --adapters <dir> [--model <base>] [--json]
`;

export async function runAdapters(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "merge": return runMerge(rest);
    case "list": return runList(rest);
    case undefined: case "help": case "--help": case "-h":
      process.stdout.write(ADAPTERS_USAGE);
      return sub === undefined ? 2 : 0;
    default:
      throw oerr("INVALID_ARGUMENT", `unknown adapters command "${sub}" (merge or list)`);
  }
}

/** The base model's shapes from its header / config.json only (no weights are loaded). */
export function baseShapeAt(modelPath: string): { shape: BaseModelShape; name: string } {
  if (!existsSync(modelPath)) throw oerr("MODEL_NOT_FOUND", `${modelPath} does not exist`);
  const name = basename(resolve(modelPath)).replace(/\.gguf$/i, "");
  if (!statSync(modelPath).isDirectory()) {
    return { shape: baseShapeOf(configFromGguf(parseGguf(openFileBytes(modelPath), modelPath))), name };
  }
  const cfgPath = join(modelPath, "config.json");
  if (!existsSync(cfgPath)) throw oerr("MODEL_CONFIG_INVALID", `${modelPath}: config.json is missing`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(cfgPath, "utf8"));
  } catch (e) {
    throw oerr("MODEL_CONFIG_INVALID", `${cfgPath}: not valid JSON (${(e as Error).message})`);
  }
  return { shape: baseShapeOf(configFromHf(json as Parameters<typeof configFromHf>[0], cfgPath)), name };
}

async function runMerge(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, out: { type: "string" }, method: { type: "string" },
      adapter: { type: "string", multiple: true }, adapters: { type: "string" },
      density: { type: "string" }, seed: { type: "string" }, rank: { type: "string" },
      "majority-sign": { type: "string" }, "max-lora-rank": { type: "string" },
      force: { type: "boolean" }, json: { type: "boolean" },
    },
  });
  if (!values.out) throw oerr("INVALID_ARGUMENT", "adapters merge needs --out <dir>");
  if (!values.method) throw oerr("INVALID_ARGUMENT", `adapters merge needs --method (${MERGE_METHODS.join(", ")})`);
  const method = choiceArg(values.method, "method", MERGE_METHODS) as MergeMethod;
  const refs = values.adapter ?? [];
  if (refs.length === 0) throw oerr("INVALID_ARGUMENT", "adapters merge needs at least one --adapter <id or path>[=<weight>]");
  const density = numArg(values.density, "density");
  const seed = intArg(values.seed, "seed", 0);
  const targetRank = intArg(values.rank, "rank", 1);
  const majoritySign = choiceArg(values["majority-sign"], "majority-sign", ["total", "frequency"] as const);
  const maxRank = intArg(values["max-lora-rank"], "max-lora-rank", 1);
  const out = resolve(values.out);
  if (existsSync(out) && !values.force) {
    if (!statSync(out).isDirectory() || readdirSync(out).length > 0) {
      throw oerr("ADAPTER_ALREADY_EXISTS", `${out} already exists and is not an empty folder (--force replaces an adapter there)`, { path: out });
    }
  }
  const quiet = values.json === true;
  const log = (msg: string) => { if (!quiet) process.stderr.write(`${msg}\n`); };
  const modelPath = values.model ?? ensureDefaultModel(log);
  const { shape, name } = baseShapeAt(modelPath);

  const registry = new AdapterRegistry();
  if (values.adapters) await registry.scanDirectory(values.adapters);
  const load = createAdapterLoader(shape, maxRank ? { maxRank } : {});
  const inputs: Array<{ id: string; weight: number; adapter: LoraAdapter }> = [];
  for (const arg of refs) {
    const { ref, weight } = parseAdapterArg(arg);
    const id = resolveAdapterRef(registry, ref);
    if (inputs.some((x) => x.id === id)) throw oerr("INVALID_ARGUMENT", `adapter "${id}" is given twice`);
    const adapter = await load(registry.get(id)!, new AbortController().signal);
    inputs.push({ id, weight, adapter });
  }
  const merged = mergeAdapters(inputs.map((x) => ({ adapter: x.adapter.weights, weight: x.weight })), method, {
    ...(density !== undefined ? { density } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(targetRank !== undefined ? { targetRank } : {}),
    ...(majoritySign ? { majoritySign } : {}),
  });
  const bases = new Set(inputs.map((x) => x.adapter.baseModel));
  const baseModel = bases.size === 1 && inputs[0]!.adapter.baseModel !== undefined ? inputs[0]!.adapter.baseModel : name;
  const parents = inputs.map((x) => ({ id: x.id, weight: x.weight }));
  writePeftAdapterFolder(out, merged, shape, { baseModel, parents });
  if (quiet) {
    process.stdout.write(JSON.stringify({ out, method, max_rank: merged.maxRank, bytes: merged.bytes, parents }) + "\n");
  } else {
    process.stdout.write(`merged ${parents.map((p) => `${p.id}=${p.weight}`).join(", ")} with ${method} into ${out} (max rank ${merged.maxRank})\n`);
  }
  return 0;
}

async function runList(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { adapters: { type: "string" }, model: { type: "string" }, "max-lora-rank": { type: "string" }, json: { type: "boolean" } },
  });
  if (!values.adapters) throw oerr("INVALID_ARGUMENT", "adapters list needs --adapters <dir>");
  const registry = new AdapterRegistry();
  const scan = await registry.scanDirectory(values.adapters);
  const maxRank = intArg(values["max-lora-rank"], "max-lora-rank", 1);
  const load = values.model ? createAdapterLoader(baseShapeAt(values.model).shape, maxRank ? { maxRank } : {}) : undefined;
  const rows: Array<Record<string, unknown>> = [];
  for (const e of registry.list()) {
    const row: Record<string, unknown> = { id: e.id, format: e.source.format, path: e.source.path };
    if (load) {
      try {
        const a = await load(e, new AbortController().signal);
        Object.assign(row, { rank: a.weights.maxRank, modules: a.targetModules, ...(a.parents ? { parents: a.parents } : {}) });
      } catch (err) {
        if (!isOpenLoraError(err)) throw err;
        row.error = err.code;
      }
    }
    rows.push(row);
  }
  if (values.json) {
    process.stdout.write(JSON.stringify({ adapters: rows, skipped: scan.skipped }) + "\n");
    return 0;
  }
  for (const r of rows) {
    const extra = r.error ? `  error ${String(r.error)}` : r.rank !== undefined ? `  rank ${String(r.rank)}  ${(r.modules as string[]).join(",")}` : "";
    process.stdout.write(`${String(r.id)}\t${String(r.format)}\t${String(r.path)}${extra}\n`);
  }
  return 0;
}
