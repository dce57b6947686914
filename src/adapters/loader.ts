/**
 * Reads a registered adapter's files into host memory, by format, validated against the base
 * model. The adapter cache calls this (just in time); the CLI uses it through the cache too.
 */
import { existsSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { oerr, quoted } from "../errors.js";
import type { AdapterLoader } from "./cache.js";
import { loadGgufLora } from "./formats/gguf-lora.js";
import { loadPeftAdapter } from "./formats/peft.js";
import type { AdapterRegistry, AdapterSource } from "./registry.js";
import type { BaseModelShape } from "./types.js";

/** Default largest rank accepted (an adapter above it is ADAPTER_RANK_TOO_LARGE). */
export const DEFAULT_MAX_LORA_RANK = 256;

export function createAdapterLoader(base: BaseModelShape, opts: { maxRank?: number } = {}): AdapterLoader {
  const maxRank = opts.maxRank ?? DEFAULT_MAX_LORA_RANK;
  return async (entry) => {
    const { format, path, root } = entry.source;
    const read = { maxRank, ...(root !== undefined ? { root } : {}) };
    return format === "peft" ? loadPeftAdapter(path, entry.id, base, read) : loadGgufLora(path, entry.id, base, read);
  };
}

/** What a path on disk holds: a PEFT folder or a GGUF LoRA file; `root`: the adapters folder it must stay in. */
export function adapterSourceAt(path: string, root?: string): AdapterSource {
  const abs = resolve(path);
  if (!existsSync(abs)) throw oerr("ADAPTER_NOT_FOUND", `${path} does not exist`);
  const r = root !== undefined ? { root } : {};
  if (statSync(abs).isDirectory()) return { format: "peft", path: abs, ...r };
  if (abs.toLowerCase().endsWith(".gguf")) return { format: "gguf", path: abs, ...r };
  throw oerr("ADAPTER_INVALID", `${path} is neither a PEFT adapter folder nor a .gguf LoRA file`);
}

/**
 * Resolves a user's `--adapter` value: a registered id, or else a path, registered under its
 * file or folder name (without .gguf). Returns the id.
 */
export function resolveAdapterRef(registry: AdapterRegistry, ref: string): string {
  if (registry.has(ref)) return ref;
  if (!existsSync(ref)) throw oerr("ADAPTER_NOT_FOUND", `no adapter ${quoted(ref)} is registered and no such path exists`, { adapter: ref });
  const source = adapterSourceAt(ref);
  const id = basename(source.path).replace(/\.gguf$/i, "");
  const existing = registry.get(id);
  if (existing) {
    if (existing.source.path === source.path) return id;
    throw oerr("ADAPTER_ALREADY_EXISTS", `an adapter named ${quoted(id)} is already registered from ${existing.source.path}`);
  }
  registry.register(id, source);
  return id;
}

/** Parses `<id or path>[=<weight>]`; the weight must be a finite number (default 1). */
export function parseAdapterArg(arg: string): { ref: string; weight: number } {
  const eq = arg.lastIndexOf("=");
  if (eq > 0) {
    const w = Number(arg.slice(eq + 1));
    if (arg.slice(eq + 1).trim() !== "" && Number.isFinite(w)) return { ref: arg.slice(0, eq), weight: w };
  }
  return { ref: arg, weight: 1 };
}
