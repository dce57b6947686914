/**
 * Base models and adapters listed on the node: owner, developers with shares, prices, content
 * hash, lineage (Datanet versions with integer weights) and, for merged adapters, parents.
 */
import type { Hex } from "viem";
import { validateShares } from "../attribution/fees.js";
import type { DeveloperShare, ModelUse, ShareBps } from "../attribution/types.js";
import { oerr } from "../errors.js";
import { big, checkDatanetId, checkName, conflict, money, nonNegative, notFound, versionKey, type Db } from "./db.js";
import type { Datanets } from "./datanets.js";

export type ModelKind = "base" | "adapter" | "merged";

export interface LineageRef {
  datanet: string;
  version: number;
  weight: bigint;
}

export interface RegisterModelInput {
  id: string;
  /** "adapter" with `parents` is stored as "merged". */
  kind: "base" | "adapter";
  owner: string;
  /** Adapters: the base model they need. */
  baseModel?: string;
  priceIn: bigint;
  priceOut: bigint;
  contentHash: Hex;
  developers: DeveloperShare[];
  /** Datanet versions trained on; not allowed with `parents` (then it is computed). */
  lineage?: LineageRef[];
  /** Merged adapters: the adapters merged, with integer weights. */
  parents?: { model: string; weight: bigint }[];
  /** The owner's own β/γ/δ, overriding the node's. */
  shares?: ShareBps;
}

export interface ModelInfo {
  id: string;
  kind: ModelKind;
  owner: string;
  baseModel: string | null;
  priceIn: bigint;
  priceOut: bigint;
  contentHash: Hex;
  developers: DeveloperShare[];
  lineage: LineageRef[];
  parents: { model: string; weight: bigint }[];
  shares: ShareBps | null;
  created: number;
}

interface ModelRow {
  id: string; kind: ModelKind; owner: string; base_model: string | null; price_in: string; price_out: string;
  content_hash: Hex; developer_bps: number | null; staker_bps: number | null; data_bps: number | null; created: number;
}

export class Models {
  constructor(private readonly db: Db, private readonly datanets: Datanets, private readonly now: () => number) {}

