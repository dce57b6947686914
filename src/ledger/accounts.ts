/**
 * Accounts (agents: the parties that pay and stake, with a prepaid balance), stakes on models, and
 * every party's earned balance. An account's `balance` is what it can still spend: deposits −
 * withdrawals − charges − stakes (its own and on models) − active reservations; `reserved` is the
 * sum of its active reservations; `stake` is its own stake (the admission gate for paid models).
 * Every movement here is a signed event (events.ts) written in the same transaction; who may ask
 * for which movement is the server's business (src/server/access.ts), not this file's.
 */
import { oerr } from "../errors.js";
import type { Events } from "./events.js";
import { big, checkName, conflict, money, nonNegative, notFound, positive, type Db } from "./db.js";

export interface AgentAccount {
  id: string;
  stake: bigint;
  balance: bigint;
  reserved: bigint;
  created: number;
}

function insufficient(what: string, have: bigint, want: bigint, details: Record<string, unknown>): never {
  throw oerr("INSUFFICIENT_BALANCE", `${what}: ${have} available, ${want} asked`, { ...details, available: have.toString(), requested: want.toString() });
}

export class Accounts {
  constructor(
    private readonly db: Db,
    private readonly events: Events,
    private readonly now: () => number,
    /** Party ids that can never be accounts (the treasury's and the operator's). */
    private readonly reserved: readonly string[],
  ) {}

  createAgent(id: string): AgentAccount {
    checkName("agent id", id);
    if (this.reserved.includes(id)) conflict(`${id} is the treasury's or the operator's party id, not an account`, { agent: id });
    if (this.db.prepare("SELECT 1 FROM agents WHERE id = ?").get(id)) conflict(`agent ${id} already exists`, { agent: id });
    this.db.prepare("INSERT INTO agents (id, stake, balance, reserved, created) VALUES (?, '0', '0', '0', ?)").run(id, this.now());
    return this.agent(id);
  }

  /** Null when there is no such agent (admission turns that into PAYMENT_REQUIRED). */
  findAgent(id: string): AgentAccount | null {
    const r = this.db.prepare("SELECT * FROM agents WHERE id = ?").get(id) as { id: string; stake: string; balance: string; reserved: string; created: number } | undefined;
    return r ? { id: r.id, stake: big(r.stake), balance: big(r.balance), reserved: big(r.reserved), created: r.created } : null;
  }

  agent(id: string): AgentAccount {
    return this.findAgent(id) ?? notFound("agent", id);
  }

  /** Credits the agent's balance (the operator received the money). */
  deposit(id: string, amount: bigint, memo?: string): AgentAccount {
    positive("deposit", amount);
    return this.move(id, amount, 0n, () => this.events.append("deposit", id, amount, { memo }));
  }

  /** Pays out of the agent's available balance. */
  withdraw(id: string, amount: bigint, memo?: string): AgentAccount {
    positive("withdrawal", amount);
    return this.move(id, -amount, 0n, () => this.events.append("withdraw", id, amount, { memo }));
  }

  /** Moves `amount` of the agent's balance into its own stake. */
  agentStake(id: string, amount: bigint, memo?: string): AgentAccount {
    positive("stake", amount);
    return this.move(id, -amount, amount, () => this.events.append("agent_stake", id, amount, { memo }));
  }

  /** Moves `amount` of the agent's own stake back to its balance. */
  agentUnstake(id: string, amount: bigint, memo?: string): AgentAccount {
    positive("unstake", amount);
    return this.move(id, amount, -amount, () => this.events.append("agent_unstake", id, amount, { memo }));
  }

  /** Moves `amount` of the staker's balance into its stake on `model`; returns the stake. */
  stake(staker: string, model: string, amount: bigint, memo?: string): bigint {
    positive("stake", amount);
    return this.db.transaction(() => {
      if (!this.db.prepare("SELECT 1 FROM models WHERE id = ?").get(model)) notFound("model", model);
      this.move(staker, -amount, 0n, () => this.events.append("stake", staker, amount, { subject: model, memo }));
      return this.setStake(staker, model, this.stakeOf(staker, model) + amount);
    }).immediate();
  }

