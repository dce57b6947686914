/**
 * The HTTP side's handle on the engine thread: an EngineHandle over a worker_threads Worker.
 * Requests are numbered here; events come back batched per engine step and are routed to each
 * request's listener. If the worker dies, every request in flight ends with ENGINE_FAILED, every
 * call in flight rejects with it, and so does everything after: a WorkerEngine is not restarted
 * (engine/supervisor.ts owns one and replaces it).
 */
import { setFlagsFromString } from "node:v8";
import { Worker } from "node:worker_threads";
import { OpenLoraError, oerr } from "../errors.js";
import type {
  AdapterInfo, CompletionRequest, EngineEvent, EngineHandle, EngineInfo, EngineStats, RequestHandle, WireError,
} from "./protocol.js";
import type { CallMethod, EngineInit, FromWorker, ToWorker } from "./worker-messages.js";

export type { EngineInit } from "./worker-messages.js";

export interface StartOptions {
  onProgress?: (fraction: number, message: string) => void;
}

function fromWire(e: WireError): OpenLoraError {
  return new OpenLoraError(e.code, e.message, e.details);
}

/** Under tsx/vitest this file is TypeScript: the worker then runs worker.ts through worker-tsx.mjs. */
function workerEntry(): { url: URL; execArgv: string[] } {
  const ts = import.meta.url.endsWith(".ts");
  return { url: new URL(ts ? "./worker-tsx.mjs" : "./worker.js", import.meta.url), execArgv: [] };
}

/**
 * Lets every V8 heap of this process grow to twice its live size before the next major GC. V8's
 * own growth factor drops towards 1.1 when its collector looks fast next to the mutator, and then
 * starts a major GC every few MB promoted; the marking runs on helper threads which, on a machine
 * whose cores the kernels keep busy, take their time from the engine (a server taking 1000 cold
 * adapters: 23 → 7 major GCs on the engine thread per benchmark run, docs/benchmarks.md). V8 flags
 * are process-wide, so a program that owns its process (the `serve` command) calls this; the
 * library does not.
 */
export function relaxHeapGrowth(): void {
  setFlagsFromString("--heap-growing-percent=100");
}

export class WorkerEngine implements EngineHandle {
  private nextId = 1;
  private nextCall = 1;
  private readonly listeners = new Map<number, (e: EngineEvent) => void>();
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  private failure: WireError | undefined;
  private closed: Promise<void> | undefined;
  private readonly failureListeners = new Set<(error: WireError) => void>();

  private constructor(private readonly worker: Worker, readonly info: EngineInfo) {
    worker.on("message", (m: FromWorker) => this.onMessage(m));
    worker.on("error", (e) => this.fail({ code: "ENGINE_FAILED", message: `engine thread failed: ${e.message}` }));
    worker.on("exit", (code) => this.fail({ code: "ENGINE_FAILED", message: `engine thread exited (code ${code})` }));
  }

  static start(init: EngineInit, opts: StartOptions = {}): Promise<WorkerEngine> {
    const { url, execArgv } = workerEntry();
    const worker = new Worker(url, { workerData: init, execArgv, resourceLimits: { maxYoungGenerationSizeMb: 64 } });
    return new Promise((resolve, reject) => {
      const onExit = (code: number): void => reject(oerr("ENGINE_FAILED", `engine thread exited during start (code ${code})`));
      const onError = (e: Error): void => reject(oerr("ENGINE_FAILED", `engine thread failed during start: ${e.message}`));
      const onMessage = (m: FromWorker): void => {
        if (m.type === "progress") opts.onProgress?.(m.fraction, m.message);
        else if (m.type === "fatal") { cleanup(); void worker.terminate(); reject(fromWire(m.error)); }
        else if (m.type === "ready") { cleanup(); resolve(new WorkerEngine(worker, m.info)); }
      };
      const cleanup = (): void => {
        worker.off("message", onMessage); worker.off("exit", onExit); worker.off("error", onError);
      };
      worker.on("message", onMessage);
      worker.once("exit", onExit);
      worker.once("error", onError);
    });
  }

