/**
 * Whole-ledger checks. verifyChain trusts nothing stored but signatures by the signers it is
 * given: it recomputes every hash and link of both signed chains (receipts, account events) and
 * every epoch's root and signed checkpoint. auditBalances recomputes every balance from the
 * signed entries alone. checkAgainstCheckpoint tells whether the file still reaches a checkpoint.
 */
import { getAddress, isAddressEqual, type Address, type Hex } from "viem";
import { checkpointSignedBy, type Checkpoint, type SignedCheckpoint } from "../attribution/checkpoints.js";
import { merkleRoot, ZERO_HASH } from "../attribution/merkle.js";
import { receiptDigest, receiptFromJSON, receiptSplitProblem, verifyReceiptSignature, type Receipt, type ReceiptDomainOptions } from "../attribution/receipts.js";
import { big, type Db } from "./db.js";
import { verifyEvents } from "./events.js";

export type ChainReport =
  | { ok: true; receipts: number; events: number; epochs: number; unsignedEpochs: number }
  | { ok: false; badReceiptId?: number; badEventId?: number; badEpochId?: number; reason: string };

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
      const split = receiptSplitProblem(r);
      if (split) return bad(`the split does not follow from the receipt's inputs: ${split}`);
      const problem = compareLines(r, byReceipt.get(row.id) ?? []);
      if (problem) return bad(problem);
      prev = { id: row.id, hash: row.hash };
      count++;
    }
  }
  const events = await verifyEvents(db, domain, signers as Address[]);
  if (!events.ok) return events;
  const epochs = db.prepare("SELECT * FROM epochs ORDER BY id").all() as { id: number; first_receipt: number; last_receipt: number; count: number; root: Hex; checkpoint: string | null; signature: Hex | null }[];
  const members = db.prepare("SELECT id, hash FROM receipts WHERE epoch = ? ORDER BY id");
  let expectFirst = 1;
  let unsigned = 0;
  for (const e of epochs) {
    const bad = (reason: string): ChainReport => ({ ok: false, badEpochId: e.id, reason });
    const hs = members.all(e.id) as { id: number; hash: Hex }[];
    const contiguous = hs.length === e.count && hs.every((h, i) => h.id === e.first_receipt + i) && e.first_receipt === expectFirst && e.last_receipt === e.first_receipt + e.count - 1;
    if (!contiguous) return bad("epoch membership is not the contiguous run of receipts it declares");
    if (merkleRoot(hs.map((h) => h.hash)) !== e.root) return bad("epoch root is not the Merkle root of its receipts");
    expectFirst = e.last_receipt + 1;
    if (e.checkpoint === null || e.signature === null) { unsigned++; continue; }
    let c: Checkpoint;
    try {
      c = JSON.parse(e.checkpoint) as Checkpoint;
    } catch {
      return bad("the epoch's checkpoint does not parse");
    }
    const headHash = hs.length ? hs[hs.length - 1]!.hash : e.last_receipt === 0 ? ZERO_HASH : (db.prepare("SELECT hash FROM receipts WHERE id = ?").get(e.last_receipt) as { hash: Hex } | undefined)?.hash;
    if (c.epoch !== e.id || c.epochRoot !== e.root || c.receipts !== e.last_receipt || c.receiptsHead !== headHash) return bad("the epoch's signed checkpoint does not state this epoch");
    const trusted = signers.find((x) => isAddressEqual(x, c.node));
    if (!trusted || !(await checkpointSignedBy({ checkpoint: c, signature: e.signature, domain }, trusted))) return bad("the epoch's checkpoint is not signed by a trusted node");
    const reach = checkAgainstCheckpoint(db, { checkpoint: c, signature: e.signature, domain });
    if (!reach.ok) return bad(`the epoch's checkpoint: ${reach.reason}`);
  }
  return { ok: true, receipts: count, events: events.events, epochs: epochs.length, unsignedEpochs: unsigned };
}

