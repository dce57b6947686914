/**
 * Keeps the engine serving when its thread dies: an EngineHandle that owns one WorkerEngine and,
 * when that worker fails (a crash, an uncaught error in the loop, a kill), starts a new one with
 * the same EngineInit.
 *
 *   - What was in flight fails with ENGINE_FAILED (the WorkerEngine does that: requests get an
 *     "error" event, calls reject).
 *   - While the new worker starts, `state` is "restarting": submits end at once with NOT_READY and
 *     calls reject with it (503 with Retry-After at the HTTP side), nothing waits or hangs.
 *   - Restarts back off against crash loops: initialBackoffMs before the first, doubling per crash
 *     up to maxBackoffMs; a worker that served healthyMs resets it. A failed start (the model file
 *     is gone, say) is retried the same way.
 *   - Adapters loaded or unloaded at run time (loadAdapter / unloadAdapter) are replayed onto the
 *     new worker, in order, before it serves, so the adapter set survives; a replayed load that now
 *     fails is logged and forgotten (its requests then get ADAPTER_NOT_FOUND).
 *   - drain() and close() stop restarting.
 */
import { isOpenLoraError, OpenLoraError } from "../errors.js";
import { type StartOptions, WorkerEngine } from "./engine-client.js";
import type {
  AdapterInfo, CompletionRequest, EngineEvent, EngineHandle, EngineInfo, EngineState, EngineStats, RequestHandle, WireError,
} from "./protocol.js";
import type { EngineInit } from "./worker-messages.js";

export interface SupervisorOptions {
  /** Load progress of the first start. */
  onProgress?: StartOptions["onProgress"];
  /** Wait before the first restart after a crash (ms). Default 500. */
  initialBackoffMs?: number;
  /** Longest wait between restarts (ms). Default 30,000. */
  maxBackoffMs?: number;
  /** A worker that served this long (ms) before dying restarts after initialBackoffMs again. Default 60,000. */
  healthyMs?: number;
  /** Where restarts are reported (serve: stderr). */
  log?: (message: string) => void;
  /** Starts a worker (default WorkerEngine.start). */
  startWorker?: (init: EngineInit) => Promise<WorkerEngine>;
}

export class EngineSupervisor implements EngineHandle {
  private worker: WorkerEngine | undefined;
  private lastInfo: EngineInfo;
  private currentState: EngineState = "ready";
  private restartCount = 0;
  /** Crashes since the last healthy period: the backoff exponent. */
  private crashes = 0;
  private servingSince = 0;
  private nextAttemptAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopping: "draining" | "closing" | undefined;
  private nextId = 1;
  /** Adapters loaded at run time, in order: id → path as given. */
  private readonly runtimeLoads = new Map<string, string>();
  /** Ids unloaded at run time that a new worker's start-up scan registers again. */
  private readonly runtimeUnloads = new Set<string>();
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly healthyMs: number;
  private readonly log: (message: string) => void;
  private readonly startWorker: (init: EngineInit) => Promise<WorkerEngine>;

  private constructor(private readonly init: EngineInit, first: WorkerEngine, opts: SupervisorOptions) {
    this.initialBackoffMs = opts.initialBackoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.healthyMs = opts.healthyMs ?? 60_000;
    this.log = opts.log ?? (() => {});
    this.startWorker = opts.startWorker ?? ((i) => WorkerEngine.start(i));
    this.lastInfo = first.info;
    this.adopt(first);
  }

  /** Starts the first worker; its failure (a bad model file) rejects, as WorkerEngine.start does. */
  static async start(init: EngineInit, opts: SupervisorOptions = {}): Promise<EngineSupervisor> {
    const first = opts.startWorker ? await opts.startWorker(init) : await WorkerEngine.start(init, opts.onProgress ? { onProgress: opts.onProgress } : {});
    return new EngineSupervisor(init, first, opts);
  }

  get info(): EngineInfo {
    return this.lastInfo;
  }

  get state(): EngineState {
    return this.currentState;
  }

  get restarts(): number {
    return this.restartCount;
  }

  /** The worker serving now; undefined while restarting (tests kill it to exercise recovery). */
  get current(): WorkerEngine | undefined {
    return this.worker;
  }

