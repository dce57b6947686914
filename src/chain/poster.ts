/**
 * Posts sealed epochs to the Settlement contract, in order, never twice: before each send the
 * contract's `lastEpoch(node)` is read — an epoch already there (a send that landed though its
 * answer was lost, a post by a previous run) is marked posted after checking the chain holds our
 * roots; the contract itself refuses a repeat (EpochAlreadyPosted) or a gap (EpochOutOfOrder).
 * A failed attempt is recorded (attempts, last error) and retried on the next round.
 *
 * Before each post the epoch's batch (src/da/batch.ts) is published — in calldata through BatchInbox
 * by default, through an EigenDA proxy when one is configured — and its commitment is part of the post.
 * Publishing is idempotent: a retry resumes the chunks where they stopped, or finds the batch announced.
 */
import { getAddress, type Address, type Hex } from "viem";
import { oerr } from "../errors.js";
import type { Ledger } from "../ledger/ledger.js";
import { ISettlementAbi } from "./abi.js";
import type { ChainClients } from "./client.js";
import type { Deployment } from "./deploy.js";
import { encodeBatch } from "../da/batch.js";
import { publishCalldata } from "../da/calldata.js";
import { publishEigenDa, type EigenDaProxy } from "../da/eigenda.js";

export interface PostResult {
  posted: number[];
  /** Epochs found already on chain (marked posted without a send). */
  adopted: number[];
}

export class EpochPoster {
  private readonly node: Address;

  constructor(
    private readonly clients: ChainClients, private readonly deployment: Deployment, private readonly ledger: Ledger,
    /** Where batches go: calldata (BatchInbox) without one. */
    private readonly eigenDa?: EigenDaProxy,
  ) {
    this.node = getAddress(ledger.nodeAddress);
  }

  /** Publishes sealed epoch `epoch`'s batch; its commitment. */
  async publishBatch(epoch: number): Promise<Hex> {
    const payload = encodeBatch(this.ledger.chain.epochBatch(epoch, this.node));
    const inbox = this.deployment.inbox;
    if (this.eigenDa) return (await publishEigenDa(this.clients, inbox, this.eigenDa, payload, BigInt(this.deployment.deployBlock))).commitment;
    return (await publishCalldata(this.clients, inbox, payload)).commitment;
  }

  async lastPosted(): Promise<number> {
    const n = await this.clients.public.readContract({ address: this.deployment.settlement, abi: ISettlementAbi, functionName: "lastEpoch", args: [this.node] });
    return Number(n);
  }

  /** Posts every pending epoch in order; stops at the first failure (recorded, thrown). */
  async postPending(): Promise<PostResult> {
    const result: PostResult = { posted: [], adopted: [] };
    const book = this.ledger.chain;
    for (const e of book.sealed({ status: "pending" })) {
      try {
        const onChain = await this.lastPosted();
        if (onChain >= e.epoch) {
          const posted = await this.clients.public.readContract({ address: this.deployment.settlement, abi: ISettlementAbi, functionName: "epochOf", args: [this.node, BigInt(e.epoch)] });
          if (posted.payoutRoot !== e.payoutRoot || posted.receiptsRoot !== e.receiptsRoot) {
            throw oerr("INTERNAL", `epoch ${e.epoch} on chain has other roots than this node's book (chain ${posted.payoutRoot}, book ${e.payoutRoot}): is another node posting with this key?`, { epoch: e.epoch });
          }
          book.markPosted(e.epoch, null);
          result.adopted.push(e.epoch);
          continue;
        }
        if (onChain !== e.epoch - 1) {
          throw oerr("LEDGER_CONFLICT", `epoch ${e.epoch} cannot be posted: the chain's last epoch of this node is ${onChain} (the book's epochs before chain mode were never posted)`, { epoch: e.epoch, onChain });
        }
        const hash = await this.clients.wallet.writeContract({
          address: this.deployment.settlement, abi: ISettlementAbi, functionName: "postEpoch",
          args: [BigInt(e.epoch), e.receiptsRoot, BigInt(e.firstReceipt), BigInt(e.lastReceipt), e.lastReceiptHash, e.payoutRoot, await this.publishBatch(e.epoch)],
        });
        const receipt = await this.clients.public.waitForTransactionReceipt({ hash, timeout: 60_000 });
        if (receipt.status !== "success") throw oerr("CHAIN_TX_FAILED", `postEpoch(${e.epoch}) was reverted (tx ${hash})`, { epoch: e.epoch, tx: hash });
        book.markPosted(e.epoch, hash as Hex);
        result.posted.push(e.epoch);
      } catch (err) {
        book.markAttemptFailed(e.epoch, (err as Error).message.split("\n")[0] ?? "unknown");
        throw err;
      }
    }
    return result;
  }
}
