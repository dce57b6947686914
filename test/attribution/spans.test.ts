/** Span search and evidence against a brute-force reference on random small corpora. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_MAX_SOURCES, SpanIndex, SpanIndexSet, delimiterPredicate, findSpanEvidence, sentenceDelimiterIds,
  spanEvidenceRows, spanTokenCredits, type CorpusRecord,
} from "../../src/attribution/spans/index.js";
import { isOpenLoraError, type ErrorCode } from "../../src/errors.js";
import { tokenizerFromHfFiles } from "../../src/tokenizer/hf.js";
import { loadFamily } from "../tokenizer/helpers.js";

interface RefSpan { start: number; end: number; occurrences: number }
interface RefSource { recordId: string; contributor: string; offset: number }

const tokensOf = (r: CorpusRecord): number[] => Array.from(r.tokens);

/** Every (record index, offset) where `needle` occurs. */
function naiveOccurrences(records: readonly CorpusRecord[], needle: readonly number[]): [number, number][] {
  const hits: [number, number][] = [];
  records.forEach((rec, r) => {
    const t = tokensOf(rec);
    for (let o = 0; o + needle.length <= t.length; o++) {
      if (needle.every((x, d) => t[o + d] === x)) hits.push([r, o]);
    }
  });
  return hits;
}

function naiveMaximalSpans(records: readonly CorpusRecord[], output: readonly number[], minLength: number, delimiters: ReadonlySet<number>): RefSpan[] {
  const pieces: [number, number][] = [];
  let from = 0;
  output.forEach((t, i) => {
    if (delimiters.has(t) || i === output.length - 1) {
      pieces.push([from, i + 1]);
      from = i + 1;
    }
  });
  const spans: RefSpan[] = [];
  for (const [a, b] of pieces) {
    const longest: number[] = [];
    for (let i = a; i < b; i++) {
      let len = 0;
      while (i + len < b && naiveOccurrences(records, output.slice(i, i + len + 1)).length > 0) len++;
      longest.push(len);
    }
    for (let i = a; i < b; i++) {
      const end = i + longest[i - a]!;
      if (end - i < minLength) continue;
      const contained = longest.some((l, k) => a + k !== i && a + k <= i && a + k + l >= end);
      if (!contained) spans.push({ start: i, end, occurrences: naiveOccurrences(records, output.slice(i, end)).length });
    }
  }
  return spans;
}

/** The documented rules (evidence.ts), written out plainly. */
function referenceEvidence(records: readonly CorpusRecord[], output: readonly number[], minLength: number, delimiters: ReadonlySet<number>, maxSources: number) {
  const ranked = naiveMaximalSpans(records, output, minLength, delimiters).sort((x, y) =>
    x.occurrences !== y.occurrences ? x.occurrences - y.occurrences
      : x.end - x.start !== y.end - y.start ? (y.end - y.start) - (x.end - x.start) : x.start - y.start);
  const kept: RefSpan[] = [];
  for (const s of ranked) {
    if (!kept.some((k) => s.start < k.end && k.start < s.end)) kept.push(s);
  }
  kept.sort((x, y) => x.start - y.start);
  const credit = new Map<string, number>();
  const spans = kept.map((s) => {
    const firstOffset = new Map<number, number>();
    for (const [r, o] of naiveOccurrences(records, output.slice(s.start, s.end))) {
      if (!firstOffset.has(r)) firstOffset.set(r, o);
    }
    const sources: RefSource[] = [...firstOffset.entries()].sort((x, y) => x[0] - y[0]).slice(0, maxSources)
      .map(([r, o]) => ({ recordId: records[r]!.recordId, contributor: records[r]!.contributor, offset: o }));
    const who = [...new Set(sources.map((x) => x.contributor))];
    const len = s.end - s.start;
    who.forEach((c, i) => credit.set(c, (credit.get(c) ?? 0) + Math.floor(len / who.length) + (i < len % who.length ? 1 : 0)));
    return { ...s, sources };
  });
  const contributorTokens = [...credit.entries()].sort(([x], [y]) => (x < y ? -1 : 1)).map(([contributor, tokens]) => ({ contributor, tokens }));
  return { spans, contributorTokens, matchedTokens: kept.reduce((n, s) => n + s.end - s.start, 0) };
}

