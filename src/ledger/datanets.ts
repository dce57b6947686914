/**
 * Datanets: contributed records, the decisions on them (the owner's, or its approval committee's
 * votes: datanet-committee.ts), and published versions. A version is a snapshot of every approved
 * record at publication, identified by the Merkle root (merkle.ts) of their record hashes in
 * record-id order. Versions never change afterwards. A record that repeats an approved record
 * verbatim (datanet-duplicates.ts) is refused when contributed and when approved.
 */
import { encodeAbiParameters, keccak256, type Hex } from "viem";
import { merkleRoot } from "../attribution/merkle.js";
import { hashTokenIds } from "../attribution/receipts.js";
import type { ContributorTokens } from "../attribution/types.js";
import { oerr } from "../errors.js";
import { checkCommittee, Committees, votedStatus, type ApprovalCommittee, type Vote, type VoteTally } from "./datanet-committee.js";
import { ApprovedRecords, type DuplicateRelation } from "./datanet-duplicates.js";
import { blobToTokens, checkDatanetId, checkName, conflict, notFound, tokensToBlob, versionKey, type Db } from "./db.js";

export type RecordStatus = "pending" | "approved" | "rejected";

export interface ContributionInput {
  contributor: string;
  content: string | Uint8Array;
  /** Token ids of the content (kept for the span index). */
  tokenIds?: readonly number[];
  /** Needed only without tokenIds; must equal tokenIds.length when both are given. */
  tokenCount?: number;
}

export interface DatanetRecord {
  id: number;
  datanet: string;
  contributor: string;
  contentHash: Hex;
  tokenCount: number;
  recordHash: Hex;
  status: RecordStatus;
}

/** A record after an approve or reject: its status and the votes on it. */
export interface RecordDecision {
  record: DatanetRecord;
  votes: VoteTally;
}

/** What replacing a committee did to the pending records that hold votes. */
export interface CommitteeChange {
  committee: ApprovalCommittee;
  approved: number[];
  rejected: number[];
  /** Records the new committee's votes would approve but that repeat an approved record: still pending. */
  held: { recordId: number; duplicateOf: number; relation: DuplicateRelation }[];
}

export interface DatanetVersion {
  datanet: string;
  version: number;
  /** "id@version", the key lineage and span evidence use. */
  key: string;
  root: Hex;
  recordCount: number;
  tokenCount: number;
  created: number;
}

export interface VersionRecord {
  recordId: number;
  contributor: string;
  tokenCount: number;
  recordHash: Hex;
  /** Null when the record was contributed without token ids. */
  tokenIds: Uint32Array | null;
}

/**
 * keccak256(abi.encode("openlora.record.v1", datanet, recordId, contributor, keccak256(content),
 * tokenCount, tokensHash)), tokensHash = hashTokenIds(tokenIds) or 0x00…0 without token ids.
 */
export function recordHash(datanet: string, recordId: number, contributor: string, contentHash: Hex, tokenCount: number, tokensHash: Hex): Hex {
  return keccak256(encodeAbiParameters(
    [{ type: "string" }, { type: "string" }, { type: "uint64" }, { type: "string" }, { type: "bytes32" }, { type: "uint64" }, { type: "bytes32" }],
    ["openlora.record.v1", datanet, BigInt(recordId), contributor, contentHash, BigInt(tokenCount), tokensHash],
  ));
}

const ZERO32: Hex = `0x${"0".repeat(64)}`;

export class Datanets {
  /** Contributor token counts per version key; versions are immutable, so this never goes stale. */
  private readonly contributorCache = new Map<string, ContributorTokens[]>();
  readonly committees: Committees;
  private readonly approvedRecords: ApprovedRecords;

  constructor(private readonly db: Db, private readonly now: () => number) {
    this.committees = new Committees(db, now);
    this.approvedRecords = new ApprovedRecords(db);
  }

