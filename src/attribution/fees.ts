/**
 * The fee of a request and its split, in exact integer arithmetic (see docs/economics.md).
 * Every recipient's share of F_m is an exact rational; the rationals are brought to one
 * denominator and F_m is handed out by largest remainder, so the lines sum to F_m exactly.
 */
import { oerr } from "../errors.js";
import type {
  AttributionWeight, FeePolicy, LineageEntry, ModelUse, ShareBps, SpanEvidence, SpanMatch,
  SplitInput, SplitLine, SplitResult, SplitRole,
} from "./types.js";

const BPS = 10_000n;

/**
 * Splits `amount` in proportion to `weights` by the largest-remainder method: everyone gets
 * floor(amount·w/W); the units left over go one each to the largest remainders, ties to the
 * lower index. Each result is within 1 of its exact share and the results sum to `amount`.
 */
export function distribute(amount: bigint, weights: readonly bigint[]): bigint[] {
  if (amount < 0n) throw oerr("INVALID_ARGUMENT", `cannot distribute a negative amount (${amount})`);
  let total = 0n;
  for (const w of weights) {
    if (w < 0n) throw oerr("INVALID_ARGUMENT", `weights must be non-negative, got ${w}`);
    total += w;
  }
  if (amount === 0n) return weights.map(() => 0n);
  if (total === 0n) throw oerr("INVALID_ARGUMENT", "cannot distribute a positive amount over zero weights");
  const out: bigint[] = [];
  const rem: bigint[] = [];
  let given = 0n;
  for (const w of weights) {
    const p = amount * w;
    out.push(p / total);
    rem.push(p % total);
    given += p / total;
  }
  let left = amount - given;
  const order = weights.map((_, i) => i).sort((a, b) => (rem[a]! > rem[b]! ? -1 : rem[a]! < rem[b]! ? 1 : a - b));
  for (const i of order) {
    if (left === 0n) break;
    out[i]! += 1n;
    left -= 1n;
  }
  return out;
}

/** F_m = tokensIn·priceIn + tokensOut·priceOut. */
export function modelFee(tokensIn: number, tokensOut: number, priceIn: bigint, priceOut: bigint): bigint {
  checkCount("tokensIn", tokensIn);
  checkCount("tokensOut", tokensOut);
  return BigInt(tokensIn) * priceIn + BigInt(tokensOut) * priceOut;
}

/** The most a request can cost: every model's prices at maxTokens output tokens. Reserved at admission. */
export function worstCaseFee(tokensIn: number, maxTokens: number, models: readonly { priceIn: bigint; priceOut: bigint }[]): bigint {
  let f = 0n;
  for (const m of models) f += modelFee(tokensIn, maxTokens, m.priceIn, m.priceOut);
  return f;
}

/**
 * Matched output tokens per (Datanet version, contributor): the number of distinct output
 * positions covered by that contributor's spans in that Datanet, so overlapping spans count once.
 */
export function matchedTokens(spans: readonly SpanEvidence[]): SpanMatch[] {
  const byKey = new Map<string, { datanet: string; contributor: string; ranges: [number, number][] }>();
  for (const s of spans) {
    if (!Number.isSafeInteger(s.start) || !Number.isSafeInteger(s.end) || s.start < 0 || s.end < s.start) {
      throw oerr("INVALID_ARGUMENT", `bad span range [${s.start}, ${s.end})`);
    }
    const key = JSON.stringify([s.datanet, s.contributor]);
    let e = byKey.get(key);
    if (!e) byKey.set(key, (e = { datanet: s.datanet, contributor: s.contributor, ranges: [] }));
    e.ranges.push([s.start, s.end]);
  }
  const out: SpanMatch[] = [];
  for (const e of byKey.values()) {
    e.ranges.sort((a, b) => a[0] - b[0]);
    let covered = 0;
    let end = -1;
    for (const [s, t] of e.ranges) {
      const from = Math.max(s, end);
      if (t > from) covered += t - from;
      end = Math.max(end, t);
    }
    if (covered > 0) out.push({ datanet: e.datanet, contributor: e.contributor, matchedTokens: covered });
  }
  return out.sort((a, b) => cmp(a.datanet, b.datanet) || cmp(a.contributor, b.contributor));
}

export function validatePolicy(p: FeePolicy): void {
  for (const k of ["protocolBps", "operatorBps", "lambdaBps"] as const) checkBps(k, p[k]);
  if (p.protocolBps + p.operatorBps > 10_000) {
    throw oerr("INVALID_ARGUMENT", `protocolBps + operatorBps must be <= 10000, got ${p.protocolBps + p.operatorBps}`);
  }
  validateShares(p);
}

export function validateShares(s: ShareBps): void {
  for (const k of ["developerBps", "stakerBps", "dataBps"] as const) checkBps(k, s[k]);
  if (s.developerBps + s.stakerBps + s.dataBps !== 10_000) {
    throw oerr("INVALID_ARGUMENT", `developerBps + stakerBps + dataBps must be 10000, got ${s.developerBps + s.stakerBps + s.dataBps}`);
  }
}

