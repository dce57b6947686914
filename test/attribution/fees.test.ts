import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { distribute, matchedTokens, modelFee, splitFee, worstCaseFee } from "../../src/attribution/fees.js";
import type { FeePolicy, ModelUse, SplitInput, SplitLine } from "../../src/attribution/types.js";
import { isOpenLoraError } from "../../src/errors.js";

const POLICY: FeePolicy = { protocolBps: 1000, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };

function slim(lines: SplitLine[]) {
  return lines.map((l) => [l.role, l.party, l.datanet ?? "", l.amount]);
}

describe("distribute", () => {
  it("hands leftover units to the largest remainders, ties to the lower index", () => {
    expect(distribute(10n, [1n, 1n, 1n])).toEqual([4n, 3n, 3n]);
    expect(distribute(2n, [1n, 1n, 1n])).toEqual([1n, 1n, 0n]);
    expect(distribute(7n, [0n, 5n, 5n])).toEqual([0n, 4n, 3n]);
    expect(distribute(100n, [1n, 2n, 3n, 4n])).toEqual([10n, 20n, 30n, 40n]);
    expect(distribute(5n, [3n, 3n, 4n])).toEqual([2n, 1n, 2n]);
    expect(distribute(0n, [0n, 0n])).toEqual([0n, 0n]);
  });

  it("refuses negative amounts, negative weights and positive amounts over zero weights", () => {
    expect(() => distribute(-1n, [1n])).toThrow();
    expect(() => distribute(1n, [-1n, 2n])).toThrow();
    expect(() => distribute(1n, [0n, 0n])).toThrow();
    expect(() => distribute(1n, [])).toThrow();
  });

  it("conserves, never goes negative, stays within 1 of the exact share", () => {
    fc.assert(fc.property(
      fc.bigInt({ min: 0n, max: 10n ** 30n }),
      fc.array(fc.bigInt({ min: 0n, max: 10n ** 12n }), { minLength: 1, maxLength: 12 }).filter((w) => w.some((x) => x > 0n)),
      (amount, weights) => {
        const out = distribute(amount, weights);
        const W = weights.reduce((a, b) => a + b, 0n);
        expect(out.reduce((a, b) => a + b, 0n)).toBe(amount);
        out.forEach((x, i) => {
          expect(x >= 0n).toBe(true);
          const diff = x * W - amount * weights[i]!;
          expect(diff > -W && diff < W).toBe(true);
          if (weights[i] === 0n) expect(x).toBe(0n);
        });
      },
    ), { numRuns: 300 });
  });
});

