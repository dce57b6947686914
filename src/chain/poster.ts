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
 *
 * A validator that cannot fetch a batch kept off this chain (EigenDA) challenges the epoch as withheld
 * (ValidatorCourt.challengeWithheld); `answerWithheld` answers every such open dispute by publishing the
 * batch to BatchInbox in calldata and resolving it (the challenger's bond then comes to the node).
 */
import { getAddress, type Address, type Hex } from "viem";
import { oerr } from "../errors.js";
import type { Ledger } from "../ledger/ledger.js";
import { BatchInboxAbi, ISettlementAbi, SettlementAbi, ValidatorCourtAbi } from "./abi.js";
import { MAX_RANGE } from "./follower.js";
import { revertName, type ChainClients } from "./client.js";
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
  private disputesScanned: bigint | undefined;
  private readonly withheld = new Map<bigint, number>();

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

  /** Publishes the batch of every epoch an open withheld dispute names, and resolves the dispute; the epochs answered. */
  async answerWithheld(): Promise<number[]> {
    const court = this.deployment.validatorCourt;
    if (!court) return [];
    const pub = this.clients.public;
    const head = await pub.getBlockNumber();
    for (let a = (this.disputesScanned ?? BigInt(this.deployment.deployBlock) - 1n) + 1n; a <= head; a += MAX_RANGE) {
      const b = a + MAX_RANGE - 1n < head ? a + MAX_RANGE - 1n : head;
      const logs = await pub.getContractEvents({ address: court, abi: ValidatorCourtAbi, eventName: "DisputeOpened", args: { operator: this.node }, fromBlock: a, toBlock: b });
      for (const l of logs) if (l.args.kind === 1) this.withheld.set(l.args.id!, Number(l.args.epoch));
      this.disputesScanned = b;
    }
    const answered: number[] = [];
    for (const [id, epoch] of this.withheld) {
      const d = await pub.readContract({ address: court, abi: ValidatorCourtAbi, functionName: "disputeOf", args: [id] });
      if (d.outcome !== 1) { this.withheld.delete(id); continue; }
      const e = await pub.readContract({ address: this.deployment.settlement, abi: ISettlementAbi, functionName: "epochOf", args: [this.node, BigInt(epoch)] });
      if (!(await pub.readContract({ address: this.deployment.inbox, abi: BatchInboxAbi, functionName: "available", args: [this.node, e.batchCommitment] }))) {
        const { commitment } = await publishCalldata(this.clients, this.deployment.inbox, encodeBatch(this.ledger.chain.epochBatch(epoch, this.node)));
        if (commitment !== e.batchCommitment) throw oerr("INTERNAL", `epoch ${epoch}'s batch commits to ${commitment} here, the post names ${e.batchCommitment}`, { epoch });
      }
      const hash = await this.clients.wallet.writeContract({ address: court, abi: ValidatorCourtAbi, functionName: "resolve", args: [id] });
      const r = await pub.waitForTransactionReceipt({ hash, timeout: 60_000 });
      if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `resolve(${id}) was reverted (tx ${hash})`, { tx: hash });
      this.withheld.delete(id);
      answered.push(epoch);
    }
    return answered;
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
        const args = [BigInt(e.epoch), e.receiptsRoot, BigInt(e.firstReceipt), BigInt(e.lastReceipt), e.lastReceiptHash, e.payoutRoot, await this.publishBatch(e.epoch)] as const;
        // SettlementAbi (not the interface's): a refusal is named — OperatorDisputed while a dispute is open, OperatorJailed after a fault.
        const hash = await this.clients.wallet.writeContract({ address: this.deployment.settlement, abi: SettlementAbi, functionName: "postEpoch", args }).catch((err: unknown) => {
          const name = revertName(err);
          if (!name) throw err;
          throw oerr("CHAIN_TX_FAILED", `postEpoch(${e.epoch}) was refused: ${name}`, { epoch: e.epoch, reason: name });
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
