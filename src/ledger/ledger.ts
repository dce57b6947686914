/**
 * The node's ledger: registry, Datanets, accounts, and the request flow
 * reserve → settle (or release) that turns each inference into a signed, chained receipt and
 * credits every split line, in one SQLite transaction. One process owns a ledger file.
 */
import type { Address, Hex } from "viem";
import { checkpointDigest, type Checkpoint, type SignedCheckpoint } from "../attribution/checkpoints.js";
import { nodeSigner, type NodeSigner } from "../attribution/signing.js";
import type { SamplingParams } from "../engine/sampling.js";
import { matchedTokens, splitFee, validatePolicy, worstCaseFee } from "../attribution/fees.js";
import { merkleProof, merkleRoot, ZERO_HASH } from "../attribution/merkle.js";
import {
  buildReceipt, receiptDigest, receiptDomain, receiptFromJSON, receiptToJSON, receiptTypedData,
  type Receipt, type ReceiptDomainOptions, type ReceiptFinish,
} from "../attribution/receipts.js";
import type { FeePolicy, SpanEvidence, SpanMatch } from "../attribution/types.js";
import { oerr } from "../errors.js";
import { Accounts, type AgentAccount } from "./accounts.js";
import { ChainBook } from "./chain-book.js";
import { auditBalances, verifyChain, type BalanceAudit, type ChainReport } from "./audit.js";
import type { ApprovalCommittee } from "./datanet-committee.js";
import { Datanets, type CommitteeChange, type ContributionInput, type DatanetRecord, type DatanetVersion, type RecordDecision, type VersionRecord } from "./datanets.js";
import { big, checkName, conflict, money, nonNegative, notFound, openDb, type Db } from "./db.js";
import { Events, type StoredEvent } from "./events.js";
import { ApiKeys } from "./keys.js";
import { Models, type ModelInfo, type RegisterModelInput } from "./models.js";
import { fromTokenBlob, tokenBlob } from "./token-blob.js";

export interface LedgerOptions {
  /** SQLite file (created if absent). */
  path: string;
  /** The node's secp256k1 private key: signs receipts; its address is the receipt's `node`. */
  nodeKey: Hex;
  policy: FeePolicy;
  /** The protocol treasury's party id. */
  treasury: string;
  /** The operator's party id; default the node address. */
  operator?: string;
  chainId?: number;
  verifyingContract?: Address;
  /** Minimum agent stake to call a paid model (worst-case fee > 0). Default 0. */
  minAgentStake?: bigint;
  /** Unix milliseconds; injectable for tests. */
  now?: () => number;
  /**
   * The money lives on a chain (docs/chain.md): each epoch close seals a payout tree to post, and
   * payouts are claims on chain (the ledger's own payout is refused).
   */
  onChain?: boolean;
}

export interface SettleInput {
  baseModel: string;
  adapters?: { id: string; weightPpm: number }[];
  promptTokens: readonly number[];
  /** The tokens actually generated (a cancelled or failed request is charged for these). */
  outputTokens: readonly number[];
  sampling: SamplingParams;
  finish: ReceiptFinish;
  /** Span evidence rows for the receipt (each must name a record of that version by its contributor). */
  spans?: SpanEvidence[];
  /**
   * Matched output tokens per (Datanet version, contributor) for the data split, e.g. the span
   * module's spanTokenCredits(); default matchedTokens(spans). Each needs a span row behind it.
   */
  spanCredits?: SpanMatch[];
}

export interface StoredReceipt {
  receipt: Receipt;
  hash: Hex;
  signature: Hex;
  signer: Address;
  epoch: number | null;
}

export interface EpochInfo {
  id: number;
  firstReceipt: number;
  lastReceipt: number;
  count: number;
  root: Hex;
  closedAt: number;
  /** The checkpoint signed when the epoch closed (null for epochs closed before schema 3). */
  checkpoint: SignedCheckpoint | null;
}

