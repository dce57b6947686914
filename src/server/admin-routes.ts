/**
 * Model listing, vLLM's runtime adapter loading, health and metrics.
 * /v1/models follows vLLM: the base model (parent null) and one entry per adapter (parent = base).
 */
import type { FastifyInstance } from "fastify";
import type { AdapterInfo, EngineInfo } from "../engine/protocol.js";
import { OpenLoraError, quoted } from "../errors.js";
import { requireEngine, type ServerContext } from "./context.js";
import { invalidArgument, sendHttpError, toHttpError } from "./http-errors.js";

interface ModelCard {
  id: string;
  object: "model";
  created: number;
  owned_by: "openlora";
  root: string;
  parent: string | null;
}

function baseCard(info: EngineInfo): ModelCard {
  return { id: info.modelId, object: "model", created: info.created, owned_by: "openlora", root: info.modelId, parent: null };
}

// AdapterInfo has no source path (vLLM's root); the adapter id stands in for it.
function adapterCard(a: AdapterInfo, info: EngineInfo): ModelCard {
  return { id: a.id, object: "model", created: a.created, owned_by: "openlora", root: a.id, parent: info.modelId };
}

function requiredString(body: unknown, name: string): string {
  const v = typeof body === "object" && body !== null ? (body as Record<string, unknown>)[name] : undefined;
  if (typeof v !== "string" || v === "") throw invalidArgument(name, `${name} must be a non-empty string.`);
  return v;
}

export function registerAdminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get("/v1/models", async () => {
    const engine = requireEngine(ctx.slot);
    const adapters = await engine.listAdapters();
    return { object: "list", data: [baseCard(engine.info), ...adapters.map((a) => adapterCard(a, engine.info))] };
  });

  app.get<{ Params: { model: string } }>("/v1/models/:model", async (request) => {
    const engine = requireEngine(ctx.slot);
    const id = request.params.model;
    if (id === engine.info.modelId) return baseCard(engine.info);
    const found = (await engine.listAdapters()).find((a) => a.id === id);
    if (!found) throw new OpenLoraError("MODEL_NOT_SERVED", `The model ${quoted(id)} does not exist.`, { param: "model" });
    return adapterCard(found, engine.info);
  });

  app.post("/v1/load_lora_adapter", async (request, reply) => {
    const engine = requireEngine(ctx.slot);
    const name = requiredString(request.body, "lora_name");
    const path = requiredString(request.body, "lora_path");
    if (name === engine.info.modelId) {
      throw new OpenLoraError("ADAPTER_ALREADY_EXISTS", `'${name}' is the base model's id.`, { param: "lora_name" });
    }
    await engine.loadAdapter(name, path);
    return reply.type("text/plain; charset=utf-8").send(`Success: LoRA adapter '${name}' added successfully.`);
  });

  app.post("/v1/unload_lora_adapter", async (request, reply) => {
    const engine = requireEngine(ctx.slot);
    const name = requiredString(request.body, "lora_name");
    const intId = (request.body as Record<string, unknown>).lora_int_id;
    if (intId !== undefined && intId !== null && !Number.isSafeInteger(intId)) {
      throw invalidArgument("lora_int_id", "lora_int_id must be an integer.");
    }
    await engine.unloadAdapter(name);
    return reply.type("text/plain; charset=utf-8").send(`Success: LoRA adapter '${name}' removed successfully.`);
  });

  app.get("/health", async (_request, reply) => {
    try {
      requireEngine(ctx.slot);
    } catch (e) {
      return sendHttpError(reply, toHttpError(e, ctx.retry));
    }
    return { status: "ok" };
  });

  app.get("/metrics", async (request, reply) => {
    try {
      await ctx.metrics.refresh(ctx.slot.engine);
    } catch (e) {
      // The HTTP-side metrics are still worth serving when the engine cannot answer.
      request.log.warn({ err: e }, "engine stats unavailable for /metrics");
    }
    if (ctx.slot.chain) ctx.metrics.refreshChain(ctx.slot.chain.status());
    return reply.type(ctx.metrics.contentType).send(await ctx.metrics.text());
  });
}
