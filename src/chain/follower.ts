/**
 * Follows the contracts' logs into the ledger's chain book, from the last processed block on:
 * only blocks at least `confirmations` deep are read (a reorg shallower than that never reaches the
 * book), each log is applied exactly once (ChainBook.apply), and the cursor (block number + hash)
 * moves after a range is applied — so a restart resumes where it stopped and re-reading a range
 * changes nothing. A cursor whose block hash changed means a reorg deeper than the confirmation
 * depth: following stops with CHAIN_REORG_TOO_DEEP rather than serve from a book the chain forgot.
 *
 * Terms are queued at their log and listed at their time (chain-book.ts). A complete round sets
 * the view: no log not yet read can be in a block older than the first unread one (its timestamp;
 * with no confirmations, the head's or the round's start, whichever is later: block times track
 * wall clocks), so no terms change the node does not know is in force before that + the delay.
 */
import { decodeEventLog, getAddress, parseAbi, toHex, type Address, type Hex, type Log } from "viem";
import { oerr } from "../errors.js";
import { ACCESS_KINDS, partyOf, type LogRef } from "../ledger/chain-book.js";
import type { Ledger } from "../ledger/ledger.js";
import type { ModelKind } from "../ledger/models.js";
import { IRegistryAbi, ISettlementAbi } from "./abi.js";
import type { FeePolicy } from "../attribution/types.js";
import type { ChainClients } from "./client.js";
import type { Deployment } from "./deploy.js";

const ERC1155_EVENTS = parseAbi([
  "event TransferSingle(address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value)",
  "event TransferBatch(address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values)",
]);

/** The most blocks one eth_getLogs asks for (public RPCs cap ranges). */
export const MAX_RANGE = 2_000n;

export interface FollowerOptions {
  confirmations: number;
  /** The Registry's termsDelay, seconds. */
  termsDelay: bigint;
  /** Warnings about logs the node could not mirror (a model whose lineage it lacks, …). */
  warn?: (msg: string, details?: Record<string, unknown>) => void;
}

interface Registration { name: string; kind: number; baseModel: Hex; owner: Address }
interface TermsArg {
  contentHash: Hex; priceIn: bigint; priceOut: bigint;
  developers: readonly { party: Address; share: bigint }[];
  hasShares: boolean; developerBps: number; stakerBps: number; dataBps: number;
  lineage: readonly { datanet: Hex; version: number; weight: bigint }[];
  parents: readonly { model: Hex; weight: bigint }[];
}

export class ChainFollower {
  private readonly node: Address;
  /**
   * The head's hash at the end of the last complete sync, and the first unread block's time then
   * (null with 0 confirmations): while the head is the same block, so is the chain below it, and a
   * round needs no other call (an idle poll is one eth_getBlockByNumber).
   */
  private lastRound?: { head: Hex; firstUnreadTs: number | null };

  constructor(
    private readonly clients: ChainClients,
    private readonly deployment: Deployment,
    private readonly ledger: Ledger,
    private readonly opts: FollowerOptions,
  ) {
    this.node = getAddress(ledger.nodeAddress);
  }

  /** Reads and applies every confirmed log not yet applied; returns how many were applied. */
  async sync(): Promise<number> {
    const pub = this.clients.public;
    const startMs = this.ledger.clock();
    const headBlock = await pub.getBlock();
    const head = headBlock.number;
    const target = head - BigInt(this.opts.confirmations);
    const book = this.ledger.chain;
    let applied = 0;
    let firstUnreadTs: number | null;
    if (this.lastRound?.head === headBlock.hash) {
      firstUnreadTs = this.lastRound.firstUnreadTs;
    } else {
      let cursor = book.cursor();
      if (cursor) {
        const b = await pub.getBlock({ blockNumber: cursor.block });
        if (b.hash !== cursor.hash) {
          throw oerr("CHAIN_REORG_TOO_DEEP", `block ${cursor.block} changed (${cursor.hash} → ${b.hash}): a reorg deeper than ${this.opts.confirmations} confirmations`, { block: cursor.block.toString() });
        }
      }
      let from = cursor ? cursor.block + 1n : BigInt(this.deployment.deployBlock);
      while (from <= target) {
        const to = from + MAX_RANGE - 1n < target ? from + MAX_RANGE - 1n : target;
        const logs = await pub.getLogs({ address: [this.deployment.settlement, this.deployment.registry, this.deployment.licence], fromBlock: from, toBlock: to });
        logs.sort((a, b) => (a.blockNumber === b.blockNumber ? (a.logIndex ?? 0) - (b.logIndex ?? 0) : a.blockNumber! < b.blockNumber! ? -1 : 1));
        for (const log of logs) if (this.applyLog(log)) applied++;
        const block = await pub.getBlock({ blockNumber: to });
        book.setCursor(to, block.hash);
        cursor = { block: to, hash: block.hash };
        from = to + 1n;
      }
      firstUnreadTs = target < head ? Number((await pub.getBlock({ blockNumber: target + 1n })).timestamp) * 1000 : null;
      this.lastRound = { head: headBlock.hash, firstUnreadTs };
    }
    const firstUnread = firstUnreadTs ?? Math.max(Number(headBlock.timestamp) * 1000, startMs);
    const delayMs = Number(this.opts.termsDelay) * 1000;
    book.setView(firstUnread + delayMs, delayMs);
    for (const t of this.ledger.applyChainChanges()) {
      if (t.problem !== null) this.opts.warn?.("terms in force on chain could not be listed; the model is not served until terms it can list", { model: t.model, version: t.version, problem: t.problem });
    }
    return applied;
  }

