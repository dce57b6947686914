/**
 * A node on a chain: at start, checks the chain and the contracts, registers the node as an
 * operator if it is not one, and catches up with the chain's logs; then follows them, closes epochs
 * on its schedule (an interval, or a number of receipts) and posts them. Serving never waits on the
 * chain: an RPC outage only delays following and posting, which retry with backoff (0.5 s doubling
 * to 30 s) and resume where they stopped.
 */
import { getAddress, type Address } from "viem";
import { oerr } from "../errors.js";
import type { FeePolicy } from "../attribution/types.js";
import type { Ledger } from "../ledger/ledger.js";
import { IRegistryAbi, SettlementAbi } from "./abi.js";
import { connectChain, type ChainClients } from "./client.js";
import type { Deployment } from "./deploy.js";
import { ChainFollower } from "./follower.js";
import { EpochPoster } from "./poster.js";
import { EigenDaProxy } from "../da/eigenda.js";

export interface ChainNodeOptions {
  url: string;
  deployment: Deployment;
  /** The node key: signs receipts, sends the epoch posts (its address is the operator). */
  nodeKey: `0x${string}`;
  confirmations?: number;
  /** Close an epoch this often (ms) when it has receipts; default 60 s. */
  epochIntervalMs?: number;
  /** …or as soon as this many receipts are unsealed; default none. */
  epochReceipts?: number;
  /** How often the chain is read (ms); default 200 locally, 4000 otherwise. */
  pollMs?: number;
  /** The operator URL registered on chain at first start. */
  operatorUrl?: string;
  /** Publish epoch batches through this EigenDA proxy instead of calldata. */
  eigenDaProxy?: string;
  log?: { info(o: object, msg: string): void; warn(o: object, msg: string): void; error(o: object, msg: string): void };
  now?: () => number;
}

export interface ChainStatus {
  chainId: number;
  operator: Address;
  contracts: Deployment;
  followedBlock: string | null;
  lastEpochPosted: number | null;
  pendingEpochs: number;
  lastError: string | null;
  /** Rounds that failed since start (each retried with backoff). */
  failedRounds: number;
  /** The first epoch a validator dispute found faulty (the node then admits nothing: OPERATOR_JAILED); null when none. */
  jailedFrom: number | null;
  /** The Registry's delay (s) from a terms change to its effect. */
  termsDelay: string;
  /** Until when (ISO) the node admits requests on its current view of the chain; null without a terms delay. */
  admitsUntil: string | null;
  /** Terms versions seen on chain and not yet in force. */
  pendingTerms: number;
  /** Stake changes seen on chain whose `from` has not come yet. */
  pendingStakes: number;
  /** The fee policy the node declared on chain and its receipts split by now (version, from as ISO), and the declared ones still to come. */
  feePolicy: { version: number; from: string; policy: FeePolicy } | null;
  pendingFeePolicies: { version: number; from: string; policy: FeePolicy }[];
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;

export class ChainNode {
  readonly clients: ChainClients;
  private readonly follower: ChainFollower;
  private readonly poster: EpochPoster;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private round: Promise<void> = Promise.resolve();
  private backoffMs = 0;
  private nextTryAt = 0;
  private lastClose: number;
  private lastError: string | null = null;
  private failedRounds = 0;
  private lastPosted: number | null = null;

  private constructor(private readonly opts: ChainNodeOptions, clients: ChainClients, private readonly ledger: Ledger, private readonly termsDelay: bigint) {
    this.clients = clients;
    const warn = (msg: string, details?: Record<string, unknown>) => opts.log?.warn(details ?? {}, msg);
    this.follower = new ChainFollower(clients, opts.deployment, ledger, { confirmations: opts.confirmations ?? 0, termsDelay, warn });
    this.poster = new EpochPoster(clients, opts.deployment, ledger, opts.eigenDaProxy ? new EigenDaProxy(opts.eigenDaProxy) : undefined);
    this.lastClose = (opts.now ?? Date.now)();
  }

