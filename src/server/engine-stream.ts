/**
 * Turns the engine's callback (which may fire synchronously inside submit) into an ordered
 * pull stream the handlers can await, and lets the HTTP side stop waiting the moment the
 * client goes away instead of trusting the engine to answer a cancel.
 */
import type { CompletionRequest, EngineEvent, EngineHandle, RequestHandle, WireError } from "../engine/protocol.js";

export type TerminalEvent = Extract<EngineEvent, { type: "done" | "error" }>;

export class EngineRequest {
  private readonly queue: EngineEvent[] = [];
  private waiter: ((e: EngineEvent) => void) | undefined;
  private handle: RequestHandle | undefined;
  private cancelRequested = false;
  /** The engine sent done or error, or we gave up on it (abandon). */
  ended = false;
  /** The prompt as the engine tokenized it (from its accepted event). */
  promptTokenIds: number[] = [];
  /** Every token handed to the handler so far (so sent, or about to be): what a cancelled or failed request is charged for. */
  readonly outputTokens: number[] = [];

  constructor(engine: EngineHandle, req: CompletionRequest) {
    try {
      this.handle = engine.submit(req, (e) => this.push(e));
    } catch (e) {
      const err = e as Partial<WireError>;
      this.push({ type: "error", error: { code: err.code ?? "ENGINE_FAILED", message: err.message ?? String(e), details: err.details } });
    }
    if (this.cancelRequested) this.handle?.cancel();
  }

  private push(e: EngineEvent): void {
    if (this.ended) return;
    if (e.type === "accepted") this.promptTokenIds = e.promptTokenIds;
    if (e.type === "done" || e.type === "error") this.ended = true;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w(this.deliver(e));
    } else {
      this.queue.push(e);
    }
  }

  /** Tokens count as delivered when the handler takes their event, not when they arrive. */
  private deliver(e: EngineEvent): EngineEvent {
    if (e.type === "delta") this.outputTokens.push(...e.tokens);
    return e;
  }

  /** The next event; after a terminal one nothing more arrives. */
  next(): Promise<EngineEvent> {
    const e = this.queue.shift();
    if (e) return Promise.resolve(this.deliver(e));
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Client gone: cancel in the engine and end our side now with REQUEST_CANCELLED. */
  abandon(): void {
    this.stop({ code: "REQUEST_CANCELLED", message: "The client closed the connection." });
  }

  /** Cancels in the engine and ends our side now with `error` (the next event read is it). */
  stop(error: WireError): void {
    if (this.ended) return;
    this.queue.length = 0;
    this.push({ type: "error", error }); // ends our side first: whatever the cancel triggers is ignored
    this.cancelRequested = true;
    this.handle?.cancel();
  }
}
