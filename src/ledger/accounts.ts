/**
 * Agents (prepaid balance, stake), stakes on models, and every party's earned balance.
 * An agent's `balance` is what it can still spend: deposits − charges − active reservations;
 * `reserved` is the sum of its active reservations.
 */
import { big, checkName, conflict, money, nonNegative, notFound, positive, type Db } from "./db.js";

export interface AgentAccount {
  id: string;
  stake: bigint;
  balance: bigint;
  reserved: bigint;
  created: number;
}

export class Accounts {
  constructor(private readonly db: Db, private readonly now: () => number) {}

  createAgent(id: string, stake = 0n): AgentAccount {
    checkName("agent id", id);
    nonNegative("stake", stake);
    if (this.db.prepare("SELECT 1 FROM agents WHERE id = ?").get(id)) conflict(`agent ${id} already exists`, { agent: id });
    this.db.prepare("INSERT INTO agents (id, stake, balance, reserved, created) VALUES (?, ?, '0', '0', ?)").run(id, money(stake), this.now());
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

  deposit(id: string, amount: bigint): AgentAccount {
    positive("deposit", amount);
    return this.db.transaction(() => {
      const a = this.agent(id);
      this.db.prepare("INSERT INTO deposits (agent, amount, time) VALUES (?, ?, ?)").run(id, money(amount), this.now());
      this.db.prepare("UPDATE agents SET balance = ? WHERE id = ?").run(money(a.balance + amount), id);
      return this.agent(id);
    }).immediate();
  }

  /** Mirrors the agent's stake (held elsewhere, e.g. on chain) that admission compares with the minimum. */
  setAgentStake(id: string, stake: bigint): AgentAccount {
    nonNegative("stake", stake);
    this.agent(id);
    this.db.prepare("UPDATE agents SET stake = ? WHERE id = ?").run(money(stake), id);
    return this.agent(id);
  }

  stake(staker: string, model: string, amount: bigint): bigint {
    checkName("staker", staker);
    positive("stake", amount);
    return this.db.transaction(() => {
      if (!this.db.prepare("SELECT 1 FROM models WHERE id = ?").get(model)) notFound("model", model);
      const next = this.stakeOf(staker, model) + amount;
      this.db.prepare("INSERT INTO stakes (staker, model_id, amount) VALUES (?, ?, ?) ON CONFLICT (staker, model_id) DO UPDATE SET amount = excluded.amount")
        .run(staker, model, money(next));
      return next;
    }).immediate();
  }

  unstake(staker: string, model: string, amount: bigint): bigint {
    positive("unstake", amount);
    return this.db.transaction(() => {
      const cur = this.stakeOf(staker, model);
      if (amount > cur) conflict(`${staker} has only ${cur} staked on ${model}`, { staker, model, staked: cur.toString() });
      const next = cur - amount;
      if (next === 0n) this.db.prepare("DELETE FROM stakes WHERE staker = ? AND model_id = ?").run(staker, model);
      else this.db.prepare("UPDATE stakes SET amount = ? WHERE staker = ? AND model_id = ?").run(money(next), staker, model);
      return next;
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

  /** Inside the settle transaction only. */
  credit(party: string, amount: bigint): void {
    this.db.prepare("INSERT INTO balances (party, amount) VALUES (?, ?) ON CONFLICT (party) DO UPDATE SET amount = ?")
      .run(party, money(amount), money(this.balanceOf(party) + amount));
  }
}
