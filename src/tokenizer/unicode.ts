/**
 * Unicode helpers mirroring llama.cpp's unicode.cpp: code point classes, the GPT-2 byte <-> unicode
 * map, and the pre-tokenizer splitters. llama.cpp does not run the tokenizer.json regexes for the
 * common pre-tokenizers; it runs hand-written scanners (unicode_regex_split_custom_*) whose corner
 * cases differ from a regex engine, so these are ports of those scanners, not regexes.
 */

const LETTER = 1;
const NUMBER = 2;
const WHITESPACE = 4;
const KNOWN = 128;

// llama.cpp's unicode_set_whitespace (Unicode White_Space): differs from JS \s (0x85 in, 0xFEFF out).
const WHITESPACE_SET = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
  0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

const flagCache = new Uint8Array(0x110000);
const RE_L = /\p{L}/u;
const RE_N = /\p{N}/u;

function flags(cpt: number): number {
  let f = flagCache[cpt]!;
  if (f === 0) {
    const s = String.fromCodePoint(cpt);
    f = KNOWN | (RE_L.test(s) ? LETTER : 0) | (RE_N.test(s) ? NUMBER : 0) | (WHITESPACE_SET.has(cpt) ? WHITESPACE : 0);
    flagCache[cpt] = f;
  }
  return f;
}

export const isLetter = (c: number): boolean => (flags(c) & LETTER) !== 0;
export const isNumber = (c: number): boolean => (flags(c) & NUMBER) !== 0;
export const isWhitespace = (c: number): boolean => (flags(c) & WHITESPACE) !== 0;

/** Replaces lone surrogates by U+FFFD, as the UTF-8 conversion at llama.cpp's boundary does. */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

export function codepoints(text: string): number[] {
  const out: number[] = [];
  for (const ch of text) out.push(ch.codePointAt(0)!);
  return out;
}

// GPT-2 byte-level map: printable bytes map to themselves, the rest to U+0100 onwards.
export const BYTE_TO_CHAR: string[] = [];
export const CHAR_TO_BYTE = new Map<string, number>();
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const ch = String.fromCodePoint(printable ? b : 256 + n++);
    BYTE_TO_CHAR[b] = ch;
    CHAR_TO_BYTE.set(ch, b);
  }
}

const utf8 = new TextEncoder();

export function byteEncode(word: string): string {
  const bytes = utf8.encode(word);
  let s = "";
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}

export type SplitKind = "gpt2" | "llama3" | "qwen2" | "default";

const OUT = -1;

function lowerAscii(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c + 32 : c;
}

/**
 * Port of unicode_regex_split_custom_{gpt2,llama3,qwen2}: returns the lengths (in code points) of
 * the words of `cpts`. llama3 and qwen2 differ only in \p{N} runs (up to 3 digits vs one).
 */