/** Computes F and its split lines. Throws INTERNAL if the lines do not sum to F (never expected). */
export function splitFee(input: SplitInput): SplitResult {
  validatePolicy(input.policy);
  checkCount("tokensIn", input.tokensIn);
  checkCount("tokensOut", input.tokensOut);
  const spans = aggregateSpans(input.spans);
  const lines: SplitLine[] = [];
  const fees: { model: string; fee: bigint }[] = [];
  const attribution: AttributionWeight[] = [];
  let total = 0n;
  for (const m of input.models) {
    validateModel(m);
    const fee = modelFee(input.tokensIn, input.tokensOut, m.priceIn, m.priceOut);
    fees.push({ model: m.model, fee });
    total += fee;
    const { recipients, weights } = modelShares(m, input, spans);
    for (const w of weights) attribution.push(w);
    lines.push(...payOut(m.model, fee, recipients));
  }
  let sum = 0n;
  for (const l of lines) sum += l.amount;
  if (sum !== total) throw oerr("INTERNAL", `split lines sum to ${sum}, fee is ${total}`);
  return { total, fees, lines, attribution };
}

// ---- exact rationals -------------------------------------------------------------------------

interface Q { n: bigint; d: bigint }

function gcd(a: bigint, b: bigint): bigint {
  if (a < 0n) a = -a;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function q(n: bigint, d: bigint): Q {
  if (n === 0n) return { n: 0n, d: 1n };
  const g = gcd(n, d);
  return { n: n / g, d: d / g };
}

const ZERO: Q = { n: 0n, d: 1n };
const add = (a: Q, b: Q): Q => q(a.n * b.d + b.n * a.d, a.d * b.d);
const mul = (a: Q, b: Q): Q => q(a.n * b.n, a.d * b.d);
const sub = (a: Q, b: Q): Q => q(a.n * b.d - b.n * a.d, a.d * b.d);
const bps = (x: number): Q => q(BigInt(x), BPS);
const isZero = (a: Q): boolean => a.n === 0n;

// ---- one model's shares ----------------------------------------------------------------------

const ROLE_ORDER: Record<SplitRole, number> = { protocol: 0, operator: 1, developer: 2, staker: 3, data: 4 };

interface Recipient { role: SplitRole; party: string; datanet: string | undefined; share: Q }

class Shares {
  private readonly byKey = new Map<string, Recipient>();
  add(role: SplitRole, party: string, datanet: string | undefined, share: Q): void {
    if (isZero(share)) return;
    const key = JSON.stringify([role, datanet ?? null, party]);
    const r = this.byKey.get(key);
    if (r) r.share = add(r.share, share);
    else this.byKey.set(key, { role, party, datanet, share });
  }
  /** Canonical order: role (protocol, operator, developer, staker, data), then Datanet, then party. */
  sorted(): Recipient[] {
    return [...this.byKey.values()].sort((a, b) =>
      ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || cmp(a.datanet ?? "", b.datanet ?? "") || cmp(a.party, b.party));
  }
}

/** Plain UTF-16 code-unit order, the same in every JavaScript engine (no locale). */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function modelShares(m: ModelUse, input: SplitInput, spans: Map<string, Map<string, bigint>>): { recipients: Recipient[]; weights: AttributionWeight[] } {
  const p = input.policy;
  const s = m.shares ?? p;
  const shares = new Shares();
  shares.add("protocol", input.treasury, undefined, bps(p.protocolBps));
  shares.add("operator", input.operator, undefined, bps(p.operatorBps));
  const net = q(BPS - BigInt(p.protocolBps) - BigInt(p.operatorBps), BPS);
  let developerMass = mul(net, bps(s.developerBps));

  const stakeMass = mul(net, bps(s.stakerBps));
  const stakers = sumBy(m.stakers, (x) => x.party, (x) => x.stake);
  const totalStake = total(stakers);
  if (totalStake === 0n) developerMass = add(developerMass, stakeMass);
  else for (const [party, st] of stakers) shares.add("staker", party, undefined, mul(stakeMass, q(st, totalStake)));

  const dataMass = mul(net, bps(s.dataBps));
  const { leftover, weights } = dataShares(m, dataMass, p.lambdaBps, spans, shares);
  developerMass = add(developerMass, leftover);

  const devs = sumBy(m.developers, (x) => x.party, (x) => x.share);
  const totalDev = total(devs);
  for (const [party, sh] of devs) shares.add("developer", party, undefined, mul(developerMass, q(sh, totalDev)));

  const recipients = shares.sorted();
  let sum = ZERO;
  for (const r of recipients) sum = add(sum, r.share);
  if (sum.n !== sum.d) throw oerr("INTERNAL", `shares of ${m.model} sum to ${sum.n}/${sum.d}, not 1`);
  return { recipients, weights: weights.map((w) => ({ model: m.model, datanet: w.datanet, num: w.w.n, den: w.w.d })) };
}

/**
 * Data contributors' shares of model m. Returns the mass that found no recipient (no Datanet,
 * no contributor with approved tokens): it falls back to the developers.
 */
function dataShares(m: ModelUse, dataMass: Q, lambdaBps: number, spans: Map<string, Map<string, bigint>>, shares: Shares): { leftover: Q; weights: { datanet: string; w: Q }[] } {
  const lineage = mergeLineage(m.lineage);
  const lambda = bps(lambdaBps);
  const totalLineage = total(new Map([...lineage].map(([d, e]) => [d, e.weight])));
  let totalSpan = 0n;
  for (const d of lineage.keys()) totalSpan += total(spans.get(d) ?? new Map());
  const lambdaM = totalSpan > 0n ? lambda : ZERO;
  let leftover = ZERO;
  if (totalLineage === 0n) leftover = add(leftover, mul(dataMass, sub(q(1n, 1n), lambdaM)));
  const weights: { datanet: string; w: Q }[] = [];
  for (const [d, e] of [...lineage].sort((a, b) => cmp(a[0], b[0]))) {
    const matched = spans.get(d) ?? new Map<string, bigint>();
    const spanD = total(matched);
    let w = ZERO;
    if (totalLineage > 0n) w = add(w, mul(sub(q(1n, 1n), lambdaM), q(e.weight, totalLineage)));
    if (totalSpan > 0n) w = add(w, mul(lambdaM, q(spanD, totalSpan)));
    if (isZero(w)) continue;
    weights.push({ datanet: d, w });
    const massD = mul(dataMass, w);
    const lambdaD = spanD > 0n ? lambda : ZERO;
    const approvedMass = mul(massD, sub(q(1n, 1n), lambdaD));
    const totalApproved = total(e.approved);
    if (totalApproved === 0n) leftover = add(leftover, approvedMass);
    else for (const [c, t] of e.approved) shares.add("data", c, d, mul(approvedMass, q(t, totalApproved)));
    for (const [c, t] of matched) shares.add("data", c, d, mul(massD, mul(lambdaD, q(t, spanD))));
  }
  return { leftover, weights };
}

function mergeLineage(lineage: readonly LineageEntry[]): Map<string, { weight: bigint; approved: Map<string, bigint> }> {
  const out = new Map<string, { weight: bigint; approved: Map<string, bigint> }>();
  for (const e of lineage) {
    let m = out.get(e.datanet);
    if (!m) out.set(e.datanet, (m = { weight: 0n, approved: new Map() }));
    m.weight += e.weight;
    for (const c of e.contributors) m.approved.set(c.party, (m.approved.get(c.party) ?? 0n) + BigInt(c.approvedTokens));
  }
  return out;
}

function aggregateSpans(spans: readonly SpanMatch[]): Map<string, Map<string, bigint>> {
  const out = new Map<string, Map<string, bigint>>();
  for (const s of spans) {
    checkCount("matchedTokens", s.matchedTokens);
    let d = out.get(s.datanet);
    if (!d) out.set(s.datanet, (d = new Map()));
    d.set(s.contributor, (d.get(s.contributor) ?? 0n) + BigInt(s.matchedTokens));
  }
  return out;
}

/** Hands out F_m over the recipients' exact shares, brought to their least common denominator. */
function payOut(model: string, fee: bigint, recipients: Recipient[]): SplitLine[] {
  let lcm = 1n;
  for (const r of recipients) lcm = (lcm / gcd(lcm, r.share.d)) * r.share.d;
  const amounts = distribute(fee, recipients.map((r) => r.share.n * (lcm / r.share.d)));
  const lines: SplitLine[] = [];
  recipients.forEach((r, i) => {
    const amount = amounts[i]!;
    if (amount === 0n) return;
    lines.push(r.datanet === undefined ? { party: r.party, role: r.role, model, amount } : { party: r.party, role: r.role, model, datanet: r.datanet, amount });
  });
  return lines;
}

function sumBy<T>(xs: readonly T[], key: (x: T) => string, val: (x: T) => bigint): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const x of xs) out.set(key(x), (out.get(key(x)) ?? 0n) + val(x));
  return out;
}

