/**
 * A suffix-array index over the token ids of one Datanet version's records, and the exact-match
 * search over it (OLMoTrace-style span evidence).
 *
 * Layout: text = rec0 · sep0 · rec1 · sep1 · … where sep_r = tokenLimit + r (tokenLimit = largest
 * token id + 1). Separators are unique and outside every output's token range, so no match crosses
 * a record and every suffix meets a separator before the end of the text. Suffix-array rows
 * [0, tokenCount) are the suffixes that start with a real token, grouped by that token, which
 * `firstRow` turns into a one-lookup first step of every search.
 *
 * Memory at rest: 8 bytes per token (text + suffix array, Int32) + 4 bytes per record and per
 * vocabulary id; building briefly adds 1 byte per token (SA-IS types) plus the caller's records.
 */
import { OpenLoraError } from "../../errors.js";
import { buildSuffixArray } from "./suffix-array.js";

export interface CorpusRecord {
  readonly recordId: string;
  readonly contributor: string;
  readonly tokens: ArrayLike<number>;
}

/** The arrays an index is made of; what the index file stores. */
export interface SpanIndexParts {
  readonly text: Int32Array;
  readonly suffixArray: Int32Array;
  /** recordStarts[r] = text offset of record r; recordStarts[recordCount] = text.length. */
  readonly recordStarts: Int32Array;
  readonly tokenLimit: number;
  readonly recordIds: readonly string[];
  readonly contributors: readonly string[];
}

/** A maximal verbatim match of output[start, end) (end exclusive) with its suffix-array interval. */
export interface MaximalSpan {
  readonly start: number;
  readonly end: number;
  /** Occurrences in the corpus (the suffix-array interval's size); overlapping ones count. */
  readonly occurrences: number;
  /** First suffix-array row of the interval [saStart, saStart + occurrences). */
  readonly saStart: number;
}

export interface SpanSource {
  readonly recordId: string;
  readonly contributor: string;
  /** Token offset of the span's first occurrence inside the record. */
  readonly offset: number;
}

export interface MatchOptions {
  /** Spans shorter than this are not reported. Default 8. */
  readonly minLength?: number;
  /**
   * Sentence delimiters, called with raw output ids. The output is cut after every delimiter and
   * spans stay inside one piece, so a delimiter can only be a span's last token (a sentence's
   * closing "." belongs to it; the next sentence's span starts after it). Default: none.
   */
  readonly isDelimiter?: (tokenId: number) => boolean;
}

export const DEFAULT_MIN_SPAN_LENGTH = 8;
const MAX_INT32 = 0x7fffffff;

export class SpanIndex {
  readonly text: Int32Array;
  readonly suffixArray: Int32Array;
  readonly recordStarts: Int32Array;
  readonly tokenLimit: number;
  readonly recordIds: readonly string[];
  readonly contributors: readonly string[];
  /** Real (non-separator) tokens in the corpus. */
  readonly tokenCount: number;
  /** firstRow[c] .. firstRow[c + 1]: suffix-array rows of suffixes starting with token c. */
  private readonly firstRow: Int32Array;
  private matchRow = 0;
  private matchRowEnd = 0;