function scan(cpts: readonly number[], kind: "gpt2" | "llama3" | "qwen2"): number[] {
  const lens: number[] = [];
  const end = cpts.length;
  const cpt = (p: number): number => (p >= 0 && p < end ? cpts[p]! : OUT);
  // 0 stands for "out of range", whose flags are all clear in llama.cpp (as_uint() == 0).
  const fl = (p: number): number => (p >= 0 && p < end ? flags(cpts[p]!) : 0);
  let prev = 0;
  const add = (e: number): number => {
    const len = e - prev;
    if (len > 0) lens.push(len);
    prev = e;
    return len;
  };
  const caseless = kind !== "gpt2";
  let pos = 0;
  while (pos < end) {
    const c = cpt(pos);
    const f = fl(pos);
    if (c === 0x27 && pos + 1 < end) {
      const n1 = caseless ? lowerAscii(cpt(pos + 1)) : cpt(pos + 1);
      if (n1 === 0x73 || n1 === 0x74 || n1 === 0x6d || n1 === 0x64) { pos += add(pos + 2); continue; }
      if (pos + 2 < end) {
        const n2 = caseless ? lowerAscii(cpt(pos + 2)) : cpt(pos + 2);
        if ((n1 === 0x72 && n2 === 0x65) || (n1 === 0x76 && n2 === 0x65) || (n1 === 0x6c && n2 === 0x6c)) { pos += add(pos + 3); continue; }
      }
    }
    if (kind === "gpt2") {
      let f2 = c === 0x20 ? fl(pos + 1) : f;
      if (f2 & LETTER) {
        pos += c === 0x20 ? 1 : 0;
        while (f2 & LETTER) f2 = fl(++pos);
        add(pos);
        continue;
      }
      if (f2 & NUMBER) {
        pos += c === 0x20 ? 1 : 0;
        while (f2 & NUMBER) f2 = fl(++pos);
        add(pos);
        continue;
      }
      if (!(f2 & (WHITESPACE | LETTER | NUMBER)) && f2) {
        pos += c === 0x20 ? 1 : 0;
        while (!(f2 & (WHITESPACE | LETTER | NUMBER)) && f2) f2 = fl(++pos);
        add(pos);
        continue;
      }
    } else {
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (!(c === 0x0d || c === 0x0a || f & NUMBER)) {
        if (f & LETTER || fl(pos + 1) & LETTER) {
          pos++;
          while (fl(pos) & LETTER) pos++;
          add(pos);
          continue;
        }
      }
      if (f & NUMBER) {
        if (kind === "qwen2") {
          add(++pos);
        } else {
          let ini = pos;
          while (fl(pos) & NUMBER) {
            if (++pos - ini >= 3) { add(pos); ini = pos; }
          }
          add(pos);
        }
        continue;
      }
      // <space>?[^\s\p{L}\p{N}]+[\r\n]*
      let f2 = c === 0x20 ? fl(pos + 1) : f;
      if (!(f2 & (WHITESPACE | LETTER | NUMBER)) && f) {
        pos += c === 0x20 ? 1 : 0;
        while (!(f2 & (WHITESPACE | LETTER | NUMBER)) && f2) f2 = fl(++pos);
        let c2 = cpt(pos);
        while (c2 === 0x0d || c2 === 0x0a) c2 = cpt(++pos);
        add(pos);
        continue;
      }
    }
    let nws = 0;
    let lastRN = 0;
    while (fl(pos + nws) & WHITESPACE) {
      const c2 = cpt(pos + nws);
      if (c2 === 0x0d || c2 === 0x0a) lastRN = pos + nws + 1;
      nws++;
    }
    if (kind !== "gpt2" && lastRN > 0) { pos = lastRN; add(pos); continue; }
    if (nws > 1 && cpt(pos + nws) !== OUT) { pos += nws - 1; add(pos); continue; }
    if (nws > 0) { pos += nws; add(pos); continue; }
    add(++pos);
  }
  return lens;
}

function splitByLengths(text: string, cpts: readonly number[], lens: readonly number[]): string[] {
  const out: string[] = [];
  let p = 0;
  let u = 0;
  for (const n of lens) {
    const start = u;
    for (let i = 0; i < n; i++) u += cpts[p++]! > 0xffff ? 2 : 1;
    out.push(text.slice(start, u));
  }
  return out;
}

/** Like unicode_regex_split_stl: every match and every gap between matches becomes a word. */
function regexSplit(words: string[], re: RegExp): string[] {
  const out: string[] = [];
  for (const w of words) {
    let last = 0;
    for (const m of w.matchAll(re)) {
      if (m[0].length === 0) continue;
      if (m.index! > last) out.push(w.slice(last, m.index));
      out.push(m[0]);
      last = m.index! + m[0].length;
    }
    if (last < w.length) out.push(w.slice(last));
  }
  return out;
}

function customSplit(words: string[], kind: "gpt2" | "llama3" | "qwen2"): string[] {
  const out: string[] = [];
  for (const w of words) {
    const cpts = codepoints(w);
    for (const piece of splitByLengths(w, cpts, scan(cpts, kind))) out.push(piece);
  }
  return out;
}

/** Splits `text` into pre-tokenizer words the way llama.cpp's unicode_regex_split does. */
export function preSplit(text: string, kind: SplitKind): string[] {
  if (text.length === 0) return [];
  if (kind !== "default") return customSplit([text], kind);
  // LLAMA_VOCAB_PRE_TYPE_DEFAULT: four expressions applied in turn.
  let words = regexSplit([text], /[\p{P}$+<=>^~|]+/gu);
  words = customSplit(words, "gpt2");
  words = regexSplit(words, /\p{N}+/gu);
  return regexSplit(words, /[0-9][0-9][0-9]/g);
}