describe("splitFee: hand-computed", () => {
  const base: ModelUse = { model: "llama", priceIn: 1n, priceOut: 2n, developers: [{ party: "meta", share: 1n }], stakers: [], lineage: [] };
  const adapter: ModelUse = {
    model: "legal-lora", priceIn: 10n, priceOut: 20n,
    developers: [{ party: "alice", share: 3n }, { party: "bob", share: 1n }],
    stakers: [{ party: "s1", stake: 1n }, { party: "s2", stake: 3n }],
    lineage: [
      { datanet: "legal@3", weight: 7n, contributors: [{ party: "c1", approvedTokens: 600 }, { party: "c2", approvedTokens: 400 }] },
      { datanet: "case@1", weight: 3n, contributors: [{ party: "c3", approvedTokens: 100 }] },
    ],
  };
  const input: SplitInput = {
    tokensIn: 100, tokensOut: 50, models: [base, adapter], policy: POLICY, treasury: "treasury", operator: "op",
    spans: [{ datanet: "legal@3", contributor: "c2", matchedTokens: 10 }, { datanet: "case@1", contributor: "c3", matchedTokens: 30 }],
  };

  it("follows the formula line by line", () => {
    const r = splitFee(input);
    expect(r.total).toBe(2200n);
    expect(r.fees).toEqual([{ model: "llama", fee: 200n }, { model: "legal-lora", fee: 2000n }]);
    // base: no stakers, no lineage → N = 140 all to the developer.
    expect(slim(r.lines.filter((l) => l.model === "llama"))).toEqual([
      ["protocol", "treasury", "", 20n], ["operator", "op", "", 40n], ["developer", "meta", "", 140n],
    ]);
    // adapter: N = 1400 → dev 700 (3:1), stakers 280 (1:3), data 420.
    // w_legal = ½·0.7 + ½·10/40 = 0.475 → 199.5: c1 ½·0.6 → 59.85, c2 ½·0.4 + ½·1 → 139.65.
    // w_case = ½·0.3 + ½·30/40 = 0.525 → 220.5 to c3. Remainders .85, .65, .5: 2 units → c1, c2.
    expect(slim(r.lines.filter((l) => l.model === "legal-lora"))).toEqual([
      ["protocol", "treasury", "", 200n], ["operator", "op", "", 400n],
      ["developer", "alice", "", 525n], ["developer", "bob", "", 175n],
      ["staker", "s1", "", 70n], ["staker", "s2", "", 210n],
      ["data", "c3", "case@1", 220n], ["data", "c1", "legal@3", 60n], ["data", "c2", "legal@3", 140n],
    ]);
    expect(r.attribution).toEqual([
      { model: "legal-lora", datanet: "case@1", num: 21n, den: 40n },
      { model: "legal-lora", datanet: "legal@3", num: 19n, den: 40n },
    ]);
  });

  it("treats λ as 0 when nothing matched: pure lineage and approved-token shares", () => {
    const r = splitFee({ ...input, models: [adapter], spans: [] });
    const data = r.lines.filter((l) => l.role === "data");
    // 420 · 0.7 = 294 → c1 176.4, c2 117.6; 420 · 0.3 = 126 → c3.
    expect(slim(data)).toEqual([["data", "c3", "case@1", 126n], ["data", "c1", "legal@3", 176n], ["data", "c2", "legal@3", 118n]]);
  });

  it("treats λ as 0 inside a Datanet without matched tokens", () => {
    const r = splitFee({ ...input, models: [adapter], spans: [{ datanet: "case@1", contributor: "c3", matchedTokens: 5 }] });
    // w_legal = ½·0.7 = 0.35 → 147 split 600:400 only (no matches in legal) = 88.2 / 58.8.
    const legal = r.lines.filter((l) => l.datanet === "legal@3");
    expect(slim(legal)).toEqual([["data", "c1", "legal@3", 88n], ["data", "c2", "legal@3", 59n]]);
  });

  it("falls back to the developers: no stakers, no Datanets, Datanets without contributors", () => {
    const lonely: ModelUse = { model: "m", priceIn: 0n, priceOut: 100n, developers: [{ party: "dev", share: 1n }], stakers: [], lineage: [] };
    const policy = { ...POLICY, protocolBps: 0, operatorBps: 0 };
    expect(slim(splitFee({ ...input, tokensOut: 1, models: [lonely], policy, spans: [] }).lines)).toEqual([["developer", "dev", "", 100n]]);
    const empty: ModelUse = { ...lonely, lineage: [{ datanet: "d@1", weight: 1n, contributors: [] }], stakers: [{ party: "s", stake: 0n }] };
    expect(slim(splitFee({ ...input, tokensOut: 1, models: [empty], policy, spans: [] }).lines)).toEqual([["developer", "dev", "", 100n]]);
  });

  it("ignores span evidence from Datanets outside the model's lineage", () => {
    const a = splitFee({ ...input, models: [adapter], spans: [] });
    const b = splitFee({ ...input, models: [adapter], spans: [{ datanet: "other@1", contributor: "zed", matchedTokens: 99 }] });
    expect(b.lines).toEqual(a.lines);
  });

  it("charges nothing and writes no line for a zero fee", () => {
    const r = splitFee({ ...input, tokensIn: 0, tokensOut: 0 });
    expect(r.total).toBe(0n);
    expect(r.lines).toEqual([]);
  });

  it("uses the model's own β/γ/δ when it has them", () => {
    const own: ModelUse = { ...adapter, shares: { developerBps: 10_000, stakerBps: 0, dataBps: 0 } };
    const r = splitFee({ ...input, models: [own] });
    expect(r.lines.filter((l) => l.role === "developer").reduce((s, l) => s + l.amount, 0n)).toBe(1400n);
  });

  it("validates its input with INVALID_ARGUMENT", () => {
    const bad = (f: () => unknown) => {
      try { f(); } catch (e) { return isOpenLoraError(e, "INVALID_ARGUMENT"); }
      return false;
    };
    expect(bad(() => splitFee({ ...input, policy: { ...POLICY, dataBps: 2999 } }))).toBe(true);
    expect(bad(() => splitFee({ ...input, policy: { ...POLICY, protocolBps: 9000, operatorBps: 2000 } }))).toBe(true);
    expect(bad(() => splitFee({ ...input, policy: { ...POLICY, lambdaBps: 10_001 } }))).toBe(true);
    expect(bad(() => splitFee({ ...input, models: [{ ...base, developers: [{ party: "x", share: 0n }] }] }))).toBe(true);
    expect(bad(() => splitFee({ ...input, models: [{ ...base, priceIn: -1n }] }))).toBe(true);
    expect(bad(() => splitFee({ ...input, tokensIn: 1.5 }))).toBe(true);
  });

  it("prices requests and worst cases", () => {
    expect(modelFee(3, 4, 5n, 7n)).toBe(43n);
    expect(worstCaseFee(100, 256, [base, adapter])).toBe(100n * 11n + 256n * 22n);
  });
});

