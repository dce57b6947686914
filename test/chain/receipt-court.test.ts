/**
 * ReceiptCourt against receipts a real ledger signed: the honest one stands, a lying one slashes its node.
 */
import { join } from "node:path";
import { BaseError, ContractFunctionRevertedError, encodeAbiParameters, keccak256, parseEventLogs, stringToHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeSigner } from "../../src/attribution/signing.js";
import { proveBadContributorsArgs, proveBadMergedLineageArgs, proveBadPolicyArgs, proveBadStakersArgs, receiptCourtArgs, receiptDigest, receiptSplitProblem, type PublishedVersion, type Receipt, type RegistryTerms } from "../../src/attribution/receipts.js";
import { MockRegistryAbi, MockSettlementAbi, ReceiptCourtAbi, RegistryCourtAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil, type LocalChain } from "../../src/chain/anvil.js";
import type { Ledger } from "../../src/ledger/index.js";
import { termsHash } from "../helpers/chain.js";
import { tempDir } from "../helpers/tmp.js";
import { courtLedger, deployCourt, NODE_KEY, POLICY, settleRequest } from "./court-fixture.js";

const dir = tempDir("openlora-court-");
const CHALLENGER = ANVIL_KEYS[2]!;
const challenger = privateKeyToAccount(CHALLENGER).address;
let chain: LocalChain;
let c: Awaited<ReturnType<typeof deployCourt>>;
let ledger: Ledger;

beforeAll(async () => {
  chain = await startAnvil();
  c = await deployCourt(chain);
  ledger = courtLedger(join(dir, "court.sqlite"), chain.chainId, c.court);
});

afterAll(async () => {
  ledger?.close();
  await chain?.stop();
});

const domain = () => ({ chainId: chain.chainId, verifyingContract: c.court });
const sign = (r: Receipt, key: Hex = NODE_KEY) => nodeSigner(key).sign(receiptDigest(r, domain()));

/** proveBadSplit: "proven:<reason>" when it is mined, else the custom error it reverts with. */
async function prove(r: Receipt, signature: Hex, args = receiptCourtArgs(r)): Promise<string> {
  return proveBy("proveBadSplit", [args[0], args[1], signature], r);
}

const REASONS = ["FeeMismatch", "LinesMismatch", "InvalidInputs", "TermsMismatch", "Equivocation", "NotPosted", "StakersMismatch", "ContributorsMismatch", "PolicyMismatch", "MergedLineageMismatch"];

/** A proof by `functionName`: "proven:<reason>" when it is mined (its FraudProven checked), else the custom error it reverts with. */
async function proveBy(functionName: "proveBadSplit" | "proveBadStakers" | "proveBadContributors" | "proveBadPolicy" | "proveBadMergedLineage", args: readonly unknown[], r: Receipt): Promise<string> {
  const w = c.wallet(CHALLENGER);
  const deputy = functionName === "proveBadPolicy" || functionName === "proveBadMergedLineage";
  try {
    const { request } = await c.client.simulateContract({
      account: w.account, address: deputy ? c.registryCourt : c.court, abi: [...ReceiptCourtAbi, ...RegistryCourtAbi], functionName, args: args as never,
    } as never);
    const rc = await c.client.waitForTransactionReceipt({ hash: await w.writeContract(request) });
    const [ev] = parseEventLogs({ abi: ReceiptCourtAbi, logs: rc.logs, eventName: "FraudProven" });
    expect(ev!.args).toMatchObject({ node: c.node, challenger, receiptDigest: receiptDigest(r, domain()) });
    return `proven:${REASONS[ev!.args.reason]}`;
  } catch (e) {
    const revert = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
    if (revert instanceof ContractFunctionRevertedError && revert.data?.errorName) return [revert.data.errorName, ...(revert.data.args ?? []).map(String)].join(":");
    throw e;
  }
}

/** proveBadSplit (for describes that name their own `prove`). */
const proveSplit = (r: Receipt, signature: Hex) => prove(r, signature);

const slashes = async () => Number(await c.client.readContract({ address: c.settlement, abi: MockSettlementAbi, functionName: "slashCount" }));

