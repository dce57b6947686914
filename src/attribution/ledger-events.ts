/**
 * Signed account events: every movement of money that is not an inference — a deposit credited by
 * the operator, a withdrawal, stakes and unstakes, a payout of earnings, a forfeited reservation —
 * is one entry of a second hash chain, signed by the node as EIP-712 typed data like receipts (same
 * domain). With the receipts they are the whole signed record: every balance the ledger holds is a
 * sum of signed entries (src/ledger/audit.ts; the rules are in docs/economics.md).
 *
 *   LedgerEvent(uint64 id, uint64 time, address node, string kind, string account, string subject,
 *               uint256 amount, string memo, bytes32 prevHash)
 *
 * kind      account                   subject                  amount moves
 * deposit   agent                     ""                       outside → agent balance (operator credits it)
 * withdraw  agent                     ""                       agent balance → outside
 * agent_stake / agent_unstake  agent  ""                       agent balance ⇄ the agent's own stake
 * stake / unstake  staker             model id                 staker's balance ⇄ its stake on the model
 * payout    party                     ""                       party's earned balance → outside
 * forfeit   agent                     credited party (treasury) a reservation whose settlement failed after
 *                                                              output was sent: charged whole; memo names it
 */
import { getAddress, hashTypedData, isAddress, type Address, type Hex } from "viem";
import { oerr } from "../errors.js";
import { canonicalJson } from "./canonical.js";
import { receiptDomain, type ReceiptDomainOptions } from "./receipts.js";

export const LEDGER_EVENT_KINDS = ["deposit", "withdraw", "agent_stake", "agent_unstake", "stake", "unstake", "payout", "forfeit"] as const;
export type LedgerEventKind = (typeof LEDGER_EVENT_KINDS)[number];

export interface LedgerEvent {
  /** 1, 2, 3, … per node (a sequence of its own, beside the receipts'). */
  id: number;
  /** Unix milliseconds. */
  time: number;
  node: Address;
  kind: LedgerEventKind;
  account: string;
  subject: string;
  amount: bigint;
  memo: string;
  /** The previous event's hash; 0x00…0 for the first. */
  prevHash: Hex;
}

export const LEDGER_EVENT_TYPES = {
  LedgerEvent: [
    { name: "id", type: "uint64" },
    { name: "time", type: "uint64" },
    { name: "node", type: "address" },
    { name: "kind", type: "string" },
    { name: "account", type: "string" },
    { name: "subject", type: "string" },
    { name: "amount", type: "uint256" },
    { name: "memo", type: "string" },
    { name: "prevHash", type: "bytes32" },
  ],
} as const;

export function eventTypedData(e: LedgerEvent, opts: ReceiptDomainOptions = {}) {
  return {
    domain: receiptDomain(opts), types: LEDGER_EVENT_TYPES, primaryType: "LedgerEvent" as const,
    message: { ...e, id: BigInt(e.id), time: BigInt(e.time) },
  };
}

/** The event's hash: its EIP-712 digest (the next event's prevHash). */
export function eventDigest(e: LedgerEvent, opts: ReceiptDomainOptions = {}): Hex {
  return hashTypedData(eventTypedData(e, opts));
}

export function eventToJSON(e: LedgerEvent): string {
  return canonicalJson(e);
}

const KEYS = ["id", "time", "node", "kind", "account", "subject", "amount", "memo", "prevHash"];

export function eventFromJSON(text: string): LedgerEvent {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw oerr("RECEIPT_INVALID", "ledger event is not JSON");
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw oerr("RECEIPT_INVALID", "ledger event is not a JSON object");
  const r = o as Record<string, unknown>;
  if (typeof r.amount !== "string" || !/^(0|[1-9][0-9]*)$/.test(r.amount)) throw oerr("RECEIPT_INVALID", "ledger event amount must be a decimal integer string");
  const e = { ...r, amount: BigInt(r.amount) } as unknown as LedgerEvent;
  validateEvent(e);
  return e;
}

/** Type and range of every field; RECEIPT_INVALID otherwise. */
export function validateEvent(e: LedgerEvent): void {
  const bad = (msg: string): never => { throw oerr("RECEIPT_INVALID", `ledger event: ${msg}`); };
  const extra = Object.keys(e).filter((k) => !KEYS.includes(k));
  if (extra.length) bad(`unknown fields ${extra.join(", ")}`);
  for (const k of ["id", "time"] as const) if (!Number.isSafeInteger(e[k]) || e[k] < 0) bad(`${k} must be a non-negative integer`);
  if (typeof e.node !== "string" || !isAddress(e.node, { strict: true }) || getAddress(e.node) !== e.node) bad("node must be a checksummed address");
  if (!(LEDGER_EVENT_KINDS as readonly string[]).includes(e.kind)) bad("kind is unknown");
  for (const k of ["account", "subject", "memo"] as const) if (typeof e[k] !== "string") bad(`${k} must be a string`);
  if (e.account === "") bad("account must not be empty");
  if ((e.kind === "stake" || e.kind === "unstake" || e.kind === "forfeit") === (e.subject === "")) bad(`subject must be ${e.kind === "stake" || e.kind === "unstake" || e.kind === "forfeit" ? "set" : "empty"} for ${e.kind}`);
  if (typeof e.amount !== "bigint" || e.amount <= 0n || e.amount >= 1n << 256n) bad("amount must be a positive uint256");
  if (typeof e.prevHash !== "string" || !/^0x[0-9a-f]{64}$/.test(e.prevHash)) bad("prevHash must be lowercase bytes32 hex");
}
