/**
 * Checks shared by the adapter readers (PEFT, GGUF LoRA) and the registry: plain adapter ids, paths
 * proven to lie inside a root, each pair's shapes against the base model, rank limits, finite
 * values, and "the adapter changes something" (never a silent base-model fallback).
 */
import { existsSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { oerr } from "../errors.js";
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
    throw oerr("ADAPTER_ID_INVALID", `adapter id ${JSON.stringify(shown)} is not a plain name (letters, digits, ".", "_", "-"; no paths)`, { id: shown });
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

/**
 * Resolves `rel` against `root` and proves the result lies strictly inside root, following symlinks
 * (realpath) for both; returns the resolved real path. Anything escaping root (.., absolute paths,
 * symlinks pointing out) is ADAPTER_ID_INVALID.
 */
export function resolveInside(root: string, rel: string): string {
  const realRoot = realpathLoose(resolve(root));
  const target = realpathLoose(resolve(realRoot, rel));
  const r = relative(realRoot, target);
  if (r === "" || r === ".." || r.startsWith(`..${"/"}`) || r.startsWith("..\\") || isAbsolute(r)) {
    throw oerr("ADAPTER_ID_INVALID", `${JSON.stringify(rel)} resolves outside ${root}`, { root, path: rel });
  }
  return target;
}

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
    throw oerr("ADAPTER_SHAPE_MISMATCH", `${source}: layer ${layer} ${module}: A and B must be matrices, got A ${JSON.stringify(aShape)}, B ${JSON.stringify(bShape)}`, details);
  }
  const [rank, inDim] = aShape as [number, number];
  const [outDim, rankB] = bShape as [number, number];
  if (inDim !== want.inDim || outDim !== want.outDim || rankB !== rank) {
    const transposed = aShape[0] === want.inDim && bShape[1] === want.outDim;
    throw oerr(
      "ADAPTER_SHAPE_MISMATCH",
      `${source}: layer ${layer} ${module}: A is ${JSON.stringify(aShape)} and B ${JSON.stringify(bShape)}, but the base module needs A [r, ${want.inDim}] and B [${want.outDim}, r]${transposed ? " (A/B transposed?)" : ""}`,
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
 * ADAPTER_NONFINITE when any element of 16-bit `bits` (GGML type F16 or BF16) is NaN or infinite:
 * checked on the exponent bits, without widening.
 */
export function checkFiniteHalf(ctx: CheckContext, layer: number, module: LoraModule, which: "A" | "B", bits: Uint16Array, type: number): void {
  const i = native.firstNonFinite(bits, type);
  if (i < 0) return;
  const v = type === GGML_TYPE.BF16 ? bf16ToF32(bits[i]!) : f16ToF32(bits[i]!);
  throw oerr("ADAPTER_NONFINITE", `${ctx.source}: layer ${layer} ${module} ${which}[${i}] is ${v}`, { module, layer, matrix: which, index: i });
}

/** ADAPTER_NONFINITE when any value of `values` is NaN or infinite. */
export function checkFinite(ctx: CheckContext, layer: number, module: LoraModule, which: "A" | "B", values: Float32Array): void {
  const i = native.firstNonFinite(values, GGML_TYPE.F32);
  if (i < 0) return;
  throw oerr("ADAPTER_NONFINITE", `${ctx.source}: layer ${layer} ${module} ${which}[${i}] is ${values[i]}`, { module, layer, matrix: which, index: i });
}

/** ADAPTER_INVALID unless the scale is a finite number. */
export function checkScale(ctx: CheckContext, layer: number, module: LoraModule, scale: number): void {
  if (!Number.isFinite(scale)) {
    throw oerr("ADAPTER_INVALID", `${ctx.source}: layer ${layer} ${module}: scale ${scale} is not finite`, { module, layer });
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