  create(id: string, owner: string): void {
    checkDatanetId(id);
    checkName("owner", owner);
    if (this.db.prepare("SELECT 1 FROM datanets WHERE id = ?").get(id)) conflict(`Datanet ${id} already exists`, { datanet: id });
    this.db.prepare("INSERT INTO datanets (id, owner, created) VALUES (?, ?, ?)").run(id, owner, this.now());
  }

  owner(id: string): string {
    const row = this.db.prepare("SELECT owner FROM datanets WHERE id = ?").get(id) as { owner: string } | undefined;
    if (!row) notFound("Datanet", id);
    return row.owner;
  }

  contribute(datanet: string, c: ContributionInput): DatanetRecord {
    this.owner(datanet);
    checkName("contributor", c.contributor);
    const content = typeof c.content === "string" ? Buffer.from(c.content, "utf8") : Buffer.from(c.content);
    const tokenCount = c.tokenIds ? c.tokenIds.length : c.tokenCount;
    if (tokenCount === undefined || !Number.isSafeInteger(tokenCount) || tokenCount < 0) {
      throw oerr("INVALID_ARGUMENT", "a contribution needs tokenIds or a non-negative integer tokenCount");
    }
    if (c.tokenIds && c.tokenCount !== undefined && c.tokenCount !== c.tokenIds.length) {
      throw oerr("INVALID_ARGUMENT", `tokenCount ${c.tokenCount} disagrees with ${c.tokenIds.length} token ids`);
    }
    const blob = c.tokenIds ? tokensToBlob(c.tokenIds) : null;
    const tokensHash = c.tokenIds ? hashTokenIds(c.tokenIds) : ZERO32;
    const contentHash = keccak256(content);
    return this.db.transaction(() => {
      if (c.tokenIds) this.approvedRecords.refuse(datanet, c.tokenIds, "the contribution", tokensHash);
      const info = this.db.prepare(
        "INSERT INTO datanet_records (datanet_id, contributor, content, content_hash, token_count, token_ids, tokens_hash, record_hash, status, created) VALUES (?, ?, ?, ?, ?, ?, ?, '', 'pending', ?)",
      ).run(datanet, c.contributor, content, contentHash, tokenCount, blob, c.tokenIds ? tokensHash : null, this.now());
      const id = Number(info.lastInsertRowid);
      const hash = recordHash(datanet, id, c.contributor, contentHash, tokenCount, tokensHash);
      this.db.prepare("UPDATE datanet_records SET record_hash = ? WHERE id = ?").run(hash, id);
      return { id, datanet, contributor: c.contributor, contentHash, tokenCount, recordHash: hash, status: "pending" as const };
    }).immediate();
  }

  /**
   * The owner's decision on a pending record, or an approver's vote on it (rules in
   * datanet-committee.ts). Anyone else: LEDGER_FORBIDDEN. Approving (deciding or voting) a record
   * that repeats an approved one verbatim: DATANET_DUPLICATE_RECORD, nothing written.
   */
  decide(datanet: string, recordId: number, by: string, decision: "approved" | "rejected"): RecordDecision {
    const byOwner = this.owner(datanet) === by;
    if (!byOwner && !this.committees.isMember(datanet, by)) {
      throw oerr("LEDGER_FORBIDDEN", `${by} neither owns Datanet ${datanet} nor is one of its approvers`, { datanet, by });
    }
    const vote: Vote = decision === "approved" ? "approve" : "reject";
    return this.db.transaction(() => {
      const row = this.db.prepare("SELECT status, token_ids, tokens_hash FROM datanet_records WHERE id = ? AND datanet_id = ?").get(recordId, datanet) as
        { status: RecordStatus; token_ids: Buffer | null; tokens_hash: Hex | null } | undefined;
      if (!row) notFound("record", `${datanet}#${recordId}`);
      const earlier = byOwner ? undefined : this.committees.voteOf(recordId, by);
      if (earlier === vote) return this.decision(datanet, recordId);
      if (row.status !== "pending") conflict(`record ${recordId} is already ${row.status}`, { recordId, status: row.status });
      if (earlier !== undefined) conflict(`${by} already voted ${earlier} on record ${recordId}; a vote is final`, { recordId, vote: earlier });
      if (vote === "approve" && row.token_ids) this.approvedRecords.refuse(datanet, blobToTokens(row.token_ids), `record ${recordId}`, row.tokens_hash ?? undefined);
      if (byOwner) {
        this.setStatus(recordId, decision, by);
      } else {
        this.committees.cast(recordId, by, vote);
        const status = votedStatus(this.committees.tally(datanet, recordId));
        if (status !== "pending") this.setStatus(recordId, status, by);
      }
      return this.decision(datanet, recordId);
    }).immediate();
  }

