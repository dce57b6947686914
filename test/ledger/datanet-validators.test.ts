/**
 * Datanet validators on a real ledger file: k-of-n approval committees beside the owner (votes
 * kept, counted once, final; rejections past n − k reject; a committee change re-evaluates), and
 * verbatim duplicates of approved records refused when contributed and when approved.
 */
import { join } from "node:path";
import type { Hex } from "viem";
import { describe, expect, it } from "vitest";
import type { FeePolicy } from "../../src/attribution/types.js";
import type { ErrorCode } from "../../src/errors.js";
import { MAX_APPROVERS } from "../../src/ledger/datanet-committee.js";
import { Ledger } from "../../src/ledger/index.js";
import { tempDir } from "../helpers/tmp.js";

const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const dir = tempDir("openlora-validators-");
let files = 0;

function open(path = join(dir, `v${files++}.sqlite`)): Ledger {
  let t = 1_700_000_000_000;
  return new Ledger({ path, nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op", now: () => t++ });
}

function failure(f: () => unknown): { code: ErrorCode | undefined; details: Record<string, unknown> | undefined } {
  try {
    f();
  } catch (e) {
    const err = e as { code?: ErrorCode; details?: Record<string, unknown> };
    return { code: err.code, details: err.details };
  }
  return { code: undefined, details: undefined };
}
const code = (f: () => unknown) => failure(f).code;

/** Every table's rows, to check that a refusal wrote nothing. */
function snapshot(l: Ledger): string {
  const tables = (l.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
  return JSON.stringify(tables.map((t) => [t, l.db.prepare(`SELECT * FROM "${t}"`).all()]), (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("hex") : v));
}

let next = 1000;
/** A pending record of fresh tokens (never a duplicate of another). */
function pending(l: Ledger, datanet = "dn", tokenIds?: number[]): number {
  const ids = tokenIds ?? [next++, next++, next++];
  return l.contribute(datanet, { contributor: "carol", content: `c${ids.join(",")}`, tokenIds: ids }).id;
}

/** Datanet "dn" owned by olivia, with committee a, b, c and threshold k. */
function withCommittee(k: number, approvers = ["a", "b", "c"]): Ledger {
  const l = open();
  l.createDatanet("dn", "olivia");
  l.setApprovers("dn", "olivia", approvers, k);
  return l;
}

const statusOf = (l: Ledger, id: number) => l.datanets.record("dn", id).status;
const decidedBy = (l: Ledger, id: number) => (l.db.prepare("SELECT decided_by FROM datanet_records WHERE id = ?").get(id) as { decided_by: string | null }).decided_by;

describe("k-of-n approval", () => {
  it("approves at exactly k distinct approvals, recording who and when", () => {
    const l = withCommittee(2);
    const r = pending(l);
    const first = l.approveRecord("dn", r, "a");
    expect(first.record.status).toBe("pending");
    expect(first.votes).toMatchObject({ approvals: 1, rejections: 0, threshold: 2, members: 3 });
    const second = l.approveRecord("dn", r, "b");
    expect(second.record.status).toBe("approved");
    expect(second.votes.approvals).toBe(2);
    expect(second.votes.votes.map((v) => [v.account, v.vote, v.counted])).toEqual([["a", "approve", true], ["b", "approve", true]]);
    expect(second.votes.votes[0]!.at).toBeLessThan(second.votes.votes[1]!.at);
    expect(decidedBy(l, r)).toBe("b");
    // k = n = 3 needs all three.
    const all = withCommittee(3);
    const s = pending(all);
    all.approveRecord("dn", s, "a");
    expect(all.approveRecord("dn", s, "c").record.status).toBe("pending");
    expect(all.approveRecord("dn", s, "b").record.status).toBe("approved");
    l.close();
    all.close();
  });

  it("counts a repeated vote once, answers it again after the decision, and keeps a vote final", () => {
    const l = withCommittee(2);
    const r = pending(l);
    const once = l.approveRecord("dn", r, "a");
    const twice = l.approveRecord("dn", r, "a");
    expect(twice.votes.approvals).toBe(1);
    expect(twice.votes.votes).toEqual(once.votes.votes);
    expect(statusOf(l, r)).toBe("pending");
    expect(code(() => l.rejectRecord("dn", r, "a"))).toBe("LEDGER_CONFLICT");
    l.approveRecord("dn", r, "b");
    // A retry of a vote that was cast is answered; a new vote on a decided record is not.
    expect(l.approveRecord("dn", r, "b").record.status).toBe("approved");
    expect(code(() => l.approveRecord("dn", r, "c"))).toBe("LEDGER_CONFLICT");
    expect(code(() => l.rejectRecord("dn", r, "c"))).toBe("LEDGER_CONFLICT");
    expect((l.db.prepare("SELECT COUNT(*) AS n FROM datanet_votes").get() as { n: number }).n).toBe(2);
    l.close();
  });

  it("refuses accounts that are neither owner nor approver, writing nothing", () => {
    const l = withCommittee(2);
    const r = pending(l);
    const before = snapshot(l);
    expect(code(() => l.approveRecord("dn", r, "mallory"))).toBe("LEDGER_FORBIDDEN");
    expect(code(() => l.rejectRecord("dn", r, "mallory"))).toBe("LEDGER_FORBIDDEN");
    expect(code(() => l.approveRecord("dn", 999, "mallory"))).toBe("LEDGER_FORBIDDEN");
    expect(code(() => l.approveRecord("dn", 999, "a"))).toBe("LEDGER_NOT_FOUND");
    expect(code(() => l.approveRecord("nope", r, "a"))).toBe("LEDGER_NOT_FOUND");
    expect(snapshot(l)).toBe(before);
    l.close();
  });

  it("rejects once rejections exceed n − k", () => {
    // n = 3, k = 2: two rejections make two approvals impossible.
    const l = withCommittee(2);
    const r = pending(l);
    l.approveRecord("dn", r, "a");
    expect(l.rejectRecord("dn", r, "b").record.status).toBe("pending");
    expect(l.rejectRecord("dn", r, "c").record.status).toBe("rejected");
    expect(decidedBy(l, r)).toBe("c");
    const s = pending(l);
    l.rejectRecord("dn", s, "a");
    expect(l.rejectRecord("dn", s, "b").votes).toMatchObject({ approvals: 0, rejections: 2 });
    expect(statusOf(l, s)).toBe("rejected");
    // k = n: one rejection; k = 1: all n.
    const strict = withCommittee(3);
    expect(strict.rejectRecord("dn", pending(strict), "b").record.status).toBe("rejected");
    const lenient = withCommittee(1);
    const t = pending(lenient);
    lenient.rejectRecord("dn", t, "a");
    expect(lenient.rejectRecord("dn", t, "b").record.status).toBe("pending");
    expect(lenient.rejectRecord("dn", t, "c").record.status).toBe("rejected");
    for (const x of [l, strict, lenient]) x.close();
  });

  it("lets the owner decide alone, committee or not", () => {
    const l = withCommittee(3);
    const r = pending(l);
    expect(l.approveRecord("dn", r, "olivia").record.status).toBe("approved");
    const s = pending(l);
    l.approveRecord("dn", s, "a");
    l.approveRecord("dn", s, "b");
    expect(l.rejectRecord("dn", s, "olivia").record.status).toBe("rejected");
    expect(decidedBy(l, s)).toBe("olivia");
    expect(code(() => l.approveRecord("dn", s, "olivia"))).toBe("LEDGER_CONFLICT");
    expect(code(() => l.approveRecord("dn", s, "c"))).toBe("LEDGER_CONFLICT");
    l.close();
  });
});

describe("changing the committee", () => {
  it("re-evaluates pending votes: removed approvers stop counting, records reaching the new k are approved", () => {
    const l = withCommittee(3);
    const x = pending(l);
    const y = pending(l);
    const z = pending(l);
    l.approveRecord("dn", x, "a");
    l.approveRecord("dn", x, "b");
    l.approveRecord("dn", y, "a");
    l.approveRecord("dn", y, "c");
    l.approveRecord("dn", z, "c");
    const change = l.setApprovers("dn", "olivia", ["a", "b", "d"], 2);
    expect(change.approved).toEqual([x]);
    expect(change.rejected).toEqual([]);
    expect(change.committee).toMatchObject({ approvers: ["a", "b", "d"], threshold: 2 });
    expect(decidedBy(l, x)).toBe("olivia");
    // y keeps c's vote on record, uncounted; one more approver approves it.
    const tally = l.datanets.decision("dn", y).votes;
    expect(tally.votes.map((v) => [v.account, v.counted])).toEqual([["a", true], ["c", false]]);
    expect(tally.approvals).toBe(1);
    expect(code(() => l.approveRecord("dn", y, "c"))).toBe("LEDGER_FORBIDDEN");
    expect(l.approveRecord("dn", y, "d").record.status).toBe("approved");
    // Named again, c's vote counts again.
    expect(l.datanets.decision("dn", z).votes.approvals).toBe(0);
    expect(l.setApprovers("dn", "olivia", ["a", "c"], 1).approved).toEqual([z]);
    l.close();
  });

  it("rejects records whose rejections now exceed n − k, and removing the committee leaves the owner alone", () => {
    const l = withCommittee(2);
    const r = pending(l);
    const s = pending(l);
    l.rejectRecord("dn", r, "c");
    l.approveRecord("dn", s, "a");
    expect(statusOf(l, r)).toBe("pending");
    const change = l.setApprovers("dn", "olivia", ["b", "c"], 2);
    expect(change.rejected).toEqual([r]);
    expect(statusOf(l, s)).toBe("pending");
    const none = l.setApprovers("dn", "olivia", [], 0);
    expect(none.committee).toMatchObject({ approvers: [], threshold: 0 });
    expect(none.approved).toEqual([]);
    expect(code(() => l.approveRecord("dn", s, "b"))).toBe("LEDGER_FORBIDDEN");
    expect(l.approveRecord("dn", s, "olivia").record.status).toBe("approved");
    l.close();
  });

  it("is the owner's alone to set, within the documented limits, and a refusal writes nothing", () => {
    const l = withCommittee(2);
    const before = snapshot(l);
    const addr = "0xAbCdEf0123456789abcdef0123456789ABCDEF01";
    const many = Array.from({ length: MAX_APPROVERS + 1 }, (_, i) => `v${i}`);
    const refusals: Array<[() => unknown, ErrorCode, string?]> = [
      [() => l.setApprovers("dn", "a", ["a", "b"], 1), "LEDGER_FORBIDDEN"],
      [() => l.setApprovers("nope", "olivia", ["a"], 1), "LEDGER_NOT_FOUND"],
      [() => l.setApprovers("dn", "olivia", ["a", "b"], 0), "INVALID_ARGUMENT", "threshold"],
      [() => l.setApprovers("dn", "olivia", ["a", "b"], 3), "INVALID_ARGUMENT", "threshold"],
      [() => l.setApprovers("dn", "olivia", ["a", "b"], 1.5), "INVALID_ARGUMENT", "threshold"],
      [() => l.setApprovers("dn", "olivia", [], 1), "INVALID_ARGUMENT", "threshold"],
      [() => l.setApprovers("dn", "olivia", ["a", "a"], 1), "INVALID_ARGUMENT", "approvers"],
      [() => l.setApprovers("dn", "olivia", [addr, addr.toLowerCase()], 1), "INVALID_ARGUMENT", "approvers"],
      [() => l.setApprovers("dn", "olivia", ["a", "olivia"], 1), "INVALID_ARGUMENT", "approvers"],
      [() => l.setApprovers("dn", "olivia", many, 1), "INVALID_ARGUMENT", "approvers"],
      [() => l.setApprovers("dn", "olivia", ["a", ""], 1), "INVALID_ARGUMENT"],
    ];
    for (const [f, want, param] of refusals) {
      const got = failure(f);
      expect(got.code).toBe(want);
      if (param) expect(got.details?.param).toBe(param);
    }
    expect(snapshot(l)).toBe(before);
    // The limit itself is accepted; a 0x address is kept lowercase (the id a signed request acts as).
    expect(l.setApprovers("dn", "olivia", many.slice(0, MAX_APPROVERS), MAX_APPROVERS).committee.approvers).toHaveLength(MAX_APPROVERS);
    expect(l.setApprovers("dn", "olivia", [addr, "b"], 2).committee.approvers).toEqual([addr.toLowerCase(), "b"]);
    expect(l.approveRecord("dn", pending(l), addr.toLowerCase()).votes.approvals).toBe(1);
    expect(l.getApprovers("dn")).toMatchObject({ datanet: "dn", threshold: 2, updated: expect.any(Number) });
    l.close();
  });
});

describe("verbatim duplicates", () => {
  const A = [1, 2, 3, 4, 5, 6, 7, 8];
  const records = (l: Ledger) => (l.db.prepare("SELECT COUNT(*) AS n FROM datanet_records").get() as { n: number }).n;

  function approvedA(): { l: Ledger; a: number } {
    const l = open();
    l.createDatanet("dn", "olivia");
    const a = pending(l, "dn", A);
    l.approveRecord("dn", a, "olivia");
    return { l, a };
  }

  it("refuses a contribution identical to, or inside, an approved record, naming it — and writes nothing", () => {
    const { l, a } = approvedA();
    const before = snapshot(l);
    const identical = failure(() => pending(l, "dn", [...A]));
    expect(identical).toEqual({ code: "DATANET_DUPLICATE_RECORD", details: { datanet: "dn", duplicateOf: a, relation: "identical" } });
    const inside = failure(() => pending(l, "dn", [3, 4, 5]));
    expect(inside).toEqual({ code: "DATANET_DUPLICATE_RECORD", details: { datanet: "dn", duplicateOf: a, relation: "contained" } });
    expect(failure(() => pending(l, "dn", [1])).details?.relation).toBe("contained");
    expect(snapshot(l)).toBe(before);
    // Published, the same: the check reads the latest version and what was approved after it.
    l.publishVersion("dn", "olivia");
    const b = pending(l, "dn", [40, 41, 42, 43]);
    l.approveRecord("dn", b, "olivia");
    expect(failure(() => pending(l, "dn", [4, 5, 6])).details).toMatchObject({ duplicateOf: a, relation: "contained" });
    expect(failure(() => pending(l, "dn", [41, 42])).details).toMatchObject({ duplicateOf: b, relation: "contained" });
    expect(failure(() => pending(l, "dn", [40, 41, 42, 43])).details).toMatchObject({ duplicateOf: b, relation: "identical" });
    l.close();
  });

  it("accepts what contains an approved record and more, crosses two records, or repeats only pending, rejected or other Datanets' records", () => {
    const { l } = approvedA();
    const grown = [...A, 9];
    expect(() => pending(l, "dn", grown)).not.toThrow();
    const b = pending(l, "dn", [50, 51, 52]);
    l.approveRecord("dn", b, "olivia");
    expect(() => pending(l, "dn", [7, 8, 50, 51])).not.toThrow(); // the end of one and the start of another
    expect(() => pending(l, "dn", grown)).not.toThrow(); // the first copy is only pending
    const r = pending(l, "dn", [60, 61]);
    l.rejectRecord("dn", r, "olivia");
    expect(() => pending(l, "dn", [60, 61])).not.toThrow();
    l.createDatanet("other", "olivia");
    expect(() => pending(l, "other", [...A])).not.toThrow();
    // Without token ids there is nothing to compare.
    expect(() => l.contribute("dn", { contributor: "carol", content: "untokenized", tokenCount: 8 })).not.toThrow();
    l.close();
  });

  it("re-checks at approval: a record covered by one approved after it was contributed is not approved, by owner or votes", () => {
    const l = open();
    l.createDatanet("dn", "olivia");
    l.setApprovers("dn", "olivia", ["a", "b"], 1);
    const first = pending(l, "dn", A);
    const copy = pending(l, "dn", [...A]);
    const part = pending(l, "dn", [2, 3, 4]);
    l.approveRecord("dn", first, "a");
    const before = snapshot(l);
    expect(failure(() => l.approveRecord("dn", copy, "olivia"))).toEqual({ code: "DATANET_DUPLICATE_RECORD", details: { datanet: "dn", duplicateOf: first, relation: "identical" } });
    expect(failure(() => l.approveRecord("dn", copy, "b")).code).toBe("DATANET_DUPLICATE_RECORD");
    expect(failure(() => l.approveRecord("dn", part, "b")).details).toMatchObject({ duplicateOf: first, relation: "contained" });
    expect(snapshot(l)).toBe(before);
    // Rejecting it stays possible (n = 2, k = 1: both reject).
    expect(l.rejectRecord("dn", copy, "b").record.status).toBe("pending");
    expect(l.rejectRecord("dn", copy, "a").record.status).toBe("rejected");
    l.close();
  });

  it("holds, on a committee change, records that would be approved but repeat one approved in the same change", () => {
    const l = open();
    l.createDatanet("dn", "olivia");
    l.setApprovers("dn", "olivia", ["a", "b"], 2);
    const first = pending(l, "dn", A);
    const copy = pending(l, "dn", [...A]);
    l.approveRecord("dn", first, "a");
    l.approveRecord("dn", copy, "b");
    const change = l.setApprovers("dn", "olivia", ["a", "b"], 1);
    expect(change.approved).toEqual([first]);
    expect(change.held).toEqual([{ recordId: copy, duplicateOf: first, relation: "identical" }]);
    expect(statusOf(l, copy)).toBe("pending");
    l.close();
  });

  it("never answers from an index of a rolled-back approval", () => {
    const l = open();
    l.createDatanet("dn", "olivia");
    const a = pending(l, "dn", A);
    const b = pending(l, "dn", [70, 71, 72]);
    expect(() => l.db.transaction(() => {
      l.approveRecord("dn", a, "olivia");
      expect(code(() => pending(l, "dn", [2, 3]))).toBe("DATANET_DUPLICATE_RECORD"); // builds the index with a approved
      throw new Error("roll back");
    })()).toThrow("roll back");
    expect(statusOf(l, a)).toBe("pending");
    l.approveRecord("dn", b, "olivia"); // as many approved records as inside the rolled-back transaction
    expect(() => pending(l, "dn", [2, 3])).not.toThrow();
    expect(code(() => pending(l, "dn", [71, 72]))).toBe("DATANET_DUPLICATE_RECORD");
    expect(records(l)).toBe(3);
    l.close();
  });

  it("finds duplicates of records written before schema 9 once the file is reopened", () => {
    const path = join(dir, `v${files++}.sqlite`);
    const { l, a } = (() => {
      const x = open(path);
      x.createDatanet("dn", "olivia");
      const id = pending(x, "dn", A);
      x.approveRecord("dn", id, "olivia");
      return { l: x, a: id };
    })();
    // As an older build left the file: no token hashes, no mark that they were computed.
    l.db.prepare("UPDATE datanet_records SET tokens_hash = NULL").run();
    l.db.prepare("DELETE FROM meta WHERE key = 'datanet_tokens_hashed'").run();
    l.close();
    const again = open(path);
    expect((again.db.prepare("SELECT tokens_hash FROM datanet_records WHERE id = ?").get(a) as { tokens_hash: string | null }).tokens_hash).toMatch(/^0x[0-9a-f]{64}$/);
    expect(failure(() => pending(again, "dn", [...A])).details).toMatchObject({ duplicateOf: a, relation: "identical" });
    again.close();
  });
});