function total(m: Map<string, bigint>): bigint {
  let t = 0n;
  for (const v of m.values()) t += v;
  return t;
}

function validateModel(m: ModelUse): void {
  const bad = (msg: string): never => { throw oerr("INVALID_ARGUMENT", `model ${m.model}: ${msg}`); };
  if (m.priceIn < 0n || m.priceOut < 0n) bad("prices must be non-negative");
  if (m.shares) validateShares(m.shares);
  let dev = 0n;
  for (const d of m.developers) {
    if (d.share < 0n) bad(`developer ${d.party} has a negative share`);
    dev += d.share;
  }
  if (dev === 0n) bad("needs at least one developer with a positive share (the fallback of every unassigned share)");
  for (const s of m.stakers) if (s.stake < 0n) bad(`staker ${s.party} has a negative stake`);
  for (const e of m.lineage) {
    if (e.weight < 0n) bad(`lineage weight of ${e.datanet} is negative`);
    for (const c of e.contributors) checkCount("approvedTokens", c.approvedTokens);
  }
}

function checkCount(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw oerr("INVALID_ARGUMENT", `${name} must be a non-negative integer, got ${v}`);
}

function checkBps(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 10_000) throw oerr("INVALID_ARGUMENT", `${name} must be an integer in [0, 10000], got ${v}`);
}
