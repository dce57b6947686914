/**
 * Property: whatever sequence of deposits, withdrawal requests and withdrawals, epoch posts with
 * random payout trees, claims, agent and model stakes and unstakes, bonds and unbonds, slashes and
 * clock moves happens, claims never pay an operator's pool more than its agents deposited minus
 * withdrew, and Settlement's token balance is always deposits − withdrawals − paid + bonds − slashed + stakes.
 */
import fc from "fast-check";
import { privateKeyToAccount } from "viem/accounts";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { getContract, parseEventLogs, zeroHash, type Hex } from "viem";
import { afterAll, beforeAll, expect, it } from "vitest";
import { RegistryAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { buildPayoutTree, type PayoutTree } from "../../src/chain/payout-tree.js";
import { TEST_PARAMS, decodeRevert, nameId, startTestChain, testTerms, type TestChain, type TestWallet } from "../helpers/chain.js";

let c: TestChain;
const MODEL = nameId("m");
let ops: TestWallet[], agents: TestWallet[], parties: TestWallet[], court: TestWallet;

const settle = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });

beforeAll(async () => {
  // A plain wallet as the court, so the sequences can slash directly; deploy sets it.
  c = await startTestChain({ court: async () => privateKeyToAccount(ANVIL_KEYS[7]!).address });
  ops = [c.wallets[1]!, c.wallets[2]!];
  agents = [c.wallets[3]!, c.wallets[4]!, c.wallets[5]!];
  parties = [c.wallets[6]!, c.wallets[8]!];
  court = c.wallets[7]!;
  for (const w of [...ops, ...agents]) {
    const t = getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });
    await c.mine(t.write.mint([w.account.address, 10n ** 30n]));
    await c.mine(t.write.approve([c.deployment.settlement, 10n ** 30n]));
  }
  for (const o of ops) {
    await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: o } }).write.registerOperator(["http://op"]));
  }
  await c.mine(getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: ops[0]! } })
    .write.registerModel(["m", 0, zeroHash, testTerms(ops[0]!.account.address)]));
});
afterAll(async () => c?.stop());

const amount = fc.bigInt({ min: 1n, max: 2000n });
// Weighted so that the paths that move money (deposit → post → wait → claim, request → wait →
// post → withdraw) happen often in a sequence of a few dozen steps.
const action = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant("deposit" as const), a: fc.nat(2), o: fc.nat(1), x: amount }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("request" as const), a: fc.nat(2), o: fc.nat(1), x: fc.bigInt({ min: 1n, max: 600n }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("withdraw" as const), a: fc.nat(2), o: fc.nat(1), latest: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("post" as const), o: fc.nat(1),
      earn: fc.array(fc.bigInt({ min: 0n, max: 600n }), { minLength: 2, maxLength: 2 }),
      // Committed spend as a part (bps) of what the agent has at the operator, as a node reports it.
      committed: fc.array(fc.bigInt({ min: 0n, max: 12_000n }), { minLength: 3, maxLength: 3 }),
    }),
  },
  { weight: 5, arbitrary: fc.record({ t: fc.constant("claim" as const), p: fc.nat(1), o: fc.nat(1), back: fc.constantFrom(0, 0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("stake" as const), a: fc.nat(2), x: amount }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("unstake" as const), a: fc.nat(2), x: amount, req: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("bond" as const), o: fc.nat(1), x: amount }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("unbond" as const), o: fc.nat(1), x: amount, req: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("modelStake" as const), a: fc.nat(2), x: amount, op: fc.constantFrom("stake", "request", "complete") }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("slash" as const), o: fc.nat(1) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("wait" as const), s: fc.constantFrom<number>(60, 120, 250) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("cycle" as const), a: fc.nat(2), o: fc.nat(1), x: fc.bigInt({ min: 1n, max: 600n }),
      committed: fc.array(fc.bigInt({ min: 0n, max: 12_000n }), { minLength: 3, maxLength: 3 }),
    }),
  },
);
const releaseCycle = fc.record({ t: fc.constant("release" as const), what: fc.constantFrom("agent", "model", "bond"), i: fc.nat(2), o: fc.nat(1), x: amount });
type Action = (typeof action extends fc.Arbitrary<infer T> ? T : never) | (typeof releaseCycle extends fc.Arbitrary<infer T> ? T : never);
const anyAction: fc.Arbitrary<Action> = fc.oneof({ weight: 12, arbitrary: action }, { weight: 1, arbitrary: releaseCycle });

interface Model {
  deposits: bigint[];
  withdrawals: bigint[];
  paid: bigint[];
  bonds: bigint;
  slashed: bigint;
  stakes: bigint;
  trees: Map<string, PayoutTree>;
  earned: bigint[][];
  lastRequest?: { a: number; o: number };
}

