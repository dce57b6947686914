/**
 * Checkpoints: the node's signed statement of how long its record is — the head of the receipt
 * chain, the head of the event chain, and the last closed epoch with its Merkle root. One is signed
 * and stored with every epoch (so each epoch root is signed), and `GET /v1/ledger/checkpoint` signs
 * one for the current heads on demand. A verifier holding a checkpoint detects a ledger file that
 * lost entries after it (a truncated chain re-links and re-verifies, but no longer reaches the
 * checkpoint's heads), and one holding none learns nothing about truncation.
 *
 *   Checkpoint(address node, uint64 time, uint64 receipts, bytes32 receiptsHead, uint64 events,
 *              bytes32 eventsHead, uint64 epoch, bytes32 epochRoot)
 *
 * receipts/events: how many entries each chain had (the head's id); the heads are their hashes
 * (0x00…0 for an empty chain); epoch/epochRoot: the last closed epoch (0 and 0x00…0 before the first).
 */
import { getAddress, hashTypedData, isAddress, type Address, type Hex } from "viem";
import { oerr } from "../errors.js";
import { receiptDomain, type ReceiptDomainOptions } from "./receipts.js";
import { signedBy } from "./signing.js";

export interface Checkpoint {
  node: Address;
  time: number;
  receipts: number;
  receiptsHead: Hex;
  events: number;
  eventsHead: Hex;
  epoch: number;
  epochRoot: Hex;
}

/** A checkpoint as served and stored: the statement, its signature and the EIP-712 domain it was signed under. */
export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  signature: Hex;
  domain: ReceiptDomainOptions;
}

export const CHECKPOINT_TYPES = {
  Checkpoint: [
    { name: "node", type: "address" },
    { name: "time", type: "uint64" },
    { name: "receipts", type: "uint64" },
    { name: "receiptsHead", type: "bytes32" },
    { name: "events", type: "uint64" },
    { name: "eventsHead", type: "bytes32" },
    { name: "epoch", type: "uint64" },
    { name: "epochRoot", type: "bytes32" },
  ],
} as const;

export function checkpointTypedData(c: Checkpoint, opts: ReceiptDomainOptions = {}) {
  return {
    domain: receiptDomain(opts), types: CHECKPOINT_TYPES, primaryType: "Checkpoint" as const,
    message: { ...c, time: BigInt(c.time), receipts: BigInt(c.receipts), events: BigInt(c.events), epoch: BigInt(c.epoch) },
  };
}

export function checkpointDigest(c: Checkpoint, opts: ReceiptDomainOptions = {}): Hex {
  return hashTypedData(checkpointTypedData(c, opts));
}

const HEX32 = /^0x[0-9a-f]{64}$/;

/** Parses a checkpoint (as JSON text or a parsed object, e.g. the body of GET /v1/ledger/checkpoint); RECEIPT_INVALID if malformed. */
export function parseSignedCheckpoint(input: unknown): SignedCheckpoint {
  let o = input;
  if (typeof o === "string") {
    try {
      o = JSON.parse(o);
    } catch {
      throw oerr("RECEIPT_INVALID", "the checkpoint is not JSON");
    }
  }
  const bad = (msg: string): never => { throw oerr("RECEIPT_INVALID", `checkpoint: ${msg}`); };
  if (typeof o !== "object" || o === null) bad("not an object");
  const { checkpoint: c, signature, domain } = o as { checkpoint?: Record<string, unknown>; signature?: unknown; domain?: Record<string, unknown> };
  if (typeof c !== "object" || c === null) bad("no checkpoint member");
  if (typeof signature !== "string" || !/^0x[0-9a-fA-F]{130}$/.test(signature)) bad("signature must be 65 bytes of hex");
  for (const k of ["time", "receipts", "events", "epoch"]) if (!Number.isSafeInteger(c![k]) || (c![k] as number) < 0) bad(`${k} must be a non-negative integer`);
  for (const k of ["receiptsHead", "eventsHead", "epochRoot"]) if (typeof c![k] !== "string" || !HEX32.test(c![k] as string)) bad(`${k} must be lowercase bytes32 hex`);
  if (typeof c!.node !== "string" || !isAddress(c!.node, { strict: false })) bad("node must be an address");
  const d: ReceiptDomainOptions = {};
  if (domain && typeof domain === "object") {
    if (domain.chainId !== undefined) d.chainId = Number(domain.chainId);
    if (typeof domain.verifyingContract === "string") d.verifyingContract = domain.verifyingContract as Address;
  }
  const checkpoint: Checkpoint = {
    node: getAddress(c!.node as string), time: c!.time as number, receipts: c!.receipts as number, receiptsHead: c!.receiptsHead as Hex,
    events: c!.events as number, eventsHead: c!.eventsHead as Hex, epoch: c!.epoch as number, epochRoot: c!.epochRoot as Hex,
  };
  return { checkpoint, signature: signature as Hex, domain: d };
}

/** True when the checkpoint is signed by its node and that node is `trusted`. */
export async function checkpointSignedBy(s: SignedCheckpoint, trusted: Address): Promise<boolean> {
  if (getAddress(s.checkpoint.node) !== getAddress(trusted)) return false;
  return signedBy(checkpointDigest(s.checkpoint, s.domain), s.signature, trusted);
}
