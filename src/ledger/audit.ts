/**
 * Whole-ledger checks. verifyChain trusts nothing stored but the receipts' signatures; it
 * recomputes every hash and link. auditBalances recomputes every balance from its sources.
 */
import { isAddressEqual, type Hex } from "viem";
import { merkleRoot, ZERO_HASH } from "../attribution/merkle.js";
import { receiptDigest, receiptFromJSON, verifyReceiptSignature, type Receipt, type ReceiptDomainOptions } from "../attribution/receipts.js";
import { big, type Db } from "./db.js";

export type ChainReport =
  | { ok: true; receipts: number; epochs: number }
  | { ok: false; badReceiptId?: number; badEpochId?: number; reason: string };

interface Row { id: number; agent: string; fee: string; hash: Hex; prev_hash: Hex; signer: string; signature: Hex; body: string; epoch: number | null }
interface LineRow { receipt_id: number; idx: number; party: string; role: string; model: string; datanet: string | null; amount: string }

const PAGE = 500;

export async function verifyChain(db: Db, domain: ReceiptDomainOptions, signers: readonly Hex[]): Promise<ChainReport> {
  let prev: { id: number; hash: Hex } = { id: 0, hash: ZERO_HASH };
  let count = 0;
  const page = db.prepare("SELECT * FROM receipts WHERE id > ? ORDER BY id LIMIT ?");
  const lines = db.prepare("SELECT * FROM receipt_lines WHERE receipt_id >= ? AND receipt_id <= ? ORDER BY receipt_id, idx");
  for (;;) {
    const rows = page.all(prev.id, PAGE) as Row[];
    if (rows.length === 0) break;
    const byReceipt = new Map<number, LineRow[]>();
    for (const l of lines.all(rows[0]!.id, rows[rows.length - 1]!.id) as LineRow[]) {
      const list = byReceipt.get(l.receipt_id) ?? [];
      list.push(l);
      byReceipt.set(l.receipt_id, list);
    }
    for (const row of rows) {
      const bad = (reason: string): ChainReport => ({ ok: false, badReceiptId: row.id, reason });
      if (row.id !== prev.id + 1) return bad(`receipt ids jump from ${prev.id} to ${row.id}`);
      let r: Receipt;
      try {
        r = receiptFromJSON(row.body);
      } catch (e) {
        return bad(`body does not parse: ${(e as Error).message}`);
      }
      if (r.id !== row.id) return bad(`body says id ${r.id}`);
      if (r.prevHash !== prev.hash || row.prev_hash !== prev.hash) return bad("prevHash does not link to the previous receipt");
      if (receiptDigest(r, domain) !== row.hash) return bad("stored hash is not the body's EIP-712 digest");
      if (!isAddressEqual(row.signer as Hex, r.node)) return bad("stored signer is not the body's node");
      if (!signers.some((s) => isAddressEqual(s, r.node))) return bad(`node ${r.node} is not a trusted signer`);
      if (!(await verifyReceiptSignature(r, row.signature, domain))) return bad("signature does not recover to the node");
      if (r.agent !== row.agent || big(row.fee) !== r.fee) return bad("stored agent or fee differ from the body");
      const problem = compareLines(r, byReceipt.get(row.id) ?? []);
      if (problem) return bad(problem);
      prev = { id: row.id, hash: row.hash };
      count++;
    }
  }
  const epochs = db.prepare("SELECT * FROM epochs ORDER BY id").all() as { id: number; first_receipt: number; last_receipt: number; count: number; root: Hex }[];
  const members = db.prepare("SELECT id, hash FROM receipts WHERE epoch = ? ORDER BY id");
  let expectFirst = 1;
  for (const e of epochs) {
    const hs = members.all(e.id) as { id: number; hash: Hex }[];
    const contiguous = hs.length === e.count && hs.every((h, i) => h.id === e.first_receipt + i) && e.first_receipt === expectFirst && e.last_receipt === e.first_receipt + e.count - 1;
    if (!contiguous) return { ok: false, badEpochId: e.id, reason: "epoch membership is not the contiguous run of receipts it declares" };
    if (merkleRoot(hs.map((h) => h.hash)) !== e.root) return { ok: false, badEpochId: e.id, reason: "epoch root is not the Merkle root of its receipts" };
    expectFirst = e.last_receipt + 1;
  }
  return { ok: true, receipts: count, epochs: epochs.length };
}