  /** The record's status and the votes cast on it. */
  decision(datanet: string, recordId: number): RecordDecision {
    return { record: this.record(datanet, recordId), votes: this.committees.tally(datanet, recordId) };
  }

  approvers(datanet: string): ApprovalCommittee {
    this.owner(datanet);
    return this.committees.get(datanet);
  }

  /**
   * Replaces the approval committee (only the owner may) and re-evaluates every pending record
   * that holds votes under it, in one transaction. `approvers` empty with threshold 0 removes it.
   */
  setApprovers(datanet: string, by: string, approvers: readonly string[], threshold: number): CommitteeChange {
    const owner = this.owner(datanet);
    if (owner !== by) throw oerr("LEDGER_FORBIDDEN", `${by} does not own Datanet ${datanet}`, { datanet, by });
    const members = checkCommittee(approvers, threshold, owner);
    return this.db.transaction(() => {
      this.committees.replace(datanet, members, threshold);
      const change: CommitteeChange = { committee: this.committees.get(datanet), approved: [], rejected: [], held: [] };
      for (const recordId of this.committees.pendingWithVotes(datanet)) {
        const status = votedStatus(this.committees.tally(datanet, recordId));
        if (status === "rejected") {
          this.setStatus(recordId, status, by);
          change.rejected.push(recordId);
        } else if (status === "approved") {
          const row = this.db.prepare("SELECT token_ids, tokens_hash FROM datanet_records WHERE id = ?").get(recordId) as { token_ids: Buffer | null; tokens_hash: Hex | null };
          const dup = row.token_ids ? this.approvedRecords.find(datanet, blobToTokens(row.token_ids), row.tokens_hash ?? undefined) : null;
          if (dup) {
            change.held.push({ recordId, duplicateOf: dup.recordId, relation: dup.relation });
          } else {
            this.setStatus(recordId, status, by);
            change.approved.push(recordId);
          }
        }
      }
      return change;
    }).immediate();
  }

  private setStatus(recordId: number, status: "approved" | "rejected", by: string): void {
    this.db.prepare("UPDATE datanet_records SET status = ?, decided_by = ?, decided_at = ? WHERE id = ?").run(status, by, this.now(), recordId);
  }

  record(datanet: string, recordId: number): DatanetRecord {
    const r = this.db.prepare("SELECT * FROM datanet_records WHERE id = ? AND datanet_id = ?").get(recordId, datanet) as RecordRow | undefined;
    if (!r) notFound("record", `${datanet}#${recordId}`);
    return toRecord(r);
  }

  records(datanet: string, status?: RecordStatus): DatanetRecord[] {
    this.owner(datanet);
    const rows = (status
      ? this.db.prepare("SELECT * FROM datanet_records WHERE datanet_id = ? AND status = ? ORDER BY id").all(datanet, status)
      : this.db.prepare("SELECT * FROM datanet_records WHERE datanet_id = ? ORDER BY id").all(datanet)) as RecordRow[];
    return rows.map(toRecord);
  }