/**
 * Whether this file's chains still reach a checkpoint: the receipt with the checkpoint's head id
 * has its hash, likewise the event, and the epoch exists with its root. A file truncated after the
 * checkpoint was signed fails here however well its remaining chain verifies. (The checkpoint's
 * signature is checked separately: checkpointSignedBy.)
 */
export function checkAgainstCheckpoint(db: Db, s: SignedCheckpoint): { ok: true } | { ok: false; reason: string } {
  const c = s.checkpoint;
  const at = (table: "receipts" | "events", id: number): Hex | undefined =>
    id === 0 ? ZERO_HASH : (db.prepare(`SELECT hash FROM ${table} WHERE id = ?`).get(id) as { hash: Hex } | undefined)?.hash;
  const r = at("receipts", c.receipts);
  if (r === undefined) return { ok: false, reason: `receipt ${c.receipts} of the checkpoint is missing: the chain was truncated` };
  if (r !== c.receiptsHead) return { ok: false, reason: `receipt ${c.receipts} is not the one the checkpoint signed` };
  const e = at("events", c.events);
  if (e === undefined) return { ok: false, reason: `event ${c.events} of the checkpoint is missing: the event chain was truncated` };
  if (e !== c.eventsHead) return { ok: false, reason: `event ${c.events} is not the one the checkpoint signed` };
  if (c.epoch > 0) {
    const ep = db.prepare("SELECT root FROM epochs WHERE id = ?").get(c.epoch) as { root: Hex } | undefined;
    if (!ep) return { ok: false, reason: `epoch ${c.epoch} of the checkpoint is missing` };
    if (ep.root !== c.epochRoot) return { ok: false, reason: `epoch ${c.epoch}'s root is not the one the checkpoint signed` };
  }
  return { ok: true };
}