  /**
   * Connects (CHAIN_UNAVAILABLE, CHAIN_ID_MISMATCH, CHAIN_CONTRACT_MISSING at start), registers the
   * operator if needed and applies every log up to now, so the node serves from a current book.
   */
  static async start(opts: ChainNodeOptions, ledger: Ledger): Promise<ChainNode> {
    if (!ledger.onChain) throw oerr("INTERNAL", "the ledger of a chain node must be opened with onChain");
    const clients = await connectChain(opts.url, opts.nodeKey, opts.deployment.chainId);
    if (getAddress(clients.account.address) !== getAddress(ledger.nodeAddress)) throw oerr("INTERNAL", "the chain key is not the ledger's node key");
    for (const [name, address] of Object.entries({ registry: opts.deployment.registry, settlement: opts.deployment.settlement, licence: opts.deployment.licence })) {
      const code = await clients.public.getCode({ address });
      if (!code || code === "0x") throw oerr("CHAIN_CONTRACT_MISSING", `no contract at the ${name} address ${address} on chain ${opts.deployment.chainId}`, { name, address });
    }
    let termsDelay: bigint;
    try {
      termsDelay = await clients.public.readContract({ address: opts.deployment.registry, abi: IRegistryAbi, functionName: "termsDelay" });
    } catch (e) {
      throw oerr("CHAIN_CONTRACT_MISSING", `the registry at ${opts.deployment.registry} does not answer termsDelay (an older openlora's? deploy again): ${(e as Error).message.split("\n")[0]}`, { address: opts.deployment.registry });
    }
    const node = new ChainNode(opts, clients, ledger, termsDelay);
    await node.ensureOperator();
    await node.ensurePolicy();
    await node.follower.sync();
    await node.readJailed();
    node.lastPosted = await node.poster.lastPosted();
    return node;
  }

  private async readJailed(): Promise<void> {
    if (!this.opts.deployment.validatorCourt) return;
    const j = await this.clients.public.readContract({ address: this.opts.deployment.settlement, abi: SettlementAbi, functionName: "jailedFrom", args: [this.clients.account.address] });
    this.ledger.chain.setJailed(Number(j));
  }

  private async ensureOperator(): Promise<void> {
    const { public: pub, wallet } = this.clients;
    const registry = this.opts.deployment.registry;
    let is: boolean;
    try {
      is = await pub.readContract({ address: registry, abi: IRegistryAbi, functionName: "isOperator", args: [this.clients.account.address] });
    } catch (e) {
      throw oerr("CHAIN_CONTRACT_MISSING", `the registry at ${registry} does not answer isOperator: ${(e as Error).message.split("\n")[0]}`, { address: registry });
    }
    if (is) return;
    const hash = await wallet.writeContract({ address: registry, abi: IRegistryAbi, functionName: "registerOperator", args: [this.opts.operatorUrl ?? ""] });
    const r = await pub.waitForTransactionReceipt({ hash });
    if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `registerOperator was reverted (tx ${hash})`);
    this.opts.log?.info({ operator: this.clients.account.address, tx: hash }, "registered the node as an operator on chain");
  }

