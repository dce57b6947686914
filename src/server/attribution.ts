/**
 * The request path's side of attribution: who pays (the agent), what it may cost (a worst-case
 * reservation before any compute), and, when the request ends, the receipt — span evidence of the
 * output against every published Datanet version, the fee split, the signed, chained record.
 *
 * Rules (docs/economics.md has the ledger's):
 * - The agent is the account whose API key the request carries (src/server/access.ts resolves it);
 *   a request without one is anonymous. A request whose worst case costs nothing needs no account:
 *   an anonymous one is billed to the built-in agent "anonymous". A paid request needs an account's
 *   key (401 without), the minimum own stake (403) and the balance for its worst case (402), all
 *   checked before any compute.
 * - Worst case: prompt tokens (exact for token-id prompts; for text, its UTF-8 byte count + 8, which
 *   no tokenizer exceeds: every token covers at least one byte, plus special tokens) × price in,
 *   plus max_tokens × price out, over the base model and every adapter of the request.
 * - Models and adapters served but not yet listed in the ledger are listed on first use: owned by
 *   the operator, free, content hash of their files.
 * - A request that produced no output token is released (no receipt, no charge). One that produced
 *   tokens and was cancelled or failed is settled for the tokens it produced. One whose settlement
 *   fails after its tokens were sent is charged its whole reservation (Ledger.forfeit), never released.
 */
import { Buffer } from "node:buffer";
import type { Hex } from "viem";
import { compositionWeightPpm } from "../adapters/composition.js";
import { contentHash } from "../attribution/content-hash.js";
import { delimiterPredicate } from "../attribution/spans/delimiters.js";
import { SpanIndex } from "../attribution/spans/span-index.js";
import { SpanIndexSet, spanEvidenceRows, spanTokenCredits } from "../attribution/spans/span-index-set.js";
import type { AdapterRef, EngineHandle, FinishReason } from "../engine/protocol.js";
import type { SamplingParams } from "../engine/sampling.js";
import { isOpenLoraError, OpenLoraError } from "../errors.js";
import type { Ledger, StoredReceipt } from "../ledger/ledger.js";
import type { Principal } from "./access.js";
import type { AttributionContext } from "./ledger-routes.js";

export const ANONYMOUS_AGENT = "anonymous";

export interface Admission {
  reservation: number;
  agent: string;
  adapters: AdapterRef[];
}

export interface FinishInput {
  promptTokenIds: readonly number[];
  outputTokens: readonly number[];
  sampling: SamplingParams;
  finish: FinishReason | "failed";
}

export class AttributionService implements AttributionContext {
  readonly spans = new SpanIndexSet();
  private isDelimiter: ((id: number) => boolean) | undefined;
  private readonly listing = new Map<string, Promise<void>>();
  private readonly adapterPaths = new Map<string, string>();

  constructor(
    readonly ledger: Ledger,
    private readonly engine: EngineHandle,
    private readonly baseModel: { id: string; path: string },
    private readonly operator: string,
  ) {}

  /** At start: the base model listed, the anonymous agent present, crashed requests released, span indexes built. */
  async start(): Promise<{ released: number; versions: number }> {
    await this.ensureListed(this.baseModel.id, "base", this.baseModel.path);
    if (!this.agentExists(ANONYMOUS_AGENT)) this.ledger.createAgent(ANONYMOUS_AGENT);
    const released = this.ledger.releaseAllActive();
    const ids = this.engine.delimiterIds ? await this.engine.delimiterIds() : [];
    this.isDelimiter = delimiterPredicate(new Set(ids));
    const versions = this.ledger.db.prepare("SELECT datanet_id AS d, version AS v FROM datanet_versions ORDER BY datanet_id, version").all() as { d: string; v: number }[];
    for (const { d, v } of versions) this.indexVersion(d, v);
    return { released, versions: versions.length };
  }

  tokenize(text: string): Promise<number[]> {
    return this.engine.tokenize(text, false);
  }

  indexVersion(datanet: string, version: number): void {
    const records = this.ledger.versionRecords(datanet, version);
    const index = SpanIndex.build(records.map((r) => ({ recordId: String(r.recordId), contributor: r.contributor, tokens: r.tokenIds ?? new Uint32Array(0) })));
    this.spans.add({ datanetId: datanet, version }, index);
  }

