/**
 * Loads the native kernel addon (build/Release/openlora_native.node) and exposes it typed, with
 * small helpers for ggml type layouts and fp16/bf16 conversion.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { OpenLoraError } from "../errors.js";
import { NATIVE_FUNCTIONS, type OpenLoraNative } from "./binding.js";

export { NATIVE_FUNCTIONS } from "./binding.js";
export type { KernelImpl, LoraPath, LoraTerms, OpenLoraNative } from "./binding.js";

/** The package root: the nearest folder above this file holding package.json (works from src/ and dist/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new OpenLoraError("NATIVE_UNAVAILABLE", "cannot find the openlora package root (package.json)");
    dir = up;
  }
}

/** Absolute path of the addon binary. */
export function addonPath(): string {
  return join(packageRoot(), "build", "Release", "openlora_native.node");
}

function load(): OpenLoraNative {
  let path = "(unknown)";
  try {
    path = addonPath();
    const require = createRequire(import.meta.url);
    const mod = require(path) as Record<string, unknown>;
    for (const name of NATIVE_FUNCTIONS) {
      if (typeof mod[name] !== "function") throw new Error(`the addon lacks ${name}() (stale build?)`);
    }
    return mod as unknown as OpenLoraNative;
  } catch (e) {
    if (e instanceof OpenLoraError) throw e;
    throw new OpenLoraError(
      "NATIVE_UNAVAILABLE",
      `cannot load the native addon ${path}: ${(e as Error).message}. Build it with \`npm run build:native\`.`,
      { path },
      { cause: e },
    );
  }
}

/** The addon. Importing this module throws OpenLoraError NATIVE_UNAVAILABLE when it cannot load. */
export const native: OpenLoraNative = load();

// Type ids and block layouts live in one table, shared with the file formats.
export { blockBytes, blockSize, GGML_TYPE, rowBytes } from "../formats/ggml-types.js";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 → IEEE half bits, round to nearest even (same as the native conversion). */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const a = x & 0x7fffffff;
  if (a >= 0x7f800000) return a === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a < 0x38800000) {
    if (a < 0x33000000) return sign;
    const e = a >>> 23;
    const m = (a & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1) !== 0)) r++;
    return sign | r;
  }
  let r = (a >>> 13) - (112 << 10);
  const rem = a & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) !== 0)) r++;
  return sign | r;
}

/** IEEE half bits → number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  if (exp === 0) return sign * man * 2 ** -24;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** f32 → bf16 bits, round to nearest even. */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits → number. */
export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}
