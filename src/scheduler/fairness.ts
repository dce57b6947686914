/**
 * Virtual token counters (VTC, Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024):
 * each fairness key is charged for the work done for it, and the key served least goes first.
 * The counters live in the engine between steps; these helpers are pure.
 */
import { FAIRNESS_OUTPUT_WEIGHT, FAIRNESS_PROMPT_WEIGHT, type SeqState } from "./types.js";

/** Earlier arrival first; id breaks ties so every order is total and deterministic. */
export function byArrival(a: SeqState, b: SeqState): number {
  return a.arrival - b.arrival || a.id - b.id;
}

/**
 * What a chunk of `tokens` costs its key: every row computed (prompt, recompute or the fed-back last
 * token) at the prompt weight, plus the output weight when the chunk reaches totalTokens, because
 * then the step samples a new token for it.
 */
export function chunkCharge(seq: Pick<SeqState, "computed" | "totalTokens">, tokens: number): number {
  const producesToken = seq.computed + tokens >= seq.totalTokens;
  return tokens * FAIRNESS_PROMPT_WEIGHT + (producesToken ? FAIRNESS_OUTPUT_WEIGHT : 0);
}

/**
 * The counters a step starts from: a copy of `fairness`, plus every key of a live sequence that is
 * absent, set to the least counter among keys that have running sequences (0 if none). A newcomer
 * thus neither banks credit for the time it was idle nor starts behind everyone (which could starve it).
 * Waiting newcomers are recorded too: their level is fixed on arrival, so while they wait the busy
 * keys pull ahead of them and they win the next free slot instead of tying forever with the leader.
 */
export function startingCounters(fairness: ReadonlyMap<string, number>, seqs: readonly SeqState[]): Map<string, number> {
  const counters = new Map(fairness);
  let floor = Infinity;
  for (const seq of seqs) {
    const c = fairness.get(seq.fairKey);
    if (seq.status === "running" && c !== undefined) floor = Math.min(floor, c);
  }
  if (floor === Infinity) floor = 0;
  for (const seq of seqs) if (!counters.has(seq.fairKey)) counters.set(seq.fairKey, floor);
  return counters;
}

/**
 * Lazily yields `seqs` in the order VTC serves them: repeatedly the key with the least counter (ties:
 * the key whose oldest sequence arrived first), FCFS within a key, charging each pick `cost(seq)` to
 * its key before choosing the next — so a key with many queued requests alternates with the others
 * instead of going first for all of them. `counters` is not modified.
 */
export function* vtcOrder(
  seqs: readonly SeqState[],
  counters: ReadonlyMap<string, number>,
  cost: (seq: SeqState) => number,
): Generator<SeqState> {
  const queues = new Map<string, SeqState[]>();
  for (const seq of [...seqs].sort(byArrival)) {
    const q = queues.get(seq.fairKey);
    if (q) q.push(seq);
    else queues.set(seq.fairKey, [seq]);
  }
  const level = new Map<string, number>();
  for (const key of queues.keys()) level.set(key, counters.get(key) ?? 0);
  const heads = new Map<string, number>();
  for (;;) {
    let bestKey: string | undefined;
    let best: SeqState | undefined;
    for (const [key, q] of queues) {
      const head = q[heads.get(key) ?? 0];
      if (head === undefined) continue;
      if (best === undefined || bestKey === undefined) {
        best = head;
        bestKey = key;
        continue;
      }
      const diff = level.get(key)! - level.get(bestKey)!;
      if (diff < 0 || (diff === 0 && byArrival(head, best) < 0)) {
        best = head;
        bestKey = key;
      }
    }
    if (best === undefined || bestKey === undefined) return;
    heads.set(bestKey, (heads.get(bestKey) ?? 0) + 1);
    level.set(bestKey, level.get(bestKey)! + cost(best));
    yield best;
  }
}

/**
 * Drops the counters of keys with no live sequence. The engine calls it on the counters a plan
 * returns, after applying the plan (finished sequences removed), so the map stays as small as the set
 * of active clients and a client that comes back later starts level with the others again.
 */
export function pruneFairness(fairness: ReadonlyMap<string, number>, seqs: readonly Pick<SeqState, "fairKey">[]): Map<string, number> {
  const live = new Set(seqs.map((s) => s.fairKey));
  const kept = new Map<string, number>();
  for (const [key, c] of fairness) if (live.has(key)) kept.set(key, c);
  return kept;
}