describe("ReceiptCourt", () => {
  it("computes the digest the ledger signed, and upholds an honest receipt", async () => {
    const s = await settleRequest(ledger);
    expect(s.receipt.v).toBe(2);
    expect(new Set(s.receipt.lines.filter((l) => l.role === "data").map((l) => l.party))).toEqual(new Set(["carol", "dave", "frank"]));
    const [struct] = receiptCourtArgs(s.receipt);
    expect(await c.client.readContract({ address: c.court, abi: ReceiptCourtAbi, functionName: "receiptDigest", args: [struct] })).toBe(s.hash);
    expect(await prove(s.receipt, s.signature)).toBe("ReceiptConsistent");
    expect(await slashes()).toBe(0);
  });

  it("slashes an operator whose signed lines are not the split of its inputs, once per receipt", async () => {
    const s = await settleRequest(ledger, 1);
    // The operator moves one line's amount to another party and signs that.
    const lines = s.receipt.lines.map((l, i) => (i === 0 ? { ...l, amount: 0n } : i === 1 ? { ...l, amount: l.amount + s.receipt.lines[0]!.amount } : l));
    const lie: Receipt = { ...s.receipt, lines };
    expect(receiptSplitProblem(lie)).not.toBeNull();
    const sig = sign(lie);
    expect(await prove(lie, sig)).toBe("proven:LinesMismatch");
    const [operator, who, amount] = await c.client.readContract({ address: c.settlement, abi: MockSettlementAbi, functionName: "slashes", args: [0n] });
    expect({ operator, who, amount }).toEqual({ operator: c.node, who: challenger, amount: 1000n });
    expect(await c.client.readContract({ address: c.court, abi: ReceiptCourtAbi, functionName: "proven", args: [receiptDigest(lie, domain())] })).toBe(true);
    expect(await prove(lie, sig)).toBe(`AlreadyProven:${receiptDigest(lie, domain())}`);
    expect(await slashes()).toBe(1);
  });

  it("slashes a fee that is not Σ F_m, and inputs splitFee refuses", async () => {
    const s = await settleRequest(ledger, 2);
    const last = s.receipt.lines.at(-1)!;
    const richer: Receipt = { ...s.receipt, fee: s.receipt.fee + 5n, lines: [...s.receipt.lines.slice(0, -1), { ...last, amount: last.amount + 5n }] };
    expect(await prove(richer, sign(richer))).toBe("proven:FeeMismatch");
    const inputs = { ...s.receipt.inputs!, policy: { ...s.receipt.inputs!.policy, dataBps: 0 } };
    const invalid: Receipt = { ...s.receipt, inputs };
    expect(await prove(invalid, sign(invalid))).toBe("proven:InvalidInputs");
    expect(await slashes()).toBe(3);
  });

  it("refuses proofs by signature: not the receipt's node, not an operator, not a signature", async () => {
    const s = await settleRequest(ledger, 3);
    const other = privateKeyToAccount(CHALLENGER).address;
    expect(await prove(s.receipt, sign(s.receipt, CHALLENGER))).toBe(`SignerNotNode:${other}:${c.node}`);
    const stranger: Receipt = { ...s.receipt, node: other, lines: s.receipt.lines.map((l, i) => (i === 0 ? { ...l, amount: l.amount + 1n } : i === 1 ? { ...l, amount: l.amount - 1n } : l)) };
    expect(await prove(stranger, sign(stranger, CHALLENGER))).toBe(`NotOperator:${other}`);
    expect(await prove(s.receipt, "0xdeadbeef")).toBe("BadSignature");
    expect(await slashes()).toBe(3);
  });

  it("refuses parts that are not the ones the receipt commits to", async () => {
    const s = await settleRequest(ledger, 4);
    const [struct, parts] = receiptCourtArgs(s.receipt);
    const swap = (p: Partial<typeof parts>) => [struct, { ...parts, ...p }] as const;
    const moved = parts.lines.map((l, i) => (i === 0 ? { ...l, amount: l.amount - 1n } : i === 1 ? { ...l, amount: l.amount + 1n } : l));
    expect(await prove(s.receipt, s.signature, swap({ lines: moved }))).toBe("PartMismatch:0");
    expect(await prove(s.receipt, s.signature, swap({ inputs: { ...parts.inputs, treasury: "mallory" } }))).toBe("PartMismatch:1");
    expect(await prove(s.receipt, s.signature, swap({ credits: parts.credits.slice(1) }))).toBe("PartMismatch:2");
    expect(await prove(s.receipt, s.signature, swap({ spans: [] }))).toBe("PartMismatch:2");
  });

  it("reverts SplitOverflow when the inputs' fee does not fit uint256", async () => {
    const s = await settleRequest(ledger, 5);
    const inputs = { ...s.receipt.inputs!, models: s.receipt.inputs!.models.map((m, i) => (i === 0 ? { ...m, priceOut: 1n << 255n } : m)) };
    const huge: Receipt = { ...s.receipt, inputs };
    expect(await prove(huge, sign(huge))).toBe("SplitOverflow");
  });
});

