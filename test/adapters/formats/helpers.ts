import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { baseShapeOf } from "../../../src/adapters/base-shape.js";
import type { BaseModelShape, LoraAdapter, LoraModule, LoraPair } from "../../../src/adapters/types.js";
import { LORA_MODULES } from "../../../src/adapters/types.js";
import { isOpenLoraError, type ErrorCode } from "../../../src/errors.js";
import { parseGguf } from "../../../src/formats/gguf.js";
import { configFromGguf } from "../../../src/model/config.js";
import { writeGgufModel } from "../../../src/synth/synthesize.js";

const shapes = new Map<string, BaseModelShape>();

/** The base shape the engine derives for a synthetic preset (through a real GGUF model file). */
export function presetShape(dir: string, preset: string): BaseModelShape {
  let s = shapes.get(preset);
  if (!s) {
    const path = writeGgufModel(join(dir, `${preset}-base.gguf`), preset, { seed: 1, type: "q8_0" });
    s = baseShapeOf(configFromGguf(parseGguf(readFileSync(path), path)));
    shapes.set(preset, s);
  }
  return s;
}

export function expectCode(fn: () => unknown, code: ErrorCode): Record<string, unknown> | undefined {
  let thrown: unknown;
  try { fn(); } catch (e) { thrown = e; }
  expect(isOpenLoraError(thrown), `expected ${code}, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code, String(thrown)).toBe(code);
  return (thrown as { details?: Record<string, unknown> }).details;
}

/** Every (layer, module, pair) of an adapter. */
export function pairsOf(a: LoraAdapter): Array<[number, LoraModule, LoraPair]> {
  const out: Array<[number, LoraModule, LoraPair]> = [];
  a.weights.layers.forEach((layer, l) => {
    for (const m of LORA_MODULES) if (layer[m]) out.push([l, m, layer[m]!]);
  });
  return out;
}

export function editJson(path: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}