describe("matchedTokens", () => {
  it("counts each output position once per Datanet and contributor", () => {
    expect(matchedTokens([
      { datanet: "d@1", recordId: 1, contributor: "a", start: 0, end: 10 },
      { datanet: "d@1", recordId: 2, contributor: "a", start: 5, end: 12 },
      { datanet: "d@1", recordId: 3, contributor: "a", start: 20, end: 28 },
      { datanet: "d@1", recordId: 4, contributor: "b", start: 0, end: 8 },
      { datanet: "e@2", recordId: 9, contributor: "a", start: 3, end: 3 },
    ])).toEqual([{ datanet: "d@1", contributor: "a", matchedTokens: 20 }, { datanet: "d@1", contributor: "b", matchedTokens: 8 }]);
  });
});

// ---- property tests against an independent evaluation of the formula ---------------------------

interface Q { n: bigint; d: bigint }
const Q = (n: bigint, d = 1n): Q => ({ n, d });
const qadd = (a: Q, b: Q): Q => Q(a.n * b.d + b.n * a.d, a.d * b.d);
const qmul = (a: Q, b: Q): Q => Q(a.n * b.n, a.d * b.d);
const qsub = (a: Q, b: Q): Q => Q(a.n * b.d - b.n * a.d, a.d * b.d);
const bp = (x: number): Q => Q(BigInt(x), 10_000n);
const sum = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n);

/** Exact share of F_m per "role|party|datanet", straight from the documented formula. */
function expectedShares(m: ModelUse, input: SplitInput): Map<string, Q> {
  const p = input.policy;
  const s = m.shares ?? p;
  const out = new Map<string, Q>();
  const put = (k: string, v: Q) => out.set(k, qadd(out.get(k) ?? Q(0n), v));
  put(`protocol|${input.treasury}|`, bp(p.protocolBps));
  put(`operator|${input.operator}|`, bp(p.operatorBps));
  const N = Q(10_000n - BigInt(p.protocolBps) - BigInt(p.operatorBps), 10_000n);
  const S = sum(m.stakers.map((x) => x.stake));
  if (S > 0n) for (const x of m.stakers) put(`staker|${x.party}|`, qmul(qmul(N, bp(s.stakerBps)), Q(x.stake, S)));
  const lineageDatanets = [...new Set(m.lineage.map((l) => l.datanet))];
  const lin = (d: string) => sum(m.lineage.filter((l) => l.datanet === d).map((l) => l.weight));
  const span = (d: string) => BigInt(input.spans.filter((x) => x.datanet === d).reduce((a, x) => a + x.matchedTokens, 0));
  const L = sum(lineageDatanets.map(lin));
  const SP = sum(lineageDatanets.map(span));
  const lam = SP > 0n ? bp(p.lambdaBps) : Q(0n);
  for (const d of lineageDatanets) {
    const w = qadd(L > 0n ? qmul(qsub(Q(1n), lam), Q(lin(d), L)) : Q(0n), SP > 0n ? qmul(lam, Q(span(d), SP)) : Q(0n));
    const mass = qmul(qmul(N, bp(s.dataBps)), w);
    const approved = new Map<string, bigint>();
    for (const l of m.lineage.filter((x) => x.datanet === d)) for (const c of l.contributors) approved.set(c.party, (approved.get(c.party) ?? 0n) + BigInt(c.approvedTokens));
    const A = sum([...approved.values()]);
    const M = span(d);
    const lamD = M > 0n ? bp(p.lambdaBps) : Q(0n);
    if (A > 0n) for (const [c, t] of approved) put(`data|${c}|${d}`, qmul(mass, qmul(qsub(Q(1n), lamD), Q(t, A))));
    if (M > 0n) for (const x of input.spans.filter((y) => y.datanet === d)) put(`data|${x.contributor}|${d}`, qmul(mass, qmul(lamD, Q(BigInt(x.matchedTokens), M))));
  }
  let rest = Q(1n);
  for (const v of out.values()) rest = qsub(rest, v);
  const D = sum(m.developers.map((x) => x.share));
  for (const x of m.developers) put(`developer|${x.party}|`, qmul(rest, Q(x.share, D)));
  return out;
}

const party = fc.constantFrom("a", "b", "c", "d", "e");
const datanet = fc.constantFrom("x@1", "y@1", "z@2", "w@9");
const price = fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 10n ** 24n }));
const policyArb = fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 10_000 }))
  .map(([protocolBps, operatorBps, x, y, lambdaBps]) => {
    const [lo, hi] = x < y ? [x, y] : [y, x];
    return { protocolBps, operatorBps, developerBps: lo, stakerBps: hi - lo, dataBps: 10_000 - hi, lambdaBps };
  });