describe("ReceiptCourt.proveBadStakers (stakes from MockSettlement, in force at every time)", () => {
  const A = `0x${"0".repeat(38)}0a` as const;
  const B = `0x${"0".repeat(38)}0b` as const;
  const C = `0x${"0".repeat(38)}0c` as const;
  const LORA = keccak256(stringToHex("legal-lora"));
  let honest: Awaited<ReturnType<typeof settleRequest>>;

  const proveStakers = (r: Receipt, signature: Hex, model: number | string = "legal-lora") =>
    proveBy("proveBadStakers", proveBadStakersArgs(r, signature, model), r);

  /** The honest receipt with legal-lora's stakers replaced, signed by the node: what a lying node could sign. */
  function withStakers(stakers: { party: string; stake: bigint }[]): [Receipt, Hex] {
    const inputs = { ...honest.receipt.inputs!, models: honest.receipt.inputs!.models.map((m) => (m.model === "legal-lora" ? { ...m, stakers } : m)) };
    const r: Receipt = { ...honest.receipt, inputs };
    return [r, sign(r)];
  }

  beforeAll(async () => {
    honest = await settleRequest(ledger, 20);
    const w = c.wallet(ANVIL_KEYS[0]!);
    for (const [who, stake] of [[A, 30n], [B, 10n]] as const) {
      await c.client.waitForTransactionReceipt({ hash: await w.writeContract({ address: c.settlement, abi: MockSettlementAbi, functionName: "setStake", args: [LORA, who, stake, 40n] }) });
    }
  });

  it("upholds stakers that are exactly Settlement's at the receipt's time, in ascending address order", async () => {
    const [r, sig] = withStakers([{ party: A, stake: 30n }, { party: B, stake: 10n }]);
    expect(await proveStakers(r, sig)).toBe("StakersConsistent");
    // A model nobody stakes on, listed without stakers.
    expect(await proveStakers(r, sig, "llama")).toBe("StakersConsistent");
  });

  it("slashes a wrong stake, a staker left out or added, the wrong order, a duplicate, a zero stake, a party that is no address", async () => {
    const before = await slashes();
    const lies: { party: string; stake: bigint }[][] = [
      [{ party: A, stake: 31n }, { party: B, stake: 10n }],
      [{ party: A, stake: 30n }],
      [{ party: A, stake: 30n }, { party: B, stake: 10n }, { party: C, stake: 5n }],
      [{ party: B, stake: 10n }, { party: A, stake: 30n }],
      [{ party: A, stake: 30n }, { party: A, stake: 30n }, { party: B, stake: 10n }],
      [{ party: A, stake: 30n }, { party: B, stake: 10n }, { party: C, stake: 0n }],
      [{ party: A.toUpperCase().replace("0X", "0x"), stake: 30n }, { party: B, stake: 10n }],
      [{ party: `${A}00`, stake: 30n }, { party: B, stake: 10n }],
      [],
    ];
    for (const stakers of lies) {
      const [r, sig] = withStakers(stakers);
      expect(await proveStakers(r, sig), JSON.stringify(stakers, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).toBe("proven:StakersMismatch");
    }
    // The fixture ledger's own stakers ("sam", "tess") are off-chain accounts: no node on a chain signs them.
    expect(await proveStakers(honest.receipt, honest.signature)).toBe("proven:StakersMismatch");
    expect(await slashes()).toBe(before + lies.length + 1);
    const [r, sig] = withStakers(lies[0]!);
    expect(await proveStakers(r, sig)).toBe(`AlreadyProven:${receiptDigest(r, domain())}`);
  });

  it("checks the inputs part, the model index and the signature", async () => {
    const [r, sig] = withStakers([{ party: A, stake: 29n }, { party: B, stake: 10n }]);
    const [struct, inputs, , index] = proveBadStakersArgs(r, sig, "legal-lora");
    const w = c.wallet(CHALLENGER);
    const call = (args: readonly unknown[]) => c.client.simulateContract({ account: w.account, address: c.court, abi: ReceiptCourtAbi, functionName: "proveBadStakers", args: args as never });
    await expect(call([struct, { ...inputs, treasury: "mallory" }, sig, index])).rejects.toThrow(/PartMismatch/);
    await expect(call([struct, inputs, sig, BigInt(inputs.models.length)])).rejects.toThrow(/ModelIndexOutOfRange/);
    await expect(call([struct, inputs, "0xdeadbeef", index])).rejects.toThrow(/BadSignature/);
    expect(() => proveBadStakersArgs(r, sig, "nope")).toThrow(/no model nope/);
  });
});

describe("ReceiptCourt.proveBadContributors (Datanet versions from MockRegistry)", () => {
  const A = `0x${"0".repeat(38)}0a` as const;
  const B = `0x${"0".repeat(38)}0b` as const;
  const C = `0x${"0".repeat(38)}0c` as const;
  const ROOT = keccak256(stringToHex("legal v1 records"));
  const published: PublishedVersion = { root: ROOT, contributors: [A, B], approvedTokens: [6n, 3n] };
  const versionHash = (v: PublishedVersion) =>
    keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "address[]" }, { type: "uint256[]" }], [v.root, v.contributors, v.approvedTokens]));
  let honest: Awaited<ReturnType<typeof settleRequest>>;

  const prove = (r: Receipt, sig: Hex, entry: number | string = "legal@1", v: PublishedVersion = published, model: number | string = "legal-lora") =>
    proveBy("proveBadContributors", proveBadContributorsArgs(r, sig, model, entry, v), r);

  /** The honest receipt with legal-lora's "legal@1" contributors replaced, signed by the node. */
  function withContributors(contributors: { party: string; approvedTokens: number }[], key = "legal@1"): [Receipt, Hex] {
    const inputs = {
      ...honest.receipt.inputs!,
      models: honest.receipt.inputs!.models.map((m) => (m.model === "legal-lora" ? { ...m, lineage: m.lineage.map((e) => (e.datanet === key ? { ...e, contributors } : e)) } : m)),
    };
    const r: Receipt = { ...honest.receipt, inputs };
    return [r, sign(r)];
  }

  beforeAll(async () => {
    honest = await settleRequest(ledger, 30);
    const w = c.wallet(ANVIL_KEYS[0]!);
    await c.client.waitForTransactionReceipt({
      hash: await w.writeContract({ address: c.registry, abi: MockRegistryAbi, functionName: "setDatanetVersionHash", args: [keccak256(stringToHex("legal")), 1, versionHash(published)] }),
    });
  });

  it("upholds contributors that are exactly the published version's, in its order", async () => {
    expect(honest.receipt.inputs!.models.find((m) => m.model === "legal-lora")!.lineage.map((e) => e.datanet)).toEqual(["cases@1", "legal@1"]);
    const [r, sig] = withContributors([{ party: A, approvedTokens: 6 }, { party: B, approvedTokens: 3 }]);
    expect(await prove(r, sig)).toBe("ContributorsConsistent");
    expect(await prove(r, sig, 1)).toBe("ContributorsConsistent");
  });

  it("slashes wrong approved tokens, a contributor left out or added, the wrong order, a duplicate, a party that is no address", async () => {
    const before = await slashes();
    const lies: { party: string; approvedTokens: number }[][] = [
      [{ party: A, approvedTokens: 7 }, { party: B, approvedTokens: 3 }],
      [{ party: A, approvedTokens: 6 }, { party: B, approvedTokens: 0 }],
      [{ party: A, approvedTokens: 6 }],
      [{ party: A, approvedTokens: 6 }, { party: B, approvedTokens: 3 }, { party: C, approvedTokens: 1 }],
      [{ party: B, approvedTokens: 3 }, { party: A, approvedTokens: 6 }],
      [{ party: A, approvedTokens: 6 }, { party: A, approvedTokens: 3 }],
      [{ party: A, approvedTokens: 6 }, { party: C, approvedTokens: 3 }],
      [{ party: A.toUpperCase().replace("0X", "0x"), approvedTokens: 6 }, { party: B, approvedTokens: 3 }],
      [{ party: `${A}00`, approvedTokens: 6 }, { party: B, approvedTokens: 3 }],
      [],
    ];
    for (const cs of lies) {
      const [r, sig] = withContributors(cs);
      expect(await prove(r, sig), JSON.stringify(cs)).toBe("proven:ContributorsMismatch");
    }
    // The fixture ledger's own contributors ("carol", "dave") are off-chain names: no node on a chain lists them.
    expect(await prove(honest.receipt, honest.signature)).toBe("proven:ContributorsMismatch");
    expect(await slashes()).toBe(before + lies.length + 1);
    const [r, sig] = withContributors(lies[0]!);
    expect(await prove(r, sig)).toBe(`AlreadyProven:${receiptDigest(r, domain())}`);
  });

  it("needs the published version: another root, contributors or tokens, an unpublished version, an unparsable key", async () => {
    const [r, sig] = withContributors([{ party: A, approvedTokens: 5 }, { party: B, approvedTokens: 3 }]);
    for (const v of [{ ...published, root: keccak256("0x01") }, { ...published, contributors: [A, C] }, { ...published, approvedTokens: [5n, 3n] }]) {
      expect(await prove(r, sig, "legal@1", v)).toBe("NotPublishedVersion:legal@1");
    }
    // cases@1 was never published in MockRegistry: a Datanet the node keeps itself is not provable here.
    expect(await prove(r, sig, "cases@1")).toBe("NotPublishedVersion:cases@1");
    for (const key of ["legal@2", "legal@01", "legal", "legal@x", "legal@99999999999"]) {
      const [r2, sig2] = withContributors([{ party: A, approvedTokens: 6 }], "legal@1");
      const renamed: Receipt = { ...r2, inputs: { ...r2.inputs!, models: r2.inputs!.models.map((m) => ({ ...m, lineage: m.lineage.map((e) => (e.datanet === "legal@1" ? { ...e, datanet: key } : e)) })) } };
      expect(await prove(renamed, sign(renamed), key)).toBe(`NotPublishedVersion:${key}`);
    }
  });

  it("checks the inputs part, the model and lineage indexes and the signature", async () => {
    const [r, sig] = withContributors([{ party: A, approvedTokens: 4 }, { party: B, approvedTokens: 3 }]);
    const [struct, inputs, , m, e, v] = proveBadContributorsArgs(r, sig, "legal-lora", "legal@1", published);
    const w = c.wallet(CHALLENGER);
    const call = (args: readonly unknown[]) => c.client.simulateContract({ account: w.account, address: c.court, abi: ReceiptCourtAbi, functionName: "proveBadContributors", args: args as never });
    await expect(call([struct, { ...inputs, operator: "mallory" }, sig, m, e, v])).rejects.toThrow(/PartMismatch/);
    await expect(call([struct, inputs, sig, BigInt(inputs.models.length), e, v])).rejects.toThrow(/ModelIndexOutOfRange/);
    await expect(call([struct, inputs, sig, m, 2n, v])).rejects.toThrow(/LineageIndexOutOfRange/);
    await expect(call([struct, inputs, "0xdeadbeef", m, e, v])).rejects.toThrow(/BadSignature/);
    const other = nodeSigner(CHALLENGER).sign(receiptDigest(r, domain()));
    await expect(call([struct, inputs, other, m, e, v])).rejects.toThrow(/SignerNotNode/);
    expect(() => proveBadContributorsArgs(r, sig, "legal-lora", "nope@1", published)).toThrow(/no lineage entry nope@1/);
    expect(() => proveBadContributorsArgs(r, sig, "llama", 0, published)).toThrow(/no lineage entry 0/);
  });
});

