/**
 * Log-probabilities of the model's distribution (raw logits, before penalties and temperature,
 * as vLLM and OpenAI report them): log-softmax computed in f64, alternatives sorted by probability
 * with ties to the lower id.
 */
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { TokenLogprob, TopLogprob } from "./protocol.js";

const utf8 = new TextEncoder();

export const MAX_TOP_LOGPROBS = 20;

export function tokenLogprob(logits: Float32Array, token: number, top: number, tokenizer: Tokenizer): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const logZ = max + Math.log(sum);
  const entry = (id: number): TopLogprob => {
    const text = tokenizer.decode([id], { continuation: true });
    return { token: text, logprob: logits[id]! - logZ, bytes: [...utf8.encode(text)] };
  };
  return { ...entry(token), top: topIds(logits, Math.min(top, MAX_TOP_LOGPROBS)).map(entry) };
}

/** The k largest logits' ids, descending, ties to the lower id (k is small: a sorted insertion list). */
function topIds(logits: Float32Array, k: number): number[] {
  const ids: number[] = [];
  if (k <= 0) return ids;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (ids.length === k && v <= logits[ids[k - 1]!]!) continue;
    let at = ids.length;
    while (at > 0 && logits[ids[at - 1]!]! < v) at--;
    ids.splice(at, 0, i);
    if (ids.length > k) ids.pop();
  }
  return ids;
}