  /**
   * A node that never declared a fee policy declares the ledger's (in force at once: version 1), so every
   * receipt it signs from now on splits by a policy anyone can check on chain. Later changes are the
   * operator's (`openlora chain fee-policy`), in force after the terms delay; the follower records each.
   */
  private async ensurePolicy(): Promise<void> {
    const { public: pub, wallet } = this.clients;
    const registry = this.opts.deployment.registry;
    let latest: FeePolicy;
    let version: number;
    try {
      [latest, version] = await pub.readContract({ address: registry, abi: IRegistryAbi, functionName: "policyAt", args: [this.clients.account.address, 2n ** 64n - 1n] });
    } catch (e) {
      throw oerr("CHAIN_CONTRACT_MISSING", `the registry at ${registry} does not answer policyAt (an older openlora's? deploy again): ${(e as Error).message.split("\n")[0]}`, { address: registry });
    }
    const policy = this.ledger.configuredPolicy;
    if (version > 0) {
      if ((Object.keys(policy) as (keyof FeePolicy)[]).some((k) => latest[k] !== policy[k])) {
        this.opts.log?.warn({ declared: latest, version, configured: policy }, "the node's fee policy on chain is not the configured one: receipts split by the chain's; change it with `openlora chain fee-policy`");
      }
      return;
    }
    const hash = await wallet.writeContract({ address: registry, abi: IRegistryAbi, functionName: "setOperatorPolicy", args: [policy] });
    const r = await pub.waitForTransactionReceipt({ hash });
    if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `setOperatorPolicy was reverted (tx ${hash})`);
    this.opts.log?.info({ operator: this.clients.account.address, policy, tx: hash }, "declared the node's fee policy on chain");
  }

  /** Starts the follow / close / post loop. */
  run(): void {
    const poll = this.opts.pollMs ?? (/127\.0\.0\.1|localhost/.test(this.opts.url) ? 200 : 4_000);
    const tick = () => {
      if (this.stopped) return;
      this.round = this.round.then(() => this.step()).finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, poll);
      });
    };
    this.timer = setTimeout(tick, poll);
  }

  /** One round: follow, maybe close an epoch, post what is pending. Errors back off, never throw. */
  async step(): Promise<void> {
    const now = (this.opts.now ?? Date.now)();
    if (now < this.nextTryAt) return;
    try {
      await this.follower.sync();
      await this.readJailed();
      this.maybeClose(now);
      // A failed answer (say, a dispute of an epoch this book does not hold) must not stop posting.
      const answered = await this.poster.answerWithheld().catch((e: unknown) => {
        this.opts.log?.warn({ err: (e as Error).message.split("\n")[0] }, "answering a withheld-batch dispute failed; retrying next round");
        return [] as number[];
      });
      if (answered.length) this.opts.log?.info({ epochs: answered }, "answered withheld-batch disputes: published the batches in calldata");
      const r = await this.poster.postPending();
      for (const e of [...r.posted, ...r.adopted]) this.lastPosted = Math.max(this.lastPosted ?? 0, e);
      if (r.posted.length) this.opts.log?.info({ epochs: r.posted }, "posted epochs on chain");
      this.backoffMs = 0;
      this.lastError = null;
    } catch (e) {
      this.backoffMs = this.backoffMs === 0 ? MIN_BACKOFF_MS : Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
      this.nextTryAt = now + this.backoffMs;
      this.lastError = (e as Error).message.split("\n")[0] ?? String(e);
      this.failedRounds++;
      this.opts.log?.warn({ err: this.lastError, retryInMs: this.backoffMs }, "chain round failed; serving goes on, retrying");
    }
  }

  /**
   * Closes an epoch when its interval passed with receipts (or as many receipts as asked), and an
   * empty one when the interval passed with a withdrawal waiting: the chain pays it only after a post.
   */
  private maybeClose(now: number): void {
    const unsealed = this.ledger.unsealedReceipts();
    const byCount = this.opts.epochReceipts !== undefined && unsealed >= this.opts.epochReceipts;
    const byTime = now - this.lastClose >= (this.opts.epochIntervalMs ?? 60_000) && (unsealed > 0 || this.ledger.chain.withdrawalsSinceLastSeal());
    if (!byCount && !byTime) return;
    const e = this.ledger.closeEpoch({ allowEmpty: true });
    this.lastClose = now;
    if (e) this.opts.log?.info({ epoch: e.id, receipts: e.count }, "closed an epoch");
  }

  /** Closes the open epoch now and posts it (operator's `ledger epoch close`, tests). */
  async closeAndPost(): Promise<void> {
    this.round = this.round.then(async () => {
      this.ledger.closeEpoch({ allowEmpty: true });
      this.lastClose = (this.opts.now ?? Date.now)();
    });
    await this.round;
    await this.flush();
  }

  /** Waits for a round that follows and posts everything pending (retry errors surface here). */
  async flush(): Promise<void> {
    const run = this.round.then(async () => {
      await this.follower.sync();
      await this.poster.postPending();
      this.lastPosted = await this.poster.lastPosted();
    });
    this.round = run.catch(() => {});
    await run;
  }

  status(): ChainStatus {
    const now = this.ledger.clock();
    const iso = (p: { version: number; fromMs: number; policy: FeePolicy } | null) => (p ? { version: p.version, from: new Date(p.fromMs).toISOString(), policy: p.policy } : null);
    const c = this.ledger.chain.cursor();
    const view = this.ledger.chain.viewState();
    return {
      chainId: this.opts.deployment.chainId,
      operator: getAddress(this.ledger.nodeAddress),
      contracts: this.opts.deployment,
      followedBlock: c ? c.block.toString() : null,
      lastEpochPosted: this.lastPosted,
      pendingEpochs: this.ledger.chain.sealed({ status: "pending" }).length,
      lastError: this.lastError,
      failedRounds: this.failedRounds,
      jailedFrom: this.ledger.chain.jailedFrom(),
      termsDelay: this.termsDelay.toString(),
      admitsUntil: view && view.delayMs > 0 ? new Date(view.safeUntilMs - view.delayMs / 2).toISOString() : null,
      pendingTerms: this.ledger.chain.pendingTerms().length,
      pendingStakes: this.ledger.chain.pendingStakes(),
      feePolicy: iso(this.ledger.chain.policyAt(now)),
      pendingFeePolicies: this.ledger.chain.pendingPolicies(now).map((p) => iso(p)!),
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.round.catch(() => {});
  }
}
