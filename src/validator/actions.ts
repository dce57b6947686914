/**
 * What a validator with a key does on chain about what it found (docs/validators.md):
 * - an honest epoch: `ValidatorCourt.attest` (when its stake makes it eligible);
 * - a receipt a single-receipt proof slashes for (split, terms, stakers, contributors, policy, merged
 *   lineage, not posted): that proof, sent to ReceiptCourt or RegistryCourt (chain/challenger.ts builds it);
 * - a replay mismatch: `challengeReplay` on the first such receipt (the bond approved first), then its vote;
 * - a batch it cannot fetch whose epoch has none in BatchInbox: `challengeWithheld`;
 * - every open dispute against the operator: a vote after replaying the disputed receipt from the epoch's
 *   batch (fault = the replay does not match), and `resolve` once the verdict is decided.
 * Every step reads the chain first (attested, disputedReceipt, voted, the dispute's outcome), so a restart
 * that repeats an epoch repeats no transaction. A call the chain refuses is recorded with its error's name,
 * never thrown: the validator goes on judging.
 */
import { getAddress, type Abi, type Address, type Hex } from "viem";
import { merkleProof } from "../attribution/merkle.js";
import { receiptCourtArgs } from "../attribution/receipts.js";
import { TestTokenAbi, ValidatorCourtAbi } from "../chain/abi.js";
import { checkReceipt } from "../chain/challenger.js";
import { revertName, type ChainClients } from "../chain/client.js";
import type { Deployment } from "../chain/deploy.js";
import { MAX_RANGE } from "../chain/follower.js";
import type { DecodedBatch } from "../da/batch.js";
import { oerr } from "../errors.js";
import type { PostedEpoch } from "./epoch.js";
import type { Finding } from "./judge.js";
import type { Replayer } from "./replay.js";

export interface Action {
  action: "attest" | "proof" | "challengeReplay" | "challengeWithheld" | "vote" | "resolve" | "stake";
  operator: Address;
  epoch?: number;
  receipt?: number;
  dispute?: number;
  /** The proof sent (action "proof"), the vote (fault or not), the outcome of a resolve. */
  detail?: string;
  /** The mined transaction; absent when skipped. */
  tx?: Hex;
  /** Why nothing was sent: the contract's error name, or the reason it was not tried. */
  skipped?: string;
}

/** ValidatorCourt.Outcome, by index. */
export const OUTCOMES = ["None", "Open", "Upheld", "Rejected", "Lapsed", "Answered"] as const;
const KINDS = ["replay", "withheld"] as const;

interface OpenDispute {
  id: bigint;
  epoch: number;
  kind: (typeof KINDS)[number];
  receiptDigest: Hex;
  receiptId: number;
  openedBlock: bigint;
}

export interface ActorDeps {
  /** The epoch's batch and its receipts' digests (the validator's fetch, cached); null when it cannot be had. */
  batchOf(epoch: number): Promise<{ batch: DecodedBatch; digests: Hex[] } | null>;
  replayer?: Replayer;
}

export class ValidatorActor {
  readonly address: Address;
  private readonly court: Address;
  private scanned: bigint;
  private readonly open = new Map<bigint, OpenDispute>();

  constructor(private readonly clients: ChainClients, private readonly d: Deployment, private readonly operator: Address) {
    if (!d.validatorCourt) throw oerr("INVALID_ARGUMENT", "the contracts file names no ValidatorCourt: attesting and disputes need one (redeploy with this build)");
    this.court = d.validatorCourt;
    this.address = clients.account.address;
    this.scanned = BigInt(d.deployBlock) - 1n;
  }

  async stakeOf(): Promise<{ stake: bigint; minStake: bigint }> {
    const [stake, minStake] = await Promise.all([this.read("stakeOf", [this.address]) as Promise<bigint>, this.read("minStake", []) as Promise<bigint>]);
    return { stake, minStake };
  }

  /** Stakes up to `target` (approving the difference); an action only when it staked. */
  async ensureStake(target: bigint): Promise<Action | null> {
    const { stake } = await this.stakeOf();
    if (stake >= target) return null;
    const more = target - stake;
    const approve = await this.send(this.d.token, TestTokenAbi, "approve", [this.court, more]);
    if (!approve.tx) return { action: "stake", operator: this.operator, detail: more.toString(), skipped: approve.skipped! };
    return { action: "stake", operator: this.operator, detail: more.toString(), ...(await this.send(this.court, ValidatorCourtAbi, "stake", [more])) };
  }

