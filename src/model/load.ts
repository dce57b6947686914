/**
 * Opens a model from a GGUF file or a Hugging Face folder (config.json, model.safetensors or a
 * sharded index, tokenizer.json, tokenizer_config.json). Everything is validated before the
 * native kernels see a byte.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { folderHashFiles } from "../attribution/content-hash.js";
import { oerr, quoted } from "../errors.js";
import { type FileBytes, openFileBytes } from "../formats/file-bytes.js";
import { parseGguf } from "../formats/gguf.js";
import { jsonErrorWhere } from "../formats/json.js";
import { parseSafetensors, type SafetensorsFile } from "../formats/safetensors.js";
import { type Hex, hashOfDigests, sha256, sha256File, toHex } from "../formats/sha256.js";
import { tokenizerFromGguf } from "../tokenizer/gguf-vocab.js";
import { tokenizerFromHfFiles } from "../tokenizer/hf.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { configFromGguf, configFromHf, type ModelConfig } from "./config.js";
import { LlamaModel } from "./llama.js";
import { type LoadQuantization, type ModelWeights, weightsFromGguf, weightsFromSafetensors } from "./weights.js";

export interface LoadOptions {
  /** Quantize a float model's matrices at load (Hugging Face folders and float GGUF files). */
  quantize?: LoadQuantization;
  /** Touch every weight page now (with progress) instead of on first use. Default true. */
  prefault?: boolean;
  /**
   * Compute `contentHash` from the bytes loaded (SHA-256 at about 2 GB/s with SHA-NI; the engine
   * thread does, for its EngineInfo). Default false.
   */
  hash?: boolean;
  onProgress?: (fraction: number, message: string) => void;
}

export interface LoadedModel {
  /** A stable id: the file or folder name. */
  id: string;
  path: string;
  format: "gguf" | "hf";
  config: ModelConfig;
  model: LlamaModel;
  tokenizer: Tokenizer;
  /** Bytes of all weight matrices as used by the kernels. */
  weightBytes: number;
  /**
   * With `hash`: the content hash of the files as loaded, by the rule of
   * src/attribution/content-hash.ts — a GGUF file's SHA-256 of the bytes parsed; a Hugging Face
   * folder's SHA-256 over the SHA-256s of its top-level .json and .safetensors files in name order,
   * those the loader read taken from the bytes it parsed, the others (e.g. generation_config.json)
   * read for the hash alone.
   */
  contentHash?: Hex;
}

/** SHA-256s of the bytes read from a folder's top-level files, by file name (when hashing). */
type Digests = Map<string, Buffer> | undefined;

function record(digests: Digests, dir: string, path: string, bytes: FileBytes): void {
  if (digests && resolve(dirname(path)) === resolve(dir)) digests.set(basename(path), sha256(bytes));
}

function folderHash(dir: string, digests: Map<string, Buffer>): Hex {
  const names = folderHashFiles(dir);
  return hashOfDigests(names.map((n) => digests.get(n) ?? sha256File(join(dir, n))));
}