export interface ReceiptWithProof extends StoredReceipt {
  json: string;
  typedData: Omit<ReturnType<typeof receiptTypedData>, "message">;
  /** Null until the receipt's epoch is closed. */
  proof: { epoch: number; root: Hex; index: number; proof: Hex[] } | null;
}

interface ReceiptRow { id: number; hash: Hex; signature: Hex; signer: Address; body: string; epoch: number | null }

export class Ledger {
  readonly db: Db;
  readonly nodeAddress: Address;
  readonly domainOptions: ReceiptDomainOptions;
  readonly models: Models;
  readonly datanets: Datanets;
  readonly accounts: Accounts;
  readonly events: Events;
  readonly keys: ApiKeys;
  /** What a node on a chain keeps beside the book (chain-book.ts); empty without --chain. */
  readonly chain: ChainBook;
  private readonly signer: NodeSigner;
  private readonly policy: FeePolicy;
  private readonly treasury: string;
  private readonly operator: string;
  private readonly minAgentStake: bigint;
  private readonly now: () => number;
  readonly onChain: boolean;

  constructor(opts: LedgerOptions) {
    validatePolicy(opts.policy);
    checkName("treasury", opts.treasury);
    this.signer = nodeSigner(opts.nodeKey);
    this.nodeAddress = this.signer.address;
    this.policy = { ...opts.policy };
    this.treasury = opts.treasury;
    this.operator = opts.operator ?? this.nodeAddress;
    checkName("operator", this.operator);
    this.minAgentStake = opts.minAgentStake ?? 0n;
    nonNegative("minAgentStake", this.minAgentStake);
    this.now = opts.now ?? Date.now;
    this.onChain = opts.onChain ?? false;
    this.domainOptions = { chainId: opts.chainId ?? 1, ...(opts.verifyingContract ? { verifyingContract: opts.verifyingContract } : {}) };
    receiptDomain(this.domainOptions);
    this.db = openDb(opts.path, this.now());
    try {
      this.pinDomain();
    } catch (e) {
      this.db.close();
      throw e;
    }
    this.datanets = new Datanets(this.db, this.now);
    this.models = new Models(this.db, this.datanets, this.now);
    this.events = new Events(this.db, this.signer, this.domainOptions, this.now);
    this.keys = new ApiKeys(this.db, this.now);
    this.accounts = new Accounts(this.db, this.events, this.now, [this.treasury, this.operator]);
    this.chain = new ChainBook(this.db, this.accounts, this.now);
    this.events.adoptLegacyDeposits();
  }

  close(): void {
    this.db.close();
  }

  /** The ledger's clock (Unix ms): receipt and event times. */
  clock(): number {
    return this.now();
  }

  // ---- registry, Datanets, accounts (thin delegations; see models.ts, datanets.ts, accounts.ts)