  private applyLog(log: Log): boolean {
    const ref: LogRef = { txHash: log.transactionHash!, logIndex: log.logIndex!, block: log.blockNumber! };
    const address = getAddress(log.address);
    const book = this.ledger.chain;
    if (address === getAddress(this.deployment.settlement)) {
      const ev = decode(ISettlementAbi, log);
      if (!ev) return false;
      const a = ev.args as Record<string, unknown>;
      const ours = a.operator === undefined || getAddress(a.operator as Address) === this.node;
      switch (ev.eventName) {
        case "Deposited":
          return ours && book.apply(ref, (memo) => book.deposit(a.agent as Address, a.amount as bigint, memo));
        case "WithdrawalRequested":
          return ours && book.apply(ref, (memo) => { book.holdWithdrawal(a.agent as Address, a.amount as bigint, memo); });
        case "AgentStakeChanged":
          return book.apply(ref, (memo) => book.agentStake(a.agent as Address, a.total as bigint, memo));
        case "StakeChanged": {
          const model = book.nameOf("model", a.model as Hex);
          return book.apply(ref, (memo) => {
            if (model === null || !this.ledger.models.has(model)) {
              this.opts.warn?.("a stake on a model this node does not list is not mirrored", { model: a.model, staker: a.staker });
              return;
            }
            book.queueStake(a.staker as Address, model, a.total as bigint, Number(a.from as bigint) * 1000, memo);
          });
        }
        case "EpochPosted":
          return ours && book.apply(ref, () => {
            const epoch = Number(a.epoch as bigint);
            const sealed = book.sealed().find((e) => e.epoch === epoch);
            if (sealed && sealed.payoutRoot !== a.payoutRoot) this.opts.warn?.("an epoch on chain has another payout root than the book's", { epoch, chain: a.payoutRoot, book: sealed.payoutRoot });
            else if (sealed && sealed.status === "pending") book.markPosted(epoch, log.transactionHash!);
          });
        default:
          return false;
      }
    }
    if (address === getAddress(this.deployment.registry)) {
      const ev = decode(IRegistryAbi, log);
      if (!ev) return false;
      const a = ev.args as Record<string, unknown>;
      switch (ev.eventName) {
        case "ModelRegistered":
          return book.apply(ref, () => {
            const info: Registration = { name: a.name as string, kind: a.kind as number, baseModel: a.baseModel as Hex, owner: a.owner as Address };
            book.setName("model", a.id as Hex, a.name as string, info);
          });
        case "TermsSet":
          return book.apply(ref, () => this.applyTerms(a.id as Hex, a.version as number, a.from as bigint, a.terms as TermsArg, log));
        case "AccessSet": {
          const model = book.nameOf("model", a.id as Hex);
          return model !== null && book.apply(ref, () => book.setAccess(model, ACCESS_KINDS[a.kind as number] ?? "public", a.minStake as bigint));
        }
        case "AllowlistSet": {
          const model = book.nameOf("model", a.id as Hex);
          return model !== null && book.apply(ref, () => book.setAllowed(model, a.agent as Address, a.allowed as boolean));
        }
        case "OperatorPolicySet":
          return getAddress(a.operator as Address) === this.node && book.apply(ref, () => book.recordPolicy(a.version as number, Number(a.from as bigint) * 1000, a.policy as FeePolicy));
        case "DatanetCreated":
          return book.apply(ref, () => book.setName("datanet", a.id as Hex, a.name as string));
        case "DatanetVersionPublished": {
          const name = book.nameOf("datanet", a.id as Hex);
          return name !== null && book.apply(ref, () => {
            if (!book.publishedVersion(name, a.version as number, a.root as Hex, a.contributors as Address[], a.approvedTokens as bigint[])) {
              this.opts.warn?.("a Datanet version published on chain is not this node's version of it (root or contributors differ)", { datanet: name, version: a.version });
            }
          });
        }
        default:
          return false;
      }
    }
    const ev = decode(ERC1155_EVENTS, log);
    if (!ev) return false;
    const a = ev.args as Record<string, unknown>;
    const ids = ev.eventName === "TransferSingle" ? [a.id as bigint] : (a.ids as bigint[]);
    const values = ev.eventName === "TransferSingle" ? [a.value as bigint] : (a.values as bigint[]);
    return book.apply(ref, () => {
      ids.forEach((id, i) => {
        const model = book.nameOf("model", toHex(id, { size: 32 }));
        if (model !== null) book.moveLicence(model, a.from as Address, a.to as Address, values[i]!);
      });
    });
  }

