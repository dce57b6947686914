/**
 * Hugging Face PEFT LoRA folders: adapter_config.json + adapter_model.safetensors.
 *
 * Tensors `base_model.model.model.layers.{L}.{self_attn|mlp}.{x}_proj.lora_A.weight` [r, in] and
 * `.lora_B.weight` [out, r] (F32/F16/BF16). Per-module rank and alpha come from `r` / `lora_alpha`
 * or the first matching `rank_pattern` / `alpha_pattern` key (PEFT's get_pattern_key); the scale is
 * alpha / r, or alpha / sqrt(r) with `use_rslora`. For Llama bases B's q/k rows are permuted like
 * the base weights (HF rotate_half layout → the GGUF/kernel pair layout).
 *
 * With a registry root (`opts.root`), the folder and both files must resolve inside it
 * (ADAPTER_PATH_OUTSIDE_ROOT); contentHash is computed from the bytes read here.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { isOpenLoraError, oerr, quoted } from "../../errors.js";
import { GGML_TYPE } from "../../formats/ggml-types.js";
import { type FileBytes, openFileBytes } from "../../formats/file-bytes.js";
import { jsonErrorWhere } from "../../formats/json.js";
import { parseSafetensors, safetensorsData, type SafetensorsFile, type SafetensorsTensor } from "../../formats/safetensors.js";
import { hashOfDigests, sha256, sha256Async } from "../../formats/sha256.js";
import type { BaseModelShape, LoraAdapter, LoraModule, LoraPair } from "../types.js";
import { LORA_MODULES } from "../types.js";
import { checkPairShape, checkScale, confinedPath, emptyLayers, finishWeights, validateAdapterId, type CheckContext } from "../validate.js";
import type { ReadOptions } from "./common.js";
import { PEFT_MODULE, patternValue, peftModulePath, permuteQkRows, qkPermuteHeads } from "./common.js";
import { residentPair } from "../pair-storage.js";

export interface PeftConfig {
  r: number;
  loraAlpha: number;
  /** A list of module names (matched as PEFT does: equal, or the path ends with "." + name) or one regex (full match). */
  targetModules: string[] | string;
  useRslora: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  layersToTransform: number[] | undefined;
  baseModel: string | undefined;
  parents?: Array<{ id: string; weight: number }>;
}

const UNSUPPORTED_NAMES = /(^|\.)(embed_tokens|lm_head|wte|wpe|embed_in|embed_out)$/;
const MODULE_BY_NAME = new Map(LORA_MODULES.map((m) => [PEFT_MODULE[m].name, m] as const));

function num(raw: Record<string, unknown>, key: string, dflt: number, source: string): number {
  const v = raw[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) throw oerr("ADAPTER_INVALID", `${source}: ${quoted(key)} must be a finite number, got ${quoted(v)}`, { key });
  return v;
}

function numberMap(raw: Record<string, unknown>, key: string, source: string, positiveInt: boolean): Record<string, number> {
  const v = raw[key];
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw oerr("ADAPTER_INVALID", `${source}: ${quoted(key)} must be an object`, { key });
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "number" || !Number.isFinite(x) || (positiveInt && (!Number.isSafeInteger(x) || x < 1))) {
      throw oerr("ADAPTER_INVALID", `${source}: ${quoted(key)}[${quoted(k)}] must be a ${positiveInt ? "positive integer" : "finite number"}, got ${quoted(x)}`, { key });
    }
  }
  return v as Record<string, number>;
}