/** Random corpus over a small alphabet, and an output stitched from copied passages and noise. */
const scenario = fc.record({
  alphabet: fc.integer({ min: 1, max: 6 }),
  records: fc.array(fc.record({ contributor: fc.constantFrom("ann", "bob", "cy"), tokens: fc.array(fc.nat(), { maxLength: 30 }) }), { maxLength: 8 }),
  pieces: fc.array(fc.record({ copy: fc.boolean(), from: fc.nat(), at: fc.nat(), length: fc.integer({ min: 0, max: 16 }), noise: fc.array(fc.nat(), { maxLength: 4 }) }), { maxLength: 6 }),
  delimiterMask: fc.nat({ max: 63 }),
  minLength: fc.integer({ min: 1, max: 6 }),
  maxSources: fc.integer({ min: 1, max: 3 }),
}).map((s) => {
  const records: CorpusRecord[] = s.records.map((r, i) => ({
    recordId: `r${i}`, contributor: r.contributor, tokens: Uint32Array.from(r.tokens, (t) => t % s.alphabet),
  }));
  const output: number[] = [];
  for (const p of s.pieces) {
    const src = records.length > 0 ? tokensOf(records[p.from % records.length]!) : [];
    if (p.copy && src.length > 0) {
      const at = p.at % src.length;
      output.push(...src.slice(at, at + p.length));
    }
    // Noise may include an id the corpus never saw (alphabet) and one beyond every separator.
    output.push(...p.noise.map((t) => (t % 9 === 8 ? 1000 : t % (s.alphabet + 1))));
  }
  const delimiters = new Set([...Array(s.alphabet).keys()].filter((t) => s.delimiterMask & (1 << t) && t !== 0));
  return { records, output, delimiters, minLength: s.minLength, maxSources: s.maxSources };
});

function errorCode(fn: () => unknown): ErrorCode | "no error" | "untyped" {
  try {
    fn();
    return "no error";
  } catch (e) {
    return isOpenLoraError(e) ? e.code : "untyped";
  }
}

describe("SpanIndex.findMaximalSpans vs brute force", () => {
  it("finds the same maximal spans with the same occurrence counts", () => {
    fc.assert(
      fc.property(scenario, ({ records, output, delimiters, minLength }) => {
        const index = SpanIndex.build(records);
        const got = index.findMaximalSpans(output, { minLength, isDelimiter: delimiterPredicate(delimiters) })
          .map(({ start, end, occurrences }) => ({ start, end, occurrences }));
        expect(got).toEqual(naiveMaximalSpans(records, output, minLength, delimiters));
      }),
      { numRuns: 400, seed: 61 },
    );
  });

  it("count() agrees with naive occurrence counting", () => {
    fc.assert(
      fc.property(scenario, fc.array(fc.nat({ max: 5 }), { minLength: 1, maxLength: 5 }), ({ records }, needle) => {
        expect(SpanIndex.build(records).count(needle)).toBe(naiveOccurrences(records, needle).length);
      }),
      { numRuns: 300, seed: 62 },
    );
  });
});

describe("findSpanEvidence vs the documented rules", () => {
  it("keeps the rarest non-overlapping spans, lists the earliest sources, credits whole tokens", () => {
    fc.assert(
      fc.property(scenario, ({ records, output, delimiters, minLength, maxSources }) => {
        const got = findSpanEvidence(SpanIndex.build(records), output, { minLength, maxSources, isDelimiter: (t) => delimiters.has(t) });
        expect(got).toEqual(referenceEvidence(records, output, minLength, delimiters, maxSources));
        expect(got.contributorTokens.reduce((n, c) => n + c.tokens, 0)).toBe(got.matchedTokens);
      }),
      { numRuns: 300, seed: 63 },
    );
  });
});