  registerModel(input: RegisterModelInput, opts: { replace?: boolean } = {}): ModelInfo { return this.models.register(input, opts); }
  getModel(id: string): ModelInfo { return this.models.get(id); }
  listModels(): ModelInfo[] { return this.models.list(); }
  createDatanet(id: string, owner: string): void { this.datanets.create(id, owner); }
  contribute(datanet: string, c: ContributionInput): DatanetRecord { return this.datanets.contribute(datanet, c); }
  /** The owner's decision, or an approver's vote (src/ledger/datanet-committee.ts). */
  approveRecord(datanet: string, recordId: number, by: string): RecordDecision { return this.datanets.decide(datanet, recordId, by, "approved"); }
  rejectRecord(datanet: string, recordId: number, by: string): RecordDecision { return this.datanets.decide(datanet, recordId, by, "rejected"); }
  setApprovers(datanet: string, by: string, approvers: readonly string[], threshold: number): CommitteeChange { return this.datanets.setApprovers(datanet, by, approvers, threshold); }
  getApprovers(datanet: string): ApprovalCommittee { return this.datanets.approvers(datanet); }
  publishVersion(datanet: string, by: string): DatanetVersion { return this.datanets.publish(datanet, by); }
  listVersions(datanet: string): DatanetVersion[] { return this.datanets.versions(datanet); }
  versionRecords(datanet: string, version: number): VersionRecord[] { return this.datanets.versionRecords(datanet, version); }
  /** An account without a key (the built-in anonymous agent, tests); createAccount gives one a key. */
  createAgent(id: string): AgentAccount { return this.accounts.createAgent(id); }
  /** A new account and its API key (shown this once; only its hash is kept). */
  createAccount(id: string): { account: AgentAccount; apiKey: string } {
    return this.db.transaction(() => ({ account: this.accounts.createAgent(id), apiKey: this.keys.issue(id) })).immediate();
  }
  /** A fresh API key for an existing account; its earlier keys stop working. */
  rotateApiKey(id: string): string { this.accounts.agent(id); return this.keys.issue(id); }
  /** The account a live API key belongs to, or undefined. */
  resolveApiKey(key: string): string | undefined { return this.keys.resolve(key); }
  getAgent(id: string): AgentAccount { return this.accounts.agent(id); }
  deposit(agent: string, amount: bigint): AgentAccount { this.offChainOnly("deposits"); return this.accounts.deposit(agent, amount); }
  withdraw(agent: string, amount: bigint): AgentAccount { this.offChainOnly("withdrawals"); return this.accounts.withdraw(agent, amount); }
  agentStake(agent: string, amount: bigint): AgentAccount { this.offChainOnly("agent stakes"); return this.accounts.agentStake(agent, amount); }
  agentUnstake(agent: string, amount: bigint): AgentAccount { this.offChainOnly("agent stakes"); return this.accounts.agentUnstake(agent, amount); }
  stake(staker: string, model: string, amount: bigint): bigint { this.offChainOnly("stakes"); return this.accounts.stake(staker, model, amount); }
  unstake(staker: string, model: string, amount: bigint): bigint { this.offChainOnly("stakes"); return this.accounts.unstake(staker, model, amount); }
  payout(party: string, amount: bigint): bigint { this.offChainOnly("payouts of earnings"); return this.accounts.payout(party, amount); }

  /**
   * On a chain the money moves there only (the chain book mirrors it): a node that credited a
   * deposit on its own word could pay claims out of other agents' deposits.
   */
  offChainOnly(what: string): void {
    if (this.onChain) throw oerr("LEDGER_CONFLICT", `on a chain, ${what} are transactions on the Settlement contract (openlora chain …), not the node's to record`);
  }
  balanceOf(party: string): bigint { return this.accounts.balanceOf(party); }
  balances(): { party: string; amount: bigint }[] { return this.accounts.balances(); }
  /** The operator's party id (credited the operator lines; `payout` of its earnings goes through the operator credential). */
  get operatorParty(): string { return this.operator; }
  get treasuryParty(): string { return this.treasury; }

  // ---- request flow

  /**
   * The worst case a request can cost: reserve this at admission. On a chain a model's prices are
   * the highest of its listing and of the terms waiting for their time (the receipt may come after).
   */
  worstCaseFee(q: { baseModel: string; adapters?: string[]; tokensIn: number; maxTokens: number }): bigint {
    const models = [q.baseModel, ...(q.adapters ?? [])].map((id) => {
      const waiting = this.onChain ? this.chain.pendingTerms(id).flatMap((p) => (p.input ? [p.input] : [])) : [];
      const all: { priceIn: bigint; priceOut: bigint }[] = waiting.length > 0 && !this.models.has(id) ? waiting : [this.models.get(id), ...waiting];
      const max = (f: (m: { priceIn: bigint; priceOut: bigint }) => bigint) => all.map(f).reduce((a, b) => (b > a ? b : a));
      return { priceIn: max((m) => m.priceIn), priceOut: max((m) => m.priceOut) };
    });
    return worstCaseFee(q.tokensIn, q.maxTokens, models);
  }

