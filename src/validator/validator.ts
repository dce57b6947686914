/**
 * `openlora validate`'s engine: follows one operator's posted epochs on chain, in order; fetches each
 * epoch's batch from its data availability layer (calldata, or the EigenDA proxy it was announced to),
 * checks every receipt (epoch.ts), replays a sample bit-exact (replay.ts, the sample drawn by
 * replaySample), and reports each epoch. Its progress — the last epoch judged — is saved after every
 * epoch, so a restart resumes after it.
 * An epoch whose batch cannot be fetched is reported `withheld` and retried on the next round.
 * With a key (an `actor`, actions.ts) it also attests, challenges and votes on chain; each report lists
 * what it sent.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { getAddress, type Address, type Hex, type PublicClient } from "viem";
import { ZERO_HASH } from "../attribution/merkle.js";
import type { ReceiptDomainOptions } from "../attribution/receipts.js";
import { BatchInboxAbi, ISettlementAbi } from "../chain/abi.js";
import type { Deployment } from "../chain/deploy.js";
import { MAX_RANGE } from "../chain/follower.js";
import { decodeBatch, type DecodedBatch } from "../da/batch.js";
import { fetchCalldata } from "../da/calldata.js";
import { fetchEigenDa, type EigenDaProxy } from "../da/eigenda.js";
import { isOpenLoraError, oerr } from "../errors.js";
import type { Action, ValidatorActor } from "./actions.js";
import { checkEpoch, replaySample, type PostedEpoch } from "./epoch.js";
import type { Finding } from "./judge.js";
import { RegistryView } from "./registry-view.js";
import type { Replayer } from "./replay.js";

export interface EpochReport {
  operator: Address;
  epoch: number;
  /** honest: no finding; faulty: findings; withheld: the batch could not be fetched (retried). */
  verdict: "honest" | "faulty" | "withheld";
  receipts: number;
  findings: Finding[];
  replayed: number[];
  /** Where the batch came from. */
  source: "calldata" | "eigenda" | null;
  checkMs: number;
  replayMs: number;
  detail?: string;
  /** What the validator sent on chain about it (with a key; else empty). */
  actions: Action[];
}

type Fetched = { batch: DecodedBatch; digests: Hex[] };

interface State {
  operator: Address;
  settlement: Address;
  lastEpoch: number;
  /** EpochPosted logs are read up to here (not kept across restarts: the posts are re-read at start). */
  scannedBlock: string;
}

export interface ValidatorOptions {
  client: PublicClient;
  deployment: Deployment;
  operator: Address;
  /** Where progress is kept (JSON, written atomically). */
  stateFile: string;
  replayRate: number;
  replayer?: Replayer;
  eigenDa?: EigenDaProxy;
  /** Attests, challenges, votes and resolves with the validator's key. */
  actor?: ValidatorActor;
  onReport?: (r: EpochReport) => void;
}

export class Validator {
  private view: RegistryView | undefined;
  private readonly posts = new Map<number, PostedEpoch>();
  private state: State;
  private readonly domain: ReceiptDomainOptions;
  /** Recently fetched batches by epoch (a dispute's vote replays from its epoch's batch). */
  private readonly batches = new Map<number, Fetched>();

  constructor(private readonly o: ValidatorOptions) {
    if (!(o.replayRate >= 0 && o.replayRate <= 1)) throw oerr("INVALID_ARGUMENT", "the replay rate must be in [0, 1]");
    if (o.replayRate > 0 && !o.replayer) throw oerr("INVALID_ARGUMENT", "replaying needs the model (and adapter) files: --model, or a replay rate of 0");
    this.domain = { chainId: o.deployment.chainId, ...(o.deployment.court ? { verifyingContract: o.deployment.court } : {}) };
    const fresh: State = { operator: getAddress(o.operator), settlement: o.deployment.settlement, lastEpoch: 0, scannedBlock: (BigInt(o.deployment.deployBlock) - 1n).toString() };
    this.state = existsSync(o.stateFile) ? readState(o.stateFile, fresh) : fresh;
  }