function compareLines(r: Receipt, rows: LineRow[]): string | null {
  if (rows.length !== r.lines.length) return `${rows.length} stored lines, the body has ${r.lines.length}`;
  for (let i = 0; i < rows.length; i++) {
    const a = rows[i]!;
    const b = r.lines[i]!;
    if (a.idx !== i || a.party !== b.party || a.role !== b.role || a.model !== b.model || (a.datanet ?? undefined) !== b.datanet || big(a.amount) !== b.amount) {
      return `stored line ${i} differs from the body`;
    }
  }
  return null;
}

export interface BalanceMismatch {
  kind: "party" | "agent" | "agent-reserved" | "receipt" | "reservation";
  id: string;
  expected: string;
  actual: string;
}

export interface BalanceAudit {
  ok: boolean;
  parties: number;
  agents: number;
  mismatches: BalanceMismatch[];
}

export function auditBalances(db: Db): BalanceAudit {
  const mismatches: BalanceMismatch[] = [];
  const sums = new Map<string, bigint>();
  const perReceipt = new Map<number, bigint>();
  for (const l of db.prepare("SELECT receipt_id, party, amount FROM receipt_lines").iterate() as IterableIterator<{ receipt_id: number; party: string; amount: string }>) {
    const a = big(l.amount);
    sums.set(l.party, (sums.get(l.party) ?? 0n) + a);
    perReceipt.set(l.receipt_id, (perReceipt.get(l.receipt_id) ?? 0n) + a);
  }
  const balances = db.prepare("SELECT party, amount FROM balances").all() as { party: string; amount: string }[];
  const parties = new Set([...sums.keys(), ...balances.map((b) => b.party)]);
  const stored = new Map(balances.map((b) => [b.party, big(b.amount)]));
  for (const p of [...parties].sort()) {
    const expected = sums.get(p) ?? 0n;
    const actual = stored.get(p) ?? 0n;
    if (expected !== actual) mismatches.push({ kind: "party", id: p, expected: expected.toString(), actual: actual.toString() });
  }

  const charges = new Map<string, bigint>();
  for (const r of db.prepare("SELECT id, agent, fee FROM receipts").iterate() as IterableIterator<{ id: number; agent: string; fee: string }>) {
    const fee = big(r.fee);
    charges.set(r.agent, (charges.get(r.agent) ?? 0n) + fee);
    const lines = perReceipt.get(r.id) ?? 0n;
    if (lines !== fee) mismatches.push({ kind: "receipt", id: String(r.id), expected: fee.toString(), actual: lines.toString() });
  }
  const deposits = sumBy(db.prepare("SELECT agent AS k, amount FROM deposits").all() as { k: string; amount: string }[]);
  const reserved = sumBy(db.prepare("SELECT agent AS k, amount FROM reservations WHERE status = 'active'").all() as { k: string; amount: string }[]);
  const agents = db.prepare("SELECT id, balance, reserved FROM agents ORDER BY id").all() as { id: string; balance: string; reserved: string }[];
  for (const a of agents) {
    const expected = (deposits.get(a.id) ?? 0n) - (charges.get(a.id) ?? 0n) - (reserved.get(a.id) ?? 0n);
    if (expected !== big(a.balance)) mismatches.push({ kind: "agent", id: a.id, expected: expected.toString(), actual: a.balance });
    const res = reserved.get(a.id) ?? 0n;
    if (res !== big(a.reserved)) mismatches.push({ kind: "agent-reserved", id: a.id, expected: res.toString(), actual: a.reserved });
  }

  const orphans = db.prepare(
    `SELECT 'receipt ' || r.id AS id FROM receipts r LEFT JOIN reservations s ON s.receipt_id = r.id WHERE s.id IS NULL
     UNION ALL SELECT 'reservation ' || id FROM reservations WHERE (status = 'settled') <> (receipt_id IS NOT NULL)`,
  ).all() as { id: string }[];
  for (const o of orphans) mismatches.push({ kind: "reservation", id: o.id, expected: "settled reservation ↔ receipt", actual: "unpaired" });

  return { ok: mismatches.length === 0, parties: parties.size, agents: agents.length, mismatches };
}

function sumBy(rows: { k: string; amount: string }[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const r of rows) out.set(r.k, (out.get(r.k) ?? 0n) + big(r.amount));
  return out;
}
