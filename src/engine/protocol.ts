/**
 * The one typed channel between the HTTP side and the engine. The engine (model, scheduler, KV
 * cache, adapter cache) lives in a worker thread; the server only ever sees an `EngineHandle`.
 * Everything that crosses is structured-clone data: no class instances, no functions.
 */
import type { ErrorCode } from "../errors.js";
import type { Hex } from "../formats/sha256.js";
import type { DecodingParams } from "./decoding.js";

export type { Hex } from "../formats/sha256.js";

/** One adapter of a request, with its weight (several = the weighted sum of their updates). */
export interface AdapterRef {
  id: string;
  weight: number;
}

export interface CompletionRequest extends DecodingParams {
  /** Text (tokenized here with `addSpecial`) or token ids. */
  prompt: string | number[];
  /** Add BOS when tokenizing a text prompt. Completions: true; rendered chat templates: false (the template has it). */
  addSpecial: boolean;
  /** Empty = the base model. */
  adapters: AdapterRef[];
  stop: string[];
  /** Log-probabilities of each sampled token with this many alternatives (0..20); absent = none. */
  logprobs?: number;
  /** Fairness key: the client (OpenAI `user`) or else the model/adapter named. */
  fairKey: string;
}

export interface AdmittedAdapter {
  id: string;
  /** 0x + 64 lowercase hex: SHA-256 by the rule of src/attribution/content-hash.ts. */
  contentHash: Hex;
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

/**
 * A request's events, in this order: "accepted", "admitted", then "delta"s, then exactly one
 * terminal "done" or "error" ("error" may come at any point, also instead of "accepted").
 */
export type EngineEvent =
  /** The request passed validation and waits for its turn. */
  | { type: "accepted"; promptTokens: number; promptTokenIds: number[] }
  /**
   * Sent once, when the request's sequence is first admitted into a batch, before its first
   * "delta": the adapters it runs with, in request order (empty for the base model), each with the
   * content hash the engine computed from the bytes it loaded (LoraAdapter.contentHash). Should a
   * preempted sequence find an adapter's hash changed when re-admitted, it ends with
   * ADAPTER_CONTENT_CHANGED instead; so every token of a request comes from these adapters.
   */
  | { type: "admitted"; adapters: AdmittedAdapter[] }
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
  /**
   * The base model's content hash, computed by the engine thread from the bytes it loaded, by the
   * rule of src/attribution/content-hash.ts (a GGUF file's SHA-256; a Hugging Face folder's SHA-256
   * over the SHA-256s of its .json and .safetensors files in name order).
   */
  modelContentHash: Hex;
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

/**
 * "ready": serving. "restarting": the engine thread died and the supervisor is starting a new one.
 * "failed": the engine thread died and nothing restarts it (a bare WorkerEngine). Anything but
 * "ready" is NOT_READY (503) at the HTTP side, /health included.
 */
export type EngineState = "ready" | "restarting" | "failed";

/**
 * What the HTTP server holds. Implemented over a worker thread (engine/engine-client.ts) and, in
 * `openlora serve`, by the supervisor that restarts it (engine/supervisor.ts).
 */
export interface EngineHandle {
  readonly info: EngineInfo;
  /** Whether it can serve now; absent = always "ready". While "restarting", submits and calls fail with NOT_READY. */
  readonly state?: EngineState;
  /** Times the engine thread was restarted after it died; absent = never restarts. */
  readonly restarts?: number;
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
