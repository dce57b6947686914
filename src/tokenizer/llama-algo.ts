/**
 * Ports of llama.cpp's tokenizer algorithms (src/llama-vocab.cpp): SentencePiece bigram merging
 * (llm_tokenizer_spm_session), byte-level BPE (llm_tokenizer_bpe_session), special-token
 * partitioning (tokenizer_st_partition) and detokenizer space clean-up. Kept literal on purpose:
 * matching llama.cpp token for token matters more than elegance.
 */
import { oerr } from "../errors.js";
import { byteEncode, preSplit, type SplitKind } from "./unicode.js";

/** llama_token_attr bits. */
export const ATTR = {
  UNDEFINED: 0, UNKNOWN: 1, UNUSED: 2, NORMAL: 4, CONTROL: 8, USER_DEFINED: 16, BYTE: 32,
} as const;

/** GGUF tokenizer.ggml.token_type values. */
export const TOKEN_TYPE = { UNDEFINED: 0, NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface Vocab {
  readonly texts: readonly string[];
  readonly scores: Float32Array;
  readonly attrs: Uint8Array;
  readonly textToId: ReadonlyMap<string, number>;
}

/** Binary heap; `before(a, b)` is true when a must come out first. */
class Heap<T> {
  private items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}
  get size(): number { return this.items.length; }
  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

interface Sym { start: number; n: number; prev: number; next: number }

/** Splits a string into symbols of one code point each, linked as in llm_symbol. */
function symbolsOf(text: string): Sym[] {
  const syms: Sym[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    const n = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
    syms.push({ start: i, n, prev: syms.length - 1, next: -1 });
    i += n;
  }
  for (let k = 0; k + 1 < syms.length; k++) syms[k]!.next = k + 1;
  return syms;
}

const utf8 = new TextEncoder();

interface SpmBigram { left: number; right: number; score: number; size: number }

/** llm_tokenizer_spm_session::tokenize on already space-escaped text. */
export function spmTokenize(vocab: Vocab, text: string, out: number[]): void {
  const syms = symbolsOf(text);
  const queue = new Heap<SpmBigram>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
  const revMerge = new Map<string, [number, number]>();
  const str = (s: Sym): string => text.substr(s.start, s.n);
  const tryAdd = (left: number, right: number): void => {
    if (left === -1 || right === -1) return;
    const l = syms[left]!;
    const merged = text.substr(l.start, l.n + syms[right]!.n);
    const id = vocab.textToId.get(merged);
    if (id === undefined) return;
    queue.push({ left, right, score: vocab.scores[id]!, size: merged.length });
    revMerge.set(merged, [left, right]);
  };
  for (let i = 1; i < syms.length; i++) tryAdd(i - 1, i);
  while (queue.size > 0) {
    const bg = queue.pop();
    const l = syms[bg.left]!;
    const r = syms[bg.right]!;
    if (l.n === 0 || r.n === 0 || l.n + r.n !== bg.size) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next]!.prev = bg.left;
    tryAdd(l.prev, bg.left);
    tryAdd(bg.left, l.next);
  }
  const resegment = (s: Sym): void => {
    const t = str(s);
    const id = vocab.textToId.get(t);
    if (id !== undefined) { out.push(id); return; }
    const p = revMerge.get(t);
    if (p === undefined) {
      for (const b of utf8.encode(t)) out.push(spmByteToken(vocab, b));
      return;
    }
    resegment(syms[p[0]]!);
    resegment(syms[p[1]]!);
  };
  if (syms.length === 0) return;
  for (let i = 0; i !== -1; i = syms[i]!.next) resegment(syms[i]!);
}

function spmByteToken(vocab: Vocab, b: number): number {
  const hex = b.toString(16).toUpperCase().padStart(2, "0");
  const id = vocab.textToId.get(`<0x${hex}>`) ?? (b < 0x80 ? vocab.textToId.get(String.fromCharCode(b)) : undefined);
  if (id === undefined) throw oerr("TOKENIZER_MISSING", `SentencePiece vocabulary has no byte token <0x${hex}>`);
  return id;
}

interface BpeBigram { left: number; right: number; text: string; rank: number }

export interface BpeModel {
  readonly vocab: Vocab;
  /** "left right" → merge rank. */
  readonly ranks: ReadonlyMap<string, number>;
  readonly split: SplitKind;
  readonly ignoreMerges: boolean;
}

