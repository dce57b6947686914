/**
 * The ledger's second signed chain: account events (src/attribution/ledger-events.ts). Appended
 * only inside the transaction that moves the money, signed there (synchronously), so an event
 * exists exactly when its balance change does.
 */
import { isAddressEqual, type Address, type Hex } from "viem";
import { eventDigest, eventFromJSON, eventToJSON, type LedgerEvent, type LedgerEventKind } from "../attribution/ledger-events.js";
import { ZERO_HASH } from "../attribution/merkle.js";
import type { ReceiptDomainOptions } from "../attribution/receipts.js";
import { signedBy, type NodeSigner } from "../attribution/signing.js";
import { big, money, type Db } from "./db.js";

export interface StoredEvent {
  event: LedgerEvent;
  hash: Hex;
  signature: Hex;
}

interface EventRow { id: number; time: number; kind: string; account: string; subject: string; amount: string; hash: Hex; prev_hash: Hex; signer: string; signature: Hex; body: string }

export class Events {
  constructor(
    private readonly db: Db,
    private readonly signer: NodeSigner,
    private readonly domain: ReceiptDomainOptions,
    private readonly now: () => number,
  ) {}

  /** The last event's id and hash; (0, 0x00…0) before the first. */
  head(): { id: number; hash: Hex } {
    const row = this.db.prepare("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").get() as { id: number; hash: Hex } | undefined;
    return row ?? { id: 0, hash: ZERO_HASH };
  }

  /** Signs and stores the next event. Call inside the transaction that moves the money. */
  append(kind: LedgerEventKind, account: string, amount: bigint, opts: { subject?: string; memo?: string; time?: number } = {}): StoredEvent {
    if (!this.db.inTransaction) throw new Error("ledger events are appended inside the transaction that moves the money");
    const head = this.head();
    const event: LedgerEvent = {
      id: head.id + 1, time: opts.time ?? this.now(), node: this.signer.address, kind, account,
      subject: opts.subject ?? "", amount, memo: opts.memo ?? "", prevHash: head.hash,
    };
    const hash = eventDigest(event, this.domain);
    const signature = this.signer.sign(hash);
    this.db.prepare("INSERT INTO events (id, time, kind, account, subject, amount, hash, prev_hash, signer, signature, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .run(event.id, event.time, kind, account, event.subject, money(amount), hash, event.prevHash, this.signer.address, signature, eventToJSON(event));
    return { event, hash, signature };
  }

  list(opts: { account?: string; after?: number; limit?: number } = {}): StoredEvent[] {
    const rows = (opts.account === undefined
      ? this.db.prepare("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?").all(opts.after ?? 0, opts.limit ?? 1000)
      : this.db.prepare("SELECT * FROM events WHERE account = ? AND id > ? ORDER BY id LIMIT ?").all(opts.account, opts.after ?? 0, opts.limit ?? 1000)) as EventRow[];
    return rows.map((r) => ({ event: eventFromJSON(r.body), hash: r.hash, signature: r.signature }));
  }

  /**
   * Deposits credited before events existed (schema 3) become signed deposit events, once, in
   * their order and with their times. Returns how many.
   */
  adoptLegacyDeposits(): number {
    const legacy = this.db.prepare("SELECT id, agent, amount, time FROM deposits WHERE event_id IS NULL ORDER BY id").all() as { id: number; agent: string; amount: string; time: number }[];
    if (legacy.length === 0) return 0;
    this.db.transaction(() => {
      for (const d of legacy) {
        const e = this.append("deposit", d.agent, big(d.amount), { memo: `deposit #${d.id} credited before signed events`, time: d.time });
        this.db.prepare("UPDATE deposits SET event_id = ? WHERE id = ?").run(e.event.id, d.id);
      }
    }).immediate();
    return legacy.length;
  }
}

export type EventChainReport = { ok: true; events: number } | { ok: false; badEventId: number; reason: string };

/** Every event: contiguous ids, body valid and equal to its columns, prevHash links, digest, a trusted signer's signature. */
export async function verifyEvents(db: Db, domain: ReceiptDomainOptions, signers: readonly Address[]): Promise<EventChainReport> {
  let prev: { id: number; hash: Hex } = { id: 0, hash: ZERO_HASH };
  const page = db.prepare("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT 500");
  for (;;) {
    const rows = page.all(prev.id) as EventRow[];
    if (rows.length === 0) return { ok: true, events: prev.id };
    for (const row of rows) {
      const bad = (reason: string): EventChainReport => ({ ok: false, badEventId: row.id, reason });
      if (row.id !== prev.id + 1) return bad(`event ids jump from ${prev.id} to ${row.id}`);
      let e: LedgerEvent;
      try {
        e = eventFromJSON(row.body);
      } catch (err) {
        return bad(`body does not parse: ${(err as Error).message}`);
      }
      if (e.id !== row.id || e.kind !== row.kind || e.account !== row.account || e.subject !== row.subject || e.amount !== big(row.amount)) return bad("stored columns differ from the body");
      if (e.prevHash !== prev.hash || row.prev_hash !== prev.hash) return bad("prevHash does not link to the previous event");
      if (eventDigest(e, domain) !== row.hash) return bad("stored hash is not the body's EIP-712 digest");
      if (!isAddressEqual(row.signer as Address, e.node)) return bad("stored signer is not the body's node");
      if (!signers.some((s) => isAddressEqual(s, e.node))) return bad(`node ${e.node} is not a trusted signer`);
      if (!(await signedBy(row.hash, row.signature, e.node))) return bad("signature does not recover to the node");
      prev = { id: row.id, hash: row.hash };
    }
  }
}
