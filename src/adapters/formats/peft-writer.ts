/**
 * Writes an in-memory adapter as a Hugging Face PEFT LoRA folder (adapter_config.json +
 * adapter_model.safetensors, F32), readable by readPeftAdapter and by PEFT itself.
 *
 * Per module the written rank is the pair's rank and lora_alpha is chosen so that alpha / rank is
 * the pair's scale (for merged adapters scale 1, so alpha = rank). The most common (rank, alpha)
 * becomes `r` / `lora_alpha`; modules that differ get `rank_pattern` / `alpha_pattern` entries
 * keyed by their full module path. For Llama bases B's q/k rows are un-permuted back from the
 * engine's rotary layout to Hugging Face's. Parents go to `openlora_parents`.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { oerr } from "../../errors.js";
import { type SafetensorsTensorSpec, writeSafetensors } from "../../formats/safetensors.js";
import { type BaseModelShape, LORA_MODULES, type LoraAdapterWeights, type LoraModule } from "../types.js";
import { PEFT_MODULE, patternValue, peftModulePath, qkPermuteHeads } from "./common.js";
import { pairF32 } from "../pair-storage.js";
import { toHfRotaryLayout } from "../../model/rotary-layout.js";

export interface PeftWriteMeta {
  /** base_model_name_or_path. */
  baseModel?: string;
  /** Recorded as openlora_parents (read back as LoraAdapter.parents). */
  parents?: Array<{ id: string; weight: number }>;
}

/** The inverse of common.ts's permuteQkRows: engine (rotary pair) layout → Hugging Face layout. */
export function unpermuteQkRows(values: Float32Array, rows: number, cols: number, nHeads: number): Float32Array {
  return toHfRotaryLayout(values, rows, cols, nHeads);
}

/** An alpha with alpha / rank === scale exactly (as the reader computes it), if one is near scale·rank. */
function alphaFor(scale: number, rank: number): number | undefined {
  const guess = scale * rank;
  if (guess / rank === scale) return guess;
  // Walk a few ulps either way.
  const buf = new DataView(new ArrayBuffer(8));
  for (const dir of [1, -1]) {
    let x = guess;
    for (let i = 0; i < 4; i++) {
      buf.setFloat64(0, x);
      const bits = buf.getBigInt64(0);
      buf.setBigInt64(0, bits + BigInt(x >= 0 ? dir : -dir));
      x = buf.getFloat64(0);
      if (x / rank === scale) return x;
    }
  }
  return undefined;
}

function countKey(rank: number, alpha: number): string {
  return `${rank}:${alpha}`;
}

/** Writes the adapter into `dir` (created; an existing adapter_config.json / weights file is replaced). Returns dir. */
export function writePeftAdapterFolder(dir: string, adapter: LoraAdapterWeights, base: BaseModelShape, meta: PeftWriteMeta = {}): string {
  if (adapter.layers.length !== base.nLayers) {
    throw oerr("INVALID_ARGUMENT", `the adapter has ${adapter.layers.length} layers but the base model ${base.nLayers}`);
  }
  const specs: SafetensorsTensorSpec[] = [];
  const modules: Array<{ path: string; rank: number; alpha: number }> = [];
  const targets = new Set<LoraModule>();
  adapter.layers.forEach((layer, l) => {
    for (const m of LORA_MODULES) {
      const p = layer[m];
      if (!p) continue;
      const want = base.modules[m];
      if (p.inDim !== want.inDim || p.outDim !== want.outDim || p.a.length !== p.rank * p.inDim || p.b.length !== p.outDim * p.rank) {
        throw oerr("INVALID_ARGUMENT", `layer ${l} ${m}: A [${p.rank}, ${p.inDim}] / B [${p.outDim}, ${p.rank}] do not fit the base module [${want.outDim}, ${want.inDim}]`);
      }
      const values = pairF32(p);
      let b = values.b;
      let alpha = alphaFor(p.scale, p.rank);
      if (alpha === undefined) {
        // No alpha reproduces the scale exactly: fold it into B (exact up to f32 rounding).
        b = Float32Array.from(b, (x) => x * p.scale);
        alpha = p.rank;
      }
      const heads = qkPermuteHeads(m, base);
      if (heads) b = unpermuteQkRows(b, p.outDim, p.rank, heads);
      const path = peftModulePath(l, m);
      const a = values.a;
      const bb = b;
      specs.push({ name: `base_model.model.${path}.lora_A.weight`, dtype: "F32", shape: [p.rank, p.inDim], data: () => new Uint8Array(a.buffer, a.byteOffset, a.byteLength) });
      specs.push({ name: `base_model.model.${path}.lora_B.weight`, dtype: "F32", shape: [p.outDim, p.rank], data: () => new Uint8Array(bb.buffer, bb.byteOffset, bb.byteLength) });
      modules.push({ path, rank: p.rank, alpha });
      targets.add(m);
    }
  });
  if (modules.length === 0) throw oerr("INVALID_ARGUMENT", "the adapter changes no module: nothing to write");

  // The most common (rank, alpha) is the default; the rest go to the patterns.
  const counts = new Map<string, number>();
  for (const x of modules) counts.set(countKey(x.rank, x.alpha), (counts.get(countKey(x.rank, x.alpha)) ?? 0) + 1);
  const top = modules.find((x) => countKey(x.rank, x.alpha) === [...counts.entries()].sort((p, q) => q[1] - p[1])[0]![0])!;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const x of modules) {
    if (x.rank !== top.rank) rankPattern[x.path] = x.rank;
    if (x.alpha !== top.alpha) alphaPattern[x.path] = x.alpha;
  }
  for (const x of modules) {
    if ((patternValue(rankPattern, x.path) ?? top.rank) !== x.rank || (patternValue(alphaPattern, x.path) ?? top.alpha) !== x.alpha) {
      throw oerr("INTERNAL", `rank/alpha pattern for ${x.path} does not read back`);
    }
  }
  const config: Record<string, unknown> = {
    peft_type: "LORA", task_type: "CAUSAL_LM",
    ...(meta.baseModel !== undefined ? { base_model_name_or_path: meta.baseModel } : {}),
    r: top.rank, lora_alpha: top.alpha, lora_dropout: 0, use_rslora: false, use_dora: false,
    target_modules: LORA_MODULES.filter((m) => targets.has(m)).map((m) => PEFT_MODULE[m].name),
    rank_pattern: rankPattern, alpha_pattern: alphaPattern,
    fan_in_fan_out: false, bias: "none", inference_mode: true,
    ...(meta.parents ? { openlora_parents: meta.parents } : {}),
  };
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.adapter_model.safetensors.tmp-${process.pid}`);
  try {
    writeSafetensors(tmp, specs, { format: "pt" });
    renameSync(tmp, join(dir, "adapter_model.safetensors"));
  } finally {
    rmSync(tmp, { force: true });
  }
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2) + "\n");
  return dir;
}
