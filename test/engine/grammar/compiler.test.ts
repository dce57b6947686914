/**
 * ConstraintCompiler and ConstraintMatcher contracts on the real Llama 3 vocabulary: rejection of
 * bad specs (and that a rejection leaves the compiler working), the cache, accept() of a
 * disallowed token, termination, determinism across runs and compilers, dispose.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { isOpenLoraError } from "../../../src/errors.js";
import { ConstraintCompiler, allowedIds, type ConstraintSpec } from "../../../src/engine/grammar/index.js";
import type { Tokenizer } from "../../../src/tokenizer/tokenizer.js";
import { SPECS } from "./fixtures.js";
import { loadTokenizer, randomWalk } from "./walk.js";

let tok: Tokenizer;
let cc: ConstraintCompiler;

beforeAll(async () => {
  tok = loadTokenizer("llama3");
  cc = await ConstraintCompiler.create(tok);
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return isOpenLoraError(e) ? e.code : `not an OpenLoraError: ${String(e)}`;
  }
}

describe("compile rejects what xgrammar cannot compile, with INVALID_ARGUMENT", () => {
  const bad: [string, ConstraintSpec][] = [
    ["schema: type is not a string", { kind: "json_schema", schema: { type: 42 } }],
    ["schema: unknown type", { kind: "json_schema", schema: { type: "tuple" } }],
    ["schema: minItems > maxItems", { kind: "json_schema", schema: { type: "array", minItems: 5, maxItems: 2 } }],
    ["schema: dangling $ref", { kind: "json_schema", schema: { $ref: "#/$defs/missing" } }],
    ["schema: bad string pattern", { kind: "json_schema", schema: { type: "string", pattern: "(" } }],
    ["regex: unclosed group", { kind: "regex", pattern: "(ab" }],
    ["regex: lookahead", { kind: "regex", pattern: "(?=a)a" }],
    ["regex: backreference", { kind: "regex", pattern: "(a)\\1" }],
    ["grammar: syntax", { kind: "grammar", grammar: "root ::= (" }],
    ["grammar: undefined rule", { kind: "grammar", grammar: "root ::= item" }],
    ["grammar: no root rule", { kind: "grammar", grammar: 'start ::= "a"' }],
  ];
  it.each(bad)("%s", async (_, spec) => {
    expect(await code(cc.compile(spec))).toBe("INVALID_ARGUMENT");
  });

  it("names the problem in the message", async () => {
    await expect(cc.compile({ kind: "regex", pattern: "(ab" })).rejects.toThrow(/regex.*parenthesis/i);
    await expect(cc.compile({ kind: "grammar", grammar: "root ::= item" })).rejects.toThrow(/item/);
  });

  it("leaves the compiler working, with the same masks as before", async () => {
    const spec: ConstraintSpec = { kind: "json_schema", schema: { type: "object", properties: { a: { type: "integer" } }, required: ["a"] } };
    const before = randomWalk(tok, (await cc.compile(spec)).matcher(), cc.maskWords, 7);
    for (const [, s] of bad) await code(cc.compile(s));
    const fresh = await ConstraintCompiler.create(tok);
    const after = randomWalk(tok, (await fresh.compile(spec)).matcher(), fresh.maskWords, 7);
    const again = randomWalk(tok, (await cc.compile(spec)).matcher(), cc.maskWords, 7);
    expect(after.maskDigest).toBe(before.maskDigest);
    expect(again.maskDigest).toBe(before.maskDigest);
    fresh.dispose();
  });
});

describe("the compile cache", () => {
  it("returns the same compiled object for the same spec, also from an equal copy", async () => {
    const a = await cc.compile(SPECS.json_schema);
    expect(await cc.compile(SPECS.json_schema)).toBe(a);
    expect(await cc.compile(structuredClone(SPECS.json_schema))).toBe(a);
    expect(await cc.compile({ kind: "json_object" })).toBe(await cc.compile({ kind: "json_object" }));
  });

  it("keeps schemas that differ only in key order apart (xgrammar emits properties in order)", async () => {
    const ab = await cc.compile({ kind: "json_schema", schema: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["a", "b"] } });
    const ba = await cc.compile({ kind: "json_schema", schema: { type: "object", properties: { b: { type: "integer" }, a: { type: "integer" } }, required: ["a", "b"] } });
    expect(ba).not.toBe(ab);
    const text = (c: typeof ab): string => randomWalk(tok, c.matcher(), cc.maskWords, 3).text;
    expect(Object.keys(JSON.parse(text(ab)) as object)).toEqual(["a", "b"]);
    expect(Object.keys(JSON.parse(text(ba)) as object)).toEqual(["b", "a"]);
  });

  it("is bounded: the least recently used spec is evicted; an evicted grammar's matchers keep working", async () => {
    const small = await ConstraintCompiler.create(tok, { cacheSize: 2 });
    const specs: ConstraintSpec[] = ["a", "b", "c"].map((c) => ({ kind: "regex", pattern: `${c}+` }));
    const a = await small.compile(specs[0]!);
    const live = a.matcher();
    await small.compile(specs[1]!);
    expect(await small.compile(specs[0]!)).toBe(a); // refreshes a
    await small.compile(specs[2]!); // evicts b
    expect(await small.compile(specs[0]!)).toBe(a);
    const b2 = await small.compile(specs[1]!); // evicts c
    expect(await small.compile(specs[1]!)).toBe(b2);
    await small.compile(specs[2]!); // evicts a
    expect(await small.compile(specs[0]!)).not.toBe(a);
    const r = randomWalk(tok, live, small.maskWords, 1);
    expect(r.text).toMatch(/^a+$/);
    small.dispose();
  });
});

describe("the matcher", () => {
  it("accept() of a disallowed token returns false and changes nothing", async () => {
    const m = (await cc.compile(SPECS.json_schema)).matcher();
    const mask = new Int32Array(cc.maskWords);
    for (const id of tok.encode('{"id"', { addSpecial: false })) expect(m.accept(id)).toBe(true);
    m.fillMask(mask);
    const before = mask.slice();
    const allowed = new Set(allowedIds(before));
    const disallowed = [tok.encode("hello", { addSpecial: false })[0]!, tok.eosIds[0]!, 128000, -1, 1.5, cc.vocabSize, 1e9];
    for (const id of disallowed) {
      expect(allowed.has(id)).toBe(false);
      expect(m.accept(id)).toBe(false);
    }
    expect(m.isTerminated()).toBe(false);
    m.fillMask(mask);
    expect(mask).toEqual(before);
    // A matcher that never computed its mask rejects the same way, and stays at the start.
    const fresh = (await cc.compile(SPECS.json_schema)).matcher();
    expect(fresh.accept(tok.encode("hello", { addSpecial: false })[0]!)).toBe(false);
    expect(fresh.accept(tok.encode("{", { addSpecial: false })[0]!)).toBe(true);
    m.dispose();
    fresh.dispose();
  });

  it("isTerminated(): only a stop token may follow, then ended after it; masks to match", async () => {
    const m = (await cc.compile({ kind: "choice", choices: ["no", "nothing"] })).matcher();
    const mask = new Int32Array(cc.maskWords);
    const [no] = tok.encode("no", { addSpecial: false });
    expect(m.accept(no!)).toBe(true);
    expect(m.isTerminated()).toBe(false); // "nothing" may still follow; so may a stop token
    m.fillMask(mask);
    expect(allowedIds(mask)).toEqual(expect.arrayContaining([...tok.eosIds]));
    for (const id of tok.encode("thing", { addSpecial: false })) expect(m.accept(id)).toBe(true);
    expect(m.isTerminated()).toBe(true);
    m.fillMask(mask);
    expect(allowedIds(mask)).toEqual([...tok.eosIds]);
    expect(m.accept(tok.eosIds[0]!)).toBe(true);
    expect(m.isTerminated()).toBe(true);
    m.fillMask(mask);
    expect(allowedIds(mask)).toEqual([]);
    expect(m.accept(tok.eosIds[0]!)).toBe(false);
    expect(tok.decode([no!, ...tok.encode("thing", { addSpecial: false })])).toBe("nothing");
    m.dispose();
  });

  it("rejects a mask of the wrong length; dispose is idempotent and later calls fail cleanly", async () => {
    const m = (await cc.compile(SPECS.regex)).matcher();
    expect(() => m.fillMask(new Int32Array(cc.maskWords - 1))).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    m.dispose();
    m.dispose();
    expect(() => m.fillMask(new Int32Array(cc.maskWords))).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => m.accept(0)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("gives identical masks on every run, compiler and cache state", async () => {
    const other = await ConstraintCompiler.create(tok);
    for (const spec of Object.values(SPECS)) {
      const c1 = await cc.compile(spec);
      const c2 = await other.compile(structuredClone(spec));
      const runs = [randomWalk(tok, c1.matcher(), cc.maskWords, 11), randomWalk(tok, c1.matcher(), cc.maskWords, 11), randomWalk(tok, c2.matcher(), other.maskWords, 11)];
      expect(runs[1]).toEqual(runs[0]);
      expect(runs[2]).toEqual(runs[0]);
    }
    other.dispose();
  });

  it("compile fails cleanly after dispose", async () => {
    const c = await ConstraintCompiler.create(tok);
    const compiled = await c.compile(SPECS.choice);
    const m = compiled.matcher();
    c.dispose();
    c.dispose();
    expect(await code(c.compile(SPECS.choice))).toBe("INVALID_ARGUMENT");
    // A live matcher outlives its compiler.
    expect(randomWalk(tok, m, c.maskWords, 2).text.length).toBeGreaterThan(0);
    m.dispose();
  });
});
