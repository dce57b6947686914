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
 *   checked before any compute. On a chain, each model's access policy (mirrored from the Registry
 *   and Licence contracts, src/ledger/chain-book.ts) is checked first: ACCESS_DENIED 403.
 * - Worst case: prompt tokens (exact for token-id prompts; for text, its UTF-8 byte count + 8, which
 *   no tokenizer exceeds: every token covers at least one byte, plus special tokens) × price in,
 *   plus max_tokens × price out, over the base model and every adapter of the request.
 * - Content hashes are the node's own: the base model's is computed by the engine from the bytes it
 *   loaded (EngineInfo.modelContentHash), an adapter's from the bytes it loaded for this request
 *   (the engine's "admitted" event, before the first token). A model or adapter listed with another
 *   hash is not the one served: the request fails with MODEL_CONTENT_MISMATCH before any token.
 * - Models and adapters served but not yet listed in the ledger are listed on first use, with the
 *   served hash: owned by the operator, free. Until then they cost nothing at admission.
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
import type { AdapterRef, AdmittedAdapter, EngineHandle, FinishReason } from "../engine/protocol.js";
import type { SamplingParams } from "../engine/sampling.js";
import { isOpenLoraError, oerr, OpenLoraError } from "../errors.js";
import type { Ledger, StoredReceipt } from "../ledger/ledger.js";
import type { Principal } from "./access.js";
import type { AttributionContext } from "./ledger-routes.js";

export const ANONYMOUS_AGENT = "anonymous";

export interface Admission {
  reservation: number;
  agent: string;
  adapters: AdapterRef[];
  tokensIn: number;
  maxTokens: number;
  /** The worst case reserved. */
  worst: bigint;
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

  constructor(
    readonly ledger: Ledger,
    private readonly engine: EngineHandle,
    private readonly baseModel: { id: string; contentHash: Hex },
    private readonly operator: string,
  ) {}

  /** At start: the base model listed (or checked against its listing), the anonymous agent present, crashed requests released, span indexes built. */
  async start(): Promise<{ released: number; versions: number }> {
    this.listOrCheck(this.baseModel.id, "base", this.baseModel.contentHash);
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

  /** The content hash of a model or adapter this node serves, from its files; undefined if it serves no such id. */
  async servedContentHash(id: string): Promise<Hex | undefined> {
    if (id === this.baseModel.id) return this.baseModel.contentHash;
    const a = (await this.engine.listAdapters()).find((x) => x.id === id);
    return a ? contentHash(a.path) : undefined;
  }

  /**
   * Admission: reserves the worst case, before any compute. Throws 401/402/403 errors. Adapters
   * not yet listed cost nothing here (they are listed free when the engine admits the request).
   */
  admit(principal: Principal, adapters: AdapterRef[], prompt: string | readonly number[], maxTokens: number): Admission {
    const tokensIn = typeof prompt === "string" ? Buffer.byteLength(prompt, "utf8") + 8 : prompt.length;
    if (this.ledger.onChain) {
      this.ledger.chain.checkNotJailed();
      this.ledger.chain.checkFresh("admission");
      this.ledger.applyChainChanges();
      const caller = principal.kind === "account" ? principal.id : undefined;
      for (const id of [this.baseModel.id, ...adapters.map((a) => a.id)]) this.ledger.chain.checkAccess(id, caller);
    }
    const worst = this.worstCase(adapters, tokensIn, maxTokens);
    if (worst > 0n && principal.kind !== "account") {
      throw new OpenLoraError(principal.kind === "anonymous" ? "UNAUTHENTICATED" : "PERMISSION_DENIED",
        `This request may cost up to ${worst}: send the paying account's API key (Authorization: Bearer olk_…); the operator's token does not pay.`);
    }
    const agent = principal.kind === "account" ? principal.id : ANONYMOUS_AGENT;
    return { reservation: this.ledger.reserve(agent, worst), agent, adapters, tokensIn, maxTokens, worst };
  }

  /**
   * The engine admitted the request with these adapter files: before its first token reaches the
   * client, everything its settlement will need must hold. Lists what is new (free, served hash),
   * refuses a file other than the one listed (MODEL_CONTENT_MISMATCH), and a worst case the
   * reservation no longer covers (a price listed since admission: LEDGER_CONFLICT, retry).
   */
  confirm(adm: Admission, served: readonly AdmittedAdapter[]): void {
    if (served.length !== adm.adapters.length || served.some((a, i) => a.id !== adm.adapters[i]!.id)) {
      throw oerr("INTERNAL", "the engine admitted other adapters than the request named");
    }
    for (const a of served) this.listOrCheck(a.id, "adapter", a.contentHash);
    const worst = this.worstCase(adm.adapters, adm.tokensIn, adm.maxTokens);
    if (worst > adm.worst) {
      throw oerr("LEDGER_CONFLICT", `a price was listed since this request was admitted: it may now cost ${worst}, ${adm.worst} was reserved; send it again`);
    }
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

  private worstCase(adapters: readonly AdapterRef[], tokensIn: number, maxTokens: number): bigint {
    // Terms waiting on chain for their time count too: the receipt may come after it.
    const listed = adapters.map((a) => a.id).filter((id) => this.isListed(id) || (this.ledger.onChain && this.ledger.chain.pendingTerms(id).some((p) => p.input !== null)));
    return this.ledger.worstCaseFee({ baseModel: this.baseModel.id, adapters: listed, tokensIn, maxTokens });
  }

  private agentExists(id: string): boolean {
    return found(() => this.ledger.getAgent(id));
  }

  private isListed(id: string): boolean {
    return found(() => this.ledger.getModel(id));
  }

  /** Lists a served model free under the operator, or checks that its listing names these files. */
  private listOrCheck(id: string, kind: "base" | "adapter", hash: Hex): void {
    if (!this.isListed(id)) {
      this.ledger.registerModel({
        id, kind, owner: this.operator, priceIn: 0n, priceOut: 0n, contentHash: hash,
        developers: [{ party: this.operator, share: 1n }],
        ...(kind === "adapter" ? { baseModel: this.baseModel.id } : {}),
      });
      return;
    }
    const m = this.ledger.getModel(id);
    if (m.contentHash !== hash.toLowerCase()) {
      throw oerr("MODEL_CONTENT_MISMATCH", `${kind === "base" ? "the base model" : `adapter ${id}`} is listed with content hash ${m.contentHash}, but the files served hash to ${hash}: list the new files under another id`, { id, listed: m.contentHash, served: hash });
    }
    if (kind === "adapter" && (m.kind === "base" || m.baseModel !== this.baseModel.id)) {
      throw oerr("MODEL_CONTENT_MISMATCH", `${id} is listed as ${m.kind === "base" ? "a base model" : `an adapter of ${m.baseModel ?? "?"}`}, not as an adapter of ${this.baseModel.id}`, { id });
    }
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
