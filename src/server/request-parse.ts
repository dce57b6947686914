/**
 * Validation of OpenAI completion and chat-completion bodies. Every field is checked for type
 * and range; a failure is INVALID_ARGUMENT naming the field (`param`). Absent and null mean the
 * same (clients differ on which they send); unknown fields are ignored, as OpenAI-compatible
 * servers do.
 *
 * Defaults: temperature 1.0 (OpenAI's; 0 = greedy), top_p 1, no stop strings, max_tokens 16 for
 * completions (OpenAI's) and the rest of the context for chat (resolved once the prompt is
 * tokenized, see completions.ts).
 */
import { compositionWeight, isCompositionWeight, MAX_COMPOSITION_WEIGHT } from "../adapters/composition.js";
import type { AdapterRef, EngineInfo } from "../engine/protocol.js";
import type { SamplingParams } from "../engine/sampling.js";
import { isPlainId } from "../adapters/validate.js";
import { OpenLoraError, quoted } from "../errors.js";
import { invalidArgument } from "./http-errors.js";

export interface RequestLimits {
  /** Most stop strings a request may give. */
  maxStopStrings: number;
  /** Largest max_tokens a request may ask for; undefined = only the context length bounds it. */
  maxTokensLimit: number | undefined;
}

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
}

/** What both endpoints share, validated. */
export interface GenerationParams {
  /** The `model` field as sent (echoed in responses). */
  model: string;
  /** Adapters to apply; empty = the base model. */
  adapters: AdapterRef[];
  /** True when `model` named an adapter implicitly (an unknown one is then "model not served"). */
  modelIsAdapter: boolean;
  /** undefined = the endpoint's default. */
  maxTokens: number | undefined;
  sampling: SamplingParams;
  stop: string[];
  ignoreEos: boolean;
  /** Alternatives per token to report; undefined = no logprobs. */
  logprobs: number | undefined;
  stream: boolean;
  includeUsage: boolean;
  fairKey: string;
}

export interface CompletionParams extends GenerationParams {
  prompt: string | number[];
}

export interface ChatParams extends GenerationParams {
  messages: ChatMessage[];
}

type Body = Record<string, unknown>;

const MAX_COMPOSED_ADAPTERS = 8;

function asBody(raw: unknown): Body {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw invalidArgument(null, "The request body must be a JSON object.");
  }
  return raw as Body;
}

function field(body: Body, name: string): unknown {
  const v = body[name];
  return v === null ? undefined : v;
}

function optBool(body: Body, name: string): boolean | undefined {
  const v = field(body, name);
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw invalidArgument(name, `${name} must be a boolean.`);
  return v;
}

function optString(body: Body, name: string): string | undefined {
  const v = field(body, name);
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw invalidArgument(name, `${name} must be a string.`);
  return v;
}

interface Range {
  min?: number;
  /** The minimum itself is not allowed. */
  minExclusive?: boolean;
  max?: number;
  integer?: boolean;
}

function describe(name: string, r: Range): string {
  const kind = r.integer ? "an integer" : "a number";
  const lo = r.min === undefined ? "" : r.minExclusive ? `> ${r.min}` : `>= ${r.min}`;
  const hi = r.max === undefined ? "" : `<= ${r.max}`;
  const bounds = [lo, hi].filter((s) => s !== "").join(" and ");
  return `${name} must be ${kind}${bounds ? ` ${bounds}` : ""}`;
}

function checkNumber(name: string, v: unknown, r: Range): number {
  const ok =
    typeof v === "number" &&
    Number.isFinite(v) &&
    (!r.integer || Number.isSafeInteger(v)) &&
    (r.min === undefined || (r.minExclusive ? v > r.min : v >= r.min)) &&
    (r.max === undefined || v <= r.max);
  if (!ok) throw invalidArgument(name, `${describe(name, r)}, got ${quoted(v)}.`);
  return v as number;
}

function optNumber(body: Body, name: string, r: Range): number | undefined {
  const v = field(body, name);
  return v === undefined ? undefined : checkNumber(name, v, r);
}

function parseStop(body: Body, limits: RequestLimits): string[] {
  const v = field(body, "stop");
  if (v === undefined) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
    throw invalidArgument("stop", "stop must be a string or an array of strings.");
  }
  if (list.length > limits.maxStopStrings) {
    throw invalidArgument("stop", `stop may hold at most ${limits.maxStopStrings} strings, got ${list.length}.`);
  }
  if (list.some((s) => s === "")) throw invalidArgument("stop", "stop strings must not be empty.");
  return list as string[];
}

