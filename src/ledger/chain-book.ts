/**
 * The chain book: what a node on a chain keeps beside its ledger (docs/chain.md). The chain holds
 * the money; the node mirrors what it needs to serve (deposits, withdrawal requests, stakes, access
 * policies, licences) as signed ledger events — so `auditBalances` still recomputes every balance
 * from signed entries — and records, per epoch, the payout tree it posts.
 *
 * Each chain log is applied exactly once: `apply` records (tx, log index) in the transaction that
 * applies it, so a restart that re-reads logs changes nothing. On-chain parties are addresses and
 * the ledger names them in lowercase hex, so their string order is their numeric order.
 *
 * Mirroring rules (memo "chain <tx>:<log>" on every event):
 *   Deposited          → deposit (the account is created at its first deposit)
 *   WithdrawalRequested → withdraw of what is still available of it, at once: the node stops
 *                         reserving against money on its way out (the chain pays it after a post)
 *   AgentStakeChanged(total) → deposit + stake (or unstake + withdraw) of the change: the stake is
 *                         funded on chain, so the pair leaves the balance unchanged
 *   StakeChanged(total, from) → the same on the model, queued until `from` (block time + the terms
 *                         delay): a receipt splits the stakes Settlement.stakeAt has at its time
 *   TermsSet           → queued until its `from` (the Registry's terms delay after its block), then
 *                         listed by Ledger.applyChainChanges: a receipt is split by the terms the
 *                         Registry holds in force at the receipt's time, never earlier or later ones
 *
 * The view: after each complete follow round the node knows every log up to a block, hence every
 * terms or stake change in force before `safeUntilMs` (the first unseen block's time + the terms delay).
 * It admits requests while at least half the delay is left and signs receipts until then
 * (checkFresh): an RPC outage stops serving only when it could make the node sign wrong terms.
 */
import type { Address, Hex } from "viem";
import { getAddress } from "viem";
import { buildPayoutTree, COMMITTED, EARNINGS, type PayoutEntry, type PayoutKind, type PayoutTree } from "../chain/payout-tree.js";
import { ZERO_HASH } from "../attribution/merkle.js";
import { oerr } from "../errors.js";
import type { Accounts } from "./accounts.js";
import { big, money, type Db } from "./db.js";
import type { RegisterModelInput } from "./models.js";
import type { FeePolicy } from "../attribution/types.js";
import type { EpochBatch } from "../da/batch.js";
import { fromTokenBlob } from "./token-blob.js";

/** IRegistry.AccessKind, in its enum order. */
export const ACCESS_KINDS = ["public", "allowlist", "licence", "min_stake"] as const;
export type AccessKind = (typeof ACCESS_KINDS)[number];

export interface LogRef {
  txHash: Hex;
  logIndex: number;
  block: bigint;
}

export interface SealedEpoch {
  epoch: number;
  receiptsRoot: Hex;
  firstReceipt: number;
  lastReceipt: number;
  lastReceiptHash: Hex;
  payoutRoot: Hex;
  status: "pending" | "posted";
  txHash: Hex | null;
  attempts: number;
  lastError: string | null;
}

export interface ClaimProof {
  epoch: number;
  payoutRoot: Hex;
  account: Address;
  kind: PayoutKind;
  cumulative: bigint;
  proof: Hex[];
}

const ADDRESS = /^0x[0-9a-f]{40}$/;

interface PendingRow { model: string; version: number; from_ms: number; input: string | null; problem: string | null }

function pendingOf(r: PendingRow): PendingTerms {
  let input: RegisterModelInput | null = null;
  if (r.input) {
    const j = JSON.parse(r.input) as RegisterModelInput & { priceIn: string; priceOut: string };
    input = {
      ...j,
      priceIn: BigInt(j.priceIn),
      priceOut: BigInt(j.priceOut),
      developers: j.developers.map((d) => ({ party: d.party, share: BigInt(d.share) })),
      ...(j.lineage ? { lineage: j.lineage.map((l) => ({ ...l, weight: BigInt(l.weight) })) } : {}),
      ...(j.parents ? { parents: j.parents.map((p) => ({ ...p, weight: BigInt(p.weight) })) } : {}),
    };
  }
  return { model: r.model, version: r.version, fromMs: r.from_ms, input, problem: r.problem };
}