function readJson(path: string, code: "MODEL_CONFIG_INVALID" | "TOKENIZER_INVALID", dir: string, digests: Digests): Record<string, unknown> {
  let text: string;
  try {
    const bytes = readFileSync(path);
    record(digests, dir, path, bytes);
    text = bytes.toString("utf8");
  } catch (e) {
    throw oerr(code, `${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw oerr(code, `${path}: invalid JSON (${e instanceof SyntaxError ? jsonErrorWhere(e) : "not an object"})`);
  }
}

function openRecorded(path: string, dir: string, digests: Digests): FileBytes {
  const bytes = openFileBytes(path);
  record(digests, dir, path, bytes);
  return bytes;
}

function loadSafetensorsSet(dir: string, digests: Digests): SafetensorsFile[] {
  const single = join(dir, "model.safetensors");
  if (existsSync(single)) return [parseSafetensors(openRecorded(single, dir, digests), single)];
  const indexPath = join(dir, "model.safetensors.index.json");
  if (!existsSync(indexPath)) throw oerr("MODEL_NOT_FOUND", `${dir}: neither model.safetensors nor model.safetensors.index.json exists`);
  const index = readJson(indexPath, "MODEL_CONFIG_INVALID", dir, digests);
  const map = index.weight_map;
  if (typeof map !== "object" || map === null) throw oerr("MODEL_CONFIG_INVALID", `${indexPath}: weight_map is missing`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  const root = resolve(dir) + sep;
  return shards.map((shard) => {
    if (typeof shard !== "string") throw oerr("MODEL_CONFIG_INVALID", `${indexPath}: shard names must be strings`);
    const p = resolve(dir, shard);
    if (!p.startsWith(root)) throw oerr("MODEL_CONFIG_INVALID", `${indexPath}: shard ${quoted(shard)} lies outside the model folder`);
    return parseSafetensors(openRecorded(p, dir, digests), p);
  });
}

function matrixBytes(w: ModelWeights): number {
  let n = w.embedding.data.byteLength + (w.output === w.embedding ? 0 : w.output.data.byteLength);
  for (const l of w.layers) {
    for (const m of [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown]) n += m.data.byteLength;
  }
  return n;
}

/** Reads one byte per page so the OS maps the weights in now, reporting progress. */
function prefault(w: ModelWeights, onProgress?: LoadOptions["onProgress"]): void {
  const mats = [w.embedding, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown]), w.output];
  const total = mats.reduce((a, m) => a + m.data.byteLength, 0);
  let done = 0;
  let sink = 0;
  let lastReport = 0;
  for (const m of mats) {
    const d = m.data;
    for (let i = 0; i < d.length; i += 4096) sink ^= d[i]!;
    done += d.byteLength;
    if (onProgress && (done - lastReport > total / 50 || done === total)) {
      lastReport = done;
      onProgress(done / total, "mapping weights");
    }
  }
  if (sink === -1) throw new Error("unreachable");
}

export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (!existsSync(path)) throw oerr("MODEL_NOT_FOUND", `${path} does not exist`);
  const isDir = statSync(path).isDirectory();
  let config: ModelConfig;
  let weights: ModelWeights;
  let tokenizer: Tokenizer;
  let contentHash: Hex | undefined;
  opts.onProgress?.(0, "reading header");
  if (!isDir) {
    const bytes = openFileBytes(path);
    if (opts.hash) contentHash = toHex(sha256(bytes));
    const file = parseGguf(bytes, path);
    tokenizer = tokenizerFromGguf(file.metadata, path);
    config = configFromGguf(file, tokenizer.vocabSize);
    weights = weightsFromGguf(file, config, opts.quantize);
  } else {
    const cfgPath = join(path, "config.json");
    if (!existsSync(cfgPath)) throw oerr("MODEL_CONFIG_INVALID", `${path}: config.json is missing`);
    const digests: Digests = opts.hash ? new Map() : undefined;
    config = configFromHf(readJson(cfgPath, "MODEL_CONFIG_INVALID", path, digests), cfgPath);
    const tokPath = join(path, "tokenizer.json");
    if (!existsSync(tokPath)) throw oerr("TOKENIZER_MISSING", `${path}: tokenizer.json is missing`);
    const tokCfgPath = join(path, "tokenizer_config.json");
    tokenizer = tokenizerFromHfFiles(readJson(tokPath, "TOKENIZER_INVALID", path, digests),
      existsSync(tokCfgPath) ? readJson(tokCfgPath, "TOKENIZER_INVALID", path, digests) : undefined);
    weights = weightsFromSafetensors(loadSafetensorsSet(path, digests), config, path, opts.quantize);
    if (digests) contentHash = folderHash(path, digests);
  }
  if (tokenizer.vocabSize > config.vocabSize) {
    throw oerr("MODEL_CONFIG_INVALID", `${path}: tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocabSize}`);
  }
  if (opts.prefault ?? true) prefault(weights, opts.onProgress);
  opts.onProgress?.(1, "ready");
  return {
    id: basename(path).replace(/\.gguf$/i, ""),
    path,
    format: isDir ? "hf" : "gguf",
    config,
    model: new LlamaModel(config, weights),
    tokenizer,
    weightBytes: matrixBytes(weights),
    ...(contentHash !== undefined ? { contentHash } : {}),
  };
}