  /**
   * Lists a model. `replace`: a model already listed under this id (the node's free listing of
   * what it serves, or the chain's earlier terms) takes these terms — same kind and base model;
   * receipts already signed keep the terms they were split by.
   */
  register(input: RegisterModelInput, opts: { replace?: boolean } = {}): ModelInfo {
    checkName("model id", input.id);
    checkName("owner", input.owner);
    nonNegative("priceIn", input.priceIn);
    nonNegative("priceOut", input.priceOut);
    if (!/^0x[0-9a-fA-F]{64}$/.test(input.contentHash)) throw oerr("INVALID_ARGUMENT", "contentHash must be bytes32 hex");
    if (input.shares) validateShares(input.shares);
    const developers = checkWeights("developer share", input.developers.map((d) => ({ key: d.party, weight: d.share })));
    const parents = input.parents ?? [];
    const kind: ModelKind = input.kind === "base" ? "base" : parents.length > 0 ? "merged" : "adapter";
    if (kind === "base" && (input.baseModel !== undefined || parents.length > 0)) {
      throw oerr("INVALID_ARGUMENT", "a base model has no base model and no parents");
    }
    if (kind !== "base") {
      if (input.baseModel === undefined) throw oerr("INVALID_ARGUMENT", "an adapter needs its base model");
      if (this.get(input.baseModel).kind !== "base") throw oerr("INVALID_ARGUMENT", `${input.baseModel} is not a base model`);
    }
    if (kind === "merged" && input.lineage && input.lineage.length > 0) {
      throw oerr("INVALID_ARGUMENT", "a merged adapter's lineage is computed from its parents; do not pass one");
    }
    checkWeights("parent weight", parents.map((p) => ({ key: p.model, weight: p.weight })));
    for (const p of parents) {
      const parent = this.get(p.model);
      if (parent.kind === "base" || parent.baseModel !== input.baseModel) {
        throw oerr("INVALID_ARGUMENT", `parent ${p.model} is not an adapter of ${input.baseModel}`);
      }
    }
    const lineage = kind === "merged" ? this.mergedLineage(parents) : (input.lineage ?? []);
    if (kind !== "merged" && lineage.length > 0) checkWeights("lineage weight", lineage.map((l) => ({ key: versionKey(l.datanet, l.version), weight: l.weight })));
    for (const l of lineage) {
      checkDatanetId(l.datanet);
      this.datanets.version(l.datanet, l.version);
    }
    this.db.transaction(() => {
      const existing = this.db.prepare("SELECT kind, base_model FROM models WHERE id = ?").get(input.id) as { kind: ModelKind; base_model: string | null } | undefined;
      if (existing && !opts.replace) conflict(`model ${input.id} is already registered`, { model: input.id });
      if (existing) {
        if ((existing.kind === "base") !== (kind === "base") || existing.base_model !== (input.baseModel ?? null)) {
          conflict(`model ${input.id} is listed as ${existing.kind === "base" ? "a base model" : `an adapter of ${existing.base_model ?? "?"}`}; new terms cannot change that`, { model: input.id });
        }
        this.db.prepare("UPDATE models SET kind = ?, owner = ?, price_in = ?, price_out = ?, content_hash = ?, developer_bps = ?, staker_bps = ?, data_bps = ? WHERE id = ?")
          .run(kind, input.owner, money(input.priceIn), money(input.priceOut), input.contentHash.toLowerCase(),
            input.shares?.developerBps ?? null, input.shares?.stakerBps ?? null, input.shares?.dataBps ?? null, input.id);
        for (const t of ["model_developers", "model_parents", "model_lineage"]) this.db.prepare(`DELETE FROM ${t} WHERE model_id = ?`).run(input.id);
      } else this.db.prepare(
        "INSERT INTO models (id, kind, owner, base_model, price_in, price_out, content_hash, developer_bps, staker_bps, data_bps, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(input.id, kind, input.owner, input.baseModel ?? null, money(input.priceIn), money(input.priceOut), input.contentHash.toLowerCase(),
        input.shares?.developerBps ?? null, input.shares?.stakerBps ?? null, input.shares?.dataBps ?? null, this.now());
      const dev = this.db.prepare("INSERT INTO model_developers (model_id, party, share) VALUES (?, ?, ?)");
      for (const [party, share] of developers) dev.run(input.id, party, money(share));
      const par = this.db.prepare("INSERT INTO model_parents (model_id, parent_id, weight) VALUES (?, ?, ?)");
      for (const p of parents) par.run(input.id, p.model, money(p.weight));
      const lin = this.db.prepare("INSERT INTO model_lineage (model_id, datanet_id, version, weight) VALUES (?, ?, ?, ?)");
      for (const l of lineage) lin.run(input.id, l.datanet, l.version, money(l.weight));
    }).immediate();
    return this.get(input.id);
  }

  has(id: string): boolean {
    return this.db.prepare("SELECT 1 FROM models WHERE id = ?").get(id) !== undefined;
  }

  get(id: string): ModelInfo {
    const r = this.db.prepare("SELECT * FROM models WHERE id = ?").get(id) as ModelRow | undefined;
    if (!r) notFound("model", id);
    const developers = (this.db.prepare("SELECT party, share FROM model_developers WHERE model_id = ? ORDER BY party").all(id) as { party: string; share: string }[])
      .map((d) => ({ party: d.party, share: big(d.share) }));
    const lineage = (this.db.prepare("SELECT datanet_id, version, weight FROM model_lineage WHERE model_id = ? ORDER BY datanet_id, version").all(id) as { datanet_id: string; version: number; weight: string }[])
      .map((l) => ({ datanet: l.datanet_id, version: l.version, weight: big(l.weight) }));
    const parents = (this.db.prepare("SELECT parent_id, weight FROM model_parents WHERE model_id = ? ORDER BY parent_id").all(id) as { parent_id: string; weight: string }[])
      .map((p) => ({ model: p.parent_id, weight: big(p.weight) }));
    const shares = r.developer_bps === null ? null : { developerBps: r.developer_bps, stakerBps: r.staker_bps!, dataBps: r.data_bps! };
    return {
      id: r.id, kind: r.kind, owner: r.owner, baseModel: r.base_model, priceIn: big(r.price_in), priceOut: big(r.price_out),
      contentHash: r.content_hash, developers, lineage, parents, shares, created: r.created,
    };
  }

