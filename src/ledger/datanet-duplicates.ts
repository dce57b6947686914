/**
 * Verbatim duplicates of a Datanet's approved records. A token sequence duplicates an approved
 * record r of the same Datanet when it is
 *   identical  to r's token ids (one lookup on the tokens_hash index), or
 *   contained  in r: a contiguous run of r's token ids (a span-index search; no match crosses
 *              records, so the whole sequence lies inside one record).
 * A sequence that contains an approved record and more is not a duplicate: it brings tokens the
 * Datanet lacks, a one-token edit evades any verbatim rule anyway, and a short approved sentence
 * would otherwise block every longer text that quotes it; near-duplicates are the approvers' call.
 * Records without token ids are never checked (and never found).
 *
 * The index of approved records has two parts, both built lazily and kept per Datanet:
 *   published    the latest version's records (a version never changes; keyed by its root);
 *   unpublished  approved records outside that version, keyed by their id list, so any approval,
 *                and any rolled-back transaction, is seen before the next search.
 * Cost: identical is one indexed lookup. contained is O(m log N) for m tokens against N approved
 * tokens, after a build of O(N) (SA-IS) for the published part once per version and O(D) for the
 * unpublished part whenever its record list changed since the last search (D: their tokens);
 * publishing folds them into the published part. Memory: about 8 bytes per approved token.
 */
import type { Hex } from "viem";
import { hashTokenIds } from "../attribution/receipts.js";
import { SpanIndex, type CorpusRecord } from "../attribution/spans/span-index.js";
import { oerr } from "../errors.js";
import { blobToTokens, type Db } from "./db.js";

export type DuplicateRelation = "identical" | "contained";

export interface Duplicate {
  /** The approved record repeated; the lowest id when several are. */
  recordId: number;
  relation: DuplicateRelation;
}

interface CachedIndex {
  key: string;
  index: SpanIndex;
}

export class ApprovedRecords {
  private readonly published = new Map<string, CachedIndex>();
  private readonly unpublished = new Map<string, CachedIndex>();

  constructor(private readonly db: Db) {
    this.backfillTokenHashes();
  }

  /** The approved record of `datanet` that `tokenIds` repeats verbatim, or null. */
  find(datanet: string, tokenIds: ArrayLike<number>, tokensHash: Hex = hashTokenIds(Array.from(tokenIds))): Duplicate | null {
    const same = this.db.prepare("SELECT id FROM datanet_records WHERE datanet_id = ? AND tokens_hash = ? AND status = 'approved' ORDER BY id LIMIT 1")
      .get(datanet, tokensHash) as { id: number } | undefined;
    if (same) return { recordId: same.id, relation: "identical" };
    if (tokenIds.length === 0) return null;
    const holders = [this.publishedIndex(datanet), this.unpublishedIndex(datanet)].flatMap((index) => {
      const holder = index ? containingRecord(index, tokenIds) : null;
      return holder === null ? [] : [holder];
    });
    return holders.length === 0 ? null : { recordId: Math.min(...holders), relation: "contained" };
  }

  /** Throws DATANET_DUPLICATE_RECORD when `tokenIds` repeats an approved record of `datanet`. */
  refuse(datanet: string, tokenIds: ArrayLike<number>, what: string, tokensHash?: Hex): void {
    const dup = this.find(datanet, tokenIds, tokensHash);
    if (!dup) return;
    const how = dup.relation === "identical" ? "is identical to" : "is wholly contained in";
    throw oerr("DATANET_DUPLICATE_RECORD", `${what} ${how} approved record ${dup.recordId} of Datanet ${datanet} (verbatim token ids)`, {
      datanet, duplicateOf: dup.recordId, relation: dup.relation,
    });
  }

  private publishedIndex(datanet: string): SpanIndex | null {
    const latest = this.latestVersion(datanet);
    if (!latest) return null;
    const cached = this.published.get(datanet);
    if (cached?.key === latest.root) return cached.index;
    const rows = this.db.prepare(
      `SELECT r.id, r.token_ids FROM datanet_version_records v JOIN datanet_records r ON r.id = v.record_id
       WHERE v.datanet_id = ? AND v.version = ? AND r.token_ids IS NOT NULL ORDER BY r.id`,
    ).all(datanet, latest.version) as { id: number; token_ids: Buffer }[];
    return this.keep(this.published, datanet, latest.root, rows);
  }

  private unpublishedIndex(datanet: string): SpanIndex | null {
    const version = this.latestVersion(datanet)?.version ?? 0;
    const outside = `FROM datanet_records WHERE datanet_id = ? AND status = 'approved'
      AND id NOT IN (SELECT record_id FROM datanet_version_records WHERE datanet_id = ? AND version = ?)`;
    // The key reads only the (datanet, status, id) index; records without token ids are in it too, harmlessly.
    const { ids } = this.db.prepare(`SELECT group_concat(id) AS ids FROM (SELECT id ${outside} ORDER BY id)`).get(datanet, datanet, version) as { ids: string | null };
    if (ids === null) return null;
    const key = `${version}:${ids}`;
    const cached = this.unpublished.get(datanet);
    if (cached?.key === key) return cached.index;
    const rows = this.db.prepare(`SELECT id, token_ids ${outside} AND token_ids IS NOT NULL ORDER BY id`).all(datanet, datanet, version) as { id: number; token_ids: Buffer }[];
    return this.keep(this.unpublished, datanet, key, rows);
  }

  private keep(cache: Map<string, CachedIndex>, datanet: string, key: string, rows: { id: number; token_ids: Buffer }[]): SpanIndex {
    const records: CorpusRecord[] = rows.map((r) => ({ recordId: String(r.id), contributor: "", tokens: blobToTokens(r.token_ids) }));
    const index = SpanIndex.build(records);
    cache.set(datanet, { key, index });
    return index;
  }

  private latestVersion(datanet: string): { version: number; root: string } | undefined {
    return this.db.prepare("SELECT version, root FROM datanet_versions WHERE datanet_id = ? ORDER BY version DESC LIMIT 1").get(datanet) as
      { version: number; root: string } | undefined;
  }

  /**
   * Records written before schema 9 have token ids but no tokens_hash: hashed once, then a meta
   * row says so (every later contribution writes its own), so no later open scans the records.
   */
  private backfillTokenHashes(): void {
    if (this.db.prepare("SELECT 1 FROM meta WHERE key = 'datanet_tokens_hashed'").get()) return;
    const rows = this.db.prepare("SELECT id, token_ids FROM datanet_records WHERE tokens_hash IS NULL AND token_ids IS NOT NULL").all() as { id: number; token_ids: Buffer }[];
    const set = this.db.prepare("UPDATE datanet_records SET tokens_hash = ? WHERE id = ?");
    this.db.transaction(() => {
      for (const r of rows) set.run(hashTokenIds(Array.from(blobToTokens(r.token_ids))), r.id);
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('datanet_tokens_hashed', '1')").run();
    }).immediate();
  }
}

/** The id of the earliest record holding all of `tokens` as one contiguous run, or null. */
function containingRecord(index: SpanIndex, tokens: ArrayLike<number>): number | null {
  const [whole] = index.findMaximalSpans(tokens, { minLength: tokens.length });
  if (!whole || whole.start !== 0 || whole.end !== tokens.length) return null;
  const [source] = index.earliestSources(whole.saStart, whole.saStart + whole.occurrences, 1);
  return source ? Number(source.recordId) : null;
}
