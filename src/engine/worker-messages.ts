/** Messages between the engine worker and its client (engine-client.ts). Internal to src/engine. */
import type { EngineCoreOptions } from "./engine-core.js";
import type { CompletionRequest, EngineEvent, EngineInfo, WireError } from "./protocol.js";

export interface EngineInit {
  modelPath: string;
  quantize?: "q8_0" | "q4_0";
  /** Adapter folder scanned at start; runtime loads must name paths inside it. */
  adaptersDir?: string;
  threads: number;
  /** KV cache size in tokens when kvBlocks is not given. */
  kvTokens?: number;
  core?: Partial<EngineCoreOptions>;
}

export type CallMethod = "tokenize" | "listAdapters" | "loadAdapter" | "unloadAdapter" | "stats" | "drain" | "delimiterIds";

export type ToWorker =
  | { type: "submit"; id: number; req: CompletionRequest }
  | { type: "cancel"; id: number }
  | { type: "call"; callId: number; method: CallMethod; args: unknown[] }
  | { type: "close" };

export type FromWorker =
  | { type: "progress"; fraction: number; message: string }
  | { type: "ready"; info: EngineInfo; scan: { added: number; skipped: number } }
  | { type: "fatal"; error: WireError }
  | { type: "events"; events: Array<[number, EngineEvent]> }
  | { type: "reply"; callId: number; ok: true; value: unknown }
  | { type: "reply"; callId: number; ok: false; error: WireError }
  | { type: "closed" };
