/**
 * An epoch's batch: what a validator needs to check every receipt of the epoch and replay any of them
 * without asking the node — each receipt's body (the canonical JSON the node stored), its signature, and
 * the prompt and output token ids its hashes commit to. Published through a data availability layer
 * (calldata.ts, eigenda.ts) as one payload: raw DEFLATE of the batch's JSON, whose commitment
 * (commitment.ts) the epoch post carries.
 *
 * Token ids are public once published: whoever reads the chain or the DA layer can read every prompt
 * and answer of the epoch (docs/economics.md, "what validators see").
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { getAddress, isAddress, isHex, type Address, type Hex } from "viem";
import { receiptFromJSON, type Receipt } from "../attribution/receipts.js";
import { oerr } from "../errors.js";

export const BATCH_FORMAT = "openlora-epoch-batch/1";
/** The largest inflated batch a validator accepts (a 10,000-receipt epoch is ≈ 40 MB). */
export const MAX_BATCH_BYTES = 256 * 1024 * 1024;

export interface BatchEntry {
  /** The receipt's canonical JSON, as signed and stored (receiptToJSON). */
  body: string;
  signature: Hex;
  prompt: number[];
  output: number[];
}

export interface EpochBatch {
  node: Address;
  epoch: number;
  firstReceipt: number;
  /** firstReceipt - 1 for an epoch without receipts. */
  lastReceipt: number;
  entries: BatchEntry[];
}

export interface DecodedEntry extends BatchEntry {
  receipt: Receipt;
}

export interface DecodedBatch extends Omit<EpochBatch, "entries"> {
  entries: DecodedEntry[];
}

export function encodeBatch(b: EpochBatch): Uint8Array {
  if (b.entries.length !== b.lastReceipt - b.firstReceipt + 1) {
    throw oerr("DA_BATCH_INVALID", `epoch ${b.epoch}: ${b.entries.length} entries for receipts ${b.firstReceipt}..${b.lastReceipt}`);
  }
  const json = JSON.stringify({ format: BATCH_FORMAT, node: b.node, epoch: b.epoch, firstReceipt: b.firstReceipt, lastReceipt: b.lastReceipt, entries: b.entries });
  return new Uint8Array(deflateRawSync(Buffer.from(json, "utf8"), { level: 6 }));
}

/**
 * The batch in `payload`, checked to be the one `expect` names: its format, node, epoch and receipt range,
 * one entry per receipt in order, each receipt parsed, its id in place and its token counts those of its
 * ids. What the entries say (signatures, hashes, splits) is the validator's to judge.
 */
export function decodeBatch(payload: Uint8Array, expect: { node: Address; epoch: number; firstReceipt: number; lastReceipt: number }): DecodedBatch {
  let text: string;
  try {
    text = inflateRawSync(payload, { maxOutputLength: MAX_BATCH_BYTES }).toString("utf8");
  } catch (e) {
    throw oerr("DA_BATCH_INVALID", `epoch ${expect.epoch}: the batch does not inflate within ${MAX_BATCH_BYTES} bytes (${(e as Error).message})`);
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw oerr("DA_BATCH_INVALID", `epoch ${expect.epoch}: the batch is not JSON`);
  }
  const bad = (why: string): never => { throw oerr("DA_BATCH_INVALID", `epoch ${expect.epoch}: ${why}`, { epoch: expect.epoch }); };
  if (typeof o !== "object" || o === null) bad("the batch is not an object");
  const b = o as Record<string, unknown>;
  if (b.format !== BATCH_FORMAT) bad(`format ${String(b.format)}, not ${BATCH_FORMAT}`);
  if (typeof b.node !== "string" || !isAddress(b.node, { strict: false }) || getAddress(b.node) !== getAddress(expect.node)) bad(`node ${String(b.node)}, not ${expect.node}`);
  for (const k of ["epoch", "firstReceipt", "lastReceipt"] as const) if (b[k] !== expect[k]) bad(`${k} ${String(b[k])}, not ${expect[k]}`);
  if (!Array.isArray(b.entries) || b.entries.length !== expect.lastReceipt - expect.firstReceipt + 1) {
    bad(`${Array.isArray(b.entries) ? b.entries.length : "no"} entries for receipts ${expect.firstReceipt}..${expect.lastReceipt}`);
  }
  const entries = (b.entries as unknown[]).map((x, i): DecodedEntry => {
    const id = expect.firstReceipt + i;
    if (typeof x !== "object" || x === null) return bad(`entry ${i} is not an object`);
    const e = x as Record<string, unknown>;
    if (typeof e.body !== "string") return bad(`entry ${i} has no body`);
    if (typeof e.signature !== "string" || !isHex(e.signature)) return bad(`entry ${i} has no hex signature`);
    const prompt = tokenIds(e.prompt, `entry ${i} prompt`, bad);
    const output = tokenIds(e.output, `entry ${i} output`, bad);
    let receipt: Receipt;
    try {
      receipt = receiptFromJSON(e.body);
    } catch (err) {
      return bad(`entry ${i}: ${(err as Error).message}`);
    }
    if (receipt.id !== id) bad(`entry ${i} is receipt ${receipt.id}, not ${id}`);
    if (receipt.tokensIn !== prompt.length || receipt.tokensOut !== output.length) {
      bad(`receipt ${id} counts ${receipt.tokensIn} + ${receipt.tokensOut} tokens, its entry holds ${prompt.length} + ${output.length}`);
    }
    return { body: e.body, signature: e.signature, prompt, output, receipt };
  });
  return { node: getAddress(expect.node), epoch: expect.epoch, firstReceipt: expect.firstReceipt, lastReceipt: expect.lastReceipt, entries };
}

function tokenIds(v: unknown, what: string, bad: (why: string) => never): number[] {
  if (!Array.isArray(v) || !v.every((t) => Number.isInteger(t) && t >= 0 && t <= 0xffff_ffff)) bad(`${what} is not an array of uint32 token ids`);
  return v as number[];
}
