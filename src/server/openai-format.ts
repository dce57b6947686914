/** OpenAI response and stream-chunk shapes for /v1/completions and /v1/chat/completions. */
import { randomBytes } from "node:crypto";
import type { FinishReason, TokenLogprob } from "../engine/protocol.js";

export type Endpoint = "completion" | "chat";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function newCompletionId(kind: Endpoint): string {
  return `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomBytes(12).toString("hex")}`;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** The engine tells end-of-sequence ("eos") from a stop string ("stop"); OpenAI calls both "stop". */
export function openAIFinishReason(r: FinishReason): "stop" | "length" | "abort" {
  switch (r) {
    case "eos":
    case "stop":
      return "stop";
    case "length":
      return "length";
    case "cancelled":
      return "abort";
    default:
      return r satisfies never;
  }
}

/** Legacy completions logprobs; `offset` is the generated text's length before these tokens. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

export function completionLogprobs(lps: readonly TokenLogprob[], offset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const lp of lps) {
    out.tokens.push(lp.token);
    out.token_logprobs.push(lp.logprob);
    out.top_logprobs.push(Object.fromEntries(lp.top.map((t) => [t.token, t.logprob])));
    out.text_offset.push(offset);
    offset += lp.token.length;
  }
  return out;
}

export function appendCompletionLogprobs(into: CompletionLogprobs, more: CompletionLogprobs): void {
  into.tokens.push(...more.tokens);
  into.token_logprobs.push(...more.token_logprobs);
  into.top_logprobs.push(...more.top_logprobs);
  into.text_offset.push(...more.text_offset);
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(lps: readonly TokenLogprob[]): ChatTokenLogprob[] {
  return lps.map((lp) => ({
    token: lp.token,
    logprob: lp.logprob,
    bytes: lp.bytes,
    top_logprobs: lp.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: t.bytes })),
  }));
}

/** What is the same in every response and chunk of one request. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

/** The fields every response object starts with, in OpenAI's order. */
function envelope(head: ResponseHead, object: string): { id: string; object: string; created: number; model: string } {
  return { id: head.id, object, created: head.created, model: head.model };
}

export function completionChunk(
  head: ResponseHead,
  text: string,
  logprobs: CompletionLogprobs | null,
  finishReason: string | null,
  withUsageField: boolean,
): object {
  return {
    ...envelope(head, "text_completion"),
    choices: [{ index: 0, text, logprobs, finish_reason: finishReason }],
    ...(withUsageField ? { usage: null } : {}),
  };
}

export function chatChunk(
  head: ResponseHead,
  delta: { role?: "assistant"; content?: string },
  logprobs: ChatTokenLogprob[] | null,
  finishReason: string | null,
  withUsageField: boolean,
): object {
  return {
    ...envelope(head, "chat.completion.chunk"),
    choices: [{ index: 0, delta, logprobs: logprobs ? { content: logprobs } : null, finish_reason: finishReason }],
    ...(withUsageField ? { usage: null } : {}),
  };
}

/** stream_options.include_usage: one last chunk with no choices. */
export function usageChunk(kind: Endpoint, head: ResponseHead, u: Usage): object {
  return {
    ...envelope(head, kind === "chat" ? "chat.completion.chunk" : "text_completion"),
    choices: [],
    usage: u,
  };
}

export function completionResponse(head: ResponseHead, text: string, logprobs: CompletionLogprobs | null, finishReason: string, u: Usage): object {
  return {
    ...envelope(head, "text_completion"),
    choices: [{ index: 0, text, logprobs, finish_reason: finishReason }],
    usage: u,
  };
}

export function chatResponse(head: ResponseHead, text: string, logprobs: ChatTokenLogprob[] | null, finishReason: string, u: Usage): object {
  return {
    ...envelope(head, "chat.completion"),
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: text },
        logprobs: logprobs ? { content: logprobs } : null,
        finish_reason: finishReason,
      },
    ],
    usage: u,
  };
}
