/**
 * Chat prompts: the model's Jinja chat template rendered with @huggingface/jinja, with the
 * variables Hugging Face templates expect. The rendered text carries BOS itself, so the engine
 * tokenizes it with addSpecial false.
 */
import { Template } from "@huggingface/jinja";
import type { EngineInfo } from "../engine/protocol.js";
import { invalidArgument } from "./http-errors.js";
import type { ChatMessage } from "./request-parse.js";

// One model per server: parsing once per template source is enough.
let cached: { source: string; template: Template } | undefined;

function compile(source: string): Template {
  if (cached?.source === source) return cached.template;
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw invalidArgument("messages", `The model's chat template cannot be parsed: ${(e as Error).message}`);
  }
  cached = { source, template };
  return template;
}

export function renderChatPrompt(info: EngineInfo, messages: ChatMessage[]): string {
  if (info.chatTemplate === undefined || info.chatTemplate === "") {
    throw invalidArgument("messages", `The model '${info.modelId}' has no chat template: use /v1/completions with a plain prompt.`);
  }
  const template = compile(info.chatTemplate);
  try {
    return template.render({
      messages,
      add_generation_prompt: true,
      bos_token: info.bosToken ?? "",
      eos_token: info.eosToken ?? "",
    });
  } catch (e) {
    // Templates reject bad conversations with raise_exception (e.g. roles not alternating).
    throw invalidArgument("messages", `The chat template rejected the messages: ${(e as Error).message}`);
  }
}