  /**
   * Admission: lists what is new, reserves the worst case. Throws 402/403 errors before any compute.
   * Composition weights arrive rounded to the receipt's precision (parts per million, request
   * parsing applies src/adapters/composition.ts), so the engine computes exactly what the receipt
   * records and a replay can reproduce it.
   */
  async admit(principal: Principal, adapters: AdapterRef[], prompt: string | readonly number[], maxTokens: number): Promise<Admission> {
    for (const a of adapters) await this.ensureAdapterListed(a.id);
    const tokensIn = typeof prompt === "string" ? Buffer.byteLength(prompt, "utf8") + 8 : prompt.length;
    const worst = this.ledger.worstCaseFee({ baseModel: this.baseModel.id, adapters: adapters.map((a) => a.id), tokensIn, maxTokens });
    if (worst > 0n && principal.kind !== "account") {
      throw new OpenLoraError(principal.kind === "anonymous" ? "UNAUTHENTICATED" : "PERMISSION_DENIED",
        `This request may cost up to ${worst}: send the paying account's API key (Authorization: Bearer olk_…); the operator's token does not pay.`);
    }
    const agent = principal.kind === "account" ? principal.id : ANONYMOUS_AGENT;
    return { reservation: this.ledger.reserve(agent, worst), agent, adapters };
  }

  /** The end of a request: a signed receipt, or nothing (released) when no token was produced. */
  async finish(adm: Admission, f: FinishInput): Promise<StoredReceipt | undefined> {
    if (f.outputTokens.length === 0) {
      this.ledger.release(adm.reservation);
      return undefined;
    }
    try {
      const evidence = this.spans.size > 0 ? this.spans.findSpans(f.outputTokens, this.isDelimiter ? { isDelimiter: this.isDelimiter } : {}) : [];
      const spans = spanEvidenceRows(evidence).map((r) => ({ datanet: `${r.datanetId}@${r.version}`, recordId: Number(r.recordId), contributor: r.contributor, start: r.start, end: r.end }));
      return await this.ledger.settle(adm.reservation, {
        baseModel: this.baseModel.id,
        adapters: adm.adapters.map((a) => ({ id: a.id, weightPpm: compositionWeightPpm(a.weight) })),
        promptTokens: f.promptTokenIds,
        outputTokens: f.outputTokens,
        sampling: { ...f.sampling, seed: f.sampling.seed ?? 0 },
        finish: f.finish === "eos" || f.finish === "stop" || f.finish === "length" || f.finish === "cancelled" ? f.finish : "failed",
        spans,
        spanCredits: spanTokenCredits(evidence),
      });
    } catch (e) {
      // The output reached the client: never free. The whole reservation is charged (a signed
      // forfeit event); if even that fails the reservation stays active, is logged by the caller,
      // and is released at the next start like any request a crash interrupted.
      this.ledger.forfeit(adm.reservation, isOpenLoraError(e) ? e.code : "INTERNAL");
      throw e;
    }
  }

  /** Releases a reservation whose request never produced anything (errors before any token). */
  release(adm: Admission): void {
    this.ledger.release(adm.reservation);
  }

  private agentExists(id: string): boolean {
    return found(() => this.ledger.getAgent(id));
  }

  private async ensureAdapterListed(id: string): Promise<void> {
    if (this.isListed(id)) return;
    // One listing of the engine's adapters serves every later first use (10,000 ids = one call, not one each).
    if (!this.adapterPaths.has(id)) for (const a of await this.engine.listAdapters()) this.adapterPaths.set(a.id, a.path);
    const path = this.adapterPaths.get(id);
    if (path === undefined) return; // unknown adapters fail in the engine with their own error
    await this.ensureListed(id, "adapter", path);
  }

  private isListed(id: string): boolean {
    return found(() => this.ledger.getModel(id));
  }

  /** One listing per id even under concurrent first requests. */
  private ensureListed(id: string, kind: "base" | "adapter", path: string): Promise<void> {
    if (this.isListed(id)) return Promise.resolve();
    let p = this.listing.get(id);
    if (!p) {
      p = contentHash(path).then((hash: Hex) => {
        if (this.isListed(id)) return;
        this.ledger.registerModel({
          id, kind, owner: this.operator, priceIn: 0n, priceOut: 0n, contentHash: hash,
          developers: [{ party: this.operator, share: 1n }],
          ...(kind === "adapter" ? { baseModel: this.baseModel.id } : {}),
        });
      }).finally(() => this.listing.delete(id));
      this.listing.set(id, p);
    }
    return p;
  }
}

/** Whether a ledger lookup finds its row (LEDGER_NOT_FOUND = no; other errors propagate). */
function found(lookup: () => unknown): boolean {
  try {
    lookup();
    return true;
  } catch (e) {
    if (isOpenLoraError(e, "LEDGER_NOT_FOUND")) return false;
    throw e;
  }
}