  /** The on-chain step for a judged epoch. */
  async onEpoch(p: PostedEpoch, verdict: "honest" | "faulty" | "withheld", findings: Finding[], batch: { batch: DecodedBatch; digests: Hex[] } | null): Promise<Action[]> {
    const base = { operator: this.operator, epoch: p.epoch };
    const out: Action[] = [];
    if (verdict === "honest") {
      const { stake, minStake } = await this.stakeOf();
      if (stake < minStake) out.push({ ...base, action: "attest", skipped: `NotEligible (stake ${stake} < ${minStake})` });
      else if (await this.read("attested", [this.operator, BigInt(p.epoch), this.address])) out.push({ ...base, action: "attest", skipped: "AlreadyAttested" });
      else out.push({ ...base, action: "attest", ...(await this.send(this.court, ValidatorCourtAbi, "attest", [this.operator, BigInt(p.epoch)])) });
      return out;
    }
    if (verdict === "withheld") {
      if (p.batchOnChain) return out; // in BatchInbox: fetching failed here, not at the source
      if (await this.read("withheldDisputed", [this.operator, BigInt(p.epoch)])) return [{ ...base, action: "challengeWithheld", skipped: "AlreadyDisputed" }];
      await this.approveBond();
      return [{ ...base, action: "challengeWithheld", ...(await this.send(this.court, ValidatorCourtAbi, "challengeWithheld", [this.operator, BigInt(p.epoch)])) }];
    }
    if (!batch) return out;
    const entry = (id: number) => batch.batch.entries[id - p.firstReceipt];
    // Single-receipt proofs: the first receipt of each proof kind.
    const proved = new Set<string>();
    for (const f of findings) {
      if (f.proof === null || proved.has(f.proof)) continue;
      proved.add(f.proof);
      const e = entry(f.receipt);
      if (!e) continue;
      const checks = await checkReceipt(this.clients.public as never, this.d, e.receipt, e.signature, this.address);
      const slash = checks.find((c) => c.verdict === "slashes" && c.proof.startsWith(f.proof!));
      if (!slash?.call) out.push({ ...base, action: "proof", receipt: f.receipt, detail: f.proof, skipped: "no proof of it simulates as slashing" });
      else out.push({ ...base, action: "proof", receipt: f.receipt, detail: slash.proof, ...(await this.send(slash.call.address, slash.call.abi, slash.call.functionName, slash.call.args)) });
    }
    const replay = findings.find((f) => f.check === "replay");
    if (replay) {
      const i = replay.receipt - p.firstReceipt;
      const e = entry(replay.receipt)!;
      const digest = batch.digests[i]!;
      if (await this.read("disputedReceipt", [digest])) out.push({ ...base, action: "challengeReplay", receipt: replay.receipt, skipped: "AlreadyDisputed" });
      else {
        await this.approveBond();
        const [struct] = receiptCourtArgs(e.receipt);
        out.push({ ...base, action: "challengeReplay", receipt: replay.receipt, ...(await this.send(this.court, ValidatorCourtAbi, "challengeReplay", [this.operator, BigInt(p.epoch), struct, e.signature, merkleProof(batch.digests, i)])) });
      }
    }
    return out;
  }