/** A checkpoint's node, checksummed (for messages). */
export function checkpointNode(s: SignedCheckpoint): Address {
  return getAddress(s.checkpoint.node);
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
  kind: "party" | "agent" | "agent-reserved" | "agent-stake" | "stake" | "receipt" | "reservation";
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

type Sums = Map<string, bigint>;
const add = (m: Sums, k: string, v: bigint): void => { m.set(k, (m.get(k) ?? 0n) + v); };

/**
 * Every balance recomputed from the signed entries alone (receipt lines and fees, account events;
 * verifyChain proves those columns equal the signed bodies), compared with what the ledger holds:
 *   agent: balance + reserved = deposits − withdrawals − agent stakes + agent unstakes − stakes
 *          + unstakes − receipt fees − forfeits;  reserved = its active reservations;
 *          stake = agent stakes − agent unstakes
 *   stake of (staker, model) = stakes − unstakes
 *   party: earned = its receipt lines + forfeits credited to it − payouts
 * and every receipt's lines sum to its fee, every settled reservation has its receipt, every
 * forfeited one with an amount its forfeit event for exactly that amount.
 */
export function auditBalances(db: Db): BalanceAudit {
  const mismatches: BalanceMismatch[] = [];
  const miss = (kind: BalanceMismatch["kind"], id: string, expected: bigint | string, actual: bigint | string): void => {
    mismatches.push({ kind, id, expected: String(expected), actual: String(actual) });
  };
  const earned: Sums = new Map();
  const perReceipt = new Map<number, bigint>();
  for (const l of db.prepare("SELECT receipt_id, party, amount FROM receipt_lines").iterate() as IterableIterator<{ receipt_id: number; party: string; amount: string }>) {
    const a = big(l.amount);
    add(earned, l.party, a);
    perReceipt.set(l.receipt_id, (perReceipt.get(l.receipt_id) ?? 0n) + a);
  }
  const funds: Sums = new Map();
  const ownStake: Sums = new Map();
  const stakes: Sums = new Map();
  for (const r of db.prepare("SELECT id, agent, fee FROM receipts").iterate() as IterableIterator<{ id: number; agent: string; fee: string }>) {
    const fee = big(r.fee);
    add(funds, r.agent, -fee);
    const lines = perReceipt.get(r.id) ?? 0n;
    if (lines !== fee) miss("receipt", String(r.id), fee, lines);
  }
  for (const e of db.prepare("SELECT kind, account, subject, amount FROM events").iterate() as IterableIterator<{ kind: string; account: string; subject: string; amount: string }>) {
    const a = big(e.amount);
    switch (e.kind) {
      case "deposit": add(funds, e.account, a); break;
      case "withdraw": add(funds, e.account, -a); break;
      case "agent_stake": add(funds, e.account, -a); add(ownStake, e.account, a); break;
      case "agent_unstake": add(funds, e.account, a); add(ownStake, e.account, -a); break;
      case "stake": add(funds, e.account, -a); add(stakes, `${e.account}\u0000${e.subject}`, a); break;
      case "unstake": add(funds, e.account, a); add(stakes, `${e.account}\u0000${e.subject}`, -a); break;
      case "payout": add(earned, e.account, -a); break;
      case "forfeit": add(funds, e.account, -a); add(earned, e.subject, a); break;
      default: miss("party", e.account, "a known event kind", e.kind);
    }
  }

  const balances = db.prepare("SELECT party, amount FROM balances").all() as { party: string; amount: string }[];
  const parties = new Set([...earned.keys(), ...balances.map((b) => b.party)]);
  const stored = new Map(balances.map((b) => [b.party, big(b.amount)]));
  for (const p of [...parties].sort()) {
    const expected = earned.get(p) ?? 0n;
    const actual = stored.get(p) ?? 0n;
    if (expected !== actual) miss("party", p, expected, actual);
  }

  const reserved = sumBy(db.prepare("SELECT agent AS k, amount FROM reservations WHERE status = 'active'").all() as { k: string; amount: string }[]);
  const agents = db.prepare("SELECT id, balance, reserved, stake FROM agents ORDER BY id").all() as { id: string; balance: string; reserved: string; stake: string }[];
  for (const a of agents) {
    const res = reserved.get(a.id) ?? 0n;
    const total = funds.get(a.id) ?? 0n;
    if (total !== big(a.balance) + big(a.reserved)) miss("agent", a.id, total - res, big(a.balance));
    if (res !== big(a.reserved)) miss("agent-reserved", a.id, res, a.reserved);
    if ((ownStake.get(a.id) ?? 0n) !== big(a.stake)) miss("agent-stake", a.id, ownStake.get(a.id) ?? 0n, a.stake);
  }
  const storedStakes = new Map<string, bigint>((db.prepare("SELECT staker, model_id, amount FROM stakes").all() as { staker: string; model_id: string; amount: string }[])
    .map((r) => [`${r.staker}\u0000${r.model_id}`, big(r.amount)] as const));
  for (const k of new Set([...stakes.keys(), ...storedStakes.keys()])) {
    const expected = stakes.get(k) ?? 0n;
    const actual = storedStakes.get(k) ?? 0n;
    if (expected !== actual) miss("stake", k.replace("\u0000", " on "), expected, actual);
  }

  const orphans = db.prepare(
    `SELECT 'receipt ' || r.id AS id FROM receipts r LEFT JOIN reservations s ON s.receipt_id = r.id WHERE s.id IS NULL
     UNION ALL SELECT 'reservation ' || id FROM reservations WHERE (status = 'settled') <> (receipt_id IS NOT NULL)
     UNION ALL SELECT 'reservation ' || s.id FROM reservations s LEFT JOIN events e ON e.id = s.event_id
       WHERE s.status = 'forfeited' AND s.amount <> '0' AND (e.id IS NULL OR e.kind <> 'forfeit' OR e.amount <> s.amount OR e.account <> s.agent)`,
  ).all() as { id: string }[];
  for (const o of orphans) miss("reservation", o.id, "settled ↔ receipt, forfeited ↔ its forfeit event", "unpaired");

  return { ok: mismatches.length === 0, parties: parties.size, agents: agents.length, mismatches };
}

function sumBy(rows: { k: string; amount: string }[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const r of rows) out.set(r.k, (out.get(r.k) ?? 0n) + big(r.amount));
  return out;
}
