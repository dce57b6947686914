/**
 * A receipt judged against the registry view (registry-view.ts) by the rules the on-chain courts apply —
 * TermsCheck, StakeCheck, ContributorCheck, MergeCheck and RegistryCourt's policy check, ported — so each
 * finding names the proof that would slash for it (the validator sends that proof) or none where no
 * single-receipt proof exists (a committee dispute). Time is the receipt's, in whole seconds, as the
 * courts read it. Models the registry does not know at that time are the node's own listing: not judged.
 */
import { keccak256, stringToHex, type Address, type Hex } from "viem";
import type { Receipt, RegistryTerms } from "../attribution/receipts.js";
import type { LineageEntry, ModelUse } from "../attribution/types.js";
import type { RegistryView } from "./registry-view.js";

export type ProofName = "proveBadSplit" | "proveBadTerms" | "proveBadStakers" | "proveBadContributors" | "proveBadPolicy" | "proveBadMergedLineage" | "proveNotPosted";

export interface Finding {
  receipt: number;
  check: "signature" | "link" | "root" | "tokens" | "split" | "terms" | "stakers" | "contributors" | "policy" | "merged-lineage" | "content" | "replay" | "batch";
  /** The on-chain proof that slashes for it; null: none from one receipt (the committee decides). */
  proof: ProofName | null;
  detail: string;
  model?: string;
  entry?: string;
}

const MAX_MERGE_DEPTH = 32;
const id = (name: string): Hex => keccak256(stringToHex(name));
const lower = (a: string) => a.toLowerCase();

/** Findings of the registry checks of one receipt (its own arithmetic is receiptSplitProblem's). */
export function judgeAgainstRegistry(r: Receipt, view: RegistryView): Finding[] {
  const out: Finding[] = [];
  const inputs = r.inputs;
  if (!inputs) return out;
  const time = BigInt(Math.floor(r.time / 1000));
  const find = (check: Finding["check"], proof: ProofName | null, detail: string, extra: Partial<Finding> = {}) => out.push({ receipt: r.id, check, proof, detail, ...extra });

  const policy = view.policyAt(r.node, time);
  if (!policy) find("policy", null, `the node had declared no fee policy at ${time}`);
  else {
    const p = inputs.policy;
    const same = p.protocolBps === policy.protocolBps && p.operatorBps === policy.operatorBps && p.developerBps === policy.developerBps
      && p.stakerBps === policy.stakerBps && p.dataBps === policy.dataBps && p.lambdaBps === policy.lambdaBps;
    if (!same) find("policy", "proveBadPolicy", "the inputs' policy is not the node's declared policy in force");
    else if (inputs.operator !== lower(r.node)) find("policy", "proveBadPolicy", `the inputs name operator ${inputs.operator}, not the node`);
    else if (inputs.treasury !== lower(view.treasury)) find("policy", "proveBadPolicy", `the inputs name treasury ${inputs.treasury}, not Settlement's`);
  }

  const refs = new Map<string, Hex>([[r.base.id, r.base.contentHash], ...r.adapters.map((a) => [a.id, a.contentHash] as [string, Hex])]);
  for (const m of inputs.models) {
    const at = view.termsAt(id(m.model), time);
    if (!at) continue;
    const t = at.terms;
    const declared = refs.get(m.model);
    if (declared !== undefined && BigInt(t.contentHash) !== 0n && lower(declared) !== lower(t.contentHash)) {
      find("content", null, `the receipt names file hash ${declared}, the registry ${t.contentHash}`, { model: m.model });
    }
    if (!termsMatch(m, t)) find("terms", "proveBadTerms", "prices, shares, developers or lineage are not the registry's terms in force", { model: m.model });
    if (!stakersMatch(m, view, id(m.model), time)) find("stakers", "proveBadStakers", "the stakers are not Settlement's stakes at the receipt's time", { model: m.model });
    for (const e of m.lineage) {
      const [dn, v] = parseKey(e.datanet);
      const published = v === null ? null : view.publishedVersion(dn, v);
      if (!published) find("contributors", null, `${e.datanet} is not a Datanet version published on chain`, { model: m.model, entry: e.datanet });
      else if (!contributorsMatch(e, published.contributors, published.approvedTokens)) {
        find("contributors", "proveBadContributors", "the contributors are not the published version's", { model: m.model, entry: e.datanet });
      }
    }
    if (t.parents.length > 0) {
      const want = mergedLineageOf(view, id(m.model), at, 0);
      if (want === null) find("merged-lineage", null, "the merge's ancestry is a cycle or deeper than 32: not provable", { model: m.model });
      else if (!sameLineage(m.lineage, want)) find("merged-lineage", "proveBadMergedLineage", "the lineage weights are not those of the merge's parents", { model: m.model });
    }
  }
  return out;
}