const modelArb = fc.record({
  model: fc.constant(""),
  priceIn: price,
  priceOut: price,
  developers: fc.array(fc.record({ party, share: fc.bigInt({ min: 0n, max: 100n }) }), { minLength: 1, maxLength: 3 })
    .map((ds) => (ds.some((d) => d.share > 0n) ? ds : [...ds, { party: "dev", share: 1n }])),
  stakers: fc.array(fc.record({ party, stake: fc.oneof(fc.bigInt({ min: 0n, max: 10n }), fc.bigInt({ min: 0n, max: 10n ** 20n })) }), { maxLength: 4 }),
  lineage: fc.array(fc.record({
    datanet,
    weight: fc.bigInt({ min: 0n, max: 10n }),
    contributors: fc.array(fc.record({ party, approvedTokens: fc.integer({ min: 0, max: 5000 }) }), { maxLength: 3 }),
  }), { maxLength: 3 }),
});
const inputArb = fc.record({
  tokensIn: fc.integer({ min: 0, max: 4000 }),
  tokensOut: fc.integer({ min: 0, max: 4000 }),
  models: fc.array(modelArb, { minLength: 1, maxLength: 3 }).map((ms) => ms.map((m, i) => ({ ...m, model: `m${i}` }))),
  spans: fc.array(fc.record({ datanet, contributor: party, matchedTokens: fc.integer({ min: 0, max: 200 }) }), { maxLength: 6 }),
  policy: policyArb,
  treasury: fc.constantFrom("treasury", "a"),
  operator: fc.constantFrom("op", "b"),
});

describe("splitFee: properties", () => {
  it("conserves F exactly, never pays a negative amount, and pays everyone within 1 unit of their exact share", () => {
    fc.assert(fc.property(inputArb, (input) => {
      const r = splitFee(input);
      expect(sum(r.lines.map((l) => l.amount))).toBe(r.total);
      expect(r.total).toBe(sum(input.models.map((m) => BigInt(input.tokensIn) * m.priceIn + BigInt(input.tokensOut) * m.priceOut)));
      for (const l of r.lines) expect(l.amount > 0n).toBe(true);
      input.models.forEach((m, i) => {
        const F = r.fees[i]!.fee;
        const expected = expectedShares(m, input);
        const got = new Map<string, bigint>();
        for (const l of r.lines) {
          if (l.model !== m.model) continue;
          const k = `${l.role}|${l.party}|${l.datanet ?? ""}`;
          expect(got.has(k), `duplicate line ${k}`).toBe(false);
          expect(expected.get(k), `unexpected recipient ${k}`).toBeDefined();
          got.set(k, l.amount);
        }
        for (const [k, e] of expected) {
          const amount = got.get(k) ?? 0n;
          const diff = amount * e.d - F * e.n;
          expect(diff > -e.d && diff < e.d, `${m.model} ${k}: ${amount} vs ${F}·${e.n}/${e.d}`).toBe(true);
        }
      });
    }), { numRuns: 400 });
  });

  it("does not depend on the order of developers, stakers, lineage or spans", () => {
    fc.assert(fc.property(inputArb, (input) => {
      const reversed: SplitInput = {
        ...input,
        spans: [...input.spans].reverse(),
        models: input.models.map((m) => ({ ...m, developers: [...m.developers].reverse(), stakers: [...m.stakers].reverse(), lineage: [...m.lineage].reverse().map((l) => ({ ...l, contributors: [...l.contributors].reverse() })) })),
      };
      expect(splitFee(reversed).lines).toEqual(splitFee(input).lines);
    }), { numRuns: 200 });
  });

  it("sends the staker share to the developers when nobody stakes, and the data share when there is no lineage", () => {
    fc.assert(fc.property(inputArb, (input) => {
      const bare: SplitInput = { ...input, models: input.models.map((m) => ({ ...m, stakers: [], lineage: [] })) };
      const r = splitFee(bare);
      expect(r.lines.every((l) => l.role === "protocol" || l.role === "operator" || l.role === "developer")).toBe(true);
      expect(sum(r.lines.map((l) => l.amount))).toBe(r.total);
    }), { numRuns: 100 });
  });

  it("pays nothing when every price is zero", () => {
    fc.assert(fc.property(inputArb, (input) => {
      const r = splitFee({ ...input, models: input.models.map((m) => ({ ...m, priceIn: 0n, priceOut: 0n })) });
      expect(r.total).toBe(0n);
      expect(r.lines).toEqual([]);
    }), { numRuns: 50 });
  });
});