describe("span search: the rules by example", () => {
  const seq = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const rec = (recordId: string, contributor: string, tokens: number[]): CorpusRecord => ({ recordId, contributor, tokens: Uint32Array.from(tokens) });

  it("never matches across records: the separator between them is unique", () => {
    const index = SpanIndex.build([rec("a", "ann", seq(10, 6)), rec("b", "bob", seq(16, 6))]);
    // 10..21 is record a followed by record b: only the halves match.
    const spans = index.findMaximalSpans(seq(10, 12), { minLength: 4 });
    expect(spans.map((s) => [s.start, s.end])).toEqual([[0, 6], [6, 12]]);
    expect(index.count(seq(14, 4))).toBe(0);
    // Output ids at or beyond the separators' range never match them.
    expect(index.count([index.tokenLimit])).toBe(0);
    expect(index.count([index.tokenLimit + 1])).toBe(0);
  });

  it("respects minLength and delimiters (a delimiter may only end a span)", () => {
    const text = [...seq(1, 9), 99, ...seq(20, 9)];
    const index = SpanIndex.build([rec("a", "ann", text)]);
    const isDelimiter = (t: number) => t === 99;
    expect(index.findMaximalSpans(text, { minLength: 8, isDelimiter }).map((s) => [s.start, s.end])).toEqual([[0, 10], [10, 19]]);
    expect(index.findMaximalSpans(text, { minLength: 11, isDelimiter })).toEqual([]);
    expect(index.findMaximalSpans(text, { minLength: 19 }).map((s) => [s.start, s.end])).toEqual([[0, 19]]);
    // A delimiter at the start of what follows stays with the sentence before it.
    expect(index.findMaximalSpans([99, ...seq(20, 9)], { minLength: 8, isDelimiter }).map((s) => [s.start, s.end])).toEqual([[1, 10]]);
  });

  it("outputs shorter than minLength, empty outputs and empty corpora give nothing", () => {
    const index = SpanIndex.build([rec("a", "ann", seq(0, 20))]);
    expect(index.findMaximalSpans(seq(0, 7))).toEqual([]);
    expect(index.findMaximalSpans(seq(0, 8)).length).toBe(1);
    expect(findSpanEvidence(index, [])).toEqual({ spans: [], contributorTokens: [], matchedTokens: 0 });
    for (const empty of [SpanIndex.build([]), SpanIndex.build([rec("e", "ann", [])])]) {
      expect(empty.tokenCount).toBe(0);
      expect(findSpanEvidence(empty, seq(0, 20), { minLength: 1 }).spans).toEqual([]);
    }
  });

  it("ranks by rarity, then length, and drops spans overlapping a kept one", () => {
    const common = seq(100, 10);
    const records = [rec("x1", "ann", [...common, 1]), rec("x2", "bob", [2, ...common]), rec("y", "cy", seq(105, 12))];
    // common (10 tokens, 2 occurrences) overlaps 105..116 (12 tokens, 1 occurrence): the rarer wins.
    const ev = findSpanEvidence(SpanIndex.build(records), seq(100, 17), { minLength: 8 });
    expect(ev.spans).toEqual([{ start: 5, end: 17, occurrences: 1, sources: [{ recordId: "y", contributor: "cy", offset: 0 }] }]);
    expect(ev.contributorTokens).toEqual([{ contributor: "cy", tokens: 12 }]);
  });

  it("credits a shared span to its sources' contributors in whole tokens, earliest first", () => {
    const passage = seq(200, 11);
    const records = [rec("r1", "zed", passage), rec("r2", "amy", [7, ...passage]), rec("r3", "zed", passage), rec("r4", "bo", passage)];
    const index = SpanIndex.build(records);
    const ev = findSpanEvidence(index, passage, { minLength: 8, maxSources: 3 });
    expect(ev.spans[0]!.occurrences).toBe(4);
    expect(ev.spans[0]!.sources.map((s) => [s.recordId, s.offset])).toEqual([["r1", 0], ["r2", 1], ["r3", 0]]);
    // 11 tokens, contributors zed then amy: 6 + 5.
    expect(ev.contributorTokens).toEqual([{ contributor: "amy", tokens: 5 }, { contributor: "zed", tokens: 6 }]);
    expect(findSpanEvidence(index, passage, { minLength: 8, maxSources: DEFAULT_MAX_SOURCES }).contributorTokens)
      .toEqual([{ contributor: "amy", tokens: 4 }, { contributor: "bo", tokens: 3 }, { contributor: "zed", tokens: 4 }]);
    expect(findSpanEvidence(index, passage, { minLength: 8, maxOccurrences: 3 }).spans).toEqual([]);
  });

  it("rejects bad records, outputs and options with INVALID_ARGUMENT", () => {
    const ok = rec("a", "ann", [1, 2]);
    expect(errorCode(() => SpanIndex.build([ok, ok]))).toBe("INVALID_ARGUMENT");
    expect(errorCode(() => SpanIndex.build([{ recordId: "b", contributor: "x", tokens: [1, -2] }]))).toBe("INVALID_ARGUMENT");
    expect(errorCode(() => SpanIndex.build([{ recordId: "b", contributor: "x", tokens: [1.5] }]))).toBe("INVALID_ARGUMENT");
    const index = SpanIndex.build([ok]);
    expect(errorCode(() => index.findMaximalSpans([1, 2], { minLength: 0 }))).toBe("INVALID_ARGUMENT");
    expect(errorCode(() => index.findMaximalSpans([1, -1]))).toBe("INVALID_ARGUMENT");
    expect(errorCode(() => findSpanEvidence(index, [1, 2], { maxSources: 0 }))).toBe("INVALID_ARGUMENT");
  });
});

