import fc from "fast-check";
import { hashTypedData, keccak256, recoverTypedDataAddress, stringToHex, verifyTypedData, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../src/attribution/canonical.js";
import { splitFee } from "../../src/attribution/fees.js";
import { ZERO_HASH } from "../../src/attribution/merkle.js";
import {
  buildReceipt, hashTokenIds, receiptDigest, receiptFromJSON, receiptToJSON, receiptTypedData, RECEIPT_TYPES, signReceipt,
  verifyReceiptSignature, weightToPpm, type Receipt,
} from "../../src/attribution/receipts.js";
import { isOpenLoraError } from "../../src/errors.js";

// Well-known development keys (Hardhat/Anvil accounts 0 and 1): never hold value.
const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const OTHER: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const node = privateKeyToAccount(KEY).address;
const h = (s: string): Hex => keccak256(stringToHex(s));

function sample(): Receipt {
  const split = splitFee({
    tokensIn: 3, tokensOut: 2, spans: [{ datanet: "legal@1", contributor: "carol", matchedTokens: 2 }],
    policy: { protocolBps: 1000, operatorBps: 1000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 },
    treasury: "treasury", operator: "op",
    models: [
      { model: "llama", priceIn: 1n, priceOut: 2n, developers: [{ party: "meta", share: 1n }], stakers: [], lineage: [] },
      { model: "legal", priceIn: 10n, priceOut: 30n, developers: [{ party: "alice", share: 1n }], stakers: [{ party: "sam", stake: 5n }],
        lineage: [{ datanet: "legal@1", weight: 1n, contributors: [{ party: "carol", approvedTokens: 10 }] }] },
    ],
  });
  return buildReceipt({
    id: 1, time: 1_700_000_000_000, node, agent: "agent-1",
    promptTokens: [1, 2, 3], outputTokens: [7, 8],
    base: { id: "llama", contentHash: h("llama") }, adapters: [{ id: "legal", contentHash: h("legal"), weightPpm: 750_000 }],
    sampling: { temperature: 0.7, topP: 0.9, seed: 42 }, finish: "length", split,
    spans: [{ datanet: "legal@1", recordId: 4, contributor: "carol", start: 0, end: 2 }],
  });
}

describe("token hashes", () => {
  it("are keccak256 of 4-byte big-endian ids", () => {
    expect(hashTokenIds([1, 2])).toBe(keccak256("0x0000000100000002"));
    expect(hashTokenIds([0xffffffff])).toBe(keccak256("0xffffffff"));
    expect(hashTokenIds([])).toBe(keccak256("0x"));
    expect(() => hashTokenIds([-1])).toThrow();
  });
});

describe("canonical JSON", () => {
  it("sorts keys, writes bigints as strings, drops undefined, refuses non-finite numbers", () => {
    expect(canonicalJson({ b: 1n, a: [true, null, "x"], c: undefined, "é": 0.5, A: { z: 1, y: -2 } })).toBe('{"A":{"y":-2,"z":1},"a":[true,null,"x"],"b":"1","é":0.5}');
    expect(() => canonicalJson({ x: NaN })).toThrow();
    expect(() => canonicalJson(new Uint8Array(1))).toThrow();
  });
});

describe("receipts", () => {
  it("sign and verify, with viem's own EIP-712 functions too", async () => {
    const r = sample();
    expect(r.fee).toBe(3n + 4n + 30n + 60n);
    expect(r.lines.reduce((s, l) => s + l.amount, 0n)).toBe(r.fee);
    const sig = await signReceipt(r, KEY);
    expect(await verifyReceiptSignature(r, sig)).toBe(true);
    expect(await verifyTypedData({ ...receiptTypedData(r), address: node, signature: sig })).toBe(true);
    expect(await recoverTypedDataAddress({ ...receiptTypedData(r), signature: sig })).toBe(node);
    expect(receiptDigest(r)).toBe(hashTypedData(receiptTypedData(r)));
    expect(r.prevHash).toBe(ZERO_HASH);
  });

  it("commit to the documented canonical encodings", () => {
    const r = sample();
    const td = receiptTypedData(r, { chainId: 10 });
    expect(td.domain).toEqual({ name: "openlora", version: "1", chainId: 10 });
    expect(td.message.samplingHash).toBe(h('{"seed":42,"temperature":0.7,"topP":0.9}'));
    expect(td.message.spansHash).toBe(h('{"credits":[{"contributor":"carol","datanet":"legal@1","matchedTokens":2}],"spans":[{"contributor":"carol","datanet":"legal@1","end":2,"recordId":4,"start":0}]}'));
    expect(td.message.modelsHash).toBe(h(`{"adapters":[{"contentHash":"${h("legal")}","id":"legal","weightPpm":750000}],"base":{"contentHash":"${h("llama")}","id":"llama"}}`));
    const lines = r.lines.map((l) => `{"amount":"${l.amount}",${l.datanet ? `"datanet":"${l.datanet}",` : ""}"model":"${l.model}","party":"${l.party}","role":"${l.role}"}`);
    expect(td.message.splitHash).toBe(h(`[${lines.join(",")}]`));
    expect(td.message.promptHash).toBe(hashTokenIds([1, 2, 3]));
    expect(RECEIPT_TYPES.Receipt.map((f) => f.name)).toContain("prevHash");
  });

  it("fail verification after any change, under another chain id, or from another key", async () => {
    const r = sample();
    const sig = await signReceipt(r, KEY);
    const tampered: Receipt[] = [
      { ...r, fee: r.fee + 1n, lines: [...r.lines.slice(0, -1), { ...r.lines.at(-1)!, amount: r.lines.at(-1)!.amount + 1n }] },
      { ...r, lines: r.lines.map((l, i) => (i === 0 ? { ...l, party: "mallory" } : l)) },
      { ...r, sampling: { ...r.sampling, seed: 43 } },
      { ...r, agent: "agent-2" },
      { ...r, prevHash: h("x") },
      { ...r, adapters: [{ ...r.adapters[0]!, weightPpm: 750_001 }] },
      { ...r, spans: [{ ...r.spans[0]!, end: 1 }] },
      { ...r, credits: [{ ...r.credits[0]!, matchedTokens: 1 }] },
      { ...r, attribution: [] },
      { ...r, outputHash: hashTokenIds([7, 9]) },
      { ...r, time: r.time + 1 },
    ];
    for (const t of tampered) expect(await verifyReceiptSignature(t, sig)).toBe(false);
    expect(await verifyReceiptSignature(r, sig, { chainId: 2 })).toBe(false);
    const forged = await privateKeyToAccount(OTHER).signTypedData(receiptTypedData(r));
    expect(await verifyReceiptSignature(r, forged)).toBe(false);
    expect(await verifyReceiptSignature(r, "0xdeadbeef")).toBe(false);
    await expect(signReceipt(r, OTHER)).rejects.toSatisfy((e: unknown) => isOpenLoraError(e, "INVALID_ARGUMENT"));
  });

  it("round-trip through canonical JSON exactly, whatever the amounts", () => {
    const base = sample();
    fc.assert(fc.property(
      fc.array(fc.bigInt({ min: 0n, max: (1n << 250n) }), { minLength: 1, maxLength: 6 }),
      fc.bigInt({ min: 1n, max: 1n << 200n }),
      fc.string(),
      (amounts, den, agent) => {
        const r: Receipt = {
          ...base, agent,
          lines: amounts.map((amount, i) => ({ party: `p${i}`, role: i % 2 ? "staker" : "data", model: "legal", ...(i % 2 ? {} : { datanet: "legal@1" }), amount })),
          fee: amounts.reduce((a, b) => a + b, 0n),
          attribution: [{ model: "legal", datanet: "legal@1", num: den - 1n, den }],
        };
        const back = receiptFromJSON(receiptToJSON(r));
        expect(back).toEqual(r);
        expect(receiptToJSON(back)).toBe(receiptToJSON(r));
        expect(receiptDigest(back)).toBe(receiptDigest(r));
      },
    ), { numRuns: 100 });
  });

  it("refuse malformed JSON with RECEIPT_INVALID", () => {
    const good = JSON.parse(receiptToJSON(sample())) as Record<string, unknown>;
    const cases: unknown[] = [
      "not json",
      { ...good, fee: "1" },
      { ...good, fee: 5 },
      { ...good, extra: 1 },
      { ...good, prevHash: "0x12" },
      { ...good, node: (good.node as string).toLowerCase() },
      { ...good, finish: "exploded" },
      { ...good, lines: [{ party: "x", role: "data", model: "m", amount: good.fee }] },
      { ...good, spans: [{ datanet: "d@1", recordId: 1, contributor: "c", start: 0, end: 99 }] },
      { ...good, tokensIn: -1 },
      { ...good, credits: [{ datanet: "legal@1", contributor: "carol", matchedTokens: 3 }] },
    ];
    for (const c of cases) {
      const text = typeof c === "string" ? c : JSON.stringify(c);
      expect(() => receiptFromJSON(text), text.slice(0, 80)).toThrow(expect.objectContaining({ code: "RECEIPT_INVALID" }));
    }
  });

  it("turn float composition weights into exact parts per million", () => {
    expect(weightToPpm(1)).toBe(1_000_000);
    expect(weightToPpm(0.3)).toBe(300_000);
    expect(() => weightToPpm(Number.NaN)).toThrow();
  });
});