/** Parses and checks adapter_config.json (ADAPTER_INVALID for anything openlora cannot honour). */
export function parsePeftConfig(text: string, source: string): PeftConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw oerr("ADAPTER_INVALID", `${source}: not valid JSON (${jsonErrorWhere(e)})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw oerr("ADAPTER_INVALID", `${source}: not a JSON object`);
  const c = raw as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== "LORA") {
    throw oerr("ADAPTER_INVALID", `${source}: peft_type ${quoted(c.peft_type)} is not supported (only LORA)`, { peftType: quoted(c.peft_type) });
  }
  if (c.fan_in_fan_out === true) throw oerr("ADAPTER_INVALID", `${source}: fan_in_fan_out = true (Conv1D-style weights) is not supported`);
  if (c.bias !== undefined && c.bias !== null && c.bias !== "none") {
    throw oerr("ADAPTER_INVALID", `${source}: bias = ${quoted(c.bias)} is not supported (only "none")`, { bias: quoted(c.bias) });
  }
  if (c.use_dora === true) throw oerr("ADAPTER_INVALID", `${source}: DoRA adapters (use_dora) are not supported`);
  const r = num(c, "r", 8, source);
  if (!Number.isSafeInteger(r) || r < 1) throw oerr("ADAPTER_INVALID", `${source}: "r" must be a positive integer, got ${r}`);
  const tm = c.target_modules;
  let targetModules: string[] | string;
  if (typeof tm === "string") {
    targetModules = tm;
  } else if (Array.isArray(tm) && tm.every((x) => typeof x === "string")) {
    targetModules = tm as string[];
  } else {
    throw oerr("ADAPTER_INVALID", `${source}: "target_modules" must be a list of names or a regex string`, { targetModules: quoted(tm) });
  }
  let layersToTransform: number[] | undefined;
  const lt = c.layers_to_transform;
  if (typeof lt === "number") layersToTransform = [lt];
  else if (Array.isArray(lt) && lt.every((x) => Number.isSafeInteger(x))) layersToTransform = lt as number[];
  else if (lt !== undefined && lt !== null) throw oerr("ADAPTER_INVALID", `${source}: "layers_to_transform" must be an integer or a list of integers`);
  const parents = Array.isArray(c.openlora_parents) ? (c.openlora_parents as Array<{ id: string; weight: number }>) : undefined;
  return {
    r,
    loraAlpha: num(c, "lora_alpha", 8, source),
    targetModules,
    useRslora: c.use_rslora === true,
    rankPattern: numberMap(c, "rank_pattern", source, true),
    alphaPattern: numberMap(c, "alpha_pattern", source, false),
    layersToTransform,
    baseModel: typeof c.base_model_name_or_path === "string" ? c.base_model_name_or_path : undefined,
    ...(parents ? { parents } : {}),
  };
}

/** PEFT's check_target_module_exists for a module path. */
export function isTargeted(cfg: Pick<PeftConfig, "targetModules">, path: string): boolean {
  const tm = cfg.targetModules;
  if (typeof tm === "string") {
    if (tm === "all-linear") return !UNSUPPORTED_NAMES.test(path);
    try {
      return new RegExp(`^(?:${tm})$`).test(path);
    } catch {
      return false;
    }
  }
  return tm.some((t) => path === t || path.endsWith(`.${t}`));
}

/** Per-module rank, alpha and scale from the config. */
export function moduleScaling(cfg: PeftConfig, path: string): { rank: number; alpha: number; scale: number } {
  const rank = patternValue(cfg.rankPattern, path) ?? cfg.r;
  const alpha = patternValue(cfg.alphaPattern, path) ?? cfg.loraAlpha;
  return { rank, alpha, scale: cfg.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}

const LORA_TENSOR = /^base_model\.model\.(.+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;
const LAYER_MODULE = /^model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)$/;

const DTYPE: Record<string, number> = { F32: GGML_TYPE.F32, F16: GGML_TYPE.F16, BF16: GGML_TYPE.BF16 };

function matrix(ctx: CheckContext, file: SafetensorsFile, t: SafetensorsTensor): { bytes: Uint8Array; type: number; n: number } {
  const type = DTYPE[t.dtype];
  if (type === undefined) {
    throw oerr("MODEL_UNSUPPORTED_TENSOR_TYPE", `${ctx.source}: tensor ${quoted(t.name)} is ${t.dtype}; adapters must be F32, F16 or BF16`, { tensor: quoted(t.name), dtype: t.dtype });
  }
  return { bytes: safetensorsData(file, t), type, n: t.shape.reduce((a, b) => a * b, 1) };
}

/** The largest adapter_config.json read (real ones are a few KB). */
export const MAX_CONFIG_BYTES = 1 << 20;

/** A file of the adapter folder, confined to the registry root when there is one. */
function readAdapterFile(path: string, root: string | undefined, maxBytes?: number): FileBytes {
  try {
    return openFileBytes(path, {
      ...(root !== undefined ? { checkRealPath: (real: string) => void confinedPath(root, real, path) } : {}),
      ...(maxBytes !== undefined ? { maxBytes } : {}),
    });
  } catch (e) {
    if (isOpenLoraError(e, "MODEL_NOT_FOUND") || isOpenLoraError(e, "MODEL_FILE_TRUNCATED") || isOpenLoraError(e, "MODEL_FILE_TOO_LARGE")) {
      throw oerr("ADAPTER_INVALID", e.message, { path });
    }
    throw e;
  }
}

function readConfigBytes(dir: string, root: string | undefined): Uint8Array {
  const path = join(dir, "adapter_config.json");
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw oerr("ADAPTER_INVALID", `${dir} is not a folder (a PEFT adapter is a folder with adapter_config.json)`, { path: dir });
  if (!existsSync(path)) throw oerr("ADAPTER_INVALID", `${dir}: adapter_config.json is missing`, { path: dir });
  return readAdapterFile(path, root, MAX_CONFIG_BYTES) as Uint8Array;
}

function readWeights(dir: string, root: string | undefined): FileBytes {
  const path = join(dir, "adapter_model.safetensors");
  if (!existsSync(path)) {
    const bin = existsSync(join(dir, "adapter_model.bin"));
    throw oerr("ADAPTER_INVALID", bin
      ? `${dir}: only adapter_model.bin (PyTorch pickle) is present; openlora reads adapter_model.safetensors only — convert it with safetensors' torch save_file`
      : `${dir}: adapter_model.safetensors is missing`, { path: dir });
  }
  return readAdapterFile(path, root);
}

