/**
 * Checks shared by the adapter readers (PEFT, GGUF LoRA) and the registry: plain adapter ids, paths
 * proven to lie inside a root, each pair's shapes against the base model, rank limits, bounded
 * values and scales, and "the adapter changes something" (never a silent base-model fallback).
 */
import { existsSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { oerr, quoted } from "../errors.js";
import { GGML_TYPE } from "../formats/ggml-types.js";
import { bf16ToF32, f16ToF32, native } from "../native/index.js";
import type { BaseModelShape, LoraAdapterWeights, LoraModule, LoraPair } from "./types.js";
import { LORA_MODULES } from "./types.js";

const PLAIN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A plain adapter name: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, no "..": never a path. */
export function isPlainId(id: unknown): id is string {
  return typeof id === "string" && PLAIN_ID.test(id) && !id.includes("..");
}

/** Throws ADAPTER_ID_INVALID unless `id` is a plain name (see isPlainId). */
export function validateAdapterId(id: unknown): asserts id is string {
  if (!isPlainId(id)) {
    const shown = typeof id === "string" ? id.slice(0, 200) : typeof id;
    throw oerr("ADAPTER_ID_INVALID", `adapter id ${typeof id === "string" ? quoted(id) : shown} is not a plain name (letters, digits, ".", "_", "-"; no paths)`, { id: shown });
  }
}

/** realpath of the longest existing prefix of p, with the rest appended. */
function realpathLoose(p: string): string {
  const rest: string[] = [];
  let cur = p;
  for (;;) {
    if (existsSync(cur)) return rest.length ? join(realpathSync(cur), ...rest.reverse()) : realpathSync(cur);
    const up = dirname(cur);
    if (up === cur) return p;
    rest.push(basename(cur));
    cur = up;
  }
}

function strictlyInside(realRoot: string, target: string): boolean {
  const r = relative(realRoot, target);
  return !(r === "" || r === ".." || r.startsWith(`..${"/"}`) || r.startsWith("..\\") || isAbsolute(r));
}

/**
 * Resolves `rel` against `root` and proves the result lies strictly inside root, following symlinks
 * (realpath) for both; returns the resolved real path. Anything escaping root (.., absolute paths,
 * symlinks pointing out) is ADAPTER_PATH_OUTSIDE_ROOT.
 */
export function resolveInside(root: string, rel: string): string {
  const realRoot = realpathLoose(resolve(root));
  const target = realpathLoose(resolve(realRoot, rel));
  if (!strictlyInside(realRoot, target)) {
    throw oerr("ADAPTER_PATH_OUTSIDE_ROOT", `${quoted(rel)} resolves outside the adapters folder ${root}`, { root, path: rel });
  }
  return target;
}

/**
 * The real path of `path`, a file or folder of an adapter registered under `root`, which must lie
 * strictly inside root's real path (ADAPTER_PATH_OUTSIDE_ROOT otherwise); a missing path resolves
 * as far as it exists (its reader then reports it missing). Without a root (a path a local user
 * named, e.g. the CLI's --adapter) the path is returned as it is. The error names `shown` (default
 * `path`), never the resolved target.
 */
export function confinedPath(root: string | undefined, path: string, shown = path): string {
  if (root === undefined) return path;
  const realRoot = realpathLoose(resolve(root));
  const target = realpathLoose(resolve(path));
  if (!strictlyInside(realRoot, target)) {
    // `shown` is the path as the adapter names it: where a link points outside is none of the caller's business.
    throw oerr("ADAPTER_PATH_OUTSIDE_ROOT", `${shown} resolves outside the adapters folder ${root}`, { root, path: shown });
  }
  return target;
}

/**
 * The largest |value| of an A or B element accepted at load. Real adapters stay far below it: A
 * starts Kaiming-uniform (|a| < √(6 / in)) and B at zero, and trained values stay well under 10;
 * 1024 = 2^10 is exact in F32, F16 and BF16, so the bound is one compare on the bits. Garbage such
 * as an all-65504 (F16 max) file is refused before it can turn the logits to NaN.
 */
export const MAX_ADAPTER_VALUE = 1024;
/**
 * The largest |scale| (alpha / r, rsLoRA alpha / √r, GGUF alpha / r) accepted at load. Real scales
 * are 0.5–4, rsLoRA rarely above 64; with composition weights ≤ 10 (composition.ts) a term's
 * factor stays ≤ 10240. lora_alpha = 1e300 is refused.
 */
export const MAX_ADAPTER_SCALE = 1024;

/** Context for error messages. */
export interface CheckContext {
  source: string;
  base: BaseModelShape;
  maxRank: number;
}

/**
 * Checks one module's A [aShape] and B [bShape] before any value is decoded: layer in range, 2-D
 * shapes matching the base module, A and B agreeing on the rank (and `expectedRank` when the config
 * declares one), 0 < rank ≤ maxRank.
 */
export function checkPairShape(
  ctx: CheckContext, layer: number, module: LoraModule, aShape: readonly number[], bShape: readonly number[], expectedRank?: number,
): { rank: number; inDim: number; outDim: number } {
  const { base, source } = ctx;
  if (!Number.isSafeInteger(layer) || layer < 0 || layer >= base.nLayers) {
    throw oerr("ADAPTER_SHAPE_MISMATCH", `${source}: layer ${layer} of module ${module} is out of range: the base model has ${base.nLayers} layers`, { module, layer, nLayers: base.nLayers });
  }
  const want = base.modules[module];
  const details = { module, layer, a: [...aShape], b: [...bShape], inDim: want.inDim, outDim: want.outDim };
  if (aShape.length !== 2 || bShape.length !== 2) {
    throw oerr("ADAPTER_SHAPE_MISMATCH", `${source}: layer ${layer} ${module}: A and B must be matrices, got A ${quoted(aShape)}, B ${quoted(bShape)}`, details);
  }
  const [rank, inDim] = aShape as [number, number];
  const [outDim, rankB] = bShape as [number, number];
  if (inDim !== want.inDim || outDim !== want.outDim || rankB !== rank) {
    const transposed = aShape[0] === want.inDim && bShape[1] === want.outDim;
    throw oerr(
      "ADAPTER_SHAPE_MISMATCH",
      `${source}: layer ${layer} ${module}: A is ${quoted(aShape)} and B ${quoted(bShape)}, but the base module needs A [r, ${want.inDim}] and B [${want.outDim}, r]${transposed ? " (A/B transposed?)" : ""}`,
      details,
    );
  }
  if (expectedRank !== undefined && rank !== expectedRank) {
    throw oerr("ADAPTER_SHAPE_MISMATCH", `${source}: layer ${layer} ${module}: rank ${rank} in the tensors but ${expectedRank} in the config`, { ...details, expectedRank });
  }
  if (rank < 1) throw oerr("ADAPTER_SHAPE_MISMATCH", `${source}: layer ${layer} ${module}: rank 0`, details);
  if (rank > ctx.maxRank) {
    throw oerr("ADAPTER_RANK_TOO_LARGE", `${source}: layer ${layer} ${module}: rank ${rank} exceeds the maximum ${ctx.maxRank}`, { module, layer, rank, maxRank: ctx.maxRank });
  }
  return { rank, inDim, outDim };
}

/**
 * One native pass over a matrix: ADAPTER_NONFINITE at the first NaN or infinity, else
 * ADAPTER_VALUE_OUT_OF_RANGE at the first |v| > MAX_ADAPTER_VALUE. `values`: f32 (type F32), or the
 * f16 / bf16 bits (type F16 / BF16), compared without widening.
 */
export function checkValues(ctx: CheckContext, layer: number, module: LoraModule, which: "A" | "B", values: Float32Array | Uint16Array, type: number): void {
  const i = native.firstOutOfRange(values, type, MAX_ADAPTER_VALUE);
  if (i < 0) return;
  const v = type === GGML_TYPE.F32 ? values[i]! : type === GGML_TYPE.BF16 ? bf16ToF32(values[i]!) : f16ToF32(values[i]!);
  const details = { module, layer, matrix: which, index: i };
  if (!Number.isFinite(v)) throw oerr("ADAPTER_NONFINITE", `${ctx.source}: layer ${layer} ${module} ${which}[${i}] is ${v}`, details);
  throw oerr("ADAPTER_VALUE_OUT_OF_RANGE", `${ctx.source}: layer ${layer} ${module} ${which}[${i}] is ${v}, beyond ±${MAX_ADAPTER_VALUE}`, { ...details, max: MAX_ADAPTER_VALUE });
}

/** ADAPTER_VALUE_OUT_OF_RANGE unless |scale| <= MAX_ADAPTER_SCALE (a NaN scale fails too). */
export function checkScale(ctx: CheckContext, layer: number, module: LoraModule, scale: number): void {
  if (!(Math.abs(scale) <= MAX_ADAPTER_SCALE)) {
    throw oerr("ADAPTER_VALUE_OUT_OF_RANGE", `${ctx.source}: layer ${layer} ${module}: scale ${scale} is beyond ±${MAX_ADAPTER_SCALE}`, { module, layer, scale, max: MAX_ADAPTER_SCALE });
  }
}

/**
 * Assembles the per-layer pairs into LoraAdapterWeights; ADAPTER_NO_TARGETS when there is none.
 * Also returns the modules targeted, in LORA_MODULES order.
 */
export function finishWeights(ctx: CheckContext, layers: Array<Partial<Record<LoraModule, LoraPair>>>): { weights: LoraAdapterWeights; targetModules: LoraModule[] } {
  let maxRank = 0;
  let bytes = 0;
  const seen = new Set<LoraModule>();
  for (const layer of layers) {
    for (const m of LORA_MODULES) {
      const p = layer[m];
      if (!p) continue;
      seen.add(m);
      maxRank = Math.max(maxRank, p.rank);
      bytes += p.a.byteLength + p.b.byteLength;
    }
  }
  if (seen.size === 0) {
    throw oerr("ADAPTER_NO_TARGETS", `${ctx.source}: the adapter changes no module of the base model (its targets match nothing)`);
  }
  return { weights: { layers, maxRank, bytes }, targetModules: LORA_MODULES.filter((m) => seen.has(m)) };
}

/** An empty per-layer table for the base model. */
export function emptyLayers(base: BaseModelShape): Array<Partial<Record<LoraModule, LoraPair>>> {
  return Array.from({ length: base.nLayers }, () => ({}));
}