  get lastEpoch(): number {
    return this.state.lastEpoch;
  }

  /** Judges every epoch posted since the last one judged; stops at one whose batch is withheld. */
  async round(): Promise<EpochReport[]> {
    const head = await this.o.client.getBlockNumber();
    this.view ??= await RegistryView.load(this.o.client, this.o.deployment, head);
    await this.view.sync(this.o.client, head);
    await this.scanPosts(head);
    const out: EpochReport[] = [];
    for (let n = this.state.lastEpoch + 1; this.posts.has(n); n++) {
      const p = this.posts.get(n)!;
      const report = await this.judge(p);
      if (this.o.actor) report.actions = await this.o.actor.onEpoch(p, report.verdict, report.findings, this.batches.get(n) ?? null);
      out.push(report);
      this.o.onReport?.(report);
      if (report.verdict === "withheld") break;
      this.state = { ...this.state, lastEpoch: n };
      saveState(this.o.stateFile, this.state);
    }
    return out;
  }

  /** With an actor: votes on and resolves the operator's open disputes (after a round, so posts are known). */
  async disputes(): Promise<Action[]> {
    if (!this.o.actor) return [];
    return this.o.actor.disputes({ batchOf: (epoch) => this.batchOf(epoch), ...(this.o.replayer ? { replayer: this.o.replayer } : {}) });
  }

  private async batchOf(epoch: number): Promise<Fetched | null> {
    const cached = this.batches.get(epoch);
    if (cached) return cached;
    const p = this.posts.get(epoch);
    if (!p) return null;
    try {
      const batch = decodeBatch((await this.fetchPayload(p)).payload, { node: p.operator, epoch: p.epoch, firstReceipt: p.firstReceipt, lastReceipt: p.lastReceipt });
      return this.remember(epoch, { batch, digests: checkEpoch(batch, p, null, this.view!, this.domain).digests });
    } catch {
      return null;
    }
  }

  private remember(epoch: number, f: Fetched): Fetched {
    this.batches.set(epoch, f);
    for (const k of this.batches.keys()) if (this.batches.size > 4 && k !== epoch) this.batches.delete(k);
    return f;
  }

  /** The batch's bytes: from calldata when BatchInbox holds it (at the post, or published since), else EigenDA. */
  private async fetchPayload(p: PostedEpoch): Promise<{ payload: Uint8Array; source: "calldata" | "eigenda" }> {
    const { client, deployment } = this.o;
    const from = BigInt(deployment.deployBlock);
    const calldata = async (to: bigint) => ({ payload: await fetchCalldata(client, deployment.inbox, p.operator, p.batchCommitment, from, to), source: "calldata" as const });
    if (p.batchOnChain) return calldata(p.block);
    if (await client.readContract({ address: deployment.inbox, abi: BatchInboxAbi, functionName: "available", args: [p.operator, p.batchCommitment] })) {
      return calldata(await client.getBlockNumber());
    }
    if (this.o.eigenDa) return { payload: await fetchEigenDa(client, deployment.inbox, this.o.eigenDa, p.operator, p.batchCommitment, from), source: "eigenda" };
    throw oerr("DA_UNAVAILABLE", "the batch is not in BatchInbox and no EigenDA proxy is configured (--eigenda-proxy)");
  }

  private async scanPosts(head: bigint): Promise<void> {
    const { client, deployment } = this.o;
    for (let a = BigInt(this.state.scannedBlock) + 1n; a <= head; a += MAX_RANGE) {
      const b = a + MAX_RANGE - 1n < head ? a + MAX_RANGE - 1n : head;
      const logs = await client.getContractEvents({ address: deployment.settlement, abi: ISettlementAbi, eventName: "EpochPosted", args: { operator: this.state.operator }, fromBlock: a, toBlock: b });
      for (const l of logs) {
        const e = l.args;
        const stored = await client.readContract({ address: deployment.settlement, abi: ISettlementAbi, functionName: "epochOf", args: [this.state.operator, e.epoch!] });
        this.posts.set(Number(e.epoch), {
          operator: this.state.operator, epoch: Number(e.epoch), receiptsRoot: stored.receiptsRoot, firstReceipt: Number(stored.firstReceipt), lastReceipt: Number(stored.lastReceipt),
          lastReceiptHash: stored.lastReceiptHash, payoutRoot: stored.payoutRoot, batchCommitment: stored.batchCommitment, batchOnChain: stored.batchOnChain,
          claimableAt: stored.claimableAt, block: l.blockNumber, blockHash: l.blockHash,
        });
      }
      this.state.scannedBlock = b.toString();
    }
  }

