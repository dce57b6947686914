/**
 * The scheduler's contract: plain data in, plain data out. The engine loop takes a snapshot of
 * its sequences before every step, asks `schedule()` what to run, and carries the plan out
 * (grows block tables, takes adapter leases, frees preempted sequences, starts prefetches).
 * Nothing here touches a model, a cache or a clock, so it is unit-tested on its own.
 */

/** One sequence as the scheduler sees it before a step. */
export interface SeqState {
  id: number;
  /** Submission order (smaller = earlier). Ties between equals go to the earlier arrival. */
  arrival: number;
  /** Whose share of the machine this sequence spends: the client (OpenAI `user`) or else its adapter/model. */
  fairKey: string;
  /** Adapter ids the sequence needs (empty = the base model only). */
  adapters: readonly string[];
  /** Tokens known so far: prompt + generated. */
  totalTokens: number;
  /** Tokens whose keys and values are in the KV cache (0 while waiting, and after a preemption). */
  computed: number;
  /** KV blocks the sequence holds now (0 while waiting). */
  blocks: number;
  /** Tokens it may still generate (max tokens − generated); with totalTokens it bounds the final length. */
  remaining: number;
  status: "waiting" | "running";
}

export interface SchedulerConfig {
  /** Tokens per KV block. */
  blockSize: number;
  /** KV blocks in the whole cache. */
  totalBlocks: number;
  /** Most rows (tokens) one forward step computes, all sequences together. */
  tokenBudget: number;
  /** Most sequences in one step. */
  maxRunning: number;
  /** Most prompt tokens one sequence feeds per step (chunked prefill). */
  prefillChunk: number;
  /** How many of the first waiting sequences (in admission order) get their adapters prefetched. */
  prefetchDepth: number;
}

export interface ScheduleInput {
  config: SchedulerConfig;
  /** Every live sequence, waiting and running, in any order. */
  seqs: readonly SeqState[];
  /** KV blocks free now. */
  freeBlocks: number;
  /** Adapters resident in host memory now; a waiting sequence is admitted only when all of its are. */
  readyAdapters: ReadonlySet<string>;
  /**
   * Virtual token counters per fairness key (tokens served, weighted): the scheduler admits from the
   * key that has been served least. Keys absent here start level with the least-served active key.
   */
  fairness: ReadonlyMap<string, number>;
}

/** One sequence's part of a step. */
export interface PlannedChunk {
  id: number;
  /** New tokens fed this step: 1 for a decoding sequence, up to prefillChunk while prefilling. */
  tokens: number;
  /** Blocks the sequence must hold after this step (≥ its blocks now); the engine grows its table to this. */
  blocks: number;
}

export interface StepPlan {
  /** What runs this step, in batch order. May be empty (nothing runnable: all waiting on adapters or blocks). */
  batch: PlannedChunk[];
  /** Waiting sequences admitted this step (all in `batch`): the engine takes their adapter leases. */
  admitted: number[];
  /** Running sequences preempted this step: the engine frees their blocks and leases; they wait again and recompute. */
  preempted: number[];
  /** Adapter ids to load ahead for waiting sequences (not ready now), most urgent first, no duplicates. */
  prefetch: string[];
  /** The fairness counters after charging this step's tokens. */
  fairness: Map<string, number>;
}

/** Weights of the virtual token counter (VTC, Sheng et al. 2024): an output token costs more than a prompt token. */
export const FAIRNESS_PROMPT_WEIGHT = 1;
export const FAIRNESS_OUTPUT_WEIGHT = 2;

export function blocksFor(tokens: number, blockSize: number): number {
  return Math.ceil(tokens / blockSize);
}
