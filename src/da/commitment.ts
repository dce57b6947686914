/**
 * The commitment of an epoch batch's bytes, as BatchInbox computes it while the chunks arrive:
 * h_0 = 0, h_i = keccak256(abi.encode(h_{i-1}, keccak256(chunk_i))) over chunks of MAX_CHUNK bytes
 * (the last one shorter), commitment = h_n. One function of the bytes whichever layer keeps them, so
 * a validator checks what it fetched from calldata or from EigenDA the same way.
 */
import { concatHex, type Hex } from "viem";
import { keccak256 } from "../crypto/keccak.js";
import { oerr } from "../errors.js";

/** BatchInbox.MAX_CHUNK (test/da/inbox.test.ts reads it from the deployed contract). */
export const MAX_CHUNK = 96_000;

export function chunksOf(payload: Uint8Array): Uint8Array[] {
  if (payload.length === 0) throw oerr("DA_BATCH_INVALID", "an epoch batch is never empty");
  const out: Uint8Array[] = [];
  for (let at = 0; at < payload.length; at += MAX_CHUNK) out.push(payload.subarray(at, Math.min(at + MAX_CHUNK, payload.length)));
  return out;
}

export function batchCommitment(payload: Uint8Array): Hex {
  let h: Hex = `0x${"00".repeat(32)}`;
  for (const c of chunksOf(payload)) h = keccak256(concatHex([h, keccak256(c)]));
  return h;
}