  submit(req: CompletionRequest, onEvent: (e: EngineEvent) => void): RequestHandle {
    const id = this.nextId++;
    const w = this.worker;
    if (!w) {
      const error = this.unavailable();
      queueMicrotask(() => onEvent({ type: "error", error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) } }));
      return { id, cancel: () => {} };
    }
    const inner = w.submit(req, onEvent);
    return { id, cancel: () => inner.cancel() };
  }

  tokenize(text: string, addSpecial: boolean): Promise<number[]> {
    return this.withWorker((w) => w.tokenize(text, addSpecial));
  }

  listAdapters(): Promise<AdapterInfo[]> {
    return this.withWorker((w) => w.listAdapters());
  }

  async loadAdapter(id: string, path: string): Promise<AdapterInfo> {
    const info = await this.withWorker((w) => w.loadAdapter(id, path));
    this.runtimeLoads.set(id, path);
    return info;
  }

  async unloadAdapter(id: string): Promise<void> {
    await this.withWorker((w) => w.unloadAdapter(id));
    if (!this.runtimeLoads.delete(id)) this.runtimeUnloads.add(id);
  }

  stats(): Promise<EngineStats> {
    return this.withWorker((w) => w.stats());
  }

  delimiterIds(): Promise<number[]> {
    return this.withWorker((w) => w.delimiterIds());
  }

  /** Stops restarting; resolves when the worker (if one is serving) has drained. */
  async drain(): Promise<void> {
    this.stopping ??= "draining";
    this.cancelRestart();
    const w = this.worker;
    if (!w) return;
    await w.drain().catch((e: unknown) => {
      if (!isOpenLoraError(e, "ENGINE_FAILED")) throw e;
    });
  }

  async close(): Promise<void> {
    this.stopping = "closing";
    this.cancelRestart();
    const w = this.worker;
    this.worker = undefined;
    await w?.close();
  }

  // ── internals ────────────────────────────────────────────────────────────────────────────────

  private withWorker<T>(fn: (w: WorkerEngine) => Promise<T>): Promise<T> {
    const w = this.worker;
    return w ? fn(w) : Promise.reject(this.unavailable());
  }

  private unavailable(): OpenLoraError {
    if (this.stopping) return new OpenLoraError("SHUTTING_DOWN", "the engine is shutting down");
    const retryAfterSeconds = Math.max(1, Math.ceil((this.nextAttemptAt - Date.now()) / 1000));
    return new OpenLoraError("NOT_READY", "the engine thread failed and is restarting", { retryAfterSeconds });
  }

  private adopt(w: WorkerEngine): void {
    this.worker = w;
    this.lastInfo = w.info;
    this.servingSince = Date.now();
    this.currentState = "ready";
    w.onFailure((error) => this.died(w, error));
  }

  private died(w: WorkerEngine, error: WireError): void {
    if (w !== this.worker) return;
    this.worker = undefined;
    this.currentState = "restarting";
    if (Date.now() - this.servingSince >= this.healthyMs) this.crashes = 0;
    if (this.stopping) return;
    this.log(`engine thread failed (${error.message}); restarting`);
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const delay = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(this.crashes, 30));
    this.crashes++;
    this.nextAttemptAt = Date.now() + delay;
    this.timer = setTimeout(() => void this.restart(), delay);
    this.timer.unref();
  }

  private cancelRestart(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async restart(): Promise<void> {
    this.timer = undefined;
    if (this.stopping) return;
    let w: WorkerEngine;
    try {
      w = await this.startWorker(this.init);
    } catch (e) {
      this.log(`engine restart failed (${e instanceof Error ? e.message : String(e)}); retrying`);
      if (!this.stopping) this.scheduleRestart();
      return;
    }
    try {
      await this.replay(w);
    } catch (e) {
      this.log(`engine restart failed while replaying adapters (${e instanceof Error ? e.message : String(e)}); retrying`);
      await w.close().catch(() => {});
      if (!this.stopping) this.scheduleRestart();
      return;
    }
    if (this.stopping || w.failed) {
      await w.close().catch(() => {});
      if (!this.stopping) this.scheduleRestart();
      return;
    }
    this.restartCount++;
    this.adopt(w);
    this.log(`engine restarted (${this.restartCount} restart${this.restartCount === 1 ? "" : "s"} so far)`);
  }

  /** Runtime unloads, then runtime loads, onto a fresh worker; only its death is thrown. */
  private async replay(w: WorkerEngine): Promise<void> {
    for (const id of this.runtimeUnloads) {
      await w.unloadAdapter(id).catch((e: unknown) => {
        if (!isOpenLoraError(e, "ADAPTER_NOT_FOUND")) throw e;
      });
    }
    for (const [id, path] of [...this.runtimeLoads]) {
      await w.loadAdapter(id, path).catch((e: unknown) => {
        if (isOpenLoraError(e, "ENGINE_FAILED")) throw e;
        this.runtimeLoads.delete(id);
        this.log(`adapter ${id} loaded at run time could not be restored (${e instanceof Error ? e.message : String(e)})`);
      });
    }
  }
}