/** TermsCheck.matches. */
export function termsMatch(m: ModelUse, t: RegistryTerms): boolean {
  if (m.priceIn !== t.priceIn || m.priceOut !== t.priceOut || (m.shares !== undefined) !== t.hasShares) return false;
  if (t.hasShares && (m.shares!.developerBps !== t.developerBps || m.shares!.stakerBps !== t.stakerBps || m.shares!.dataBps !== t.dataBps)) return false;
  if (!multisetEqual(m.developers.map((d) => `${d.party}|${d.share}`), t.developers.map((d) => `${lower(d.party)}|${d.share}`))) return false;
  if (t.parents.length === 0) {
    const ls = m.lineage.map((l) => { const [dn, v] = parseKey(l.datanet); return `${dn}|${v ?? "none"}|${l.weight}`; });
    if (!multisetEqual(ls, t.lineage.map((l) => `${l.datanet}|${l.version}|${l.weight}`))) return false;
  }
  return true;
}

/** StakeCheck.matches: ascending addresses, each its positive stakeAt, together the model's whole stake. */
export function stakersMatch(m: ModelUse, view: RegistryView, model: Hex, time: bigint): boolean {
  let sum = 0n;
  let prev = -1n;
  for (const s of m.stakers) {
    const a = partyAddress(s.party);
    if (a === null || BigInt(a) <= prev || s.stake === 0n || s.stake !== view.stakeAt(model, a, time)) return false;
    sum += s.stake;
    prev = BigInt(a);
  }
  return sum === view.modelStakeAt(model, time);
}

/** ContributorCheck.matches: the published contributors in order, each with its approvedTokens. */
export function contributorsMatch(e: LineageEntry, contributors: readonly Address[], approved: readonly bigint[]): boolean {
  if (e.contributors.length !== contributors.length) return false;
  return e.contributors.every((c, i) => partyAddress(c.party) !== null && c.party === lower(contributors[i]!) && BigInt(c.approvedTokens) === approved[i]);
}

/** TermsCheck.parseKey: "name@version" → (keccak256(name), version); version null when it does not parse. */
export function parseKey(key: string): [Hex, number | null] {
  const at = key.lastIndexOf("@");
  const digits = key.slice(at + 1);
  if (at <= 0 || !/^(0|[1-9][0-9]{0,9})$/.test(digits)) return ["0x00", null];
  return [id(key.slice(0, at)), Number(digits)];
}

/** StakeCheck.partyAddress: "0x" + 40 lowercase hex digits, else null. */
export function partyAddress(p: string): Address | null {
  return /^0x[0-9a-f]{40}$/.test(p) ? (p as Address) : null;
}

interface Weighted { dn: Hex; version: number; n: bigint; d: bigint }

/**
 * MergeCheck with RegistryCourt's recursion: a merged model's lineage from its parents' terms in force when its
 * own terms apply from, a merged parent's from its own parents the same way; null past MAX_MERGE_DEPTH (a cycle).
 */
function mergedLineageOf(view: RegistryView, model: Hex, at: { from: bigint; terms: RegistryTerms }, depth: number): Weighted[] | null {
  if (depth > MAX_MERGE_DEPTH) return null;
  const totalW = at.terms.parents.reduce((s, p) => s + p.weight, 0n);
  const acc: Weighted[] = [];
  for (const p of at.terms.parents) {
    const pt = view.termsAt(p.model, at.from);
    if (!pt) continue;
    let lin: Weighted[] | null;
    if (pt.terms.parents.length === 0) lin = pt.terms.lineage.map((l) => ({ dn: l.datanet, version: l.version, n: l.weight, d: 1n }));
    else lin = mergedLineageOf(view, p.model, pt, depth + 1);
    if (lin === null) return null;
    const totalL = lin.reduce((s, l) => s + l.n, 0n);
    if (totalL === 0n) continue;
    for (const l of lin) add(acc, l.dn, l.version, p.weight * l.n, totalW * totalL);
  }
  return normalise(acc);
}

function add(acc: Weighted[], dn: Hex, version: number, n: bigint, d: bigint): void {
  const e = acc.find((x) => x.dn === dn && x.version === version);
  if (!e) { const g = gcd(n, d); acc.push({ dn, version, n: n / g, d: d / g }); return; }
  const [n2, d2] = [e.n * d + n * e.d, e.d * d];
  const g = gcd(n2, d2);
  [e.n, e.d] = [n2 / g, d2 / g];
}

function normalise(acc: Weighted[]): Weighted[] {
  const kept = acc.filter((e) => e.n > 0n);
  let lcm = 1n;
  for (const e of kept) lcm = (lcm / gcd(lcm, e.d)) * e.d;
  const ints = kept.map((e) => ({ ...e, n: e.n * (lcm / e.d), d: 1n }));
  const g = ints.reduce((s, e) => gcd(s, e.n), 0n) || 1n;
  return ints.map((e) => ({ ...e, n: e.n / g }));
}

function sameLineage(ls: readonly LineageEntry[], want: Weighted[]): boolean {
  return multisetEqual(ls.map((l) => { const [dn, v] = parseKey(l.datanet); return `${dn}|${v ?? "none"}|${l.weight}`; }), want.map((w) => `${w.dn}|${w.version}|${w.n}`));
}

function multisetEqual(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  const x = [...a].sort();
  const y = [...b].sort();
  return x.every((v, i) => v === y[i]);
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}