  private async judge(p: PostedEpoch): Promise<EpochReport> {
    const base = { operator: p.operator, epoch: p.epoch, receipts: p.lastReceipt - p.firstReceipt + 1, replayed: [] as number[], checkMs: 0, replayMs: 0, actions: [] as Action[] };
    let payload: Uint8Array;
    let source: EpochReport["source"];
    try {
      ({ payload, source } = await this.fetchPayload(p));
    } catch (e) {
      if (isOpenLoraError(e, "DA_UNAVAILABLE")) return { ...base, verdict: "withheld", findings: [], source: null, detail: e.message };
      if (!isOpenLoraError(e, "DA_COMMITMENT_MISMATCH") && !isOpenLoraError(e, "DA_BATCH_INVALID")) throw e;
      return { ...base, verdict: "withheld", findings: [], source: null, detail: e.message };
    }
    const t0 = performance.now();
    let batch;
    try {
      batch = decodeBatch(payload, { node: p.operator, epoch: p.epoch, firstReceipt: p.firstReceipt, lastReceipt: p.lastReceipt });
    } catch (e) {
      if (!isOpenLoraError(e, "DA_BATCH_INVALID")) throw e;
      return { ...base, verdict: "faulty", findings: [{ receipt: p.lastReceipt, check: "batch", proof: null, detail: e.message }], source, checkMs: performance.now() - t0 };
    }
    // The first receipt links to the previous epoch's last; an operator's first epoch may start past receipt 1 (unknown link).
    const prev = p.firstReceipt === 1 ? ZERO_HASH : (this.posts.get(p.epoch - 1)?.lastReceiptHash ?? null);
    const { findings, digests } = checkEpoch(batch, p, prev, this.view!, this.domain);
    this.remember(p.epoch, { batch, digests });
    const checkMs = performance.now() - t0;
    const t1 = performance.now();
    const replayed = replaySample(p, this.o.replayRate);
    for (const id of replayed) {
      const e = batch.entries[id - p.firstReceipt]!;
      if (findings.some((f) => f.receipt === id && (f.check === "signature" || f.check === "tokens"))) continue;
      const r = await this.o.replayer!.replay(e.receipt, e.prompt);
      if (!r.ok) findings.push({ receipt: id, check: "replay", proof: null, detail: r.detail });
    }
    return { ...base, verdict: findings.length === 0 ? "honest" : "faulty", findings, replayed, source, checkMs, replayMs: performance.now() - t1 };
  }
}

function readState(file: string, fresh: State): State {
  let s: State;
  try {
    s = JSON.parse(readFileSync(file, "utf8")) as State;
  } catch {
    throw oerr("INVALID_ARGUMENT", `the validator state file ${file} is not JSON`);
  }
  if (getAddress(s.operator) !== fresh.operator || getAddress(s.settlement) !== getAddress(fresh.settlement)) {
    throw oerr("INVALID_ARGUMENT", `the validator state file ${file} is for operator ${s.operator} on ${s.settlement}, not ${fresh.operator} on ${fresh.settlement}`);
  }
  if (!Number.isSafeInteger(s.lastEpoch) || s.lastEpoch < 0 || !/^[0-9]+$/.test(String(s.scannedBlock))) throw oerr("INVALID_ARGUMENT", `the validator state file ${file} is malformed`);
  // Posts are re-read from the deployment on start (the map of posts is not saved): cheap, one log scan.
  return { ...s, scannedBlock: fresh.scannedBlock };
}

function saveState(file: string, s: State): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}
