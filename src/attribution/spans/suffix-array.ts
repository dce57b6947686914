/**
 * Suffix array construction by induced sorting (SA-IS; Nong, Zhang & Chan 2009), linear time for
 * integer alphabets of any size, so token ids (128k+ vocabularies plus one separator per record)
 * need no remapping. The end of the text is a virtual sentinel smaller than every symbol; the
 * recursion runs in place inside the output array (the reduced string and its suffix array share
 * `sa`), so the working memory beyond text and output is one type byte per symbol per level plus
 * two bucket tables of the alphabet's size.
 *
 *   sa[r] = start of the r-th smallest suffix of text, text[i] ∈ [0, alphabetSize).
 */
import { OpenLoraError } from "../../errors.js";

export function buildSuffixArray(text: Int32Array, alphabetSize: number): Int32Array {
  const n = text.length;
  if (!Number.isInteger(alphabetSize) || alphabetSize < 0) {
    throw new OpenLoraError("INVALID_ARGUMENT", `alphabetSize must be a non-negative integer, got ${alphabetSize}`);
  }
  for (let i = 0; i < n; i++) {
    const c = text[i]!;
    if (c < 0 || c >= alphabetSize) {
      throw new OpenLoraError("INVALID_ARGUMENT", `text[${i}] = ${c} lies outside [0, ${alphabetSize})`, { index: i, value: c });
    }
  }
  const sa = new Int32Array(n);
  if (n > 0) sais(text, sa, n, alphabetSize);
  return sa;
}

const L_TYPE = 0;
const S_TYPE = 1;

function sais(text: Int32Array, sa: Int32Array, n: number, k: number): void {
  if (n === 1) {
    sa[0] = 0;
    return;
  }
  // The virtual sentinel after the end makes the last suffix L-type.
  const type = new Uint8Array(n);
  type[n - 1] = L_TYPE;
  for (let i = n - 2; i >= 0; i--) {
    const a = text[i]!, b = text[i + 1]!;
    type[i] = a < b || (a === b && type[i + 1] === S_TYPE) ? S_TYPE : L_TYPE;
  }
  const counts = new Int32Array(k);
  for (let i = 0; i < n; i++) counts[text[i]!]!++;
  const bucket = new Int32Array(k);

  // Stage 1: sort the LMS substrings by one round of induced sorting.
  sa.fill(-1);
  bucketEnds(counts, bucket);
  for (let i = 1; i < n; i++) {
    if (type[i] === S_TYPE && type[i - 1] === L_TYPE) sa[--bucket[text[i]!]!] = i;
  }
  induce(text, sa, type, n, counts, bucket);

  let n1 = 0;
  for (let i = 0; i < n; i++) {
    const p = sa[i]!;
    if (p > 0 && type[p] === S_TYPE && type[p - 1] === L_TYPE) sa[n1++] = p;
  }

  // Stage 2: name the sorted LMS substrings. LMS positions are ≥ 2 apart, so p >> 1 indexes
  // sa[n1 ..] without collisions and keeps text order.
  sa.fill(-1, n1, n);
  let names = 0;
  let prev = -1;
  for (let i = 0; i < n1; i++) {
    const p = sa[i]!;
    if (prev < 0 || !equalLmsSubstrings(text, type, n, p, prev)) {
      names++;
      prev = p;
    }
    sa[n1 + (p >> 1)] = names - 1;
  }
  for (let i = n - 1, j = n - 1; i >= n1; i--) {
    if (sa[i]! >= 0) sa[j--] = sa[i]!;
  }

  // Stage 3: sort the LMS suffixes: recurse on the reduced string unless every name is unique.
  const reduced = sa.subarray(n - n1, n);
  const reducedSa = sa.subarray(0, n1);
  if (names < n1) sais(reduced, reducedSa, n1, names);
  else for (let i = 0; i < n1; i++) reducedSa[reduced[i]!] = i;

  // Stage 4: induce the whole suffix array from the sorted LMS suffixes.
  for (let i = 1, j = 0; i < n; i++) {
    if (type[i] === S_TYPE && type[i - 1] === L_TYPE) reduced[j++] = i;
  }
  for (let i = 0; i < n1; i++) reducedSa[i] = reduced[reducedSa[i]!]!;
  sa.fill(-1, n1, n);
  bucketEnds(counts, bucket);
  for (let i = n1 - 1; i >= 0; i--) {
    const p = sa[i]!;
    sa[i] = -1;
    sa[--bucket[text[p]!]!] = p;
  }
  induce(text, sa, type, n, counts, bucket);
}

function equalLmsSubstrings(text: Int32Array, type: Uint8Array, n: number, a: number, b: number): boolean {
  for (let d = 0; ; d++) {
    // Only the last LMS substring reaches the sentinel, and the sentinel is unique.
    if (a + d >= n || b + d >= n) return false;
    if (text[a + d] !== text[b + d] || type[a + d] !== type[b + d]) return false;
    if (d > 0 && type[a + d] === S_TYPE && type[a + d - 1] === L_TYPE) return true;
  }
}

function induce(text: Int32Array, sa: Int32Array, type: Uint8Array, n: number, counts: Int32Array, bucket: Int32Array): void {
  bucketStarts(counts, bucket);
  // The suffix just before the virtual sentinel is the smallest of its bucket.
  sa[bucket[text[n - 1]!]!++] = n - 1;
  for (let i = 0; i < n; i++) {
    const j = sa[i]! - 1;
    if (j >= 0 && type[j] === L_TYPE) sa[bucket[text[j]!]!++] = j;
  }
  bucketEnds(counts, bucket);
  for (let i = n - 1; i >= 0; i--) {
    const j = sa[i]! - 1;
    if (j >= 0 && type[j] === S_TYPE) sa[--bucket[text[j]!]!] = j;
  }
}

function bucketStarts(counts: Int32Array, bucket: Int32Array): void {
  let sum = 0;
  for (let c = 0; c < counts.length; c++) {
    bucket[c] = sum;
    sum += counts[c]!;
  }
}

function bucketEnds(counts: Int32Array, bucket: Int32Array): void {
  let sum = 0;
  for (let c = 0; c < counts.length; c++) {
    sum += counts[c]!;
    bucket[c] = sum;
  }
}
