/** The pure-TypeScript parts: spec validation, cache keys, mask helpers, vocabulary type detection. */
import { describe, expect, it } from "vitest";
import { mulberry32 } from "../../../src/synth/random.js";
import {
  MAX_CHOICES, allowedIds, applyMask, constraintKey, detectVocabType, isAllowed, maskWords, validateConstraintSpec,
} from "../../../src/engine/grammar/index.js";

const invalid = (x: unknown): string | undefined => {
  try {
    validateConstraintSpec(x);
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe("validateConstraintSpec", () => {
  it("accepts every kind and returns a fresh copy", () => {
    const schema = { type: "object", properties: { a: { type: "integer" } } };
    const v = validateConstraintSpec({ kind: "json_schema", schema });
    expect(v).toEqual({ kind: "json_schema", schema });
    expect((v as { schema: unknown }).schema).not.toBe(schema);
    expect(validateConstraintSpec({ kind: "json_object" })).toEqual({ kind: "json_object" });
    expect(validateConstraintSpec({ kind: "regex", pattern: "a+" })).toEqual({ kind: "regex", pattern: "a+" });
    expect(validateConstraintSpec({ kind: "choice", choices: ["x", "y"] })).toEqual({ kind: "choice", choices: ["x", "y"] });
    expect(validateConstraintSpec({ kind: "grammar", grammar: 'root ::= "a"' })).toEqual({ kind: "grammar", grammar: 'root ::= "a"' });
  });

  it.each([
    ["not an object", "json_object"],
    ["null", null],
    ["an unknown kind", { kind: "lark", grammar: "x" }],
    ["no kind", { pattern: "a" }],
    ["an extra field", { kind: "json_object", schema: {} }],
    ["a schema that is not an object", { kind: "json_schema", schema: "{}" }],
    ["a schema that is an array", { kind: "json_schema", schema: [] }],
    ["a schema JSON cannot carry", { kind: "json_schema", schema: { n: 1n } }],
    ["a schema over the size limit", { kind: "json_schema", schema: { description: "x".repeat(70_000) } }],
    ["an empty pattern", { kind: "regex", pattern: "" }],
    ["a pattern that is not a string", { kind: "regex", pattern: 5 }],
    ["a lone surrogate", { kind: "regex", pattern: "a\uD800" }],
    ["no choices", { kind: "choice", choices: [] }],
    ["an empty choice", { kind: "choice", choices: ["a", ""] }],
    ["a choice that is not a string", { kind: "choice", choices: ["a", 1] }],
    ["too many choices", { kind: "choice", choices: Array.from({ length: MAX_CHOICES + 1 }, (_, i) => `c${i}`) }],
    ["an empty grammar", { kind: "grammar", grammar: "" }],
  ])("rejects %s with INVALID_ARGUMENT", (_, x) => {
    expect(invalid(x)).toBe("INVALID_ARGUMENT");
  });
});

describe("constraintKey", () => {
  it("is equal for equal specs and keeps key order inside a schema", () => {
    const a = { kind: "json_schema" as const, schema: { properties: { x: {}, y: {} } } };
    expect(constraintKey(a)).toBe(constraintKey(structuredClone(a)));
    expect(constraintKey(a)).not.toBe(constraintKey({ kind: "json_schema", schema: { properties: { y: {}, x: {} } } }));
    expect(constraintKey({ kind: "regex", pattern: "a" })).not.toBe(constraintKey({ kind: "grammar", grammar: "a" }));
    expect(constraintKey({ kind: "choice", choices: ["a,b"] })).not.toBe(constraintKey({ kind: "choice", choices: ["a", "b"] }));
  });
});

describe("mask helpers", () => {
  it("applyMask sets exactly the disallowed logits to -Infinity, ids past the mask included", () => {
    const rng = mulberry32(5);
    for (const n of [1, 31, 32, 33, 100, 1000]) {
      const words = maskWords(n);
      const mask = new Int32Array(words);
      for (let w = 0; w < words; w++) mask[w] = [0, -1, (rng() * 2 ** 32) | 0][w % 3]!;
      const logits = Float32Array.from({ length: n }, () => rng() * 10 - 5);
      const orig = logits.slice();
      applyMask(logits, mask);
      for (let id = 0; id < n; id++) expect(logits[id]).toBe(isAllowed(mask, id) ? orig[id] : -Infinity);
      const short = Float32Array.from(orig);
      applyMask(short, mask.subarray(0, Math.max(0, words - 1)));
      for (let id = Math.max(0, words - 1) * 32; id < n; id++) expect(short[id]).toBe(-Infinity);
    }
  });

  it("allowedIds lists set bits in order, bit 31 included", () => {
    const mask = new Int32Array(3);
    for (const id of [0, 5, 31, 32, 63, 64, 90]) mask[id >> 5]! |= 1 << (id & 31);
    expect(allowedIds(mask)).toEqual([0, 5, 31, 32, 63, 64, 90]);
    expect(allowedIds(mask, 64)).toEqual([0, 5, 31, 32, 63]);
  });
});

describe("detectVocabType", () => {
  it("tells byte-level BPE, SentencePiece byte fallback and raw vocabularies apart", () => {
    const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    expect(detectVocabType(["<unk>", "<s>", "</s>", ...bytes, "\u2581the"])).toBe("BYTE_FALLBACK");
    expect(detectVocabType(["!", "\u0120", "\u010a", "\u0120the"])).toBe("BYTE_LEVEL");
    expect(detectVocabType(["a", "b", " the", undefined])).toBe("RAW");
  });
});
