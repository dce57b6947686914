/**
 * Span evidence across Datanet versions: one SpanIndex per published version, queried in turn.
 * Each version's evidence is selected and credited on its own (rules in evidence.ts), so the same
 * output tokens may carry evidence in several versions; weighing Datanets against each other is
 * the fee split's business.
 */
import { OpenLoraError } from "../../errors.js";
import { findSpanEvidence, type SpanQueryResult, type SpanQueryOptions } from "./evidence.js";
import type { SpanIndex } from "./span-index.js";

export interface DatanetVersion {
  readonly datanetId: string;
  readonly version: number;
}

export interface DatanetSpanResult extends SpanQueryResult, DatanetVersion {}

/** One row per (kept span, source): the record an attribution receipt cites. */
export interface SpanEvidenceRow extends DatanetVersion {
  readonly recordId: string;
  readonly contributor: string;
  /** Output token range [start, end). */
  readonly start: number;
  readonly end: number;
  readonly occurrences: number;
}

const keyOf = (v: DatanetVersion): string => JSON.stringify([v.datanetId, v.version]);

export class SpanIndexSet {
  private readonly indexes = new Map<string, { version: DatanetVersion; index: SpanIndex }>();

  get size(): number {
    return this.indexes.size;
  }

  add(version: DatanetVersion, index: SpanIndex): void {
    if (typeof version.datanetId !== "string" || version.datanetId === "" || !Number.isInteger(version.version) || version.version < 0) {
      throw new OpenLoraError("INVALID_ARGUMENT", "a Datanet version needs a non-empty datanetId and a non-negative integer version");
    }
    const key = keyOf(version);
    if (this.indexes.has(key)) {
      throw new OpenLoraError("INVALID_ARGUMENT", `span index for ${version.datanetId}@${version.version} already added`);
    }
    this.indexes.set(key, { version: { datanetId: version.datanetId, version: version.version }, index });
  }

  delete(version: DatanetVersion): boolean {
    return this.indexes.delete(keyOf(version));
  }

  get(version: DatanetVersion): SpanIndex | undefined {
    return this.indexes.get(keyOf(version))?.index;
  }

  /** Added versions, ordered by datanetId then version. */
  versions(): DatanetVersion[] {
    return [...this.indexes.values()].map((e) => e.version).sort(compareVersions);
  }

  /** Evidence from every version with at least one kept span, ordered by datanetId then version. */
  findSpans(output: ArrayLike<number>, opts: SpanQueryOptions = {}): DatanetSpanResult[] {
    const out: DatanetSpanResult[] = [];
    for (const version of this.versions()) {
      const evidence = findSpanEvidence(this.indexes.get(keyOf(version))!.index, output, opts);
      if (evidence.spans.length > 0) out.push({ ...version, ...evidence });
    }
    return out;
  }
}

export function spanEvidenceRows(evidence: readonly DatanetSpanResult[]): SpanEvidenceRow[] {
  return evidence.flatMap((e) =>
    e.spans.flatMap((span) =>
      span.sources.map((source) => ({
        datanetId: e.datanetId, version: e.version, recordId: source.recordId, contributor: source.contributor,
        start: span.start, end: span.end, occurrences: span.occurrences,
      })),
    ),
  );
}

/** "id@version", the Datanet version key the ledger and fee split use. */
export function datanetVersionKey(v: DatanetVersion): string {
  return `${v.datanetId}@${v.version}`;
}

/**
 * Per (Datanet version, contributor) credited output tokens — the fee split's span weights
 * (structurally its SpanMatch), ordered by datanet key then contributor.
 */
export function spanTokenCredits(evidence: readonly DatanetSpanResult[]): { datanet: string; contributor: string; matchedTokens: number }[] {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return evidence
    .flatMap((e) => e.contributorTokens.map((c) => ({ datanet: datanetVersionKey(e), contributor: c.contributor, matchedTokens: c.tokens })))
    .filter((m) => m.matchedTokens > 0)
    .sort((a, b) => cmp(a.datanet, b.datanet) || cmp(a.contributor, b.contributor));
}

function compareVersions(a: DatanetVersion, b: DatanetVersion): number {
  return a.datanetId < b.datanetId ? -1 : a.datanetId > b.datanetId ? 1 : a.version - b.version;
}