function parseAdapters(body: Body): AdapterRef[] | undefined {
  const v = field(body, "adapters");
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_COMPOSED_ADAPTERS) {
    throw invalidArgument("adapters", `adapters must be an array of 1 to ${MAX_COMPOSED_ADAPTERS} {id, weight} objects.`);
  }
  const seen = new Set<string>();
  return v.map((a: unknown, i) => {
    const entry = a as { id?: unknown; weight?: unknown } | null;
    if (typeof entry !== "object" || entry === null || !isPlainId(entry.id)) {
      throw invalidArgument("adapters", `adapters[${i}].id must be an adapter id (letters, digits, ".", "_", "-"; at most 128), got ${quoted(entry?.id)}.`);
    }
    if (!isCompositionWeight(entry.weight)) {
      throw invalidArgument("adapters", `adapters[${i}].weight must be a number in [0, ${MAX_COMPOSITION_WEIGHT}].`);
    }
    if (seen.has(entry.id)) throw invalidArgument("adapters", `adapters lists '${entry.id}' twice.`);
    seen.add(entry.id);
    return { id: entry.id, weight: compositionWeight(entry.weight) };
  });
}

function parseSampling(body: Body): SamplingParams {
  const topK = optNumber(body, "top_k", { min: -1, integer: true });
  const sampling: SamplingParams = {
    temperature: optNumber(body, "temperature", { min: 0 }) ?? 1,
    // vLLM spells "no top-k" as -1; the engine as 0.
    topK: topK === -1 ? 0 : topK,
    topP: optNumber(body, "top_p", { min: 0, minExclusive: true, max: 1 }),
    minP: optNumber(body, "min_p", { min: 0, max: 1 }),
    repetitionPenalty: optNumber(body, "repetition_penalty", { min: 0, minExclusive: true }),
    presencePenalty: optNumber(body, "presence_penalty", { min: -2, max: 2 }),
    frequencyPenalty: optNumber(body, "frequency_penalty", { min: -2, max: 2 }),
    seed: optNumber(body, "seed", { integer: true }),
  };
  for (const k of Object.keys(sampling) as (keyof SamplingParams)[]) {
    if (sampling[k] === undefined) delete sampling[k];
  }
  return sampling;
}

/** Fields shared by both endpoints; `maxTokens` is left for the caller (names differ). */
function parseCommon(body: Body, info: EngineInfo, limits: RequestLimits): Omit<GenerationParams, "maxTokens"> {
  const model = field(body, "model");
  if (typeof model !== "string" || model === "") throw invalidArgument("model", "model must be a non-empty string.");
  const n = optNumber(body, "n", { integer: true, min: 1 });
  if (n !== undefined && n !== 1) throw invalidArgument("n", "Only n = 1 is supported: send one request per choice.");
  const stream = optBool(body, "stream") ?? false;
  const streamOptions = field(body, "stream_options");
  let includeUsage = false;
  if (streamOptions !== undefined) {
    if (!stream) throw invalidArgument("stream_options", "stream_options is only allowed with stream: true.");
    if (typeof streamOptions !== "object" || Array.isArray(streamOptions)) {
      throw invalidArgument("stream_options", "stream_options must be an object.");
    }
    includeUsage = optBool(streamOptions as Body, "include_usage") ?? false;
  }
  const composed = parseAdapters(body);
  let adapters: AdapterRef[] = [];
  let modelIsAdapter = false;
  if (composed) {
    if (model !== info.modelId && !composed.some((a) => a.id === model)) {
      throw invalidArgument("model", `With adapters given, model must be the base model '${info.modelId}' or one of the adapters.`);
    }
    adapters = composed;
  } else if (model !== info.modelId) {
    if (!isPlainId(model)) throw new OpenLoraError("MODEL_NOT_SERVED", `The model ${quoted(model)} does not exist.`, { param: "model" });
    adapters = [{ id: model, weight: 1 }];
    modelIsAdapter = true;
  }
  const user = optString(body, "user");
  return {
    model,
    adapters,
    modelIsAdapter,
    sampling: parseSampling(body),
    stop: parseStop(body, limits),
    ignoreEos: optBool(body, "ignore_eos") ?? false,
    logprobs: undefined,
    stream,
    includeUsage,
    fairKey: user !== undefined && user !== "" ? user : model,
  };
}