  /**
   * Every version of a model's terms lists it in the ledger from its time (replacing the node's own
   * free listing of what it serves, or the previous version): the chain's registry is the authority.
   */
  private applyTerms(id: Hex, version: number, from: bigint, t: TermsArg, log: Log): void {
    const book = this.ledger.chain;
    const reg = book.infoOf(id) as Registration | null;
    if (!reg) {
      this.opts.warn?.("terms of a model whose registration this node never saw", { model: id, version, tx: log.transactionHash });
      return;
    }
    const kind: ModelKind = reg.kind === 0 ? "base" : reg.kind === 1 ? "adapter" : "merged";
    const name = (h: Hex, what: "model" | "datanet") => book.nameOf(what, h) ?? h;
    // Lineage pays Datanet contributors: only versions the chain published as this node holds them.
    const foreign = t.lineage.filter((l) => !book.versionMatchesChain(name(l.datanet, "datanet"), l.version));
    const fromMs = Number(from) * 1000;
    const base = kind === "base" ? undefined : name(reg.baseModel, "model");
    if (!this.ledger.models.has(reg.name)) {
      // Until its terms are in force the model is the node's own, listed free (as the node lists what
      // it serves): stakes on it are mirrored from now on, and no receipt before `from` is provable.
      try {
        this.ledger.registerModel({
          id: reg.name, kind: kind === "base" ? "base" : "adapter", owner: this.ledger.operatorParty, priceIn: 0n, priceOut: 0n,
          contentHash: t.contentHash, developers: [{ party: this.ledger.operatorParty, share: 1n }], ...(base === undefined ? {} : { baseModel: base }),
        });
      } catch (e) {
        this.opts.warn?.("a model registered on chain could not be listed in the ledger", { model: reg.name, error: (e as Error).message });
      }
    }
    if (foreign.length > 0) {
      const versions = foreign.map((l) => `${name(l.datanet, "datanet")}@${l.version}`);
      this.opts.warn?.("a model's lineage names a Datanet version this node does not hold as the chain published it; the model is not served under these terms", { model: reg.name, versions });
      book.queueTerms({ model: reg.name, version, fromMs, input: null, problem: `its lineage names ${versions.join(", ")}, which this node does not hold as the chain published` });
      return;
    }
    book.queueTerms({
      model: reg.name, version, fromMs, problem: null,
      input: {
        id: reg.name,
        kind: kind === "base" ? "base" : "adapter",
        owner: partyOf(reg.owner),
        ...(base === undefined ? {} : { baseModel: base }),
        priceIn: t.priceIn,
        priceOut: t.priceOut,
        contentHash: t.contentHash,
        developers: t.developers.map((d) => ({ party: partyOf(d.party), share: d.share })),
        ...(t.parents.length === 0 ? { lineage: t.lineage.map((l) => ({ datanet: name(l.datanet, "datanet"), version: l.version, weight: l.weight })) } : {}),
        ...(t.parents.length > 0 ? { parents: t.parents.map((p) => ({ model: name(p.model, "model"), weight: p.weight })) } : {}),
        ...(t.hasShares ? { shares: { developerBps: t.developerBps, stakerBps: t.stakerBps, dataBps: t.dataBps } } : {}),
      },
    });
  }
}

function decode<A extends readonly unknown[]>(abi: A, log: Log) {
  try {
    return decodeEventLog({ abi: abi as never, data: log.data, topics: log.topics as never }) as { eventName: string; args: unknown };
  } catch {
    return null;
  }
}
