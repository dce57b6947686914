/**
 * llama.cpp GGUF LoRA adapters: `general.type` = "adapter", `adapter.type` = "lora",
 * `adapter.lora.alpha`, `general.architecture` equal to the base's; tensors
 * `blk.{L}.{attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down}.weight.lora_a` with ggml dims
 * [in, r] (= A [r, in] row-major) and `.lora_b` with dims [r, out] (= B [out, r]); F32/F16/BF16/Q8_0.
 * Scale as llama.cpp: alpha ? alpha / rank : 1. Llama q/k B rows are already permuted by the
 * converter (like the base weights), so they are used as stored.
 *
 * With a registry root (`opts.root`) the file must resolve inside it (ADAPTER_PATH_OUTSIDE_ROOT);
 * contentHash is the SHA-256 of the bytes parsed here.
 */
import { isOpenLoraError, oerr, quoted } from "../../errors.js";
import { GGML_TYPE, typeName } from "../../formats/ggml-types.js";
import { type FileBytes, openFileBytes } from "../../formats/file-bytes.js";
import { metaNumber, metaString, parseGguf, tensorData, type GgufFile, type GgufTensorInfo } from "../../formats/gguf.js";
import { sha256, sha256Async, toHex } from "../../formats/sha256.js";
import type { BaseModelShape, LoraAdapter, LoraModule } from "../types.js";
import { LORA_MODULES } from "../types.js";
import { checkPairShape, checkScale, confinedPath, emptyLayers, finishWeights, validateAdapterId, type CheckContext } from "../validate.js";
import { GGUF_MODULE, ggufArchitecture, type ReadOptions } from "./common.js";
import { residentPair } from "../pair-storage.js";

const MODULE_BY_GGUF = new Map(LORA_MODULES.map((m) => [GGUF_MODULE[m], m] as const));
const LORA_NAME = /^(.+)\.lora_(a|b)$/;
const BLOCK_NAME = /^blk\.(\d+)\.([a-z0-9_]+)\.weight$/;
const UNSUPPORTED = /^(token_embd|output|tok_embd|position_embd)\.weight$/;
const READABLE = new Set<number>([GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.Q8_0]);

function readBytes(path: string, root: string | undefined): FileBytes {
  try {
    return openFileBytes(path, root !== undefined ? { checkRealPath: (real) => void confinedPath(root, real, path) } : {});
  } catch (e) {
    if (isOpenLoraError(e, "MODEL_NOT_FOUND")) throw oerr("ADAPTER_INVALID", `${path}: ${e.message}`, { path });
    throw e;
  }
}

/** Checks the adapter metadata; returns alpha (0 when absent, as llama.cpp) and the base model name, if any. */
function checkMetadata(file: GgufFile, base: BaseModelShape): { alpha: number; baseModel: string | undefined } {
  const src = file.source;
  const type = metaString(file, "general.type");
  if (type !== "adapter") {
    throw oerr("ADAPTER_INVALID", `${src}: general.type is ${quoted(type ?? null)}, not "adapter" (is this a model rather than a LoRA adapter?)`, { generalType: quoted(type) });
  }
  const adapterType = metaString(file, "adapter.type");
  if (adapterType !== "lora") {
    throw oerr("ADAPTER_INVALID", `${src}: adapter.type is ${quoted(adapterType ?? null)}; only "lora" adapters are supported`, { adapterType: quoted(adapterType) });
  }
  const arch = metaString(file, "general.architecture");
  const want = ggufArchitecture(base.architecture);
  if (arch !== want) {
    throw oerr("ADAPTER_BASE_MISMATCH", `${src}: the adapter is for architecture ${quoted(arch ?? null)} but the base model is ${quoted(want)}`, { adapterArchitecture: quoted(arch), baseArchitecture: want });
  }
  let alpha: number;
  try {
    alpha = metaNumber(file, "adapter.lora.alpha") ?? 0;
  } catch (e) {
    throw oerr("ADAPTER_INVALID", `${src}: adapter.lora.alpha must be a finite number (${(e as Error).message})`);
  }
  const baseModel = metaString(file, "general.base_model.0.name") ?? metaString(file, "general.basename") ?? undefined;
  return { alpha, baseModel };
}