describe("RegistryCourt.proveBadPolicy (the node's policy from MockRegistry, the treasury from MockSettlement)", () => {
  const TREASURY = `0x${"7e".repeat(20)}` as const;
  const ZERO = { protocolBps: 0, operatorBps: 0, developerBps: 0, stakerBps: 0, dataBps: 0, lambdaBps: 0 };
  let honest: Awaited<ReturnType<typeof settleRequest>>;
  const send = async (address: Hex, abi: typeof MockRegistryAbi | typeof MockSettlementAbi, functionName: string, args: readonly unknown[]) => {
    const w = c.wallet(ANVIL_KEYS[0]!);
    await c.client.waitForTransactionReceipt({ hash: await w.writeContract({ address, abi, functionName, args } as never) });
  };
  const prove = (r: Receipt, sig: Hex) => proveBy("proveBadPolicy", proveBadPolicyArgs(r, sig), r);

  /** The honest receipt with its inputs' policy, treasury and operator replaced, signed by the node. */
  function withPolicy(over: { policy?: Partial<typeof POLICY>; treasury?: string; operator?: string }): [Receipt, Hex] {
    const i = honest.receipt.inputs!;
    const inputs = { ...i, policy: { ...POLICY, ...over.policy }, treasury: over.treasury ?? TREASURY, operator: over.operator ?? c.node.toLowerCase() };
    const r: Receipt = { ...honest.receipt, inputs };
    return [r, sign(r)];
  }

  beforeAll(async () => {
    honest = await settleRequest(ledger, 40);
    await send(c.settlement, MockSettlementAbi, "setTreasury", [TREASURY]);
    await send(c.registry, MockRegistryAbi, "setPolicy", [c.node, POLICY]);
  });

  it("upholds the policy the node declared, Settlement's treasury and the node as operator", async () => {
    const [r, sig] = withPolicy({});
    expect(await prove(r, sig)).toBe("PolicyConsistent");
  });

  it("slashes any other bps, treasury or operator", async () => {
    const before = await slashes();
    expect(c.node).not.toBe(c.node.toLowerCase()); // the checksummed spelling differs from the party's
    const lies = [
      ...(["protocolBps", "operatorBps", "developerBps", "stakerBps", "dataBps", "lambdaBps"] as const).map((k) => ({ policy: { [k]: POLICY[k] + 1 } })),
      { policy: { protocolBps: 0, operatorBps: POLICY.operatorBps + POLICY.protocolBps } },
      { treasury: `0x${"7f".repeat(20)}` },
      { treasury: TREASURY.toUpperCase().replace("0X", "0x") },
      { treasury: "treasury" },
      { operator: `0x${"0".repeat(40)}` },
      { operator: c.node },
    ];
    for (const over of lies) {
      const [r, sig] = withPolicy(over);
      expect(await prove(r, sig), JSON.stringify(over)).toBe("proven:PolicyMismatch");
    }
    // The fixture ledger names its treasury and operator off chain ("treasury", "op"): no node on a chain does.
    expect(await prove(honest.receipt, honest.signature)).toBe("proven:PolicyMismatch");
    expect(await slashes()).toBe(before + lies.length + 1);
  });

  it("needs a declared policy at the receipt's time, the inputs part and the node's signature", async () => {
    const [r, sig] = withPolicy({ policy: { lambdaBps: 1 } });
    await send(c.registry, MockRegistryAbi, "setPolicy", [c.node, ZERO]);
    expect(await prove(r, sig)).toBe(`NoPolicyAtTime:${c.node}:${Math.floor(r.time / 1000)}`);
    await send(c.registry, MockRegistryAbi, "setPolicy", [c.node, POLICY]);
    const [struct, inputs] = proveBadPolicyArgs(r, sig);
    const w = c.wallet(CHALLENGER);
    const call = (args: readonly unknown[]) => c.client.simulateContract({ account: w.account, address: c.registryCourt, abi: RegistryCourtAbi, functionName: "proveBadPolicy", args: args as never });
    await expect(call([struct, { ...inputs, treasury: "mallory" }, sig])).rejects.toThrow(/PartMismatch/);
    await expect(call([struct, inputs, "0xdeadbeef"])).rejects.toThrow(/BadSignature/);
    expect(await prove(r, sig)).toBe("proven:PolicyMismatch");
  });
});

