/**
 * No module of src/ reaches itself through runtime imports (static, re-exports and dynamic
 * `import()`; `import type` is erased and does not count). A cycle makes evaluation order depend
 * on which module is loaded first, and it is how "leaf" modules end up pulling in the world.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "..", "..", "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : [];
  });
}

/** Relative runtime imports of one file, resolved to .ts paths. */
export function runtimeImports(file: string, text: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /^\s*import\s+(?!type\b)[^;]*?\bfrom\s+["']([^"']+)["']/gms,
    /^\s*import\s+["']([^"']+)["']/gm,
    /^\s*export\s+(?!type\b)[^;]*?\bfrom\s+["']([^"']+)["']/gms,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) specs.push(m[1]!);
  return specs.filter((s) => s.startsWith(".")).map((s) => resolve(dirname(file), s.replace(/\.js$/, ".ts")));
}

/** Strongly connected components with more than one member, or a self-import (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; on.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc);
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe("src/ import graph", () => {
  it("has no runtime import cycle", () => {
    const graph = new Map(sources(SRC).map((f) => [f, runtimeImports(f, readFileSync(f, "utf8"))] as const));
    expect(graph.size).toBeGreaterThan(50);
    const found = cycles(graph).map((scc) => scc.map((f) => relative(SRC, f)).sort());
    expect(found).toEqual([]);
  });

  it("finds a cycle when there is one (the check can fail)", () => {
    const a = join(SRC, "a.ts");
    const b = join(SRC, "b.ts");
    const graph = new Map([[a, runtimeImports(a, 'import { x } from "./b.js";')], [b, runtimeImports(b, 'const m = await import("./a.js");')]]);
    expect(cycles(graph)).toHaveLength(1);
    const typeOnly = new Map([[a, runtimeImports(a, 'import type { X } from "./b.js";')], [b, runtimeImports(b, 'import { y } from "./a.js";')]]);
    expect(cycles(typeOnly)).toEqual([]);
  });
});
