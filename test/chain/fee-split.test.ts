/**
 * FeeSplit.sol against splitFee: random inputs through eth_call on one anvil, lines equal exactly.
 */
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BaseError, ContractFunctionRevertedError, createPublicClient, createWalletClient, http, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { splitFee } from "../../src/attribution/fees.js";
import { creditsAbi, inputsAbi, linesFromAbi, type ReceiptInputs } from "../../src/attribution/receipt-abi.js";
import type { FeePolicy, ModelUse, ShareBps, SpanMatch, SplitLine } from "../../src/attribution/types.js";
import { FeeSplitHarnessAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil, type LocalChain } from "../../src/chain/anvil.js";

let chain: LocalChain;
let harness: Address;
let client: ReturnType<typeof createPublicClient>;

beforeAll(async () => {
  chain = await startAnvil();
  const transport = http(chain.url);
  client = createPublicClient({ chain: foundry, transport, pollingInterval: 20 });
  const wallet = createWalletClient({ account: privateKeyToAccount(ANVIL_KEYS[0]!), chain: foundry, transport });
  const art = JSON.parse(readFileSync(join(import.meta.dirname, "../../contracts/artifacts/FeeSplitHarness.json"), "utf8")) as { bytecode: Hex };
  const tx = await wallet.deployContract({ abi: FeeSplitHarnessAbi, bytecode: art.bytecode });
  harness = (await client.waitForTransactionReceipt({ hash: tx })).contractAddress!;
});

afterAll(async () => { await chain?.stop(); });

interface Case { inputs: ReceiptInputs; tokensIn: number; tokensOut: number; credits: SpanMatch[] }

/** The chain's answer: { total, lines }, or the name of the custom error it reverted with. */
async function onChain(c: Case): Promise<{ total: bigint; lines: SplitLine[] } | string> {
  try {
    const [total, lines] = await client.readContract({
      address: harness, abi: FeeSplitHarnessAbi, functionName: "split",
      args: [inputsAbi(c.inputs), c.tokensIn, c.tokensOut, creditsAbi(c.credits)],
    });
    return { total, lines: linesFromAbi(lines) };
  } catch (e) {
    const revert = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
    if (revert instanceof ContractFunctionRevertedError && revert.data?.errorName) return revert.data.errorName;
    throw e;
  }
}

async function same(c: Case): Promise<"equal" | "overflow"> {
  const ts = splitFee({ ...c.inputs, tokensIn: c.tokensIn, tokensOut: c.tokensOut, spans: c.credits });
  const sol = await onChain(c);
  if (sol === "SplitOverflow") return "overflow";
  expect(sol).toEqual({ total: ts.total, lines: ts.lines });
  return "equal";
}

// ---- random inputs -------------------------------------------------------------------------------

const PARTIES = ["alice", "bob", "al", "alicia", "é-party", "zoë", "0xabc", "Bob", "carol", "dave"];
const DATANETS = ["legal@1", "legal@2", "cases@1", "b@1", "légal@1"];
const bps = fc.oneof(fc.constantFrom(0, 10_000), fc.integer({ min: 0, max: 10_000 }));
/** Three parts summing to 10000, edges (0 and 10000) often. */
const threeParts = fc.tuple(bps, bps).map(([a, b]) => [Math.min(a, b), Math.max(a, b) - Math.min(a, b), 10_000 - Math.max(a, b)] as const);
const shares: fc.Arbitrary<ShareBps> = threeParts.map(([developerBps, stakerBps, dataBps]) => ({ developerBps, stakerBps, dataBps }));
const policy: fc.Arbitrary<FeePolicy> = fc.tuple(threeParts, shares, bps).map(([[protocolBps, operatorBps], s, lambdaBps]) => ({ protocolBps, operatorBps, ...s, lambdaBps }));
const party = fc.constantFrom(...PARTIES);
/** Small values half the time: equal remainders (ties) are common only there. */
const big = (max: bigint) => fc.oneof(fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: 0n, max }));
const count = (max: number) => fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max }));

const model = (name: string): fc.Arbitrary<ModelUse> => fc.record({
  priceIn: big(10n ** 15n),
  priceOut: big(10n ** 15n),
  developers: fc.array(fc.record({ party, share: big(1000n) }), { minLength: 1, maxLength: 3 }),
  stakers: fc.array(fc.record({ party, stake: big(10n ** 24n) }), { maxLength: 3 }),
  lineage: fc.array(fc.record({
    datanet: fc.constantFrom(...DATANETS),
    weight: big(1000n),
    contributors: fc.array(fc.record({ party, approvedTokens: count(1_000_000) }), { maxLength: 3 }),
  }), { maxLength: 3 }),
  shares: fc.option(shares, { nil: undefined }),
}).map((m) => {
  const developers = m.developers.some((d) => d.share > 0n) ? m.developers : [{ ...m.developers[0]!, share: 1n }, ...m.developers.slice(1)];
  const out: ModelUse = { model: name, priceIn: m.priceIn, priceOut: m.priceOut, developers, stakers: m.stakers, lineage: m.lineage };
  if (m.shares) out.shares = m.shares;
  return out;
});