/** The ledger's name of an on-chain party: its lowercase hex address. */
export function partyOf(address: string): string {
  return getAddress(address).toLowerCase();
}

export function isChainParty(id: string): boolean {
  return ADDRESS.test(id);
}

export interface PendingTerms {
  model: string;
  version: number;
  fromMs: number;
  /** The listing these terms make; null when the node cannot list them (`problem` says why). */
  input: RegisterModelInput | null;
  problem: string | null;
}

export interface PendingStake { seq: number; staker: Address; model: string; total: string; memo: string }

export class ChainBook {
  private view: { safeUntilMs: number; delayMs: number } | null = null;
  private jailed = 0;
  private policies: { version: number; fromMs: number; policy: FeePolicy }[] | null = null;

  constructor(private readonly db: Db, private readonly accounts: Accounts, private readonly now: () => number) {}

  // ---- the view's freshness (in memory: a restart follows the chain before it serves)

  /** After a complete follow round: every terms change in force before `safeUntilMs` is known. */
  setView(safeUntilMs: number, delayMs: number): void {
    this.view = { safeUntilMs, delayMs };
  }

  /** Settlement.jailedFrom(node) as last read (0: not jailed). */
  setJailed(fromEpoch: number): void {
    this.jailed = fromEpoch;
  }

  jailedFrom(): number | null {
    return this.jailed === 0 ? null : this.jailed;
  }

  /** OPERATOR_JAILED once a dispute upheld a fault: nothing this node signs from then on can pay. */
  checkNotJailed(): void {
    if (this.jailed !== 0) {
      throw oerr("OPERATOR_JAILED", `a validator dispute upheld a fault in this node's epoch ${this.jailed}: its epochs from it on never pay out, and it admits no request on this chain`, { jailedFrom: this.jailed });
    }
  }

  viewState(): { safeUntilMs: number; delayMs: number } | null {
    return this.view ? { ...this.view } : null;
  }

  /**
   * CHAIN_VIEW_STALE when the view might miss terms in force at `nowMs` (a receipt), or will within
   * half the terms delay (an admission: its receipt comes later). No check with a delay of 0.
   */
  checkFresh(at: "admission" | "receipt", nowMs = this.now()): void {
    const v = this.view;
    if (!v || v.delayMs === 0) return;
    const limit = at === "admission" ? v.safeUntilMs - v.delayMs / 2 : v.safeUntilMs;
    if (nowMs > limit) {
      throw oerr("CHAIN_VIEW_STALE", `the node has not followed the chain for ${Math.round((nowMs - (v.safeUntilMs - v.delayMs)) / 1000)} s (terms delay ${v.delayMs / 1000} s): it admits requests again once following catches up`, { safeUntil: new Date(v.safeUntilMs).toISOString() });
    }
  }

  // ---- terms waiting for their time

