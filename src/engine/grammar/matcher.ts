/**
 * One sequence's position in a compiled constraint: the token mask for the next step, advancing
 * by sampled tokens. A thin wrapper over xgrammar's GrammarMatcher that keeps it away from the
 * calls that abort the WASM instance (a mask after the stop token, out-of-range ids) and adds:
 *  - the vocabulary's never-sampleable ids (specials, padding) cleared from every mask;
 *  - isTerminated() in the openlora sense: the stop token was accepted, or only a stop token may
 *    follow (computed from the next mask, which fillMask then reuses — no extra cost per step).
 *
 * All calls are synchronous and cheap (matcher creation ~0.05 ms; fillMask tens of µs, more
 * inside long strings; see bench/grammar-mask.ts). Not thread-safe, and bound to its compiler's
 * thread, like every WASM object. States, per step:
 *   open      — fillMask: the tokens that continue the constraint (stop ids where it may end);
 *   only-stop — isTerminated() true; fillMask: the stop ids; accept(stop) → ended;
 *   ended     — isTerminated() true; fillMask: all zero; accept → false.
 */
import { oerr } from "../../errors.js";
import type { GrammarVocab } from "./vocab.js";
import { callXgrammar, type XgCompiledGrammar, type XgGrammarMatcher, type XgInstance } from "./wasm.js";

export interface ConstraintMatcher {
  /** Writes the allowed-token bitmask for the next token: bit (id & 31) of word (id >> 5) set = allowed. mask.length = ceil(vocabSize/32). */
  fillMask(mask: Int32Array): void;
  /** Advances by one sampled token; false if the token is not allowed (the matcher is then unchanged). */
  accept(token: number): boolean;
  /** The constraint is complete and only end-of-sequence may follow (or it has been accepted). */
  isTerminated(): boolean;
  /** Frees WASM memory; idempotent. Any later call throws INVALID_ARGUMENT, except dispose. */
  dispose(): void;
}

/** What a matcher needs of its compiler; `onFailure` poisons the compiler's instance. */
export interface MatcherContext {
  readonly inst: XgInstance;
  readonly vocab: GrammarVocab;
  onFailure(e: unknown): never;
}

// Frees the C++ matcher of a wrapper that was dropped without dispose().
const orphans = new FinalizationRegistry<XgGrammarMatcher>((h) => {
  if (!h.isDeleted()) h.delete();
});

export class XgConstraintMatcher implements ConstraintMatcher {
  private handle: XgGrammarMatcher | undefined;
  private readonly next: Int32Array;
  private nextValid = false;
  private onlyStop = false;
  private deadEnd = false;
  private ended = false;

  constructor(private readonly ctx: MatcherContext, compiled: XgCompiledGrammar) {
    this.next = new Int32Array(ctx.vocab.sampleable.length);
    // Stop tokens come from the TokenizerInfo; no rollback (-1 = xgrammar's default history).
    this.handle = this.call(() => new ctx.inst.binding.GrammarMatcher(compiled, undefined, false, -1));
    orphans.register(this, this.handle, this);
  }

  fillMask(mask: Int32Array): void {
    if (mask.length !== this.next.length) {
      throw oerr("INVALID_ARGUMENT", `mask has ${mask.length} words, the vocabulary of ${this.ctx.vocab.vocabSize} ids needs ${this.next.length}`);
    }
    if (this.ended) {
      this.live();
      mask.fill(0);
      return;
    }
    this.compute();
    mask.set(this.next);
  }

  accept(token: number): boolean {
    const h = this.live();
    if (this.ended || !Number.isInteger(token) || token < 0 || token >= this.ctx.vocab.vocabSize) return false;
    if (!bit(this.ctx.vocab.sampleable, token)) return false;
    if (this.nextValid && !bit(this.next, token)) return false;
    if (this.deadEnd) {
      // No token continues the constraint; the mask offered the stop ids to end it.
      this.ended = true;
      return true;
    }
    const ok = this.call(() => h.AcceptToken(token, false));
    if (ok) {
      this.nextValid = false;
      if (this.call(() => h.IsTerminated())) this.ended = true;
    }
    return ok;
  }

  isTerminated(): boolean {
    if (this.ended) {
      this.live();
      return true;
    }
    this.compute();
    return this.onlyStop;
  }

  dispose(): void {
    if (this.handle === undefined) return;
    orphans.unregister(this);
    if (!this.handle.isDeleted()) this.handle.delete();
    this.handle = undefined;
  }

  private live(): XgGrammarMatcher {
    if (this.handle === undefined) throw oerr("INVALID_ARGUMENT", "the constraint matcher was disposed");
    return this.handle;
  }

  /** Fills this.next for the current state (once per state). */
  private compute(): void {
    const h = this.live();
    if (this.nextValid) return;
    const { binding } = this.ctx.inst;
    const { sampleable, stopMask } = this.ctx.vocab;
    const next = this.next;
    this.call(() => {
      const v = h.GetNextTokenBitmask(this.ctx.vocab.vocabSize);
      try {
        next.set(binding.vecIntToView(v));
      } finally {
        v.delete();
      }
    });
    let any = 0;
    let nonStop = 0;
    for (let w = 0; w < next.length; w++) {
      const m = next[w]! & sampleable[w]!;
      next[w] = m;
      any |= m;
      nonStop |= m & ~stopMask[w]!;
    }
    this.deadEnd = any === 0;
    if (this.deadEnd) next.set(stopMask);
    this.onlyStop = nonStop === 0;
    this.nextValid = true;
  }

  private call<T>(fn: () => T): T {
    try {
      return callXgrammar(this.ctx.inst, fn);
    } catch (e) {
      return this.ctx.onFailure(e);
    }
  }
}

function bit(mask: Int32Array, id: number): boolean {
  return ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
}
