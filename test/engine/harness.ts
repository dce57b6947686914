/**
 * Drives an EngineCore the way the worker does (one step per event-loop turn, so adapter loads
 * complete between steps) and collects each request's events; for engine tests on a real tiny model.
 */
import { AdapterRegistry } from "../../src/adapters/registry.js";
import { DEFAULT_CORE_OPTIONS, EngineCore, type EngineCoreDeps, type EngineCoreOptions } from "../../src/engine/engine-core.js";
import type { CompletionRequest, EngineEvent } from "../../src/engine/protocol.js";
import { join } from "node:path";
import { type LoadedModel, loadModel } from "../../src/model/load.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";

/** The engine tests' model: tiny-llama3, Q8_0, seed 11, written into `dir` and loaded. */
export async function tinyLlama3(dir: string): Promise<LoadedModel> {
  const path = join(dir, "tiny-llama3-q8.gguf");
  writeGgufModel(path, "tiny-llama3", { seed: 11, type: "q8_0" });
  return loadModel(path, { prefault: false });
}

export interface Outcome {
  tokens: number[];
  text: string;
  events: EngineEvent[];
  final: EngineEvent;
}

export const REQUEST: CompletionRequest = { prompt: "Hello", addSpecial: true, adapters: [], maxTokens: 8, sampling: {}, stop: [], ignoreEos: true, fairKey: "k" };

export class Harness {
  readonly core: EngineCore;
  private readonly outcomes = new Map<number, Outcome>();
  private readonly waiters = new Map<number, (o: Outcome) => void>();
  private nextId = 1;

  constructor(model: LoadedModel, registry: AdapterRegistry, opts: Partial<EngineCoreOptions> & { adapterRoot?: string | undefined } = {}, deps: EngineCoreDeps = {}) {
    this.core = new EngineCore(model, registry, { ...DEFAULT_CORE_OPTIONS, kvBlocks: 256, adapterRoot: undefined, ...opts }, (id, e) => this.onEvent(id, e), () => {}, deps);
  }

  /** Submits now; the promise settles when the request ends (run() must be driving). */
  submit(req: Partial<CompletionRequest>): { id: number; done: Promise<Outcome> } {
    const id = this.nextId++;
    this.outcomes.set(id, { tokens: [], text: "", events: [], final: undefined as unknown as EngineEvent });
    const done = new Promise<Outcome>((resolve) => this.waiters.set(id, resolve));
    this.core.submit(id, { ...REQUEST, ...req });
    return { id, done };
  }

  private onEvent(id: number, e: EngineEvent): void {
    const o = this.outcomes.get(id)!;
    o.events.push(e);
    if (e.type === "delta") { o.tokens.push(...e.tokens); o.text += e.text; }
    if (e.type === "done" || e.type === "error") { o.final = e; this.waiters.get(id)!(o); }
  }

  /** Steps until nothing is live, yielding to the event loop after each (as the worker does). */
  async run(maxSteps = 100_000, afterStep?: () => void): Promise<number> {
    let steps = 0;
    while (this.core.live > 0 && steps < maxSteps) {
      if (this.core.step()) {
        steps++;
        afterStep?.();
        await new Promise((r) => setImmediate(r));
      } else {
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    return steps;
  }
}

/** The request alone on a fresh engine (ample KV, default loader): what it must give in any batch. */
export async function alone(model: LoadedModel, registry: () => Promise<AdapterRegistry>, req: Partial<CompletionRequest>, opts: Partial<EngineCoreOptions> = {}): Promise<Outcome> {
  const h = new Harness(model, await registry(), opts);
  const { done } = h.submit(req);
  await h.run();
  return done;
}

/** The parts of an outcome that must be bit-identical between runs: tokens, text, logprobs. */
export function stream(o: Outcome): unknown {
  return { tokens: o.tokens, text: o.text, final: o.final.type, logprobs: o.events.filter((e) => e.type === "delta").map((e) => (e as { logprobs?: unknown }).logprobs) };
}