  /**
   * The fee policy a receipt of time `ms` splits by: on a chain, the node's policy declared there and in
   * force then (RegistryCourt.proveBadPolicy); before its first declaration, and off chain, the configured one.
   */
  policyAt(ms: number): FeePolicy {
    return (this.onChain ? this.chain.policyAt(ms)?.policy : undefined) ?? this.policy;
  }

  /** The policy this ledger was opened with (a chain node declares it when it has declared none). */
  get configuredPolicy(): FeePolicy {
    return { ...this.policy };
  }

  /**
   * On a chain: lists every version of terms whose time has come (chain-book.ts), oldest first, parents first —
   * a version the node cannot list leaves its model unservable until a later one it can — then
   * mirrors the stake changes whose time has come. Returns the terms it applied, with the reason
   * of each that could not be listed.
   */
  applyChainChanges(nowMs = this.now()): { model: string; version: number; problem: string | null }[] {
    const due = this.chain.dueTerms(nowMs);
    const stakes = this.chain.dueStakes(nowMs);
    if (due.length === 0 && stakes.length === 0) return [];
    return this.db.transaction(() => {
      const applied = due.map((p) => {
        let problem = p.problem;
        const unserved = (p.input?.parents ?? []).map((x) => x.model).filter((m) => this.chain.unservable(m) !== null);
        if (p.input && unserved.length > 0) {
          problem = `its parents ${unserved.join(", ")} are not served: their terms in force cannot be listed by this node`;
        } else if (p.input) {
          try {
            this.models.register(p.input, { replace: true });
          } catch (e) {
            problem = (e as Error).message;
          }
        }
        this.chain.termsApplied(p.model, p.version, problem ?? (p.input ? null : "no listing"));
        return { model: p.model, version: p.version, problem };
      });
      this.chain.applyStakes(stakes);
      return applied;
    }).immediate();
  }

  /**
   * Admission: holds `worstCase` of the agent's balance. PAYMENT_REQUIRED without an agent
   * account, STAKE_REQUIRED below the minimum stake (paid requests only), INSUFFICIENT_BALANCE
   * when the balance cannot cover the worst case. Nothing is written when it throws.
   */
  reserve(agent: string, worstCase: bigint): number {
    nonNegative("worst-case fee", worstCase);
    return this.db.transaction(() => {
      const a = this.accounts.findAgent(agent);
      if (!a) throw oerr("PAYMENT_REQUIRED", `no agent account ${agent} on this node`, { agent });
      if (worstCase > 0n && a.stake < this.minAgentStake) {
        throw oerr("STAKE_REQUIRED", `agent ${agent} stakes ${a.stake}, the minimum is ${this.minAgentStake}`, { agent, stake: a.stake.toString(), minimum: this.minAgentStake.toString() });
      }
      if (a.balance < worstCase) {
        throw oerr("INSUFFICIENT_BALANCE", `agent ${agent} has ${a.balance} available, the request may cost ${worstCase}`, { agent, balance: a.balance.toString(), worstCase: worstCase.toString() });
      }
      this.db.prepare("UPDATE agents SET balance = ?, reserved = ? WHERE id = ?").run(money(a.balance - worstCase), money(a.reserved + worstCase), agent);
      const info = this.db.prepare("INSERT INTO reservations (agent, amount, status, created) VALUES (?, ?, 'active', ?)").run(agent, money(worstCase), this.now());
      return Number(info.lastInsertRowid);
    }).immediate();
  }

  /** A request that produced no output token: the reservation is returned, nothing is charged. */
  release(reservationId: number): void {
    this.db.transaction(() => {
      const r = this.activeReservation(reservationId);
      this.returnReservation(r.agent, r.amount, 0n);
      this.db.prepare("UPDATE reservations SET status = 'released' WHERE id = ?").run(reservationId);
    }).immediate();
  }