  private constructor(parts: SpanIndexParts) {
    this.text = parts.text;
    this.suffixArray = parts.suffixArray;
    this.recordStarts = parts.recordStarts;
    this.tokenLimit = parts.tokenLimit;
    this.recordIds = parts.recordIds;
    this.contributors = parts.contributors;
    this.tokenCount = parts.text.length - parts.recordIds.length;
    this.firstRow = new Int32Array(parts.tokenLimit + 1);
    const text = parts.text;
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (c < parts.tokenLimit) this.firstRow[c + 1]!++;
    }
    for (let c = 0; c < parts.tokenLimit; c++) this.firstRow[c + 1]! += this.firstRow[c]!;
  }

  /** Concatenates the records with unique separators and builds the suffix array (SA-IS). */
  static build(records: readonly CorpusRecord[]): SpanIndex {
    const recordCount = records.length;
    const seen = new Set<string>();
    let length = 0;
    let maxToken = -1;
    for (const rec of records) {
      if (typeof rec.recordId !== "string" || typeof rec.contributor !== "string") {
        throw new OpenLoraError("INVALID_ARGUMENT", "recordId and contributor must be strings");
      }
      if (seen.has(rec.recordId)) throw new OpenLoraError("INVALID_ARGUMENT", `duplicate recordId ${JSON.stringify(rec.recordId)}`);
      seen.add(rec.recordId);
      const tokens = rec.tokens;
      for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i]!;
        if (t >>> 0 !== t) {
          throw new OpenLoraError("INVALID_ARGUMENT", `record ${rec.recordId}: token ${t} at ${i} is not a non-negative integer`);
        }
        if (t > maxToken) maxToken = t;
      }
      length += tokens.length + 1;
    }
    const tokenLimit = maxToken + 1;
    if (length > MAX_INT32 || tokenLimit + recordCount > MAX_INT32) {
      throw new OpenLoraError("INVALID_ARGUMENT", "corpus too large for a 32-bit index", { length, tokenLimit, recordCount });
    }
    const text = new Int32Array(length);
    const recordStarts = new Int32Array(recordCount + 1);
    let pos = 0;
    for (let r = 0; r < recordCount; r++) {
      const tokens = records[r]!.tokens;
      recordStarts[r] = pos;
      text.set(tokens, pos);
      pos += tokens.length;
      text[pos++] = tokenLimit + r;
    }
    recordStarts[recordCount] = pos;
    const suffixArray = buildSuffixArray(text, tokenLimit + recordCount);
    return new SpanIndex({
      text, suffixArray, recordStarts, tokenLimit,
      recordIds: records.map((r) => r.recordId),
      contributors: records.map((r) => r.contributor),
    });
  }

  /**
   * An index from stored arrays, after checking their structure (O(n); the suffix array's order
   * is checked on the first token only — the file checksum covers the rest).
   */
  static fromParts(parts: SpanIndexParts): SpanIndex {
    const { text, suffixArray: sa, recordStarts, tokenLimit, recordIds, contributors } = parts;
    const bad = (what: string): never => {
      throw new OpenLoraError("INVALID_ARGUMENT", `span index structure: ${what}`, { reason: "structure" });
    };
    const R = recordIds.length;
    const n = text.length;
    if (!Number.isInteger(tokenLimit) || tokenLimit < 0 || tokenLimit + R > MAX_INT32) bad("tokenLimit out of range");
    if (contributors.length !== R || recordStarts.length !== R + 1) bad("record table sizes disagree");
    if (sa.length !== n) bad("suffix array length differs from text length");
    if (recordStarts[0] !== 0 || recordStarts[R] !== n) bad("record table does not span the text");
    if (new Set(recordIds).size !== R) bad("duplicate record ids");
    for (let r = 0; r < R; r++) {
      const s = recordStarts[r]!, e = recordStarts[r + 1]!;
      if (e <= s) bad(`record ${r} has no separator`);
      if (text[e - 1] !== tokenLimit + r) bad(`record ${r} does not end with its separator`);
      for (let i = s; i < e - 1; i++) {
        const c = text[i]!;
        if (c < 0 || c >= tokenLimit) bad(`token ${c} at ${i} outside [0, ${tokenLimit})`);
      }
    }
    const seen = new Uint8Array(n);
    let prevFirst = -1;
    for (let row = 0; row < n; row++) {
      const p = sa[row]!;
      if (p < 0 || p >= n || seen[p]) bad(`suffix array row ${row} is not a permutation entry`);
      seen[p] = 1;
      if (text[p]! < prevFirst) bad(`suffix array out of order at row ${row}`);
      prevFirst = text[p]!;
    }
    return new SpanIndex(parts);
  }

  get parts(): SpanIndexParts {
    const { text, suffixArray, recordStarts, tokenLimit, recordIds, contributors } = this;
    return { text, suffixArray, recordStarts, tokenLimit, recordIds, contributors };
  }

  get recordCount(): number {
    return this.recordIds.length;
  }

  /** Bytes held by the typed arrays (strings not counted). */
  get byteLength(): number {
    return this.text.byteLength + this.suffixArray.byteLength + this.recordStarts.byteLength + this.firstRow.byteLength;
  }

  /** Record index holding text position `pos`. */
  recordAt(pos: number): number {
    const starts = this.recordStarts;
    let lo = 0, hi = this.recordIds.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** How often `tokens` occurs in the corpus (overlapping occurrences count; 0 for no tokens). */
  count(tokens: ArrayLike<number>): number {
    const q = this.toQuery(tokens);
    if (q.length === 0) return 0;
    const len = this.longestMatch(q, 0, q.length);
    return len === q.length ? this.matchRowEnd - this.matchRow : 0;
  }

  /**
   * Every maximal span of the output that occurs verbatim in the corpus, is at least minLength
   * long and contains no delimiter except as its last token; ordered by start. Maximal: no longer
   * matching span within the same sentence piece contains it.
   */
  findMaximalSpans(output: ArrayLike<number>, opts: MatchOptions = {}): MaximalSpan[] {
    const minLength = opts.minLength ?? DEFAULT_MIN_SPAN_LENGTH;
    if (!Number.isInteger(minLength) || minLength < 1) {
      throw new OpenLoraError("INVALID_ARGUMENT", `minLength must be a positive integer, got ${minLength}`);
    }
    const q = this.toQuery(output);
    const spans: MaximalSpan[] = [];
    if (this.tokenCount === 0) return spans;
    const isDelimiter = opts.isDelimiter;
    let pieceStart = 0;
    for (let i = 0; i < q.length; i++) {
      if (i === q.length - 1 || (isDelimiter !== undefined && isDelimiter(output[i]!))) {
        if (i + 1 - pieceStart >= minLength) this.maximalSpansIn(q, pieceStart, i + 1, minLength, spans);
        pieceStart = i + 1;
      }
    }
    return spans;
  }

  /**
   * Up to `limit` sources of the occurrences in suffix-array rows [row, rowEnd): the earliest
   * distinct records in corpus order, each with its first occurrence's offset.
   */
  earliestSources(row: number, rowEnd: number, limit: number): SpanSource[] {
    const sa = this.suffixArray, starts = this.recordStarts;
    if (!(limit >= 1)) return [];
    const recs: number[] = [];
    const offsets: number[] = [];
    for (let k = row; k < rowEnd; k++) {
      const p = sa[k]!;
      // Past the end of the latest record kept so far: cannot displace anything.
      if (recs.length === limit && p >= starts[recs[limit - 1]! + 1]!) continue;
      const r = this.recordAt(p);
      const offset = p - starts[r]!;
      let at = 0;
      while (at < recs.length && recs[at]! < r) at++;
      if (recs[at] === r) {
        if (offset < offsets[at]!) offsets[at] = offset;
        continue;
      }
      recs.splice(at, 0, r);
      offsets.splice(at, 0, offset);
      if (recs.length > limit) {
        recs.pop();
        offsets.pop();
      }
    }
    return recs.map((r, i) => ({ recordId: this.recordIds[r]!, contributor: this.contributors[r]!, offset: offsets[i]! }));
  }

  private maximalSpansIn(q: Int32Array, start: number, end: number, minLength: number, spans: MaximalSpan[]): void {
    let prevLength = 0;
    for (let i = start; i + minLength <= end; i++) {
      const length = this.longestMatch(q, i, end);
      // The span at i lies inside the one at i - 1 exactly when that one is longer by ≥ 1.
      if (length >= minLength && (i === start || prevLength <= length)) {
        spans.push({ start: i, end: i + length, occurrences: this.matchRowEnd - this.matchRow, saStart: this.matchRow });
      }
      prevLength = length;
    }
  }

  /**
   * Length of the longest prefix of q[i, end) that occurs in the corpus; its suffix-array rows
   * are left in matchRow .. matchRowEnd. Narrows the interval one token at a time.
   */
  private longestMatch(q: Int32Array, i: number, end: number): number {
    const text = this.text, sa = this.suffixArray;
    const first = q[i]!;
    if (first < 0) return 0;
    let lo = this.firstRow[first]!, hi = this.firstRow[first + 1]!;
    if (lo === hi) return 0;
    let length = 1;
    // Rows in [lo, hi) share `length` real tokens, so sa[row] + length stays inside the text.
    while (i + length < end) {
      const x = q[i + length]!;
      if (x < 0) break;
      if (hi - lo === 1) {
        if (text[sa[lo]! + length] !== x) break;
        length++;
        continue;
      }
      let a = lo, b = hi;
      while (a < b) {
        const m = (a + b) >>> 1;
        if (text[sa[m]! + length]! < x) a = m + 1;
        else b = m;
      }
      if (a === hi || text[sa[a]! + length] !== x) break;
      // Gallop for the end: after two or three tokens most intervals are a few rows long.
      let inside = a, probe = a + 1, step = 1;
      while (probe < hi && text[sa[probe]! + length] === x) {
        inside = probe;
        step <<= 1;
        probe = a + step;
      }
      let e = inside + 1;
      b = Math.min(probe, hi);
      while (e < b) {
        const m = (e + b) >>> 1;
        if (text[sa[m]! + length] === x) e = m + 1;
        else b = m;
      }
      lo = a;
      hi = e;
      length++;
    }
    this.matchRow = lo;
    this.matchRowEnd = hi;
    return length;
  }

  /** Output ids as Int32, ids the corpus never saw (never matchable) as -1. */
  private toQuery(tokens: ArrayLike<number>): Int32Array {
    const q = new Int32Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t >>> 0 !== t) throw new OpenLoraError("INVALID_ARGUMENT", `output token ${t} at ${i} is not a non-negative integer`);
      q[i] = t < this.tokenLimit ? t : -1;
    }
    return q;
  }
}
