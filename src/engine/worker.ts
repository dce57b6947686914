/**
 * The engine thread: loads the model, scans the adapter folder, and runs the engine loop — one
 * scheduling step at a time, yielding to its own event loop between steps so that submissions,
 * cancellations and adapter loads are taken in while the batch runs. The HTTP thread never
 * computes; it only exchanges messages with this one (engine-client.ts).
 */
import { availableParallelism } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { AdapterRegistry } from "../adapters/registry.js";
import { loadModel } from "../model/load.js";
import { native } from "../native/index.js";
import { sentenceDelimiterIds } from "../attribution/spans/delimiters.js";
import { DEFAULT_CORE_OPTIONS, EngineCore, toWireError } from "./engine-core.js";
import type { EngineEvent, EngineInfo } from "./protocol.js";
import type { EngineInit, FromWorker, ToWorker } from "./worker-messages.js";

const port = parentPort!;
const init = workerData as EngineInit;
const post = (m: FromWorker): void => port.postMessage(m);

const DEFAULT_KV_TOKENS = 16_384;

async function main(): Promise<void> {
  const threads = Math.max(1, Math.min(init.threads, availableParallelism()));
  native.setThreads(threads);
  const loaded = await loadModel(init.modelPath, {
    hash: true,
    ...(init.quantize ? { quantize: init.quantize } : {}),
    onProgress: (fraction, message) => post({ type: "progress", fraction, message }),
  });
  const registry = new AdapterRegistry();
  const scan = init.adaptersDir ? await registry.scanDirectory(init.adaptersDir) : undefined;
  const base = { ...DEFAULT_CORE_OPTIONS, ...init.core };
  const kvTokens = Math.min(init.kvTokens ?? DEFAULT_KV_TOKENS, Math.max(loaded.config.contextLength, base.blockSize) * base.maxRunning);
  const opts = { ...base, kvBlocks: init.core?.kvBlocks ?? Math.ceil(kvTokens / base.blockSize), adapterRoot: init.adaptersDir };

  let pending: Array<[number, EngineEvent]> = [];
  let flushQueued = false;
  const flush = (): void => {
    flushQueued = false;
    if (pending.length === 0) return;
    post({ type: "events", events: pending });
    pending = [];
  };
  let tickQueued = false;
  const kick = (): void => {
    if (tickQueued) return;
    tickQueued = true;
    setImmediate(tick);
  };
  const core = new EngineCore(loaded, registry, opts, (id, e) => {
    pending.push([id, e]);
    if (!flushQueued) { flushQueued = true; queueMicrotask(flush); }
  }, kick);

  const drainWaiters: number[] = [];
  const settleDrains = (): void => {
    if (!core.isDrained) return;
    for (const callId of drainWaiters.splice(0)) post({ type: "reply", callId, ok: true, value: null });
  };
  function tick(): void {
    tickQueued = false;
    let ran = false;
    try {
      ran = core.step();
    } catch (e) {
      flush();
      post({ type: "fatal", error: toWireError(e) });
      return;
    }
    flush();
    settleDrains();
    if (ran) kick();
  }

  let delimiters: Set<number> | undefined;
  const call = async (method: string, args: unknown[]): Promise<unknown> => {
    switch (method) {
      case "tokenize": return loaded.tokenizer.encode(String(args[0]), { addSpecial: args[1] === true });
      case "listAdapters": return core.listAdapters();
      case "loadAdapter": return core.loadAdapter(String(args[0]), String(args[1]));
      case "unloadAdapter": core.unloadAdapter(String(args[0])); return null;
      case "stats": return core.stats();
      case "delimiterIds": return [...(delimiters ??= sentenceDelimiterIds(loaded.tokenizer))];
      default: throw new Error(`unknown call ${method}`);
    }
  };
  port.on("message", (m: ToWorker) => {
    switch (m.type) {
      case "submit": core.submit(m.id, m.req); break;
      case "cancel": core.cancel(m.id); settleDrains(); break;
      case "call":
        if (m.method === "drain") {
          core.drain();
          drainWaiters.push(m.callId);
          settleDrains();
          break;
        }
        call(m.method, m.args).then(
          (value) => post({ type: "reply", callId: m.callId, ok: true, value }),
          (e: unknown) => post({ type: "reply", callId: m.callId, ok: false, error: toWireError(e) }),
        );
        break;
      case "close":
        core.close();
        flush();
        post({ type: "closed" });
        port.close();
        break;
    }
  });

  const info: EngineInfo = {
    modelId: loaded.id, modelContentHash: loaded.contentHash!, contextLength: loaded.config.contextLength, vocabSize: loaded.config.vocabSize,
    chatTemplate: loaded.tokenizer.chatTemplate,
    bosToken: loaded.tokenizer.bosId !== undefined ? loaded.tokenizer.tokenText(loaded.tokenizer.bosId) : undefined,
    eosToken: loaded.tokenizer.eosIds.length ? loaded.tokenizer.tokenText(loaded.tokenizer.eosIds[0]!) : undefined,
    created: Math.floor(Date.now() / 1000), kvBlocks: opts.kvBlocks, blockSize: opts.blockSize, threads,
    maxQueue: opts.maxQueue,
  };
  post({ type: "ready", info, scan: { added: scan?.added ?? 0, skipped: scan?.skipped.length ?? 0 } });
}

main().catch((e: unknown) => post({ type: "fatal", error: toWireError(e) }));