/** Reads a PEFT LoRA folder into the engine's layout, checked against the base model. */
export function readPeftAdapter(dir: string, id: string, base: BaseModelShape, opts: ReadOptions): LoraAdapter {
  const { cfgBytes, weightBytes } = readFiles(dir, id, opts);
  return { ...build(cfgBytes, weightBytes, dir, id, base, opts), contentHash: hashOfDigests([sha256(cfgBytes), sha256(weightBytes)]) };
}

/** readPeftAdapter for the engine's loader: the weights are hashed on the thread pool while they are parsed here. */
export async function loadPeftAdapter(dir: string, id: string, base: BaseModelShape, opts: ReadOptions): Promise<LoraAdapter> {
  const { cfgBytes, weightBytes } = readFiles(dir, id, opts);
  const digest = sha256Async(weightBytes);
  let adapter: Omit<LoraAdapter, "contentHash">;
  try {
    adapter = build(cfgBytes, weightBytes, dir, id, base, opts);
  } catch (e) {
    digest.catch(() => {});
    throw e;
  }
  return { ...adapter, contentHash: hashOfDigests([sha256(cfgBytes), await digest]) };
}

function readFiles(dir: string, id: string, opts: ReadOptions): { cfgBytes: Uint8Array; weightBytes: FileBytes } {
  validateAdapterId(id);
  confinedPath(opts.root, dir);
  const cfgBytes = readConfigBytes(dir, opts.root);
  return { cfgBytes, weightBytes: readWeights(dir, opts.root) };
}