  /** Reservations not yet settled or released (after a crash: requests that never got a receipt). */
  activeReservations(): { id: number; agent: string; amount: bigint; created: number }[] {
    return (this.db.prepare("SELECT id, agent, amount, created FROM reservations WHERE status = 'active' ORDER BY id").all() as { id: number; agent: string; amount: string; created: number }[])
      .map((r) => ({ id: r.id, agent: r.agent, amount: big(r.amount), created: r.created }));
  }

  /** At startup: no request survives a restart, so every reservation still held is released (no receipt, no charge). */
  releaseAllActive(): number {
    const ids = this.activeReservations().map((r) => r.id);
    for (const id of ids) this.release(id);
    return ids.length;
  }

  /**
   * Charges the actual fee: splits it, signs the receipt chained to the previous one, and in one
   * transaction stores it, debits the agent, returns the rest of the reservation and credits
   * every line. If it throws, nothing is written and the reservation stays active: release it
   * (no output was sent) or forfeit it (output was sent).
   */
  async settle(reservationId: number, input: SettleInput): Promise<StoredReceipt> {
    // One time for the terms and the receipt: a receipt is judged by the terms in force at its time.
    const time = this.now();
    const adapters = input.adapters ?? [];
    if (this.onChain) {
      this.chain.checkFresh("receipt", time);
      this.applyChainChanges(time);
      for (const id of [input.baseModel, ...adapters.map((a) => a.id)]) this.chain.checkServable(id);
    }
    if (new Set(adapters.map((a) => a.id)).size !== adapters.length) throw oerr("INVALID_ARGUMENT", "a request names an adapter twice");
    const base = this.models.use(input.baseModel);
    if (base.info.kind !== "base") throw oerr("INVALID_ARGUMENT", `${input.baseModel} is not a base model`);
    const used = adapters.map((a) => {
      const m = this.models.use(a.id);
      if (m.info.baseModel !== input.baseModel) throw oerr("INVALID_ARGUMENT", `adapter ${a.id} is not an adapter of ${input.baseModel}`);
      return m;
    });
    const spans = input.spans ?? [];
    this.checkSpans(spans);
    const credits = input.spanCredits ?? matchedTokens(spans);
    for (const c of credits) {
      if (!spans.some((s) => s.datanet === c.datanet && s.contributor === c.contributor) || c.matchedTokens > input.outputTokens.length) {
        throw oerr("INVALID_ARGUMENT", `span credit of ${c.matchedTokens} tokens to ${c.contributor} in ${c.datanet} has no span evidence behind it`);
      }
    }
    const splitInput = {
      tokensIn: input.promptTokens.length,
      tokensOut: input.outputTokens.length,
      models: [base, ...used],
      spans: credits,
      policy: this.policyAt(time),
      treasury: this.treasury,
      operator: this.operator,
    };
    const split = splitFee(splitInput);
    return this.db.transaction(() => {
      const res = this.activeReservation(reservationId);
      if (split.total > res.amount) {
        throw oerr("LEDGER_FEE_EXCEEDS_RESERVATION", `fee ${split.total} exceeds the ${res.amount} reserved`, { reservationId, fee: split.total.toString(), reserved: res.amount.toString() });
      }
      const head = this.head();
      const receipt = buildReceipt({
        id: head.id + 1,
        time,
        node: this.nodeAddress,
        agent: res.agent,
        promptTokens: input.promptTokens,
        outputTokens: input.outputTokens,
        base: { id: base.model, contentHash: base.info.contentHash },
        adapters: adapters.map((a, i) => ({ id: a.id, contentHash: used[i]!.info.contentHash, weightPpm: a.weightPpm })),
        sampling: input.sampling,
        finish: input.finish,
        split,
        spans,
        credits,
        prevHash: head.hash,
        inputs: splitInput,
      });
      const hash = receiptDigest(receipt, this.domainOptions);
      const signature = this.signer.sign(hash);
      this.db.prepare("INSERT INTO receipts (id, time, agent, fee, hash, prev_hash, signer, signature, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .run(receipt.id, receipt.time, receipt.agent, money(receipt.fee), hash, receipt.prevHash, this.nodeAddress, signature, receiptToJSON(receipt));
      this.db.prepare("INSERT INTO receipt_tokens (receipt_id, prompt, output) VALUES (?, ?, ?)").run(receipt.id, tokenBlob(input.promptTokens), tokenBlob(input.outputTokens));
      const line = this.db.prepare("INSERT INTO receipt_lines (receipt_id, idx, party, role, model, datanet, amount) VALUES (?, ?, ?, ?, ?, ?, ?)");
      receipt.lines.forEach((l, i) => {
        line.run(receipt.id, i, l.party, l.role, l.model, l.datanet ?? null, money(l.amount));
        this.accounts.credit(l.party, l.amount);
      });
      this.returnReservation(res.agent, res.amount, receipt.fee);
      this.db.prepare("UPDATE reservations SET status = 'settled', receipt_id = ? WHERE id = ?").run(receipt.id, reservationId);
      return { receipt, hash, signature, signer: this.nodeAddress, epoch: null };
    }).immediate();
  }

  /**
   * A request whose output reached the client but whose settlement failed: the whole reservation
   * is charged (never released for free), credited to the treasury, and recorded as a signed
   * `forfeit` event naming the reservation and `reason` (an error code). A free request (nothing
   * reserved) is marked forfeited without an event. Returns the event, if any.
   */
  forfeit(reservationId: number, reason: string): StoredEvent | null {
    return this.db.transaction(() => {
      const r = this.activeReservation(reservationId);
      let stored: StoredEvent | null = null;
      if (r.amount > 0n) {
        stored = this.events.append("forfeit", r.agent, r.amount, { subject: this.treasury, memo: `reservation ${reservationId}: ${reason.slice(0, 64)}` });
        this.accounts.credit(this.treasury, r.amount);
      }
      this.returnReservation(r.agent, r.amount, r.amount);
      this.db.prepare("UPDATE reservations SET status = 'forfeited', event_id = ? WHERE id = ?").run(stored?.event.id ?? null, reservationId);
      return stored;
    }).immediate();
  }

  /** The prompt and output token ids a receipt's hashes commit to (for replay). */
  receiptTokens(id: number): { prompt: number[]; output: number[] } {
    const row = this.db.prepare("SELECT prompt, output FROM receipt_tokens WHERE receipt_id = ?").get(id) as { prompt: Buffer; output: Buffer } | undefined;
    if (!row) throw oerr("LEDGER_NOT_FOUND", `no tokens stored for receipt ${id}`, { id });
    return { prompt: fromTokenBlob(row.prompt), output: fromTokenBlob(row.output) };
  }

  getReceipt(id: number): StoredReceipt {
    const row = this.db.prepare("SELECT id, hash, signature, signer, body, epoch FROM receipts WHERE id = ?").get(id) as ReceiptRow | undefined;
    if (!row) notFound("receipt", id);
    return { receipt: receiptFromJSON(row.body), hash: row.hash, signature: row.signature, signer: row.signer, epoch: row.epoch };
  }

  /** The last receipt's id and hash; (0, 0x00…0) before the first. */
  head(): { id: number; hash: Hex } {
    const row = this.db.prepare("SELECT id, hash FROM receipts ORDER BY id DESC LIMIT 1").get() as { id: number; hash: Hex } | undefined;
    return row ?? { id: 0, hash: ZERO_HASH };
  }

  /**
   * Groups every receipt since the last epoch under one Merkle root and signs a checkpoint of the
   * record at that moment (receipt head = the epoch's last receipt, event head, epoch root), stored
   * with the epoch; null when there are no new receipts.
   */
  /** Receipts not yet in an epoch. */
  unsealedReceipts(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM receipts WHERE epoch IS NULL").get() as { n: number }).n;
  }

  /**
   * Closes the epoch of every receipt not yet in one. On a chain, the same transaction seals the
   * epoch's payout tree (chain-book.ts), so the tree states exactly the book at the close.
   */
  closeEpoch(opts: { allowEmpty?: boolean } = {}): EpochInfo | null {
    return this.db.transaction(() => {
      const rows = this.db.prepare("SELECT id, hash FROM receipts WHERE epoch IS NULL ORDER BY id").all() as { id: number; hash: Hex }[];
      if (rows.length === 0 && !opts.allowEmpty) return null;
      const last = this.db.prepare("SELECT MAX(id) AS id FROM epochs").get() as { id: number | null };
      const id = (last.id ?? 0) + 1;
      const root = merkleRoot(rows.map((r) => r.hash));
      const closedAt = this.now();
      // An empty epoch (a chain node posts one so waiting withdrawals see a current root) covers
      // the receipts (head + 1 .. head): none.
      const head = this.head();
      const first = rows.length ? rows[0]!.id : head.id + 1;
      const lastReceipt = rows.length ? rows[rows.length - 1]!.id : head.id;
      const checkpoint = this.signCheckpoint({ time: closedAt, receipts: lastReceipt, receiptsHead: rows.length ? rows[rows.length - 1]!.hash : head.hash, epoch: id, epochRoot: root });
      this.db.prepare("INSERT INTO epochs (id, first_receipt, last_receipt, count, root, closed_at, checkpoint, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .run(id, first, lastReceipt, rows.length, root, closedAt, JSON.stringify(checkpoint.checkpoint), checkpoint.signature);
      this.db.prepare("UPDATE receipts SET epoch = ? WHERE epoch IS NULL AND id <= ?").run(id, lastReceipt);
      const epoch: EpochInfo = { id, firstReceipt: first, lastReceipt, count: rows.length, root, closedAt, checkpoint };
      if (this.onChain) this.chain.seal(id);
      return epoch;
    }).immediate();
  }

  /** A checkpoint of the record as it stands now, signed (not stored): see src/attribution/checkpoints.ts. */
  checkpoint(): SignedCheckpoint {
    const receipts = this.head();
    const epoch = this.db.prepare("SELECT id, root FROM epochs ORDER BY id DESC LIMIT 1").get() as { id: number; root: Hex } | undefined;
    return this.signCheckpoint({ time: this.now(), receipts: receipts.id, receiptsHead: receipts.hash, epoch: epoch?.id ?? 0, epochRoot: epoch?.root ?? ZERO_HASH });
  }

  private signCheckpoint(c: Omit<Checkpoint, "node" | "events" | "eventsHead">): SignedCheckpoint {
    const events = this.events.head();
    const checkpoint: Checkpoint = { node: this.nodeAddress, ...c, events: events.id, eventsHead: events.hash };
    return { checkpoint, signature: this.signer.sign(checkpointDigest(checkpoint, this.domainOptions)), domain: this.domainOptions };
  }

  epochs(): EpochInfo[] {
    const rows = this.db.prepare("SELECT * FROM epochs ORDER BY id").all() as { id: number; first_receipt: number; last_receipt: number; count: number; root: Hex; closed_at: number; checkpoint: string | null; signature: Hex | null }[];
    return rows.map((e) => ({
      id: e.id, firstReceipt: e.first_receipt, lastReceipt: e.last_receipt, count: e.count, root: e.root, closedAt: e.closed_at,
      checkpoint: e.checkpoint && e.signature ? { checkpoint: JSON.parse(e.checkpoint) as Checkpoint, signature: e.signature, domain: this.domainOptions } : null,
    }));
  }

  /** Everything a third party needs to check one receipt: signature inputs and, once its epoch is closed, the Merkle proof. */
  receiptWithProof(id: number): ReceiptWithProof {
    const stored = this.getReceipt(id);
    const json = receiptToJSON(stored.receipt);
    const { domain, types, primaryType } = receiptTypedData(stored.receipt, this.domainOptions);
    const typedData = { domain, types, primaryType };
    if (stored.epoch === null) return { ...stored, json, typedData, proof: null };
    const e = this.db.prepare("SELECT root FROM epochs WHERE id = ?").get(stored.epoch) as { root: Hex };
    const hashes = (this.db.prepare("SELECT id, hash FROM receipts WHERE epoch = ? ORDER BY id").all(stored.epoch) as { id: number; hash: Hex }[]);
    const index = hashes.findIndex((h) => h.id === id);
    return { ...stored, json, typedData, proof: { epoch: stored.epoch, root: e.root, index, proof: merkleProof(hashes.map((h) => h.hash), index) } };
  }

  /**
   * Checks every receipt's body, hash, signature and prevHash link, its stored lines, and every
   * epoch root. Signers must be among `signers` (default: the node keys this file has been opened with).
   */
  verifyChain(signers: readonly Address[] = this.nodeAddresses()): Promise<ChainReport> {
    return verifyChain(this.db, this.domainOptions, signers);
  }

  /** Every node address that has signed (or may sign) receipts in this file, oldest first. */
  nodeAddresses(): Address[] {
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'node_addresses'").get() as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as Address[]) : [];
  }

  /** Checks every party's balance against its split lines and every agent's against deposits, charges and reservations. */
  auditBalances(): BalanceAudit {
    return auditBalances(this.db);
  }

  private activeReservation(id: number): { agent: string; amount: bigint } {
    const r = this.db.prepare("SELECT agent, amount, status FROM reservations WHERE id = ?").get(id) as { agent: string; amount: string; status: string } | undefined;
    if (!r) notFound("reservation", id);
    if (r.status !== "active") conflict(`reservation ${id} is already ${r.status}`, { reservationId: id, status: r.status });
    return { agent: r.agent, amount: big(r.amount) };
  }

  /** Gives back `amount − charged` of a reservation to the agent's available balance. */
  private returnReservation(agent: string, amount: bigint, charged: bigint): void {
    const a = this.accounts.agent(agent);
    this.db.prepare("UPDATE agents SET balance = ?, reserved = ? WHERE id = ?").run(money(a.balance + amount - charged), money(a.reserved - amount), agent);
  }

  /** Span evidence must point at a record of that Datanet version, by its contributor. */
  private checkSpans(spans: SpanEvidence[]): void {
    const stmt = this.db.prepare(
      `SELECT r.contributor FROM datanet_version_records v JOIN datanet_records r ON r.id = v.record_id
       WHERE v.datanet_id = ? AND v.version = ? AND v.record_id = ?`,
    );
    for (const s of spans) {
      const at = s.datanet.lastIndexOf("@");
      const version = Number(s.datanet.slice(at + 1));
      const row = at > 0 && Number.isSafeInteger(version) ? stmt.get(s.datanet.slice(0, at), version, s.recordId) as { contributor: string } | undefined : undefined;
      if (!row || row.contributor !== s.contributor) {
        throw oerr("INVALID_ARGUMENT", `span evidence names record ${s.recordId} of ${s.datanet} by ${s.contributor}, which that version does not hold`);
      }
    }
  }

  /** The EIP-712 domain is part of every receipt hash: a ledger file keeps the one it started with. */
  private pinDomain(): void {
    const want = JSON.stringify(receiptDomain(this.domainOptions));
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'eip712_domain'").get() as { value: string } | undefined;
    if (!row) this.db.prepare("INSERT INTO meta (key, value) VALUES ('eip712_domain', ?)").run(want);
    else if (row.value !== want) conflict(`this ledger was created with EIP-712 domain ${row.value}, not ${want}`);
    const known = this.nodeAddresses();
    if (!known.includes(this.nodeAddress)) {
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('node_addresses', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .run(JSON.stringify([...known, this.nodeAddress]));
    }
  }
}