  list(): ModelInfo[] {
    return (this.db.prepare("SELECT id FROM models ORDER BY id").all() as { id: string }[]).map((r) => this.get(r.id));
  }

  /** The model as the fee split sees it now: stakes as of this moment, contributors per lineage version. */
  use(id: string): ModelUse & { info: ModelInfo } {
    const info = this.get(id);
    const stakers = (this.db.prepare("SELECT staker, amount FROM stakes WHERE model_id = ? ORDER BY staker").all(id) as { staker: string; amount: string }[])
      .map((s) => ({ party: s.staker, stake: big(s.amount) }))
      .filter((s) => s.stake > 0n);
    const lineage = info.lineage.map((l) => ({
      datanet: versionKey(l.datanet, l.version),
      weight: l.weight,
      contributors: this.datanets.contributors(l.datanet, l.version),
    }));
    const use: ModelUse & { info: ModelInfo } = { info, model: id, priceIn: info.priceIn, priceOut: info.priceOut, developers: info.developers, stakers, lineage };
    if (info.shares) use.shares = info.shares;
    return use;
  }

  /**
   * Σ_p (w_p / Σw) · (l_pd / Σ_d l_pd) over the parents' lineages, exact, then scaled to the
   * smallest integers with the same ratios. Parents without lineage add nothing (the rest is
   * renormalised when fees are split).
   */
  private mergedLineage(parents: { model: string; weight: bigint }[]): LineageRef[] {
    const totalW = parents.reduce((s, p) => s + p.weight, 0n);
    const acc = new Map<string, { datanet: string; version: number; n: bigint; d: bigint }>();
    for (const p of parents) {
      const lin = this.get(p.model).lineage;
      const totalL = lin.reduce((s, l) => s + l.weight, 0n);
      if (totalL === 0n) continue;
      for (const l of lin) {
        const key = versionKey(l.datanet, l.version);
        const n = p.weight * l.weight;
        const d = totalW * totalL;
        const e = acc.get(key);
        if (!e) acc.set(key, { datanet: l.datanet, version: l.version, n, d });
        else { e.n = e.n * d + n * e.d; e.d = e.d * d; }
      }
    }
    const entries = [...acc.values()].filter((e) => e.n > 0n);
    let lcm = 1n;
    for (const e of entries) { const g = gcd(e.n, e.d); e.n /= g; e.d /= g; lcm = (lcm / gcd(lcm, e.d)) * e.d; }
    const ints = entries.map((e) => ({ datanet: e.datanet, version: e.version, weight: e.n * (lcm / e.d) }));
    const g = ints.reduce((s, e) => gcd(s, e.weight), 0n);
    return ints.map((e) => ({ ...e, weight: e.weight / (g || 1n) })).sort((a, b) => (a.datanet < b.datanet ? -1 : a.datanet > b.datanet ? 1 : a.version - b.version));
  }
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/** Non-negative integer weights with a positive total; duplicate keys are refused. */
function checkWeights(what: string, xs: { key: string; weight: bigint }[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  let total = 0n;
  for (const x of xs) {
    checkName(what, x.key);
    nonNegative(what, x.weight);
    if (out.has(x.key)) throw oerr("INVALID_ARGUMENT", `${what}: ${x.key} is listed twice`);
    out.set(x.key, x.weight);
    total += x.weight;
  }
  if (xs.length > 0 && total === 0n) throw oerr("INVALID_ARGUMENT", `${what}s must not all be zero`);
  if (what === "developer share" && total === 0n) throw oerr("INVALID_ARGUMENT", "a model needs at least one developer with a positive share");
  return out;
}