describe("SpanIndexSet", () => {
  it("queries every Datanet version and tags the evidence", () => {
    const passage = Array.from({ length: 12 }, (_, i) => 50 + i);
    const v1 = SpanIndex.build([{ recordId: "r1", contributor: "ann", tokens: passage }]);
    const v2 = SpanIndex.build([{ recordId: "q", contributor: "bob", tokens: [1, 2, 3, ...passage.slice(0, 9)] }]);
    const set = new SpanIndexSet();
    set.add({ datanetId: "med", version: 2 }, v2);
    set.add({ datanetId: "med", version: 1 }, v1);
    set.add({ datanetId: "law", version: 1 }, SpanIndex.build([{ recordId: "z", contributor: "cy", tokens: [9, 9, 9] }]));
    expect(errorCode(() => set.add({ datanetId: "med", version: 1 }, v1))).toBe("INVALID_ARGUMENT");
    expect(set.versions()).toEqual([{ datanetId: "law", version: 1 }, { datanetId: "med", version: 1 }, { datanetId: "med", version: 2 }]);

    const evidence = set.findSpans([7, ...passage, 7]);
    expect(evidence.map((e) => [e.datanetId, e.version, e.spans.map((s) => [s.start, s.end])])).toEqual([
      ["med", 1, [[1, 13]]], ["med", 2, [[1, 10]]],
    ]);
    expect(spanEvidenceRows(evidence)).toEqual([
      { datanetId: "med", version: 1, recordId: "r1", contributor: "ann", start: 1, end: 13, occurrences: 1 },
      { datanetId: "med", version: 2, recordId: "q", contributor: "bob", start: 1, end: 10, occurrences: 1 },
    ]);
    expect(spanTokenCredits(evidence)).toEqual([
      { datanet: "med@1", contributor: "ann", matchedTokens: 12 }, { datanet: "med@2", contributor: "bob", matchedTokens: 9 },
    ]);
    expect(set.delete({ datanetId: "med", version: 1 })).toBe(true);
    expect(set.findSpans([7, ...passage]).map((e) => e.version)).toEqual([2]);
  });
});

describe("sentenceDelimiterIds", () => {
  it("picks the ids whose text holds . ! ? or a newline", () => {
    const vocab = ["the", ".", " cat", "?!", "\n", "3.14", "<|im_end|>", "end"];
    const tokenizer = { vocabSize: vocab.length, decode: (ids: readonly number[]) => ids.map((i) => vocab[i]).join("") };
    expect([...sentenceDelimiterIds(tokenizer)].sort((a, b) => a - b)).toEqual([1, 3, 4, 5]);
    expect([...sentenceDelimiterIds(tokenizer, "\n")]).toEqual([4]);
    expect(delimiterPredicate(sentenceDelimiterIds(tokenizer))(3)).toBe(true);
  });

  it("works with a real tokenizer: sentence ends and newlines, not words", () => {
    const { json, config } = loadFamily("llama2");
    const tokenizer = tokenizerFromHfFiles(json, config);
    const ids = sentenceDelimiterIds(tokenizer);
    const encoded = tokenizer.encode("The cat sat.\nIt ran! Why?", { addSpecial: false });
    expect(encoded.filter((id) => ids.has(id)).map((id) => tokenizer.decode([id]))).toEqual([".", "\n", "!", "?"]);
  });
});