/** Byte-level BPE of one encoded word (llm_tokenizer_bpe_session::tokenize, inner loop). */
function bpeWord(model: BpeModel, word: string): string[] {
  if (model.ignoreMerges && model.vocab.textToId.has(word)) return [word];
  // Byte-encoded words hold one UTF-16 unit per symbol (all below U+0144).
  const syms: Sym[] = [];
  for (let i = 0; i < word.length; i++) syms.push({ start: i, n: 1, prev: i - 1, next: i + 1 < word.length ? i + 1 : -1 });
  const queue = new Heap<BpeBigram>((a, b) => a.rank < b.rank || (a.rank === b.rank && a.left < b.left));
  const str = (s: Sym): string => word.substr(s.start, s.n);
  const add = (left: number, right: number): void => {
    if (left === -1 || right === -1) return;
    const lt = str(syms[left]!);
    const rt = str(syms[right]!);
    const rank = model.ranks.get(`${lt} ${rt}`);
    if (rank === undefined) return;
    queue.push({ left, right, text: lt + rt, rank });
  };
  for (let i = 1; i < syms.length; i++) add(i - 1, i);
  while (queue.size > 0) {
    const bg = queue.pop();
    const l = syms[bg.left]!;
    const r = syms[bg.right]!;
    if (l.n === 0 || r.n === 0) continue;
    if (str(l) + str(r) !== bg.text) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next]!.prev = bg.left;
    add(l.prev, bg.left);
    add(bg.left, l.next);
  }
  return syms.filter((s) => s.n > 0).map(str);
}

/** llm_tokenizer_bpe_session::tokenize for one raw text fragment. */
export function bpeTokenize(model: BpeModel, text: string, out: number[], cache?: Map<string, number[]>): void {
  for (const raw of preSplit(text, model.split)) {
    const word = byteEncode(raw);
    const hit = cache?.get(word);
    if (hit) { for (const id of hit) out.push(id); continue; }
    const ids: number[] = [];
    for (const piece of bpeWord(model, word)) {
      const id = model.vocab.textToId.get(piece);
      if (id !== undefined) { ids.push(id); continue; }
      // llama.cpp falls back to single bytes of the encoded piece; only ASCII ones can match.
      for (const b of utf8.encode(piece)) {
        const bid = b < 0x80 ? model.vocab.textToId.get(String.fromCharCode(b)) : undefined;
        if (bid !== undefined) ids.push(bid);
      }
    }
    if (cache && cache.size < 100_000) cache.set(word, ids);
    for (const id of ids) out.push(id);
  }
}

export type Fragment = string | number;

/**
 * tokenizer_st_partition: cuts the text at every occurrence of the special tokens (longest first),
 * leaving strings for ordinary text and ids for the tokens.
 */
export function partition(text: string, specials: readonly number[], vocab: Vocab, parseSpecial: boolean): Fragment[] {
  let frags: Fragment[] = text.length > 0 ? [text] : [];
  for (const id of specials) {
    const attr = vocab.attrs[id]!;
    if (!parseSpecial && attr & (ATTR.CONTROL | ATTR.UNKNOWN)) continue;
    const tok = vocab.texts[id]!;
    if (!frags.some((f) => typeof f === "string" && f.includes(tok))) continue;
    const next: Fragment[] = [];
    for (const f of frags) {
      if (typeof f !== "string") { next.push(f); continue; }
      let from = 0;
      for (let at = f.indexOf(tok); at !== -1; at = f.indexOf(tok, from)) {
        if (at > from) next.push(f.slice(from, at));
        next.push(id);
        from = at + tok.length;
      }
      if (from < f.length) next.push(f.slice(from));
    }
    frags = next;
  }
  return frags;
}

/** The three clean-up passes of llama_vocab::impl::detokenize (clean_spaces), on bytes, in place. */
export function cleanSpaces(input: Uint8Array): Uint8Array {
  const t = input.slice();
  const SP = 0x20, AP = 0x27;
  let total = t.length;
  const t1 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < t1; i++) {
    const x = t[i]!;
    if (t[i - 1] === SP && (x === 0x3f || x === 0x21 || x === 0x2e || x === 0x2c)) total--;
    t[total++] = x;
  }
  const t2 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < t2; i++) {
    const x = t[i]!;
    if (x === AP && i + 1 < t2 && t[i - 1] === SP && t[i + 1] === SP) {
      total--;
      t[++i] = 0;
    }
    t[total++] = x;
  }
  const t3 = total;
  total = total ? 1 : 0;
  for (let i = 1; i < t3; i++) {
    const x = t[i]!;
    if (t[i - 1] === SP && x === AP && i + 1 < t3) {
      const x1 = t[i + 1];
      if (x1 === 0x73 || x1 === 0x6d) total--; // " 's", " 'm"
      else if (i + 2 < t3) {
        const x2 = t[i + 2];
        if ((x1 === 0x72 && x2 === 0x65) || (x1 === 0x76 && x2 === 0x65)) total--; // " 're", " 've"
      }
    }
    t[total++] = x;
  }
  return t.subarray(0, total);
}