function build(cfgBytes: Uint8Array, weightBytes: FileBytes, dir: string, id: string, base: BaseModelShape, opts: ReadOptions): Omit<LoraAdapter, "contentHash"> {
  const cfg = parsePeftConfig(Buffer.from(cfgBytes.buffer, cfgBytes.byteOffset, cfgBytes.byteLength).toString("utf8"), join(dir, "adapter_config.json"));
  const file = parseSafetensors(weightBytes, join(dir, "adapter_model.safetensors"));
  const ctx: CheckContext = { source: file.source, base, maxRank: opts.maxRank };

  // Targets the config names that openlora cannot apply.
  if (Array.isArray(cfg.targetModules)) {
    const bad = cfg.targetModules.filter((t) => UNSUPPORTED_NAMES.test(t));
    if (bad.length) throw oerr("ADAPTER_UNSUPPORTED_MODULE", `${dir}: target_modules ${quoted(bad)} (embeddings / output head) are not supported`, { modules: quoted(bad) });
  }

  if (!configTargetsBase(cfg, base)) {
    throw oerr("ADAPTER_NO_TARGETS", `${dir}: target_modules ${quoted(cfg.targetModules)}${cfg.layersToTransform ? ` (layers ${quoted(cfg.layersToTransform)})` : ""} match no module of the base model`, { targetModules: quoted(cfg.targetModules) });
  }

  // Group the tensors by module path.
  const pairs = new Map<string, { a?: SafetensorsTensor; b?: SafetensorsTensor }>();
  for (const t of file.tensors.values()) {
    const m = LORA_TENSOR.exec(t.name);
    if (!m) {
      const what = /lora_embedding_|embed_tokens|lm_head/.test(t.name) ? "embedding / output head weights" : /lora_magnitude_vector/.test(t.name) ? "DoRA magnitudes" : /modules_to_save/.test(t.name) ? "full module weights (modules_to_save)" : "a tensor that is not a LoRA A/B matrix";
      throw oerr("ADAPTER_UNSUPPORTED_MODULE", `${file.source}: tensor ${quoted(t.name)} holds ${what}, which openlora cannot apply`, { tensor: quoted(t.name) });
    }
    const entry = pairs.get(m[1]!) ?? {};
    if (m[2] === "A") entry.a = t;
    else entry.b = t;
    pairs.set(m[1]!, entry);
  }

  const layers = emptyLayers(base);
  const layerSet = cfg.layersToTransform ? new Set(cfg.layersToTransform) : undefined;
  for (const [path, { a, b }] of pairs) {
    const lm = LAYER_MODULE.exec(path);
    const module: LoraModule | undefined = lm ? MODULE_BY_NAME.get(lm[3]!) : undefined;
    if (!lm || !module || PEFT_MODULE[module].group !== lm[2]) {
      throw oerr("ADAPTER_UNSUPPORTED_MODULE", `${file.source}: LoRA on module ${quoted(path)} is not supported (only q/k/v/o and gate/up/down projections)`, { modulePath: quoted(path) });
    }
    if (!a || !b) {
      throw oerr("ADAPTER_INVALID", `${file.source}: module ${quoted(path)} has lora_${a ? "A" : "B"} but no lora_${a ? "B" : "A"}`, { modulePath: quoted(path) });
    }
    const layer = Number(lm[1]);
    if (!isTargeted(cfg, path) || (layerSet && !layerSet.has(layer))) {
      throw oerr("ADAPTER_INVALID", `${file.source}: tensors for ${quoted(path)}, which adapter_config.json does not target`, { modulePath: quoted(path) });
    }
    const s = moduleScaling(cfg, path);
    const { rank, inDim, outDim } = checkPairShape(ctx, layer, module, a.shape, b.shape, s.rank);
    checkScale(ctx, layer, module, s.scale);
    const heads = qkPermuteHeads(module, base);
    const m = residentPair(ctx, layer, module, matrix(ctx, file, a), matrix(ctx, file, b),
      heads ? (bv) => permuteQkRows(bv, outDim, rank, heads) : undefined);
    const pair: LoraPair = { rank, inDim, outDim, a: m.a, b: m.b, dtype: m.dtype, scale: s.scale };
    layers[layer]![module] = pair;
  }

  const { weights, targetModules } = finishWeights(ctx, layers);
  return {
    id, format: "peft", path: dir, baseModel: cfg.baseModel, targetModules, weights,
    ...(cfg.parents ? { parents: cfg.parents } : {}),
  };
}

/** True when the config targets at least one module of the base model (used by tools that inspect configs). */
export function configTargetsBase(cfg: PeftConfig, base: BaseModelShape): boolean {
  for (let l = 0; l < base.nLayers; l++) {
    if (cfg.layersToTransform && !cfg.layersToTransform.includes(l)) continue;
    for (const m of LORA_MODULES) if (isTargeted(cfg, peftModulePath(l, m))) return true;
  }
  return false;
}