  queueTerms(p: PendingTerms): void {
    this.db.prepare("INSERT INTO chain_pending_terms (model, version, from_ms, input, problem) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
      .run(p.model, p.version, p.fromMs, p.input ? JSON.stringify(p.input, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) : null, p.problem);
  }

  /**
   * Versions whose time has come, in the order they are listed: oldest first and, within one time, a
   * version after its parents' (a merge's lineage is computed from its parents' listings in force then).
   */
  dueTerms(nowMs: number): PendingTerms[] {
    return parentsFirst((this.db.prepare("SELECT model, version, from_ms, input, problem FROM chain_pending_terms WHERE from_ms <= ? ORDER BY from_ms, version").all(nowMs) as PendingRow[]).map(pendingOf));
  }

  pendingTerms(model?: string): PendingTerms[] {
    return (this.db.prepare("SELECT model, version, from_ms, input, problem FROM chain_pending_terms WHERE ? IS NULL OR model = ? ORDER BY from_ms, version").all(model ?? null, model ?? null) as PendingRow[]).map(pendingOf);
  }

  /** A due version was listed (reason null) or could not be (the model is unservable until a later one is). */
  termsApplied(model: string, version: number, reason: string | null): void {
    this.db.prepare("DELETE FROM chain_pending_terms WHERE model = ? AND version = ?").run(model, version);
    if (reason === null) this.db.prepare("DELETE FROM chain_unservable WHERE model = ?").run(model);
    else this.db.prepare("INSERT INTO chain_unservable (model, reason) VALUES (?, ?) ON CONFLICT (model) DO UPDATE SET reason = excluded.reason").run(model, reason.slice(0, 400));
  }

  // ---- the node's own fee policy, as declared on chain

  /** An OperatorPolicySet of this node (idempotent per version). */
  recordPolicy(version: number, fromMs: number, policy: FeePolicy): void {
    const p: FeePolicy = { protocolBps: policy.protocolBps, operatorBps: policy.operatorBps, developerBps: policy.developerBps, stakerBps: policy.stakerBps, dataBps: policy.dataBps, lambdaBps: policy.lambdaBps };
    this.db.prepare("INSERT INTO chain_policies (version, from_ms, policy) VALUES (?, ?, ?) ON CONFLICT DO NOTHING").run(version, fromMs, JSON.stringify(p));
    this.policies = null;
  }

  /** The declared policy in force at `ms` (the last version with from <= ms), null before the first. */
  policyAt(ms: number): { version: number; fromMs: number; policy: FeePolicy } | null {
    this.policies ??= (this.db.prepare("SELECT version, from_ms, policy FROM chain_policies ORDER BY version").all() as { version: number; from_ms: number; policy: string }[])
      .map((r) => ({ version: r.version, fromMs: r.from_ms, policy: JSON.parse(r.policy) as FeePolicy }));
    let found: { version: number; fromMs: number; policy: FeePolicy } | null = null;
    for (const p of this.policies) if (p.fromMs <= ms) found = p;
    return found;
  }

  /** Declared versions not yet in force at `ms`. */
  pendingPolicies(ms: number): { version: number; fromMs: number; policy: FeePolicy }[] {
    this.policyAt(ms);
    return this.policies!.filter((p) => p.fromMs > ms);
  }

  // ---- stake changes waiting for their time

  /** A StakeChanged log's new total for (staker, model), counting from `fromMs`. */
  queueStake(staker: Address, model: string, total: bigint, fromMs: number, memo: string): void {
    this.db.prepare("INSERT INTO chain_pending_stakes (staker, model, total, from_ms, memo) VALUES (?, ?, ?, ?, ?)").run(partyOf(staker), model, total.toString(), fromMs, memo);
  }

  /** Queued stake changes whose time has come, in log order. */
  dueStakes(nowMs: number): PendingStake[] {
    return this.db.prepare("SELECT seq, staker, model, total, memo FROM chain_pending_stakes WHERE from_ms <= ? ORDER BY from_ms, seq").all(nowMs) as PendingStake[];
  }

  /** Mirrors due stake changes (from dueStakes, in its order) and drops them from the queue; call inside a transaction. */
  applyStakes(due: readonly PendingStake[]): void {
    for (const d of due) {
      this.modelStake(d.staker, d.model, BigInt(d.total), d.memo);
      this.db.prepare("DELETE FROM chain_pending_stakes WHERE seq = ?").run(d.seq);
    }
  }

  pendingStakes(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM chain_pending_stakes").get() as { n: number }).n;
  }

  /** CHAIN_TERMS_UNSUPPORTED when the terms in force for `model` are ones the node could not list. */
  /** Why the terms in force for `model` could not be listed; null when it is servable. */
  unservable(model: string): string | null {
    return (this.db.prepare("SELECT reason FROM chain_unservable WHERE model = ?").get(model) as { reason: string } | undefined)?.reason ?? null;
  }

  checkServable(model: string): void {
    const reason = this.unservable(model);
    if (reason !== null) throw oerr("CHAIN_TERMS_UNSUPPORTED", `${model} is not served: its terms in force on chain cannot be listed by this node (${reason})`, { model });
  }

  cursor(): { block: bigint; hash: Hex } | null {
    const r = this.db.prepare("SELECT block, hash FROM chain_cursor WHERE id = 1").get() as { block: number; hash: Hex } | undefined;
    return r ? { block: BigInt(r.block), hash: r.hash } : null;
  }

  setCursor(block: bigint, hash: Hex): void {
    this.db.prepare("INSERT INTO chain_cursor (id, block, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET block = excluded.block, hash = excluded.hash").run(Number(block), hash);
  }

  /** Runs `fn` and records the log in one transaction; returns false, running nothing, if the log was applied before. */
  apply(ref: LogRef, fn: (memo: string) => void): boolean {
    return this.db.transaction(() => {
      if (this.db.prepare("SELECT 1 FROM chain_applied WHERE tx_hash = ? AND log_index = ?").get(ref.txHash, ref.logIndex)) return false;
      fn(`chain ${ref.txHash}:${ref.logIndex}`);
      this.db.prepare("INSERT INTO chain_applied (tx_hash, log_index, block) VALUES (?, ?, ?)").run(ref.txHash, ref.logIndex, Number(ref.block));
      return true;
    }).immediate();
  }

  // ---- names of on-chain ids

  /** `info`: what a later log of the same entry needs (a model's kind, base and owner until its terms arrive). */
  setName(kind: "model" | "datanet", idHash: Hex, name: string, info?: unknown): void {
    this.db.prepare("INSERT INTO chain_names (id_hash, kind, name, info) VALUES (?, ?, ?, ?) ON CONFLICT (id_hash) DO NOTHING")
      .run(idHash.toLowerCase(), kind, name, info === undefined ? null : JSON.stringify(info));
  }

  infoOf(idHash: Hex): unknown {
    const r = this.db.prepare("SELECT info FROM chain_names WHERE id_hash = ?").get(idHash.toLowerCase()) as { info: string | null } | undefined;
    return r?.info ? JSON.parse(r.info) : null;
  }

  nameOf(kind: "model" | "datanet", idHash: Hex): string | null {
    const r = this.db.prepare("SELECT name FROM chain_names WHERE id_hash = ? AND kind = ?").get(idHash.toLowerCase(), kind) as { name: string } | undefined;
    return r?.name ?? null;
  }

  // ---- money mirrored from the chain (call inside apply)

  deposit(agent: Address, amount: bigint, memo: string): void {
    if (amount <= 0n) return;
    const id = this.ensureAccount(agent);
    this.accounts.deposit(id, amount, memo);
  }

  /** Holds what is still available of a requested withdrawal; returns the amount held. */
  holdWithdrawal(agent: Address, amount: bigint, memo: string): bigint {
    const a = this.accounts.findAgent(partyOf(agent));
    if (!a) return 0n;
    const held = amount < a.balance ? amount : a.balance;
    if (held > 0n) this.accounts.withdraw(a.id, held, memo);
    return held;
  }

  agentStake(agent: Address, total: bigint, memo: string): void {
    const id = this.ensureAccount(agent);
    const delta = total - this.accounts.agent(id).stake;
    if (delta > 0n) {
      this.accounts.deposit(id, delta, memo);
      this.accounts.agentStake(id, delta, memo);
    } else if (delta < 0n) {
      this.accounts.agentUnstake(id, -delta, memo);
      this.accounts.withdraw(id, -delta, memo);
    }
  }

  modelStake(staker: Address, model: string, total: bigint, memo: string): void {
    const id = this.ensureAccount(staker);
    const delta = total - this.accounts.stakeOf(id, model);
    if (delta > 0n) {
      this.accounts.deposit(id, delta, memo);
      this.accounts.stake(id, model, delta, memo);
    } else if (delta < 0n) {
      this.accounts.unstake(id, model, -delta, memo);
      this.accounts.withdraw(id, -delta, memo);
    }
  }

  private ensureAccount(address: Address): string {
    const id = partyOf(address);
    if (!this.accounts.findAgent(id)) this.accounts.createAgent(id);
    return id;
  }

  // ---- Datanet versions published on chain

  /**
   * Records a version its owner published on chain, and whether it is exactly this node's version
   * of that name (the same Merkle root of approved records and the same contributors' approved
   * token counts). Returns the match.
   */
  publishedVersion(datanet: string, version: number, root: Hex, contributors: readonly Address[], approvedTokens: readonly bigint[]): boolean {
    let matches = false;
    const local = this.db.prepare("SELECT root FROM datanet_versions WHERE datanet_id = ? AND version = ?").get(datanet, version) as { root: Hex } | undefined;
    if (local && local.root.toLowerCase() === root.toLowerCase()) {
      const counts = new Map<string, bigint>();
      const rows = this.db.prepare(
        `SELECT r.contributor AS c, r.token_count AS n FROM datanet_version_records v JOIN datanet_records r ON r.id = v.record_id
         WHERE v.datanet_id = ? AND v.version = ?`,
      ).all(datanet, version) as { c: string; n: number }[];
      for (const r of rows) counts.set(r.c, (counts.get(r.c) ?? 0n) + BigInt(r.n));
      matches = counts.size === contributors.length && contributors.every((c, i) => counts.get(partyOf(c)) === approvedTokens[i]);
    }
    this.db.prepare("INSERT INTO chain_datanet_versions (datanet, version, root, matches) VALUES (?, ?, ?, ?) ON CONFLICT (datanet, version) DO UPDATE SET root = excluded.root, matches = excluded.matches")
      .run(datanet, version, root.toLowerCase(), matches ? 1 : 0);
    return matches;
  }

  /** Whether the chain published this version of the Datanet exactly as this node holds it. */
  versionMatchesChain(datanet: string, version: number): boolean {
    const r = this.db.prepare("SELECT matches FROM chain_datanet_versions WHERE datanet = ? AND version = ?").get(datanet, version) as { matches: number } | undefined;
    return r?.matches === 1;
  }

  // ---- access policies and licences

  setAccess(model: string, kind: AccessKind, minStake: bigint): void {
    this.db.prepare("INSERT INTO chain_access (model, kind, min_stake) VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE SET kind = excluded.kind, min_stake = excluded.min_stake")
      .run(model, ACCESS_KINDS.indexOf(kind), money(minStake));
  }

  setAllowed(model: string, agent: Address, allowed: boolean): void {
    if (allowed) this.db.prepare("INSERT INTO chain_allowlist (model, agent) VALUES (?, ?) ON CONFLICT DO NOTHING").run(model, partyOf(agent));
    else this.db.prepare("DELETE FROM chain_allowlist WHERE model = ? AND agent = ?").run(model, partyOf(agent));
  }

  /** An ERC-1155 transfer of `model`'s licence (mint: from = 0; burn: to = 0). */
  moveLicence(model: string, from: Address, to: Address, amount: bigint): void {
    const zero = /^0x0{40}$/i;
    if (!zero.test(from)) this.addLicence(model, partyOf(from), -amount);
    if (!zero.test(to)) this.addLicence(model, partyOf(to), amount);
  }

  private addLicence(model: string, holder: string, delta: bigint): void {
    const r = this.db.prepare("SELECT amount FROM chain_licences WHERE model = ? AND holder = ?").get(model, holder) as { amount: string } | undefined;
    const next = (r ? big(r.amount) : 0n) + delta;
    if (next <= 0n) this.db.prepare("DELETE FROM chain_licences WHERE model = ? AND holder = ?").run(model, holder);
    else this.db.prepare("INSERT INTO chain_licences (model, holder, amount) VALUES (?, ?, ?) ON CONFLICT (model, holder) DO UPDATE SET amount = excluded.amount").run(model, holder, money(next));
  }

  accessOf(model: string): { kind: AccessKind; minStake: bigint } {
    const r = this.db.prepare("SELECT kind, min_stake FROM chain_access WHERE model = ?").get(model) as { kind: number; min_stake: string } | undefined;
    return r ? { kind: ACCESS_KINDS[r.kind] ?? "public", minStake: big(r.min_stake) } : { kind: "public", minStake: 0n };
  }

  /**
   * The model's on-chain policy applied to `agent` (a ledger account id; undefined for an anonymous
   * caller): ACCESS_DENIED unless it admits them. The same rule as IRegistry.canAccess, on the mirror.
   */
  checkAccess(model: string, agent: string | undefined): void {
    this.checkServable(model);
    const p = this.accessOf(model);
    if (p.kind === "public") return;
    const deny = (why: string): never => { throw oerr("ACCESS_DENIED", `${model} admits ${why}`, { model, policy: p.kind }); };
    if (agent === undefined) deny("signed-in agents only");
    const id = agent as string;
    switch (p.kind) {
      case "allowlist":
        if (!this.db.prepare("SELECT 1 FROM chain_allowlist WHERE model = ? AND agent = ?").get(model, id)) deny("the agents its owner allowed only");
        return;
      case "licence":
        if (!this.db.prepare("SELECT 1 FROM chain_licences WHERE model = ? AND holder = ?").get(model, id)) deny("holders of its licence only");
        return;
      case "min_stake": {
        const stake = this.accounts.findAgent(id)?.stake ?? 0n;
        if (stake < p.minStake) deny(`agents staking at least ${p.minStake} only (this one stakes ${stake})`);
        return;
      }
    }
  }

  // ---- epochs

  /**
   * The payout tree of the book as it stands (call inside closeEpoch's transaction): every on-chain
   * party's cumulative earnings (its earned balance: payouts are the chain's business in chain mode)
   * and every on-chain agent's committed spend (its receipts' fees + forfeits + open reservations).
   */
  payoutEntries(): { entries: PayoutEntry[]; offChain: string[] } {
    const entries: PayoutEntry[] = [];
    const offChain: string[] = [];
    for (const b of this.accounts.balances()) {
      if (b.amount === 0n) continue;
      if (isChainParty(b.party)) entries.push({ kind: EARNINGS, account: getAddress(b.party), cumulative: b.amount });
      else offChain.push(b.party);
    }
    const committed = new Map<string, bigint>();
    const add = (k: string, v: bigint) => committed.set(k, (committed.get(k) ?? 0n) + v);
    for (const r of this.db.prepare("SELECT agent, fee FROM receipts").iterate() as IterableIterator<{ agent: string; fee: string }>) add(r.agent, big(r.fee));
    for (const e of this.db.prepare("SELECT account, amount FROM events WHERE kind = 'forfeit'").iterate() as IterableIterator<{ account: string; amount: string }>) add(e.account, big(e.amount));
    for (const a of this.db.prepare("SELECT id, reserved FROM agents").iterate() as IterableIterator<{ id: string; reserved: string }>) add(a.id, big(a.reserved));
    // Every on-chain agent gets a committed leaf, 0 included: Settlement.withdraw needs one in the latest root.
    for (const [agent, amount] of committed) {
      if (isChainParty(agent)) entries.push({ kind: COMMITTED, account: getAddress(agent), cumulative: amount });
    }
    return { entries, offChain };
  }

  /** Whether a withdrawal request came from the chain since the last sealed epoch (it waits on a post). */
  withdrawalsSinceLastSeal(): boolean {
    const last = this.db.prepare("SELECT MAX(e.closed_at) AS t FROM chain_epochs c JOIN epochs e ON e.id = c.epoch").get() as { t: number | null };
    return this.db.prepare("SELECT 1 FROM events WHERE kind = 'withdraw' AND json_extract(body, '$.memo') LIKE 'chain %' AND time > ? LIMIT 1").get(last.t ?? -1) !== undefined;
  }

  /** Records the epoch's payout tree, to be posted (inside closeEpoch's transaction). */
  seal(epoch: number): PayoutTree {
    const tree = buildPayoutTree(this.payoutEntries().entries);
    const json = JSON.stringify(tree.entries.map((e) => ({ kind: e.kind, account: e.account, cumulative: e.cumulative.toString() })));
    this.db.prepare("INSERT INTO chain_epochs (epoch, payout_root, entries, status) VALUES (?, ?, ?, 'pending')").run(epoch, tree.root, json);
    return tree;
  }

  sealed(opts: { status?: "pending" | "posted" } = {}): SealedEpoch[] {
    const rows = this.db.prepare(
      `SELECT c.epoch, c.payout_root, c.status, c.tx_hash, c.attempts, c.last_error, e.root, e.first_receipt, e.last_receipt, r.hash AS last_hash
       FROM chain_epochs c JOIN epochs e ON e.id = c.epoch LEFT JOIN receipts r ON r.id = e.last_receipt
       WHERE (? IS NULL OR c.status = ?) ORDER BY c.epoch`,
    ).all(opts.status ?? null, opts.status ?? null) as { epoch: number; payout_root: Hex; status: "pending" | "posted"; tx_hash: Hex | null; attempts: number; last_error: string | null; root: Hex; first_receipt: number; last_receipt: number; last_hash: Hex | null }[];
    return rows.map((r) => ({
      epoch: r.epoch, receiptsRoot: r.root, firstReceipt: r.first_receipt, lastReceipt: r.last_receipt,
      payoutRoot: r.payout_root, status: r.status, txHash: r.tx_hash, attempts: r.attempts, lastError: r.last_error,
      lastReceiptHash: r.last_hash ?? ZERO_HASH,
    }));
  }

  /** Sealed epoch `epoch`'s batch for data availability: every receipt's stored body, signature and token ids. */
  epochBatch(epoch: number, node: Address): EpochBatch {
    const e = this.db.prepare("SELECT first_receipt, last_receipt FROM epochs WHERE id = ?").get(epoch) as { first_receipt: number; last_receipt: number } | undefined;
    if (!e) throw oerr("LEDGER_NOT_FOUND", `no epoch ${epoch}`, { epoch });
    const rows = this.db.prepare(
      "SELECT r.body, r.signature, t.prompt, t.output FROM receipts r JOIN receipt_tokens t ON t.receipt_id = r.id WHERE r.id BETWEEN ? AND ? ORDER BY r.id",
    ).all(e.first_receipt, e.last_receipt) as { body: string; signature: Hex; prompt: Buffer; output: Buffer }[];
    const entries = rows.map((r) => ({ body: r.body, signature: r.signature, prompt: fromTokenBlob(r.prompt), output: fromTokenBlob(r.output) }));
    return { node, epoch, firstReceipt: e.first_receipt, lastReceipt: e.last_receipt, entries };
  }

  markPosted(epoch: number, txHash: Hex | null): void {
    this.db.prepare("UPDATE chain_epochs SET status = 'posted', tx_hash = ?, posted_at = ?, last_error = NULL WHERE epoch = ?").run(txHash, this.now(), epoch);
  }

  markAttemptFailed(epoch: number, error: string): void {
    this.db.prepare("UPDATE chain_epochs SET attempts = attempts + 1, last_error = ? WHERE epoch = ?").run(error.slice(0, 400), epoch);
  }

  tree(epoch: number): PayoutTree {
    const r = this.db.prepare("SELECT entries FROM chain_epochs WHERE epoch = ?").get(epoch) as { entries: string } | undefined;
    if (!r) throw oerr("CLAIM_NOT_FOUND", `epoch ${epoch} has no payout tree`);
    const entries = (JSON.parse(r.entries) as { kind: PayoutKind; account: Address; cumulative: string }[]).map((e) => ({ kind: e.kind, account: e.account, cumulative: BigInt(e.cumulative) }));
    return buildPayoutTree(entries);
  }

  /**
   * The account's leaf of `kind` in the latest posted epoch (or in `epoch`), with its proof.
   * CLAIM_NOT_FOUND when no posted epoch holds one.
   */
  claimProof(account: Address, kind: PayoutKind = EARNINGS, epoch?: number): ClaimProof {
    const posted = this.sealed({ status: "posted" }).filter((e) => epoch === undefined || e.epoch === epoch);
    const last = posted[posted.length - 1];
    if (!last) throw oerr("CLAIM_NOT_FOUND", epoch === undefined ? "no epoch has been posted yet" : `epoch ${epoch} is not posted`);
    const tree = this.tree(last.epoch);
    const i = tree.entries.findIndex((e) => e.kind === kind && e.account === getAddress(account));
    if (i < 0) throw oerr("CLAIM_NOT_FOUND", `${account} has no ${kind === EARNINGS ? "earnings" : "committed spend"} in epoch ${last.epoch}`, { epoch: last.epoch });
    return { epoch: last.epoch, payoutRoot: last.payoutRoot, account: tree.entries[i]!.account, kind, cumulative: tree.entries[i]!.cumulative, proof: tree.proofs[i]! };
  }
}

/**
 * `due` (ordered by time) with each version of one time after those of its parents of the same time; a
 * cycle of merges (two models re-termed to name each other at once) keeps its order.
 */
function parentsFirst(due: PendingTerms[]): PendingTerms[] {
  const out: PendingTerms[] = [];
  for (let i = 0; i < due.length;) {
    let j = i;
    while (j < due.length && due[j]!.fromMs === due[i]!.fromMs) j++;
    const group = due.slice(i, j);
    const byModel = new Map(group.map((p) => [p.model, p]));
    const placed = new Set<PendingTerms>();
    const visiting = new Set<PendingTerms>();
    const place = (p: PendingTerms): void => {
      if (placed.has(p) || visiting.has(p)) return;
      visiting.add(p);
      for (const parent of p.input?.parents ?? []) {
        const q = byModel.get(parent.model);
        if (q) place(q);
      }
      visiting.delete(p);
      placed.add(p);
      out.push(p);
    };
    for (const p of group) place(p);
    i = j;
  }
  return out;
}
