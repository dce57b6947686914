/**
 * Data availability in the chain's own calldata, through BatchInbox: the node sends the batch's chunks
 * in order (resuming where a failed attempt stopped: the contract keeps the running hash), and the
 * epoch post finds the batch `available`. A validator finds the chunks by their ChunkPublished logs,
 * reads each from its transaction's input and checks the whole against the commitment.
 */
import { decodeFunctionData, fromHex, getAddress, toHex, type Address, type Hex, type PublicClient } from "viem";
import { oerr } from "../errors.js";
import { BatchInboxAbi } from "../chain/abi.js";
import type { ChainClients } from "../chain/client.js";
import { MAX_RANGE } from "../chain/follower.js";
import { batchCommitment, chunksOf } from "./commitment.js";

/** Publishes `payload` from the clients' account; returns its commitment and the chunk transactions sent. */
export async function publishCalldata(clients: ChainClients, inbox: Address, payload: Uint8Array): Promise<{ commitment: Hex; txs: Hex[] }> {
  const commitment = batchCommitment(payload);
  const me = clients.account.address;
  const txs: Hex[] = [];
  if (await clients.public.readContract({ address: inbox, abi: BatchInboxAbi, functionName: "available", args: [me, commitment] })) return { commitment, txs };
  const chunks = chunksOf(payload);
  const from = await clients.public.readContract({ address: inbox, abi: BatchInboxAbi, functionName: "progressOf", args: [me, commitment] });
  for (let i = from; i < chunks.length; i++) {
    const hash = await clients.wallet.writeContract({ address: inbox, abi: BatchInboxAbi, functionName: "publish", args: [commitment, i, chunks.length, toHex(chunks[i]!)] });
    const r = await clients.public.waitForTransactionReceipt({ hash, timeout: 60_000 });
    if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `BatchInbox.publish chunk ${i} of ${chunks.length} was reverted (tx ${hash})`, { tx: hash });
    txs.push(hash);
  }
  return { commitment, txs };
}

/**
 * The batch `publisher` published under `commitment`, read back from calldata: its chunks' logs searched
 * backwards from `beforeBlock` (the epoch post's block: chunks come first) to `fromBlock`. DA_UNAVAILABLE
 * when a chunk is missing, DA_COMMITMENT_MISMATCH when the bytes do not hash to the commitment.
 */
export async function fetchCalldata(client: PublicClient, inbox: Address, publisher: Address, commitment: Hex, fromBlock: bigint, beforeBlock: bigint): Promise<Uint8Array> {
  const found = new Map<number, { tx: Hex; count: number }>();
  let count: number | undefined;
  for (let to = beforeBlock; to >= fromBlock && (count === undefined || found.size < count); to -= MAX_RANGE) {
    const lo = to - MAX_RANGE + 1n > fromBlock ? to - MAX_RANGE + 1n : fromBlock;
    const logs = await client.getContractEvents({ address: inbox, abi: BatchInboxAbi, eventName: "ChunkPublished", args: { publisher, commitment }, fromBlock: lo, toBlock: to });
    for (const l of logs) {
      found.set(l.args.index!, { tx: l.transactionHash, count: l.args.count! });
      count ??= l.args.count!;
    }
    if (lo === fromBlock) break;
  }
  if (count === undefined) throw oerr("DA_UNAVAILABLE", `no chunk of batch ${commitment} by ${publisher} in BatchInbox`, { commitment });
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const c = found.get(i);
    if (!c) throw oerr("DA_UNAVAILABLE", `chunk ${i} of ${count} of batch ${commitment} was never published`, { commitment, chunk: i });
    const tx = await client.getTransaction({ hash: c.tx });
    if (tx.to === null || getAddress(tx.to) !== getAddress(inbox)) {
      throw oerr("DA_UNAVAILABLE", `chunk ${i} of batch ${commitment} came through another contract (tx ${c.tx}): its bytes are not in a transaction's input`, { commitment, chunk: i });
    }
    const { args } = decodeFunctionData({ abi: BatchInboxAbi, data: tx.input });
    chunks.push(fromHex((args as readonly [Hex, number, number, Hex])[3], "bytes"));
  }
  const payload = Buffer.concat(chunks);
  if (batchCommitment(payload) !== commitment) throw oerr("DA_COMMITMENT_MISMATCH", `the chunks of batch ${commitment} hash to ${batchCommitment(payload)}`, { commitment });
  return new Uint8Array(payload);
}