  /** True once the engine thread died (or was closed). */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  get state(): "ready" | "failed" {
    return this.failure ? "failed" : "ready";
  }

  /**
   * Calls `listener` once if the engine thread dies (not after close()), after every request and
   * call in flight was failed with ENGINE_FAILED. Returns an unsubscribe function.
   */
  onFailure(listener: (error: WireError) => void): () => void {
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  /**
   * Ends the engine thread at once, as a crash would: what is in flight fails with ENGINE_FAILED
   * and onFailure listeners run (tests of recovery; an operator's last resort).
   */
  async kill(): Promise<void> {
    await this.worker.terminate();
  }

  submit(req: CompletionRequest, onEvent: (e: EngineEvent) => void): RequestHandle {
    const id = this.nextId++;
    if (this.failure) {
      const error = this.failure;
      queueMicrotask(() => onEvent({ type: "error", error }));
      return { id, cancel: () => {} };
    }
    this.listeners.set(id, onEvent);
    this.send({ type: "submit", id, req });
    return {
      id,
      cancel: () => { if (this.listeners.has(id)) this.send({ type: "cancel", id }); },
    };
  }

  tokenize(text: string, addSpecial: boolean): Promise<number[]> {
    return this.call("tokenize", [text, addSpecial]) as Promise<number[]>;
  }

  listAdapters(): Promise<AdapterInfo[]> {
    return this.call("listAdapters", []) as Promise<AdapterInfo[]>;
  }

  loadAdapter(id: string, path: string): Promise<AdapterInfo> {
    return this.call("loadAdapter", [id, path]) as Promise<AdapterInfo>;
  }

  async unloadAdapter(id: string): Promise<void> {
    await this.call("unloadAdapter", [id]);
  }

  stats(): Promise<EngineStats> {
    return this.call("stats", []) as Promise<EngineStats>;
  }

  delimiterIds(): Promise<number[]> {
    return this.call("delimiterIds", []) as Promise<number[]>;
  }

  async drain(): Promise<void> {
    await this.call("drain", []);
  }

  close(): Promise<void> {
    this.failureListeners.clear();
    this.closed ??= new Promise<void>((resolve) => {
      if (this.failure) { void this.worker.terminate().then(() => resolve()); return; }
      const timer = setTimeout(() => void this.worker.terminate(), 5000);
      this.worker.once("exit", () => { clearTimeout(timer); resolve(); });
      this.send({ type: "close" });
    });
    return this.closed;
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private call(method: CallMethod, args: unknown[]): Promise<unknown> {
    if (this.failure) return Promise.reject(fromWire(this.failure));
    const callId = this.nextCall++;
    return new Promise((resolve, reject) => {
      this.calls.set(callId, { resolve, reject });
      this.send({ type: "call", callId, method, args });
    });
  }

  private onMessage(m: FromWorker): void {
    if (m.type === "events") {
      for (const [id, e] of m.events) {
        const listener = this.listeners.get(id);
        if (!listener) continue;
        if (e.type === "done" || e.type === "error") this.listeners.delete(id);
        listener(e);
      }
    } else if (m.type === "reply") {
      const c = this.calls.get(m.callId);
      if (!c) return;
      this.calls.delete(m.callId);
      if (m.ok) c.resolve(m.value);
      else c.reject(fromWire(m.error));
    } else if (m.type === "fatal") {
      this.fail(m.error);
      void this.worker.terminate();
    } else if (m.type === "closed") {
      void this.worker.terminate();
    }
  }

  private fail(error: WireError): void {
    if (this.failure) return;
    this.failure = error.code === "ENGINE_FAILED" ? error : { code: "ENGINE_FAILED", message: `engine failed: ${error.message}`, details: { cause: error.code } };
    for (const [id, listener] of this.listeners) {
      this.listeners.delete(id);
      listener({ type: "error", error: this.failure });
    }
    for (const [callId, c] of this.calls) {
      this.calls.delete(callId);
      c.reject(fromWire(this.failure));
    }
    const failure = this.failure;
    for (const l of [...this.failureListeners]) l(failure);
    this.failureListeners.clear();
  }
}