function matrix(ctx: CheckContext, file: GgufFile, t: GgufTensorInfo): { bytes: Uint8Array; type: number; n: number } {
  if (!READABLE.has(t.type)) {
    throw oerr("MODEL_UNSUPPORTED_TENSOR_TYPE", `${ctx.source}: tensor ${quoted(t.name)} is ${typeName(t.type)}; LoRA tensors must be F32, F16, BF16 or Q8_0`, { tensor: quoted(t.name), type: typeName(t.type) });
  }
  return { bytes: tensorData(file, t), type: t.type, n: t.nElements };
}

/** Reads a llama.cpp GGUF LoRA adapter into the engine's layout, checked against the base model. */
export function readGgufLora(path: string, id: string, base: BaseModelShape, opts: ReadOptions): LoraAdapter {
  validateAdapterId(id);
  const bytes = readBytes(path, opts.root);
  return { ...build(bytes, path, id, base, opts), contentHash: toHex(sha256(bytes)) };
}

/** readGgufLora for the engine's loader: the bytes are hashed on the thread pool while they are parsed here. */
export async function loadGgufLora(path: string, id: string, base: BaseModelShape, opts: ReadOptions): Promise<LoraAdapter> {
  validateAdapterId(id);
  const bytes = readBytes(path, opts.root);
  const digest = sha256Async(bytes);
  let adapter: Omit<LoraAdapter, "contentHash">;
  try {
    adapter = build(bytes, path, id, base, opts);
  } catch (e) {
    digest.catch(() => {});
    throw e;
  }
  return { ...adapter, contentHash: toHex(await digest) };
}

function build(bytes: FileBytes, path: string, id: string, base: BaseModelShape, opts: ReadOptions): Omit<LoraAdapter, "contentHash"> {
  const file = parseGguf(bytes, path);
  const { alpha, baseModel } = checkMetadata(file, base);
  const ctx: CheckContext = { source: file.source, base, maxRank: opts.maxRank };

  const pairs = new Map<string, { a?: GgufTensorInfo; b?: GgufTensorInfo }>();
  for (const t of file.tensors) {
    const m = LORA_NAME.exec(t.name);
    if (!m) throw oerr("ADAPTER_INVALID", `${file.source}: tensor ${quoted(t.name)} is not a LoRA tensor (names end in .lora_a / .lora_b)`, { tensor: quoted(t.name) });
    const entry = pairs.get(m[1]!) ?? {};
    if (m[2] === "a") entry.a = t;
    else entry.b = t;
    pairs.set(m[1]!, entry);
  }

  const layers = emptyLayers(base);
  for (const [target, { a, b }] of pairs) {
    if (UNSUPPORTED.test(target)) {
      throw oerr("ADAPTER_UNSUPPORTED_MODULE", `${file.source}: LoRA on ${quoted(target)} (embeddings / output head) is not supported`, { tensor: quoted(target) });
    }
    const bm = BLOCK_NAME.exec(target);
    const module: LoraModule | undefined = bm ? MODULE_BY_GGUF.get(bm[2]!) : undefined;
    if (!bm || !module) {
      throw oerr("ADAPTER_UNSUPPORTED_MODULE", `${file.source}: LoRA on ${quoted(target)} is not supported (only attn_q/k/v/output and ffn_gate/up/down)`, { tensor: quoted(target) });
    }
    if (!a || !b) {
      throw oerr("ADAPTER_INVALID", `${file.source}: ${quoted(target)} has lora_${a ? "a" : "b"} but no lora_${a ? "b" : "a"}`, { tensor: quoted(target) });
    }
    const layer = Number(bm[1]);
    // ggml dims are fastest-first: lora_a [in, r] is A [r, in]; lora_b [r, out] is B [out, r].
    const aShape = [...a.dims].reverse();
    const bShape = [...b.dims].reverse();
    const { rank, inDim, outDim } = checkPairShape(ctx, layer, module, aShape, bShape);
    const scale = alpha ? alpha / rank : 1;
    checkScale(ctx, layer, module, scale);
    const m = residentPair(ctx, layer, module, matrix(ctx, file, a), matrix(ctx, file, b));
    layers[layer]![module] = { rank, inDim, outDim, a: m.a, b: m.b, dtype: m.dtype, scale };
  }

  const { weights, targetModules } = finishWeights(ctx, layers);
  return { id, format: "gguf", path, baseModel, targetModules, weights };
}
