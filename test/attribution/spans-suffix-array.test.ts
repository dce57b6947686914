/** SA-IS against a plain comparison sort of all suffixes. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildSuffixArray } from "../../src/attribution/spans/suffix-array.js";
import { isOpenLoraError } from "../../src/errors.js";

function naiveSuffixArray(text: Int32Array): number[] {
  const n = text.length;
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    while (a < n && b < n) {
      if (text[a] !== text[b]) return text[a]! - text[b]!;
      a++;
      b++;
    }
    return a === n ? -1 : 1; // the shorter suffix (a proper prefix) sorts first
  });
}

describe("buildSuffixArray (SA-IS)", () => {
  it("matches a naive sort on random texts over small and large alphabets", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }).chain((k) =>
          fc.tuple(fc.constant(k), fc.array(fc.integer({ min: 0, max: k - 1 }), { maxLength: 200 }))),
        ([k, values]) => {
          const text = Int32Array.from(values);
          expect([...buildSuffixArray(text, k)]).toEqual(naiveSuffixArray(text));
        },
      ),
      { numRuns: 500, seed: 6 },
    );
  });

  it("handles the texts that recurse deepest: runs, periods, Fibonacci words", () => {
    const fib = (len: number): number[] => {
      let a = [0], b = [0, 1];
      while (b.length < len) [a, b] = [b, [...b, ...a]];
      return b.slice(0, len);
    };
    const cases: number[][] = [
      [], [0], [3, 3], Array(100).fill(7), Array.from({ length: 99 }, (_, i) => i % 3),
      Array.from({ length: 120 }, (_, i) => (i % 2 ? 5 : 1)), fib(200), [...fib(50), ...fib(50), 2],
      Array.from({ length: 64 }, (_, i) => 63 - i), Array.from({ length: 64 }, (_, i) => i),
    ];
    for (const values of cases) {
      const text = Int32Array.from(values);
      expect([...buildSuffixArray(text, 8 + 56)]).toEqual(naiveSuffixArray(text));
    }
  });

  it("rejects symbols outside the alphabet", () => {
    let error: unknown;
    try {
      buildSuffixArray(Int32Array.from([0, 4, 1]), 4);
    } catch (e) {
      error = e;
    }
    expect(isOpenLoraError(error, "INVALID_ARGUMENT")).toBe(true);
  });
});
