/**
 * From maximal matches to span evidence: keep the rarest, attach sources, credit contributors.
 *
 * Rules (deterministic; the fee split's span weights come from `contributorTokens`):
 *  1. Candidates: the maximal spans (SpanIndex.findMaximalSpans), minus those occurring more than
 *     `maxOccurrences` times.
 *  2. Ranking: fewest occurrences first, then longer first, then earlier start.
 *  3. Selection: walk the ranking, keep a span unless it overlaps (shares an output token with) a
 *     span already kept; stop after `maxSpans`. Kept spans are disjoint, so every output token
 *     is credited by at most one span.
 *  4. Sources: the earliest `maxSources` distinct records holding the span, in corpus (publish)
 *     order, each with the offset of its first occurrence there. Later copies of a text earn
 *     nothing once `maxSources` earlier records hold it.
 *  5. Credit: a kept span of L tokens is split among the c distinct contributors of its sources
 *     (ordered by their first source): each gets ⌊L / c⌋ tokens and the first L mod c get one
 *     more. Credits are whole tokens and sum to `matchedTokens`.
 */
import { OpenLoraError } from "../../errors.js";
import type { MatchOptions, MaximalSpan, SpanIndex, SpanSource } from "./span-index.js";

export interface SpanQueryOptions extends MatchOptions {
  /** Sources listed (and credited) per span. Default 5. */
  readonly maxSources?: number;
  /** Spans found more often than this are dropped before ranking. Default: no limit. */
  readonly maxOccurrences?: number;
  /** Spans kept after ranking. Default: no limit. */
  readonly maxSpans?: number;
}

export interface KeptSpan {
  /** Output token range [start, end). */
  readonly start: number;
  readonly end: number;
  readonly occurrences: number;
  readonly sources: readonly SpanSource[];
}

export interface ContributorCredit {
  readonly contributor: string;
  readonly tokens: number;
}

export interface SpanQueryResult {
  /** Kept spans, ordered by start. */
  readonly spans: readonly KeptSpan[];
  /** Output tokens credited per contributor, ordered by contributor (code-unit order). */
  readonly contributorTokens: readonly ContributorCredit[];
  /** Output tokens covered by kept spans. */
  readonly matchedTokens: number;
}

export const DEFAULT_MAX_SOURCES = 5;

/** Rules 1–3: the spans to keep, ordered by start. */
export function selectRarestSpans<T extends Pick<MaximalSpan, "start" | "end" | "occurrences">>(
  candidates: readonly T[],
  opts: { maxOccurrences?: number; maxSpans?: number } = {},
): T[] {
  const maxOccurrences = opts.maxOccurrences ?? Infinity;
  const maxSpans = opts.maxSpans ?? Infinity;
  const ranked = candidates
    .filter((s) => s.occurrences <= maxOccurrences)
    .sort((a, b) => a.occurrences - b.occurrences || (b.end - b.start) - (a.end - a.start) || a.start - b.start);
  const kept: T[] = [];
  for (const span of ranked) {
    if (kept.length >= maxSpans) break;
    if (kept.every((k) => span.end <= k.start || k.end <= span.start)) kept.push(span);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Rule 5 over kept spans with their sources. */
export function creditContributors(spans: readonly Pick<KeptSpan, "start" | "end" | "sources">[]): SpanQueryResult["contributorTokens"] {
  const credit = new Map<string, number>();
  for (const span of spans) {
    const contributors = [...new Set(span.sources.map((s) => s.contributor))];
    const length = span.end - span.start;
    const c = contributors.length;
    contributors.forEach((who, i) => {
      const share = Math.floor(length / c) + (i < length % c ? 1 : 0);
      credit.set(who, (credit.get(who) ?? 0) + share);
    });
  }
  return [...credit.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([contributor, tokens]) => ({ contributor, tokens }));
}

/** Span evidence for one output against one index. */
export function findSpanEvidence(index: SpanIndex, output: ArrayLike<number>, opts: SpanQueryOptions = {}): SpanQueryResult {
  const maxSources = opts.maxSources ?? DEFAULT_MAX_SOURCES;
  if (!Number.isInteger(maxSources) || maxSources < 1) {
    throw new OpenLoraError("INVALID_ARGUMENT", `maxSources must be a positive integer, got ${maxSources}`);
  }
  for (const key of ["maxOccurrences", "maxSpans"] as const) {
    const v = opts[key];
    if (v !== undefined && !(v >= 0)) throw new OpenLoraError("INVALID_ARGUMENT", `${key} must be ≥ 0, got ${v}`);
  }
  const kept = selectRarestSpans(index.findMaximalSpans(output, opts), opts);
  const spans = kept.map((s) => ({
    start: s.start,
    end: s.end,
    occurrences: s.occurrences,
    sources: index.earliestSources(s.saStart, s.saStart + s.occurrences, maxSources),
  }));
  return {
    spans,
    contributorTokens: creditContributors(spans),
    matchedTokens: spans.reduce((sum, s) => sum + (s.end - s.start), 0),
  };
}