const caseArb: fc.Arbitrary<Case> = fc.record({
  policy,
  treasury: fc.constantFrom("treasury", "alice"),
  operator: fc.constantFrom("op", "bob", "treasury"),
  models: fc.integer({ min: 1, max: 3 }).chain((n) => fc.tuple(...["base", "adapter-1", "adapter-2"].slice(0, n).map(model))),
  tokensIn: count(100_000),
  tokensOut: count(100_000),
  credits: fc.array(fc.record({ datanet: fc.constantFrom(...DATANETS), contributor: party, matchedTokens: count(100_000) }), { maxLength: 4 }),
}).map((c) => ({
  inputs: { policy: c.policy, treasury: c.treasury, operator: c.operator, models: c.models },
  tokensIn: c.tokensIn,
  tokensOut: c.tokensOut,
  credits: c.credits.map((x) => ({ ...x, matchedTokens: Math.min(x.matchedTokens, c.tokensOut) })),
}));

describe("FeeSplit.sol", () => {
  it("gives splitFee's lines exactly, over 400 random requests", async () => {
    const outcomes = { equal: 0, overflow: 0 };
    await fc.assert(fc.asyncProperty(caseArb, async (c) => { outcomes[await same(c)]++; }), { numRuns: 400 });
    // Overflow is allowed by the documented bound, but these ranges must stay well inside it.
    expect(outcomes.equal).toBeGreaterThanOrEqual(300);
    console.log(`fee split: ${outcomes.equal} equal, ${outcomes.overflow} beyond uint256`);
  });

  const POLICY: FeePolicy = { protocolBps: 0, operatorBps: 0, developerBps: 10_000, stakerBps: 0, dataBps: 0, lambdaBps: 0 };
  const one = (m: Partial<ModelUse>, policy: FeePolicy = POLICY, tokensOut = 1, credits: SpanMatch[] = []): Case => ({
    inputs: { policy, treasury: "t", operator: "o", models: [{ model: "m", priceIn: 0n, priceOut: 1n, developers: [{ party: "d", share: 1n }], stakers: [], lineage: [], ...m }] },
    tokensIn: 0, tokensOut, credits,
  });

  it("breaks ties to the lower index, in canonical order, as splitFee does", async () => {
    const three = one({ developers: [{ party: "c", share: 1n }, { party: "a", share: 1n }, { party: "b", share: 1n }] }, POLICY, 2);
    expect(await onChain(three)).toEqual({ total: 2n, lines: [{ party: "a", role: "developer", model: "m", amount: 1n }, { party: "b", role: "developer", model: "m", amount: 1n }] });
    expect(await same(three)).toBe("equal");
    // Bytewise order: "Z" < "a" < "ab" < "é"; the same in UTF-16 for these.
    expect(await same(one({ developers: ["é", "ab", "a", "Z"].map((p) => ({ party: p, share: 1n })) }, POLICY, 7))).toBe("equal");
  });

  it("pays everything to one party, and nothing at a zero fee", async () => {
    const all = { ...POLICY, protocolBps: 10_000, developerBps: 0, dataBps: 10_000 };
    expect(await onChain(one({ priceOut: 10n ** 15n }, all, 100_000))).toEqual({ total: 10n ** 20n, lines: [{ party: "t", role: "protocol", model: "m", amount: 10n ** 20n }] });
    expect(await onChain(one({ priceOut: 0n }, { ...POLICY, operatorBps: 5000 }, 100_000))).toEqual({ total: 0n, lines: [] });
    expect(await onChain(one({}, POLICY, 0))).toEqual({ total: 0n, lines: [] });
  });

  it("merges repeated parties and Datanets, pays credits outside the lineage nothing, falls back to the developers", async () => {
    const policy: FeePolicy = { protocolBps: 100, operatorBps: 900, developerBps: 3000, stakerBps: 3000, dataBps: 4000, lambdaBps: 2500 };
    const c = one({
      priceIn: 7n, priceOut: 13n,
      developers: [{ party: "x", share: 2n }, { party: "x", share: 1n }, { party: "y", share: 0n }],
      stakers: [{ party: "x", stake: 3n }, { party: "s", stake: 10n ** 24n }, { party: "x", stake: 4n }],
      lineage: [
        { datanet: "d@1", weight: 3n, contributors: [{ party: "x", approvedTokens: 5 }] },
        { datanet: "e@1", weight: 0n, contributors: [] },
        { datanet: "d@1", weight: 1n, contributors: [{ party: "x", approvedTokens: 1 }, { party: "z", approvedTokens: 0 }] },
      ],
    }, policy, 991, [{ datanet: "d@1", contributor: "x", matchedTokens: 3 }, { datanet: "q@1", contributor: "w", matchedTokens: 9 }, { datanet: "e@1", contributor: "x", matchedTokens: 2 }]);
    c.tokensIn = 17;
    expect(await same(c)).toBe("equal");
    // No lineage, no stakes: the developers take the data and stake buckets.
    expect(await same(one({ priceOut: 3n }, policy, 1001))).toBe("equal");
  });

  it("refuses inputs splitFee refuses", async () => {
    expect(await onChain(one({ developers: [{ party: "d", share: 0n }] }))).toBe("InvalidSplitInput");
    expect(await onChain(one({}, { ...POLICY, protocolBps: 6000, operatorBps: 5000 }))).toBe("InvalidSplitInput");
    expect(await onChain(one({ shares: { developerBps: 1, stakerBps: 0, dataBps: 0 } }))).toBe("InvalidSplitInput");
    expect(await onChain(one({ lineage: [{ datanet: "d", weight: 1n, contributors: [{ party: "c", approvedTokens: 2 ** 53 }] }] }))).toBe("InvalidSplitInput");
  });

  it("reverts SplitOverflow beyond uint256", async () => {
    expect(await onChain(one({ priceOut: (1n << 255n) }, POLICY, 2))).toBe("SplitOverflow");
  });
});