function checkMaxTokens(name: string, v: number | undefined, limits: RequestLimits): number | undefined {
  if (v !== undefined && limits.maxTokensLimit !== undefined && v > limits.maxTokensLimit) {
    throw invalidArgument(name, `${name} may be at most ${limits.maxTokensLimit}, got ${v}.`);
  }
  return v;
}

function parsePrompt(body: Body, info: EngineInfo): string | number[] {
  const v = field(body, "prompt");
  if (typeof v === "string") return v;
  if (!Array.isArray(v) || v.length === 0) {
    throw invalidArgument("prompt", "prompt must be a string, a non-empty array of token ids, or an array of one string.");
  }
  if (v.every((x) => typeof x === "string")) {
    if (v.length !== 1) throw invalidArgument("prompt", "Batched prompts are not supported: send one prompt per request.");
    return v[0] as string;
  }
  let ids: unknown[] = v;
  if (v.every((x) => Array.isArray(x))) {
    if (v.length !== 1) throw invalidArgument("prompt", "Batched prompts are not supported: send one prompt per request.");
    ids = v[0] as unknown[];
  }
  if (ids.length === 0 || !ids.every((t) => Number.isSafeInteger(t) && (t as number) >= 0 && (t as number) < info.vocabSize)) {
    throw invalidArgument("prompt", `Token ids must be integers in [0, ${info.vocabSize}).`);
  }
  return ids as number[];
}

export function parseCompletionBody(raw: unknown, info: EngineInfo, limits: RequestLimits): CompletionParams {
  const body = asBody(raw);
  if (optBool(body, "echo") === true) throw invalidArgument("echo", "echo is not supported.");
  const common = parseCommon(body, info, limits);
  const prompt = parsePrompt(body, info);
  const maxTokens = checkMaxTokens("max_tokens", optNumber(body, "max_tokens", { integer: true, min: 1 }), limits);
  const logprobs = optNumber(body, "logprobs", { integer: true, min: 0, max: 5 });
  return { ...common, prompt, maxTokens, logprobs };
}

function parseContent(v: unknown, i: number): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  if (!Array.isArray(v)) throw invalidArgument("messages", `messages[${i}].content must be a string or an array of text parts.`);
  return v
    .map((part: unknown, j) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (typeof p !== "object" || p === null || p.type !== "text" || typeof p.text !== "string") {
        throw invalidArgument("messages", `messages[${i}].content[${j}] must be {type: "text", text: string}; other part types are not supported.`);
      }
      return p.text;
    })
    .join("\n");
}

function parseMessages(body: Body): ChatMessage[] {
  const v = field(body, "messages");
  if (!Array.isArray(v) || v.length === 0) throw invalidArgument("messages", "messages must be a non-empty array.");
  return v.map((m: unknown, i) => {
    const msg = m as { role?: unknown; content?: unknown; name?: unknown } | null;
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) throw invalidArgument("messages", `messages[${i}] must be an object.`);
    if (typeof msg.role !== "string" || msg.role === "") throw invalidArgument("messages", `messages[${i}].role must be a non-empty string.`);
    const out: ChatMessage = { role: msg.role, content: parseContent(msg.content, i) };
    if (typeof msg.name === "string") out.name = msg.name;
    return out;
  });
}

export function parseChatBody(raw: unknown, info: EngineInfo, limits: RequestLimits): ChatParams {
  const body = asBody(raw);
  const common = parseCommon(body, info, limits);
  const messages = parseMessages(body);
  // max_completion_tokens replaces the deprecated max_tokens; the newer one wins when both are sent.
  const mct = checkMaxTokens("max_completion_tokens", optNumber(body, "max_completion_tokens", { integer: true, min: 1 }), limits);
  const mt = checkMaxTokens("max_tokens", optNumber(body, "max_tokens", { integer: true, min: 1 }), limits);
  const wantLogprobs = optBool(body, "logprobs") ?? false;
  const top = optNumber(body, "top_logprobs", { integer: true, min: 0, max: 20 });
  if (top !== undefined && !wantLogprobs) throw invalidArgument("top_logprobs", "top_logprobs requires logprobs: true.");
  return { ...common, messages, maxTokens: mct ?? mt, logprobs: wantLogprobs ? (top ?? 0) : undefined };
}
