/**
 * What a validator knows of the registry and the stakes, from the chain's logs alone (never from the node):
 * every version of every model's terms with the time it applies from (TermsSet), every operator's fee
 * policies (OperatorPolicySet), every published Datanet version (DatanetVersionPublished) and every stake
 * change with the time it counts from (StakeChanged). Answers "in force at time t" the way the contracts do
 * (Registry.termsAt, policyAt; Settlement.stakeAt, modelStakeAt), so a receipt can be judged in memory,
 * thousands a second, with what the on-chain proofs would read. `sync` reads only the blocks it has not.
 */
import { getAddress, type Address, type Hex, type PublicClient } from "viem";
import type { FeePolicy } from "../attribution/types.js";
import type { PublishedVersion, RegistryTerms } from "../attribution/receipts.js";
import { IRegistryAbi, ISettlementAbi } from "../chain/abi.js";
import type { Deployment } from "../chain/deploy.js";
import { MAX_RANGE } from "../chain/follower.js";

interface Versioned<T> { version: number; from: bigint; value: T }

export class RegistryView {
  private readonly terms = new Map<Hex, Versioned<RegistryTerms>[]>();
  private readonly policies = new Map<Address, Versioned<FeePolicy>[]>();
  private readonly versions = new Map<string, PublishedVersion>();
  /** model → staker → checkpoints (from, total), as Settlement's Trace208 keeps them. */
  private readonly stakes = new Map<Hex, Map<Address, { from: bigint; total: bigint }[]>>();
  private synced: bigint;

  private constructor(private readonly d: Deployment, readonly treasury: Address) {
    this.synced = BigInt(d.deployBlock) - 1n;
  }

  static async load(client: PublicClient, d: Deployment, toBlock?: bigint): Promise<RegistryView> {
    const treasury = await client.readContract({ address: d.settlement, abi: ISettlementAbi, functionName: "treasury" });
    const v = new RegistryView(d, getAddress(treasury));
    await v.sync(client, toBlock ?? (await client.getBlockNumber()));
    return v;
  }

  /** Applies the logs of blocks (synced, toBlock]. */
  async sync(client: PublicClient, toBlock: bigint): Promise<void> {
    for (let a = this.synced + 1n; a <= toBlock; a += MAX_RANGE) {
      const b = a + MAX_RANGE - 1n < toBlock ? a + MAX_RANGE - 1n : toBlock;
      const [terms, policies, versions, stakes] = await Promise.all([
        client.getContractEvents({ address: this.d.registry, abi: IRegistryAbi, eventName: "TermsSet", fromBlock: a, toBlock: b }),
        client.getContractEvents({ address: this.d.registry, abi: IRegistryAbi, eventName: "OperatorPolicySet", fromBlock: a, toBlock: b }),
        client.getContractEvents({ address: this.d.registry, abi: IRegistryAbi, eventName: "DatanetVersionPublished", fromBlock: a, toBlock: b }),
        client.getContractEvents({ address: this.d.settlement, abi: ISettlementAbi, eventName: "StakeChanged", fromBlock: a, toBlock: b }),
      ]);
      for (const l of terms) push(this.terms, l.args.id!, { version: l.args.version!, from: l.args.from!, value: l.args.terms as unknown as RegistryTerms });
      for (const l of policies) push(this.policies, getAddress(l.args.operator!), { version: l.args.version!, from: l.args.from!, value: l.args.policy as FeePolicy });
      for (const l of versions) {
        this.versions.set(`${l.args.id}:${l.args.version}`, { root: l.args.root!, contributors: l.args.contributors!.map((x) => getAddress(x)), approvedTokens: l.args.approvedTokens! });
      }
      for (const l of stakes) {
        const byStaker = this.stakes.get(l.args.model!) ?? new Map<Address, { from: bigint; total: bigint }[]>();
        this.stakes.set(l.args.model!, byStaker);
        const staker = getAddress(l.args.staker!);
        const h = byStaker.get(staker) ?? [];
        byStaker.set(staker, h);
        if (h.length > 0 && h[h.length - 1]!.from === l.args.from!) h[h.length - 1]!.total = l.args.total!;
        else h.push({ from: l.args.from!, total: l.args.total! });
      }
      this.synced = b;
    }
  }

  get syncedTo(): bigint {
    return this.synced;
  }

  /** The version of `model`'s terms in force at `time` (seconds), as Registry.termsAt: the last with from ≤ time. */
  termsAt(model: Hex, time: bigint): { version: number; from: bigint; terms: RegistryTerms } | null {
    const v = lastFrom(this.terms.get(model), time);
    return v ? { version: v.version, from: v.from, terms: v.value } : null;
  }

  policyAt(operator: Address, time: bigint): FeePolicy | null {
    return lastFrom(this.policies.get(getAddress(operator)), time)?.value ?? null;
  }

  publishedVersion(datanet: Hex, version: number): PublishedVersion | null {
    return this.versions.get(`${datanet}:${version}`) ?? null;
  }

  /** Settlement.stakeAt: the staker's total of the last change with from ≤ time, else 0. */
  stakeAt(model: Hex, staker: Address, time: bigint): bigint {
    const h = this.stakes.get(model)?.get(getAddress(staker));
    let v = 0n;
    for (const c of h ?? []) if (c.from <= time) v = c.total;
    return v;
  }

  /** Settlement.modelStakeAt: the sum of every staker's stakeAt. */
  modelStakeAt(model: Hex, time: bigint): bigint {
    let sum = 0n;
    for (const staker of this.stakes.get(model)?.keys() ?? []) sum += this.stakeAt(model, staker, time);
    return sum;
  }
}

function push<K, T>(m: Map<K, Versioned<T>[]>, k: K, v: Versioned<T>): void {
  const h = m.get(k) ?? [];
  h.push(v);
  m.set(k, h);
}

/** The last entry with from ≤ time (entries in version order, so from never decreases). */
function lastFrom<T>(h: Versioned<T>[] | undefined, time: bigint): Versioned<T> | undefined {
  let out: Versioned<T> | undefined;
  for (const v of h ?? []) if (v.from <= time) out = v;
  return out;
}
