/**
 * Sentence delimiters for span search: the token ids whose text contains a sentence end or a line
 * break. Spans never run through one (see MatchOptions.isDelimiter).
 */

/** What the helper needs from a tokenizer (src/tokenizer/tokenizer.ts's Tokenizer fits). */
export interface DecodingVocabulary {
  readonly vocabSize: number;
  decode(ids: readonly number[]): string;
}

/** Default delimiter characters: . ! ? and a newline. */
export const SENTENCE_DELIMITER_CHARS = ".!?\n";

/**
 * Ids in [0, vocabSize) whose decoded text contains any of `chars`. Decodes every id once
 * (a second or so for a 150k vocabulary): compute once per tokenizer and keep it.
 */
export function sentenceDelimiterIds(vocab: DecodingVocabulary, chars: string = SENTENCE_DELIMITER_CHARS): Set<number> {
  const wanted = [...chars];
  const ids = new Set<number>();
  for (let id = 0; id < vocab.vocabSize; id++) {
    const text = vocab.decode([id]);
    if (wanted.some((ch) => text.includes(ch))) ids.add(id);
  }
  return ids;
}

/** The predicate form span queries take. */
export function delimiterPredicate(ids: ReadonlySet<number>): (tokenId: number) => boolean {
  return (tokenId) => ids.has(tokenId);
}