  /** Publishes the next version: every approved record so far. Only the owner may. */
  publish(datanet: string, by: string): DatanetVersion {
    if (this.owner(datanet) !== by) throw oerr("LEDGER_FORBIDDEN", `${by} does not own Datanet ${datanet}`, { datanet, by });
    return this.db.transaction(() => {
      const recs = this.db.prepare("SELECT id, record_hash, token_count FROM datanet_records WHERE datanet_id = ? AND status = 'approved' ORDER BY id")
        .all(datanet) as { id: number; record_hash: Hex; token_count: number }[];
      if (recs.length === 0) conflict(`Datanet ${datanet} has no approved records to publish`, { datanet });
      const last = this.db.prepare("SELECT MAX(version) AS v FROM datanet_versions WHERE datanet_id = ?").get(datanet) as { v: number | null };
      const version = (last.v ?? 0) + 1;
      const root = merkleRoot(recs.map((r) => r.record_hash));
      const tokenCount = recs.reduce((s, r) => s + r.token_count, 0);
      const created = this.now();
      this.db.prepare("INSERT INTO datanet_versions (datanet_id, version, root, record_count, token_count, created) VALUES (?, ?, ?, ?, ?, ?)")
        .run(datanet, version, root, recs.length, tokenCount, created);
      const add = this.db.prepare("INSERT INTO datanet_version_records (datanet_id, version, record_id) VALUES (?, ?, ?)");
      for (const r of recs) add.run(datanet, version, r.id);
      return { datanet, version, key: versionKey(datanet, version), root, recordCount: recs.length, tokenCount, created };
    }).immediate();
  }

  versions(datanet: string): DatanetVersion[] {
    this.owner(datanet);
    const rows = this.db.prepare("SELECT * FROM datanet_versions WHERE datanet_id = ? ORDER BY version").all(datanet) as VersionRow[];
    return rows.map(toVersion);
  }

  version(datanet: string, version: number): DatanetVersion {
    const row = this.db.prepare("SELECT * FROM datanet_versions WHERE datanet_id = ? AND version = ?").get(datanet, version) as VersionRow | undefined;
    if (!row) notFound("Datanet version", versionKey(datanet, version));
    return toVersion(row);
  }

  /** The records of a version in Merkle-leaf order, with their token ids (for the span index). */
  versionRecords(datanet: string, version: number): VersionRecord[] {
    this.version(datanet, version);
    const rows = this.db.prepare(
      `SELECT r.id, r.contributor, r.token_count, r.record_hash, r.token_ids FROM datanet_version_records v
       JOIN datanet_records r ON r.id = v.record_id WHERE v.datanet_id = ? AND v.version = ? ORDER BY r.id`,
    ).all(datanet, version) as { id: number; contributor: string; token_count: number; record_hash: Hex; token_ids: Buffer | null }[];
    return rows.map((r) => ({ recordId: r.id, contributor: r.contributor, tokenCount: r.token_count, recordHash: r.record_hash, tokenIds: r.token_ids ? blobToTokens(r.token_ids) : null }));
  }

  /** Approved tokens per contributor in a version (the lineage side of data attribution). */
  contributors(datanet: string, version: number): ContributorTokens[] {
    const key = versionKey(datanet, version);
    const cached = this.contributorCache.get(key);
    if (cached) return cached;
    const rows = this.db.prepare(
      `SELECT r.contributor AS party, SUM(r.token_count) AS tokens FROM datanet_version_records v
       JOIN datanet_records r ON r.id = v.record_id WHERE v.datanet_id = ? AND v.version = ? GROUP BY r.contributor ORDER BY r.contributor`,
    ).all(datanet, version) as { party: string; tokens: number }[];
    const out = rows.map((r) => ({ party: r.party, approvedTokens: r.tokens }));
    this.contributorCache.set(key, out);
    return out;
  }
}

interface RecordRow { id: number; datanet_id: string; contributor: string; content_hash: Hex; token_count: number; record_hash: Hex; status: RecordStatus }
interface VersionRow { datanet_id: string; version: number; root: Hex; record_count: number; token_count: number; created: number }

function toRecord(r: RecordRow): DatanetRecord {
  return { id: r.id, datanet: r.datanet_id, contributor: r.contributor, contentHash: r.content_hash, tokenCount: r.token_count, recordHash: r.record_hash, status: r.status };
}

function toVersion(r: VersionRow): DatanetVersion {
  return { datanet: r.datanet_id, version: r.version, key: versionKey(r.datanet_id, r.version), root: r.root, recordCount: r.record_count, tokenCount: r.token_count, created: r.created };
}