it("claims never exceed deposits − withdrawals; the token balance always adds up", async () => {
  let reverts = 0;
  let paidClaims = 0;
  let withdrawals = 0;
  let releases = 0;
  await fc.assert(fc.asyncProperty(fc.array(anyAction, { minLength: 10, maxLength: 40 }), async (actions) => {
    const snap = await c.snapshot();
    const m: Model = { deposits: [0n, 0n], withdrawals: [0n, 0n], paid: [0n, 0n], bonds: 0n, slashed: 0n, stakes: 0n, trees: new Map(), earned: [[0n, 0n], [0n, 0n]] };
    try {
      const send = async (_from: TestWallet, call: Promise<Hex>) => {
        try {
          return (await c.mine(call)).logs;
        } catch (e) {
          // Only the contracts' own refusals are acceptable.
          if (!decodeRevert(e)) throw e;
          reverts++;
          return undefined;
        }
      };
      const step = async (act: Action): Promise<void> => {
        switch (act.t) {
          case "deposit": {
            const logs = await send(agents[act.a]!, settle(agents[act.a]!).write.deposit([ops[act.o]!.account.address, act.x]));
            if (logs) m.deposits[act.o]! += act.x;
            break;
          }
          case "request":
            if (await send(agents[act.a]!, settle(agents[act.a]!).write.requestWithdrawal([ops[act.o]!.account.address, act.x]))) m.lastRequest = { a: act.a, o: act.o };
            break;
          case "withdraw": {
            // Mostly the pair that last asked (others mostly have nothing pending).
            const { a, o } = act.latest && m.lastRequest ? m.lastRequest : act;
            const op = ops[o]!.account.address;
            const latest = await settle(ops[o]!).read.lastEpoch([op]);
            const tree = m.trees.get(`${o}:${latest}`);
            const p = tree ? tree.proofOf(1, agents[a]!.account.address) : { cumulative: 0n, proof: [] as Hex[] };
            const logs = await send(agents[a]!, settle(agents[a]!).write.withdraw([op, p.cumulative, p.proof]));
            if (logs) {
              m.withdrawals[o]! += parseEventLogs({ abi: SettlementAbi, eventName: "Withdrawn", logs })[0]!.args.amount;
              withdrawals++;
            }
            break;
          }
          case "post": {
            const s = settle(ops[act.o]!);
            const op = ops[act.o]!.account.address;
            const epoch = (await s.read.lastEpoch([op])) + 1n;
            const first = (await s.read.lastReceiptOf([op])) + 1n;
            const earned = m.earned[act.o]!.map((e, i) => e + act.earn[i]!);
            const committed: bigint[] = [];
            for (const [i, a] of agents.entries()) {
              const have = (await s.read.deposited([op, a.account.address])) - (await s.read.withdrawn([op, a.account.address]));
              committed.push((have * act.committed[i]!) / 10_000n);
            }
            const tree = buildPayoutTree([
              ...parties.map((p, i) => ({ kind: 0 as const, account: p.account.address, cumulative: earned[i]! })),
              ...agents.map((a, i) => ({ kind: 1 as const, account: a.account.address, cumulative: committed[i]! })),
            ]);
            await c.mine(s.write.postEpoch([epoch, zeroHash, first, first + 4n, zeroHash, tree.root, zeroHash]));
            m.earned[act.o] = earned;
            m.trees.set(`${act.o}:${epoch}`, tree);
            break;
          }
          case "claim": {
            const op = ops[act.o]!.account.address;
            const latest = await settle(ops[act.o]!).read.lastEpoch([op]);
            const epoch = latest - BigInt(act.back);
            const tree = m.trees.get(`${act.o}:${epoch}`);
            if (!tree) break;
            const party = parties[act.p]!.account.address;
            const { cumulative, proof } = tree.proofOf(0, party);
            const logs = await send(parties[act.p]!, settle(parties[act.p]!).write.claim([op, epoch, party, cumulative, proof]));
            if (logs) {
              m.paid[act.o]! += parseEventLogs({ abi: SettlementAbi, eventName: "Claimed", logs })[0]!.args.amount;
              paidClaims++;
            }
            break;
          }
          case "stake":
            if (await send(agents[act.a]!, settle(agents[act.a]!).write.stakeAgent([act.x]))) m.stakes += act.x;
            break;
          case "unstake": {
            const w = agents[act.a]!;
            // A request restarts the delay, so a step either asks or completes.
            if (act.req) {
              await send(w, settle(w).write.requestAgentUnstake([act.x]));
              break;
            }
            const logs = await send(w, settle(w).write.completeAgentUnstake());
            if (logs && ++releases) m.stakes -= parseEventLogs({ abi: SettlementAbi, eventName: "AgentUnstaked", logs })[0]!.args.amount;
            break;
          }
          case "bond":
            if (await send(ops[act.o]!, settle(ops[act.o]!).write.bond([act.x]))) m.bonds += act.x;
            break;
          case "unbond": {
            const w = ops[act.o]!;
            if (act.req) {
              await send(w, settle(w).write.requestUnbond([act.x]));
              break;
            }
            const logs = await send(w, settle(w).write.withdrawBond());
            if (logs && ++releases) m.bonds -= parseEventLogs({ abi: SettlementAbi, eventName: "BondWithdrawn", logs })[0]!.args.amount;
            break;
          }
          case "modelStake": {
            const w = agents[act.a]!;
            if (act.op === "stake") {
              if (await send(w, settle(w).write.stake([MODEL, act.x]))) m.stakes += act.x;
              break;
            }
            if (act.op === "request") {
              await send(w, settle(w).write.requestUnstake([MODEL, act.x]));
              break;
            }
            const logs = await send(w, settle(w).write.completeUnstake([MODEL]));
            if (logs && ++releases) m.stakes -= parseEventLogs({ abi: SettlementAbi, eventName: "Unstaked", logs })[0]!.args.amount;
            break;
          }
          case "slash": {
            const logs = await send(court, settle(court).write.slash([ops[act.o]!.account.address, parties[0]!.account.address]));
            if (logs) m.slashed += parseEventLogs({ abi: SettlementAbi, eventName: "Slashed", logs })[0]!.args.slashed;
            break;
          }
          case "wait":
            await c.increaseTime(act.s);
            break;
          case "release": {
          // Lock, ask, wait the whole delay, take it back: in every sequence's state.
          const delay = Number(TEST_PARAMS.unbondingDelay > TEST_PARAMS.challengeWindow ? TEST_PARAMS.unbondingDelay : TEST_PARAMS.challengeWindow);
          if (act.what === "agent") {
            await step({ t: "stake", a: act.i, x: act.x });
            await step({ t: "unstake", a: act.i, x: act.x, req: true });
            await step({ t: "wait", s: delay });
            await step({ t: "unstake", a: act.i, x: act.x, req: false });
          } else if (act.what === "model") {
            await step({ t: "modelStake", a: act.i, x: act.x, op: "stake" });
            await step({ t: "modelStake", a: act.i, x: act.x, op: "request" });
            await step({ t: "wait", s: delay });
            await step({ t: "modelStake", a: act.i, x: act.x, op: "complete" });
          } else {
            await step({ t: "bond", o: act.o, x: act.x });
            await step({ t: "unbond", o: act.o, x: act.x, req: true });
            await step({ t: "wait", s: delay });
            await step({ t: "unbond", o: act.o, x: act.x, req: false });
          }
          break;
        }
        case "cycle":
            // The whole withdrawal path in one step, so it runs in every sequence's state.
            await step({ t: "request", a: act.a, o: act.o, x: act.x });
            await step({ t: "wait", s: Number(TEST_PARAMS.withdrawDelay) });
            await step({ t: "post", o: act.o, earn: [0n, 0n], committed: act.committed });
            await step({ t: "withdraw", a: act.a, o: act.o, latest: false });
            break;
        }
      };
      for (const act of actions) {
        await step(act);
        const s = settle(court);
        for (let o = 0; o < ops.length; o++) {
          const op = ops[o]!.account.address;
          expect(m.paid[o]! <= m.deposits[o]! - m.withdrawals[o]!).toBe(true);
          expect(await s.read.paidOut([op])).toBe(m.paid[o]);
          expect(await s.read.funded([op])).toBe(m.deposits[o]! - m.withdrawals[o]!);
        }
        const t = getContract({ address: c.deployment.token, abi: TestTokenAbi, client: c.publicClient });
        const total = m.deposits.reduce((a, b) => a + b) - m.withdrawals.reduce((a, b) => a + b) - m.paid.reduce((a, b) => a + b) + m.bonds - m.slashed + m.stakes;
        expect(await t.read.balanceOf([c.deployment.settlement])).toBe(total);
      }
    } finally {
      await c.revert(snap);
    }
  }), { numRuns: 60 });
  // The sequences did exercise the paths: refusals, paid claims, withdrawals, released stakes/bonds.
  expect(reverts).toBeGreaterThan(0);
  expect(paidClaims).toBeGreaterThan(0);
  expect(withdrawals).toBeGreaterThan(0);
  expect(releases).toBeGreaterThan(0);
});