  /** Votes on and resolves the operator's open disputes. */
  async disputes(deps: ActorDeps): Promise<Action[]> {
    await this.scan();
    const out: Action[] = [];
    const { minStake } = await this.stakeOf();
    const now = (await this.clients.public.getBlock()).timestamp;
    for (const d of [...this.open.values()]) {
      const state = (await this.read("disputeOf", [d.id])) as { outcome: number; deadline: bigint };
      if (OUTCOMES[state.outcome] !== "Open") { this.open.delete(d.id); continue; }
      const base = { operator: this.operator, epoch: d.epoch, dispute: Number(d.id), ...(d.kind === "replay" ? { receipt: d.receiptId } : {}) };
      if (d.kind === "replay" && now < state.deadline && !(await this.read("voted", [d.id, this.address]))) {
        const weight = (await this.read("stakeAtBlock", [this.address, d.openedBlock - 1n])) as bigint;
        if (weight >= minStake && getAddress(this.address) !== getAddress(this.operator)) {
          const fault = await this.judgeDisputed(d, deps);
          if (typeof fault === "string") out.push({ ...base, action: "vote", skipped: fault });
          else out.push({ ...base, action: "vote", detail: fault ? "fault" : "no fault", ...(await this.send(this.court, ValidatorCourtAbi, "vote", [d.id, fault])) });
        }
      }
      try {
        const { result } = await this.clients.public.simulateContract({ account: this.clients.account, address: this.court, abi: ValidatorCourtAbi, functionName: "resolve", args: [d.id] });
        const sent = await this.send(this.court, ValidatorCourtAbi, "resolve", [d.id]);
        out.push({ ...base, action: "resolve", detail: OUTCOMES[Number(result)] ?? String(result), ...sent });
        if (sent.tx) this.open.delete(d.id);
      } catch (e) {
        const name = revertName(e);
        if (name !== "Undecided") out.push({ ...base, action: "resolve", skipped: name ?? (e as Error).message.split("\n")[0]! });
      }
    }
    return out;
  }

  /** true: the disputed receipt does not replay; false: it does; a string: why this validator cannot tell. */
  private async judgeDisputed(d: OpenDispute, deps: ActorDeps): Promise<boolean | string> {
    if (!deps.replayer) return "no model files to replay with (--model)";
    const got = await deps.batchOf(d.epoch);
    if (!got) return "the epoch's batch cannot be fetched";
    const i = got.batch.entries.findIndex((e) => e.receipt.id === d.receiptId);
    if (i < 0 || got.digests[i] !== d.receiptDigest) return "the disputed receipt is not in the epoch's batch as published";
    const e = got.batch.entries[i]!;
    return !(await deps.replayer.replay(e.receipt, e.prompt)).ok;
  }

  private async scan(): Promise<void> {
    const head = await this.clients.public.getBlockNumber();
    for (let a = this.scanned + 1n; a <= head; a += MAX_RANGE) {
      const b = a + MAX_RANGE - 1n < head ? a + MAX_RANGE - 1n : head;
      const logs = await this.clients.public.getContractEvents({ address: this.court, abi: ValidatorCourtAbi, eventName: "DisputeOpened", args: { operator: this.operator }, fromBlock: a, toBlock: b });
      for (const l of logs) {
        const x = l.args;
        this.open.set(x.id!, { id: x.id!, epoch: Number(x.epoch), kind: KINDS[Number(x.kind)]!, receiptDigest: x.receiptDigest!, receiptId: Number(x.receiptId), openedBlock: l.blockNumber });
      }
      this.scanned = b;
    }
  }

  private async approveBond(): Promise<void> {
    const bond = (await this.read("challengeBond", [])) as bigint;
    if (bond === 0n) return;
    const allowance = (await this.clients.public.readContract({ address: this.d.token, abi: TestTokenAbi, functionName: "allowance", args: [this.address, this.court] })) as bigint;
    if (allowance < bond) await this.send(this.d.token, TestTokenAbi, "approve", [this.court, bond]);
  }

  private read(functionName: string, args: readonly unknown[]): Promise<unknown> {
    return this.clients.public.readContract({ address: this.court, abi: ValidatorCourtAbi, functionName, args } as never);
  }

  /** Simulates, then sends and waits; a refusal comes back as `skipped` with the contract's error name. */
  private async send(address: Address, abi: Abi, functionName: string, args: readonly unknown[]): Promise<{ tx?: Hex; skipped?: string }> {
    try {
      const { request } = await this.clients.public.simulateContract({ account: this.clients.account, address, abi, functionName, args } as never);
      const hash = await this.clients.wallet.writeContract(request as never);
      const r = await this.clients.public.waitForTransactionReceipt({ hash, timeout: 60_000 });
      return r.status === "success" ? { tx: hash } : { skipped: `reverted (tx ${hash})` };
    } catch (e) {
      return { skipped: revertName(e) ?? (e as Error).message.split("\n")[0]! };
    }
  }
}
