/**
 * The one typed channel between the HTTP side and the engine. The engine (model, scheduler, KV
 * cache, adapter cache) lives in a worker thread; the server only ever sees an `EngineHandle`.
 * Everything that crosses is structured-clone data: no class instances, no functions.
 */
import type { ErrorCode } from "../errors.js";
import type { SamplingParams } from "./sampling.js";

/** One adapter of a request, with its weight (several = the weighted sum of their updates). */
export interface AdapterRef {
  id: string;
  weight: number;
}

export interface CompletionRequest {
  /** Text (tokenized here with `addSpecial`) or token ids. */
  prompt: string | number[];
  /** Add BOS when tokenizing a text prompt. Completions: true; rendered chat templates: false (the template has it). */
  addSpecial: boolean;
  /** Empty = the base model. */
  adapters: AdapterRef[];
  maxTokens: number;
  sampling: SamplingParams;
  stop: string[];
  /** Keep generating past end-of-sequence tokens (benchmarks). */
  ignoreEos: boolean;
  /** Log-probabilities of each sampled token with this many alternatives (0..20); absent = none. */
  logprobs?: number;
  /** Fairness key: the client (OpenAI `user`) or else the model/adapter named. */
  fairKey: string;
}

export interface TopLogprob {
  token: string;
  logprob: number;
  /** UTF-8 bytes of the token's text. */
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  top: TopLogprob[];
}

/** "eos": an end-of-generation token (OpenAI calls it "stop"); "stop": a stop string matched. */
export type FinishReason = "length" | "stop" | "eos" | "cancelled";

export interface RequestTimings {
  /** Submission to admission into a batch. */
  queuedMs: number;
  /** Submission to first sampled token. */
  firstTokenMs: number;
  /** Submission to completion. */
  totalMs: number;
}

export interface WireError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export type EngineEvent =
  /** The request passed validation and waits for its turn. */
  | { type: "accepted"; promptTokens: number; promptTokenIds: number[] }
  /** One step's output for this request: the sampled token(s) and the text they completed (may be ""). */
  | { type: "delta"; tokens: number[]; text: string; logprobs?: TokenLogprob[] }
  | { type: "done"; finishReason: FinishReason; promptTokens: number; completionTokens: number; timings: RequestTimings }
  /** Terminal: nothing follows. Validation errors arrive as this too (before "accepted"). */
  | { type: "error"; error: WireError };

export interface AdapterInfo {
  id: string;
  /** Folder (PEFT) or file (GGUF LoRA) it is read from. */
  path: string;
  format: "peft" | "gguf";
  state: "registered" | "loading" | "ready" | "failed";
  /** Resident host bytes when ready. */
  bytes: number;
  refCount: number;
  pinned: boolean;
  /** When it was registered (unix seconds). */
  created: number;
}

export interface EngineInfo {
  /** The base model's id (what `model` names to use no adapter). */
  modelId: string;
  contextLength: number;
  vocabSize: number;
  /** Jinja chat template from the model files, if any. */
  chatTemplate: string | undefined;
  bosToken: string | undefined;
  eosToken: string | undefined;
  /** Unix seconds when the model was loaded. */
  created: number;
  kvBlocks: number;
  blockSize: number;
  threads: number;
  maxQueue: number;
}

export interface EngineStats {
  /** Requests accepted but not yet admitted into a batch. */
  waiting: number;
  /** Sequences admitted (holding KV blocks). */
  running: number;
  kvBlocksUsed: number;
  kvBlocksFree: number;
  /** Cumulative counters since start. */
  promptTokens: number;
  completionTokens: number;
  steps: number;
  preemptions: number;
  adapters: {
    registered: number;
    resident: number;
    residentBytes: number;
    budgetBytes: number;
    hits: number;
    misses: number;
    loads: number;
    evictions: number;
    failures: number;
  };
  /** Adapter load latencies (ms) observed since the previous stats() call: a histogram feeds on them. */
  newLoadLatenciesMs: number[];
}

export interface RequestHandle {
  readonly id: number;
  /** Stops the sequence and frees its blocks; the request ends with REQUEST_CANCELLED unless already done. */
  cancel(): void;
}

/** What the HTTP server holds. Implemented over a worker thread (engine/engine-client.ts). */
export interface EngineHandle {
  readonly info: EngineInfo;
  /** Events arrive in order, ending with exactly one "done" or "error". */
  submit(req: CompletionRequest, onEvent: (e: EngineEvent) => void): RequestHandle;
  /** Tokenizes with the model's tokenizer (prompt-length checks before submitting, tests). */
  tokenize(text: string, addSpecial: boolean): Promise<number[]>;
  listAdapters(): Promise<AdapterInfo[]>;
  /** Registers `path` (PEFT folder or .gguf LoRA) as `id` and loads it now, so errors show at once (vLLM semantics). */
  loadAdapter(id: string, path: string): Promise<AdapterInfo>;
  /** Unregisters an adapter; requests using it finish first. ADAPTER_NOT_FOUND if unknown. */
  unloadAdapter(id: string): Promise<void>;
  stats(): Promise<EngineStats>;
  /** Ids of vocabulary tokens whose text ends a sentence (. ! ? newline), for span evidence. */
  delimiterIds?(): Promise<number[]>;
  /** Stops admitting (new submits fail with SHUTTING_DOWN) and resolves when every request has ended. */
  drain(): Promise<void>;
  close(): Promise<void>;
}
