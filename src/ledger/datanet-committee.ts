/**
 * A Datanet's approval committee: n distinct approver accounts and a threshold k, 1 ≤ k ≤ n ≤
 * MAX_APPROVERS, set by the owner (n = 0, k = 0: no committee). The rules:
 *   - The owner's approve or reject decides a pending record at once, committee or not.
 *   - Each approver has one vote per record, kept with its time. The same vote again changes
 *     nothing (it counts once, and answers as the first did, even once the record is decided);
 *     the other vote afterwards is refused (LEDGER_CONFLICT): a vote is final.
 *   - A record is approved when k approvers approved it, rejected when rejections > n − k (k
 *     approvals have become impossible), both counting only the votes of current approvers.
 *   - Replacing the committee re-evaluates every pending record with votes under the new one:
 *     votes of accounts no longer approvers stop counting (their rows stay, shown uncounted, and
 *     count again if the account is named again); a record that now reaches k is approved, one
 *     whose rejections now exceed n − k is rejected.
 * Approvers are account ids as the ledger names parties; a 0x address is kept lowercase, the id a
 * signed request acts as. The owner cannot be an approver (it decides alone anyway).
 */
import { oerr } from "../errors.js";
import { checkName, type Db } from "./db.js";

export const MAX_APPROVERS = 32;

export type Vote = "approve" | "reject";

export interface ApprovalCommittee {
  datanet: string;
  /** Sorted; empty without a committee. */
  approvers: string[];
  /** k; 0 without a committee. */
  threshold: number;
  /** When the owner last set the committee (Unix ms); null if never. */
  updated: number | null;
}

export interface CastVote {
  account: string;
  vote: Vote;
  at: number;
  /** False when the account is no longer an approver. */
  counted: boolean;
}

export interface VoteTally {
  /** Counted approvals and rejections (current approvers only). */
  approvals: number;
  rejections: number;
  threshold: number;
  /** n: the committee's size. */
  members: number;
  /** Every vote cast on the record, oldest first. */
  votes: CastVote[];
}

/** What the counted votes make of a pending record under the rules above. */
export function votedStatus(t: Pick<VoteTally, "approvals" | "rejections" | "threshold" | "members">): "pending" | "approved" | "rejected" {
  if (t.threshold === 0) return "pending";
  if (t.approvals >= t.threshold) return "approved";
  if (t.rejections > t.members - t.threshold) return "rejected";
  return "pending";
}

/** The committee as stored: validated, 0x addresses lowercased, sorted. Throws INVALID_ARGUMENT. */
export function checkCommittee(approvers: readonly string[], threshold: number, owner: string): string[] {
  if (!Array.isArray(approvers)) throw oerr("INVALID_ARGUMENT", "approvers must be a list of account ids", { param: "approvers" });
  if (approvers.length > MAX_APPROVERS) {
    throw oerr("INVALID_ARGUMENT", `a committee has at most ${MAX_APPROVERS} approvers, got ${approvers.length}`, { param: "approvers" });
  }
  const members = approvers.map((a, i) => {
    checkName(`approvers[${i}]`, a);
    return /^0x[0-9a-fA-F]{40}$/.test(a) ? a.toLowerCase() : a;
  });
  const seen = new Set<string>();
  for (const m of members) {
    if (seen.has(m)) throw oerr("INVALID_ARGUMENT", `approvers names ${m} twice`, { param: "approvers" });
    if (m === owner) throw oerr("INVALID_ARGUMENT", `the owner ${m} decides alone; it cannot also be an approver`, { param: "approvers" });
    seen.add(m);
  }
  const lowest = members.length === 0 ? 0 : 1;
  if (!Number.isSafeInteger(threshold) || threshold < lowest || threshold > members.length) {
    throw oerr("INVALID_ARGUMENT", members.length === 0
      ? `a Datanet without approvers has threshold 0, got ${threshold}`
      : `threshold must be an integer in [1, ${members.length}] for ${members.length} approvers, got ${threshold}`, { param: "threshold" });
  }
  return members.sort();
}

export class Committees {
  constructor(private readonly db: Db, private readonly now: () => number) {}

  get(datanet: string): ApprovalCommittee {
    const row = this.db.prepare("SELECT approval_threshold AS threshold, approvers_updated AS updated FROM datanets WHERE id = ?").get(datanet) as
      { threshold: number; updated: number | null };
    return { datanet, approvers: this.members(datanet), threshold: row.threshold, updated: row.updated };
  }

  isMember(datanet: string, account: string): boolean {
    return this.db.prepare("SELECT 1 FROM datanet_approvers WHERE datanet_id = ? AND account = ?").get(datanet, account) !== undefined;
  }

  /** Replaces the committee (members as checkCommittee returns them); the caller holds the transaction. */
  replace(datanet: string, members: readonly string[], threshold: number): void {
    this.db.prepare("DELETE FROM datanet_approvers WHERE datanet_id = ?").run(datanet);
    const add = this.db.prepare("INSERT INTO datanet_approvers (datanet_id, account) VALUES (?, ?)");
    for (const m of members) add.run(datanet, m);
    this.db.prepare("UPDATE datanets SET approval_threshold = ?, approvers_updated = ? WHERE id = ?").run(threshold, this.now(), datanet);
  }

  voteOf(recordId: number, account: string): Vote | undefined {
    const row = this.db.prepare("SELECT vote FROM datanet_votes WHERE record_id = ? AND account = ?").get(recordId, account) as { vote: Vote } | undefined;
    return row?.vote;
  }

  cast(recordId: number, account: string, vote: Vote): void {
    this.db.prepare("INSERT INTO datanet_votes (record_id, account, vote, at) VALUES (?, ?, ?, ?)").run(recordId, account, vote, this.now());
  }

  tally(datanet: string, recordId: number): VoteTally {
    const committee = this.get(datanet);
    const members = new Set(committee.approvers);
    const rows = this.db.prepare("SELECT account, vote, at FROM datanet_votes WHERE record_id = ? ORDER BY at, account").all(recordId) as
      { account: string; vote: Vote; at: number }[];
    const votes = rows.map((r) => ({ account: r.account, vote: r.vote, at: r.at, counted: members.has(r.account) }));
    const counted = (v: Vote) => votes.filter((x) => x.counted && x.vote === v).length;
    return { approvals: counted("approve"), rejections: counted("reject"), threshold: committee.threshold, members: members.size, votes };
  }

  /** Pending records of `datanet` that hold at least one vote, by id. */
  pendingWithVotes(datanet: string): number[] {
    return (this.db.prepare(
      `SELECT DISTINCT r.id FROM datanet_records r JOIN datanet_votes v ON v.record_id = r.id
       WHERE r.datanet_id = ? AND r.status = 'pending' ORDER BY r.id`,
    ).all(datanet) as { id: number }[]).map((r) => r.id);
  }

  private members(datanet: string): string[] {
    return (this.db.prepare("SELECT account FROM datanet_approvers WHERE datanet_id = ? ORDER BY account").all(datanet) as { account: string }[]).map((r) => r.account);
  }
}