  /** Returns `amount` of the staker's stake on `model` to its balance; returns what remains staked. */
  unstake(staker: string, model: string, amount: bigint, memo?: string): bigint {
    positive("unstake", amount);
    return this.db.transaction(() => {
      const cur = this.stakeOf(staker, model);
      if (amount > cur) insufficient(`${staker}'s stake on ${model}`, cur, amount, { staker, model });
      this.move(staker, amount, 0n, () => this.events.append("unstake", staker, amount, { subject: model, memo }));
      return this.setStake(staker, model, cur - amount);
    }).immediate();
  }

  stakeOf(staker: string, model: string): bigint {
    const r = this.db.prepare("SELECT amount FROM stakes WHERE staker = ? AND model_id = ?").get(staker, model) as { amount: string } | undefined;
    return r ? big(r.amount) : 0n;
  }

  stakesOn(model: string): { staker: string; amount: bigint }[] {
    return (this.db.prepare("SELECT staker, amount FROM stakes WHERE model_id = ? ORDER BY staker").all(model) as { staker: string; amount: string }[])
      .map((r) => ({ staker: r.staker, amount: big(r.amount) }));
  }

  balanceOf(party: string): bigint {
    const r = this.db.prepare("SELECT amount FROM balances WHERE party = ?").get(party) as { amount: string } | undefined;
    return r ? big(r.amount) : 0n;
  }

  balances(): { party: string; amount: bigint }[] {
    return (this.db.prepare("SELECT party, amount FROM balances ORDER BY party").all() as { party: string; amount: string }[])
      .map((r) => ({ party: r.party, amount: big(r.amount) }));
  }

  /** Pays out of a party's earned balance; returns what remains. */
  payout(party: string, amount: bigint): bigint {
    checkName("party", party);
    positive("payout", amount);
    return this.db.transaction(() => {
      const cur = this.balanceOf(party);
      if (amount > cur) insufficient(`${party}'s earned balance`, cur, amount, { party });
      this.events.append("payout", party, amount);
      this.credit(party, -amount);
      return cur - amount;
    }).immediate();
  }

  /** Inside the settle (or forfeit) transaction only; negative = a payout. */
  credit(party: string, amount: bigint): void {
    this.db.prepare("INSERT INTO balances (party, amount) VALUES (?, ?) ON CONFLICT (party) DO UPDATE SET amount = ?")
      .run(party, money(amount), money(this.balanceOf(party) + amount));
  }

  /**
   * One movement of an agent's money in one transaction with its event: balance += dBalance,
   * stake += dStake; refused (LEDGER_CONFLICT, nothing written) if either would go negative.
   */
  private move(id: string, dBalance: bigint, dStake: bigint, event: () => void): AgentAccount {
    return this.db.transaction(() => {
      const a = this.agent(id);
      if (a.balance + dBalance < 0n) insufficient(`agent ${id}'s balance`, a.balance, -dBalance, { agent: id });
      if (a.stake + dStake < 0n) insufficient(`agent ${id}'s own stake`, a.stake, -dStake, { agent: id });
      event();
      this.db.prepare("UPDATE agents SET balance = ?, stake = ? WHERE id = ?").run(money(a.balance + dBalance), money(a.stake + dStake), id);
      return this.agent(id);
    }).immediate();
  }

  private setStake(staker: string, model: string, next: bigint): bigint {
    nonNegative("stake", next);
    if (next === 0n) this.db.prepare("DELETE FROM stakes WHERE staker = ? AND model_id = ?").run(staker, model);
    else this.db.prepare("INSERT INTO stakes (staker, model_id, amount) VALUES (?, ?, ?) ON CONFLICT (staker, model_id) DO UPDATE SET amount = excluded.amount").run(staker, model, money(next));
    return next;
  }
}