describe("RegistryCourt.proveBadMergedLineage (terms from MockRegistry, in force at every time)", () => {
  const id = (s: string) => keccak256(stringToHex(s));
  const dev = `0x${"d1".repeat(20)}` as const;
  const terms = (over: Partial<RegistryTerms>): RegistryTerms => ({
    contentHash: `0x${"00".repeat(32)}`, priceIn: 1n, priceOut: 1n, developers: [{ party: dev, share: 1n }], hasShares: false, developerBps: 0, stakerBps: 0, dataBps: 0, lineage: [], parents: [], ...over,
  });
  const legal = terms({ lineage: [{ datanet: id("legal"), version: 1, weight: 7n }, { datanet: id("cases"), version: 1, weight: 3n }] });
  const cases = terms({ lineage: [{ datanet: id("cases"), version: 1, weight: 1n }] });
  const mix = terms({ parents: [{ model: id("legal-lora"), weight: 1n }, { model: id("case-lora"), weight: 1n }] });
  const hash = termsHash;
  const setTerms = async (model: string, t: RegistryTerms | null) => {
    const w = c.wallet(ANVIL_KEYS[0]!);
    await c.client.waitForTransactionReceipt({ hash: await w.writeContract({ address: c.registry, abi: MockRegistryAbi, functionName: "setTermsHash", args: [id(model), t ? hash(t) : `0x${"00".repeat(32)}`] }) });
  };
  let honest: Awaited<ReturnType<typeof settleRequest>>;
  let n = 0;

  /** A request on the merged adapter "mix" (parents legal-lora and case-lora, 1:1). */
  async function settleMix(): Promise<Awaited<ReturnType<typeof settleRequest>>> {
    const input = { baseModel: "llama", adapters: [{ id: "mix", weightPpm: 1_000_000 }], promptTokens: [1, 2, 3], outputTokens: [4, 5, 6, 7 + n++], sampling: { seed: 1 }, finish: "length" as const };
    return ledger.settle(ledger.reserve("agent", ledger.worstCaseFee({ baseModel: "llama", adapters: ["mix"], tokensIn: 3, maxTokens: 4 })), input);
  }
  const prove = (r: Receipt, sig: Hex, merged = mix, parents: (RegistryTerms | null)[] = [legal, cases], model: number | string = "mix") =>
    proveBy("proveBadMergedLineage", proveBadMergedLineageArgs(r, sig, model, merged, parents), r);
  function withLineage(lineage: { datanet: string; weight: bigint }[]): [Receipt, Hex] {
    const m0 = honest.receipt.inputs!.models.find((m) => m.model === "mix")!;
    const byKey = new Map(m0.lineage.map((e) => [e.datanet, e]));
    const models = honest.receipt.inputs!.models.map((m) => (m.model === "mix" ? { ...m, lineage: lineage.map((e) => ({ ...(byKey.get(e.datanet) ?? { contributors: [] }), ...e })) } : m));
    const r: Receipt = { ...honest.receipt, inputs: { ...honest.receipt.inputs!, models } };
    return [r, sign(r)];
  }

  beforeAll(async () => {
    ledger.registerModel({
      id: "mix", kind: "adapter", owner: "gina", baseModel: "llama", priceIn: 2n, priceOut: 3n, contentHash: id("mix"),
      developers: [{ party: "gina", share: 1n }], parents: [{ model: "legal-lora", weight: 1n }, { model: "case-lora", weight: 1n }],
    });
    honest = await settleMix();
    for (const [m, t] of [["mix", mix], ["legal-lora", legal], ["case-lora", cases]] as const) await setTerms(m, t);
  });

  it("upholds the weights the ledger computed: ½·(7/10, 3/10) + ½·(0, 1) = 7 : 13", async () => {
    expect(honest.receipt.inputs!.models.find((m) => m.model === "mix")!.lineage.map((e) => [e.datanet, e.weight])).toEqual([["cases@1", 13n], ["legal@1", 7n]]);
    expect(await prove(honest.receipt, honest.signature)).toBe("MergedLineageConsistent");
    const [r, sig] = withLineage([{ datanet: "legal@1", weight: 7n }, { datanet: "cases@1", weight: 13n }]);
    expect(await prove(r, sig)).toBe("MergedLineageConsistent");
  });

  it("slashes other weights: scaled, swapped, an entry left out or added", async () => {
    const before = await slashes();
    const lies = [
      [{ datanet: "cases@1", weight: 26n }, { datanet: "legal@1", weight: 14n }],
      [{ datanet: "cases@1", weight: 7n }, { datanet: "legal@1", weight: 13n }],
      [{ datanet: "cases@1", weight: 13n }],
      [{ datanet: "cases@1", weight: 13n }, { datanet: "legal@1", weight: 7n }, { datanet: "tales@1", weight: 1n }],
      [{ datanet: "cases@1", weight: 13n }, { datanet: "legal@2", weight: 7n }],
      [],
    ];
    for (const l of lies) {
      const [r, sig] = withLineage(l);
      expect(await prove(r, sig), JSON.stringify(l, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).toBe("proven:MergedLineageMismatch");
    }
    expect(await slashes()).toBe(before + lies.length);
    const [r, sig] = withLineage(lies[0]!);
    expect(await prove(r, sig)).toBe(`AlreadyProven:${receiptDigest(r, domain())}`);
  });

  it("a parent without terms at the merge's time adds nothing", async () => {
    await setTerms("case-lora", null);
    const [r, sig] = withLineage([{ datanet: "cases@1", weight: 3n }, { datanet: "legal@1", weight: 7n }]);
    expect(await prove(r, sig, mix, [legal, null])).toBe("MergedLineageConsistent");
    const [lie, lieSig] = withLineage([{ datanet: "cases@1", weight: 13n }, { datanet: "legal@1", weight: 6n }]);
    expect(await prove(lie, lieSig, mix, [legal, null])).toBe("proven:MergedLineageMismatch");
    await setTerms("case-lora", cases);
  });

  it("needs the registry's terms of the merge and of each parent, and plain adapters as parents", async () => {
    const s = await settleMix();
    const [r, sig] = [s.receipt, s.signature];
    expect(await prove(r, sig, { ...mix, priceIn: 9n })).toBe(`NotRegistryTerms:${id("mix")}:${hash(mix)}`);
    expect(await prove(r, sig, mix, [legal, { ...cases, priceIn: 9n }])).toBe(`NotRegistryTerms:${id("case-lora")}:${hash(cases)}`);
    expect(await prove(r, sig, mix, [legal])).toBe("ParentsCount:1:2");
    const plain = await settleRequest(ledger, 50);
    expect(await prove(plain.receipt, plain.signature, legal, [], "legal-lora")).toBe(`NotMerged:${id("legal-lora")}`);
    expect(await prove(r, sig, mix, [legal, cases], "llama")).toBe(`NoTermsAtTime:${id("llama")}:${Math.floor(r.time / 1000)}`);
    expect(await prove(r, sig, mix, [legal, cases, legal])).toBe("ParentsCount:3:2");
    const [struct, inputs, , m, t, ps] = proveBadMergedLineageArgs(r, sig, "mix", mix, [legal, cases]);
    const w = c.wallet(CHALLENGER);
    const call = (args: readonly unknown[]) => c.client.simulateContract({ account: w.account, address: c.registryCourt, abi: RegistryCourtAbi, functionName: "proveBadMergedLineage", args: args as never });
    await expect(call([struct, { ...inputs, operator: "mallory" }, sig, m, t, ps])).rejects.toThrow(/PartMismatch/);
    await expect(call([struct, inputs, sig, BigInt(inputs.models.length), t, ps])).rejects.toThrow(/ModelIndexOutOfRange/);
    await expect(call([struct, inputs, "0xdeadbeef", m, t, ps])).rejects.toThrow(/BadSignature/);
    await expect(call([struct, inputs, nodeSigner(CHALLENGER).sign(receiptDigest(r, domain())), m, t, ps])).rejects.toThrow(/SignerNotNode/);
    const stranger: Receipt = { ...r, node: challenger };
    expect(await prove(stranger, sign(stranger, CHALLENGER))).toBe(`NotOperator:${challenger}`);
  });

  it("judges a merge of merges from its whole ancestry, depth first; a short or long ancestry, or a cycle, is refused", async () => {
    // case-lora re-termed as a merge of legal-lora and the plain tale-lora (3 : 1): its lineage is
    // ¾·(7/10 legal, 3/10 cases) + ¼·(1 tales) = 21 : 9 : 10, and mix = ½·legal + ½·case-lora =
    // (7/20 + 21/80, 3/20 + 9/80, 10/80) = 49 : 21 : 10.
    const tales = terms({ lineage: [{ datanet: id("tales"), version: 1, weight: 5n }] });
    const merge2 = terms({ parents: [{ model: id("legal-lora"), weight: 3n }, { model: id("tale-lora"), weight: 1n }] });
    await setTerms("tale-lora", tales);
    await setTerms("case-lora", merge2);
    try {
      const tree = [legal, merge2, legal, tales];
      const [r, sig] = withLineage([{ datanet: "legal@1", weight: 49n }, { datanet: "cases@1", weight: 21n }, { datanet: "tales@1", weight: 10n }]);
      expect(await prove(r, sig, mix, tree)).toBe("MergedLineageConsistent");
      expect(await prove(r, sig, mix, [legal, merge2, legal])).toBe("ParentsCount:3:4");
      expect(await prove(r, sig, mix, [...tree, legal])).toBe("ParentsCount:5:4");
      expect(await prove(r, sig, mix, [legal, merge2, tales, legal])).toBe(`NotRegistryTerms:${id("legal-lora")}:${hash(legal)}`);
      // The 7 : 13 the ledger gave under the old terms is a lie under these.
      const [old, oldSig] = withLineage([{ datanet: "legal@1", weight: 7n }, { datanet: "cases@1", weight: 13n }]);
      expect(await prove(old, oldSig, mix, tree)).toBe("proven:MergedLineageMismatch");
      // case-lora naming mix, which names case-lora: every level reads an entry, so the ancestry runs out.
      const loop = terms({ parents: [{ model: id("mix"), weight: 1n }] });
      await setTerms("case-lora", loop);
      const [r2, sig2] = withLineage([{ datanet: "legal@1", weight: 1n }]);
      expect(await prove(r2, sig2, mix, [legal, loop, mix, legal, loop])).toBe("ParentsCount:5:6");
    } finally {
      await setTerms("case-lora", cases);
      await setTerms("tale-lora", null);
    }
  });

  it("one slash per receipt across both courts; only the deployer sets the deputy, once; only the deputy slashes through slashFor", async () => {
    const s = await settleMix();
    const lie: Receipt = { ...s.receipt, lines: s.receipt.lines.map((l, k) => (k === 0 ? { ...l, amount: l.amount + 1n } : l)) };
    const sig = sign(lie);
    expect(await prove(lie, sig)).toBe("MergedLineageConsistent");
    expect(await proveSplit(lie, sig)).toMatch(/^proven:/);
    expect(await prove(lie, sig)).toBe(`AlreadyProven:${receiptDigest(lie, domain())}`);
    const w = c.wallet(CHALLENGER);
    const court = (functionName: string, args: readonly unknown[]) => c.client.simulateContract({ account: w.account, address: c.court, abi: ReceiptCourtAbi, functionName, args } as never);
    await expect(court("setDeputy", [challenger])).rejects.toThrow(/NotDeployer/);
    const d = c.wallet(ANVIL_KEYS[0]!);
    await expect(c.client.simulateContract({ account: d.account, address: c.court, abi: ReceiptCourtAbi, functionName: "setDeputy", args: [challenger] })).rejects.toThrow(/DeputyAlreadySet/);
    await expect(court("slashFor", [keccak256("0x01"), c.node, 0, challenger])).rejects.toThrow(/NotDeputy/);
    expect((await c.client.readContract({ address: c.court, abi: ReceiptCourtAbi, functionName: "deputy" })).toLowerCase()).toBe(c.registryCourt.toLowerCase());
  });
});
