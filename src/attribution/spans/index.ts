export { buildSuffixArray } from "./suffix-array.js";
export {
  SpanIndex, DEFAULT_MIN_SPAN_LENGTH,
  type CorpusRecord, type SpanIndexParts, type MaximalSpan, type SpanSource, type MatchOptions,
} from "./span-index.js";
export {
  findSpanEvidence, selectRarestSpans, creditContributors, DEFAULT_MAX_SOURCES,
  type SpanQueryOptions, type KeptSpan, type ContributorCredit, type SpanQueryResult,
} from "./evidence.js";
export { sentenceDelimiterIds, delimiterPredicate, SENTENCE_DELIMITER_CHARS, type DecodingVocabulary } from "./delimiters.js";
export {
  SpanIndexSet, spanEvidenceRows, spanTokenCredits, datanetVersionKey, type DatanetVersion, type DatanetSpanResult, type SpanEvidenceRow,
} from "./span-index-set.js";
export {
  writeSpanIndexFile, readSpanIndexFile, SPAN_INDEX_MAGIC, SPAN_INDEX_FORMAT_VERSION, type SpanIndexFileProblem,
} from "./index-file.js";
