import { encodeAbiParameters, hashTypedData, keccak256, stringToHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { splitFee } from "../../src/attribution/fees.js";
import { encodeSampling, floatBits, linesFromAbi, linesAbi, type ReceiptInputs } from "../../src/attribution/receipt-abi.js";
import {
  buildReceipt, receiptDigest, receiptFromJSON, receiptPartHashes, receiptSplitProblem, receiptToJSON, receiptTypedData,
  RECEIPT_V2_TYPES, signReceipt, verifyReceiptSignature, type Receipt,
} from "../../src/attribution/receipts.js";
import { isOpenLoraError } from "../../src/errors.js";

const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const node = privateKeyToAccount(KEY).address;
const h = (s: string): Hex => keccak256(stringToHex(s));

const INPUTS: ReceiptInputs = {
  policy: { protocolBps: 1000, operatorBps: 1000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 },
  treasury: "treasury", operator: "op",
  models: [
    { model: "llama", priceIn: 1n, priceOut: 2n, developers: [{ party: "meta", share: 1n }], stakers: [], lineage: [] },
    { model: "legal", priceIn: 10n, priceOut: 30n, developers: [{ party: "alice", share: 1n }], stakers: [{ party: "sam", stake: 5n }],
      lineage: [{ datanet: "legal@1", weight: 1n, contributors: [{ party: "carol", approvedTokens: 10 }] }], shares: { developerBps: 4000, stakerBps: 3000, dataBps: 3000 } },
  ],
};
const CREDITS = [{ datanet: "legal@1", contributor: "carol", matchedTokens: 2 }];

function sample(inputs: ReceiptInputs = INPUTS): Receipt {
  const split = splitFee({ ...inputs, tokensIn: 3, tokensOut: 2, spans: CREDITS });
  return buildReceipt({
    id: 1, time: 1_700_000_000_000, node, agent: "agent-1", promptTokens: [1, 2, 3], outputTokens: [7, 8],
    base: { id: "llama", contentHash: h("llama") }, adapters: [{ id: "legal", contentHash: h("legal"), weightPpm: 750_000 }],
    sampling: { temperature: 0.7, topP: 0.9, seed: 42 }, finish: "length", split,
    spans: [{ datanet: "legal@1", recordId: 4, contributor: "carol", start: 0, end: 2 }], credits: CREDITS, inputs,
  });
}

describe("receipts, version 2", () => {
  it("carry v: 2 and their inputs, sign under domain version 2 and round-trip through JSON exactly", async () => {
    const r = sample();
    expect(r.v).toBe(2);
    expect(r.inputs).toEqual(INPUTS);
    const td = receiptTypedData(r, { chainId: 10 });
    expect(td.domain).toEqual({ name: "openlora", version: "2", chainId: 10 });
    expect(td.types).toBe(RECEIPT_V2_TYPES);
    expect(RECEIPT_V2_TYPES.Receipt.map((f) => f.name).slice(-2)).toEqual(["inputsHash", "prevHash"]);
    const sig = await signReceipt(r, KEY, { chainId: 10 });
    expect(await verifyReceiptSignature(r, sig, { chainId: 10 })).toBe(true);
    const back = receiptFromJSON(receiptToJSON(r));
    expect(back).toEqual(r);
    expect(receiptDigest(back, { chainId: 10 })).toBe(hashTypedData(td));
    // Another price in the inputs is another receipt.
    const other = { ...r, inputs: { ...INPUTS, models: [{ ...INPUTS.models[0]!, priceIn: 2n }, INPUTS.models[1]!] } };
    expect(await verifyReceiptSignature(other, sig, { chainId: 10 })).toBe(false);
  });

  it("commit to ABI encodings: lines as (string,uint8,string,string,uint256)[], sampling as sorted (name, float64 bits)", () => {
    const r = sample();
    const parts = receiptPartHashes(r);
    const lines = encodeAbiParameters(
      [{ type: "tuple[]", components: [{ type: "string" }, { type: "uint8" }, { type: "string" }, { type: "string" }, { type: "uint256" }] }],
      [r.lines.map((l) => [l.party, ["protocol", "operator", "developer", "staker", "data"].indexOf(l.role), l.model, l.datanet ?? "", l.amount] as const)],
    );
    expect(parts.splitHash).toBe(keccak256(lines));
    expect(linesFromAbi(linesAbi(r.lines))).toEqual(r.lines);
    expect(floatBits(42)).toBe(0x4045000000000000n);
    expect(floatBits(-0)).toBe(0n);
    const sampling = encodeAbiParameters([{ type: "tuple[]", components: [{ type: "string" }, { type: "uint64" }] }],
      [[["seed", 0x4045000000000000n], ["temperature", floatBits(0.7)], ["topP", floatBits(0.9)]]]);
    expect(parts.samplingHash).toBe(keccak256(sampling));
    expect(encodeSampling({ topP: 0.9, seed: 42, temperature: 0.7 })).toBe(sampling);
    expect(parts.inputsHash).toMatch(/^0x[0-9a-f]{64}$/);
  });

  it("have their split recomputed from their own inputs (the off-chain twin of the court)", () => {
    const r = sample();
    expect(receiptSplitProblem(r)).toBeNull();
    const [a, b] = [0, 1].map((i) => r.lines[i]!);
    const moved: Receipt = { ...r, lines: r.lines.map((l, i) => (i === 0 ? { ...l, amount: a.amount - 1n } : i === 1 ? { ...l, amount: b.amount + 1n } : l)) };
    expect(receiptSplitProblem(moved)).toMatch(/lines are not the split/);
    const richer: Receipt = { ...r, fee: r.fee + 1n, lines: [...r.lines.slice(0, -1), { ...r.lines.at(-1)!, amount: r.lines.at(-1)!.amount + 1n }] };
    expect(receiptSplitProblem(richer)).toMatch(/fee of/);
    const broken: Receipt = { ...r, inputs: { ...INPUTS, policy: { ...INPUTS.policy, dataBps: 0 } } };
    expect(receiptSplitProblem(broken)).toMatch(/do not split/);
    const { v: _v, inputs: _i, ...v1 } = r;
    expect(receiptSplitProblem(v1)).toBeNull();
  });

  it("are refused without inputs, with inputs on version 1, or with integers beyond their ABI types", () => {
    const r = sample();
    const bad = (o: unknown) => {
      try {
        receiptFromJSON(JSON.stringify(o));
        return false;
      } catch (e) {
        return isOpenLoraError(e, "RECEIPT_INVALID");
      }
    };
    const json = JSON.parse(receiptToJSON(r)) as Record<string, unknown> & { inputs: { models: Record<string, unknown>[]; policy: Record<string, unknown> } };
    expect(bad({ ...json, inputs: undefined })).toBe(true);
    expect(bad({ ...json, v: undefined })).toBe(true);
    expect(bad({ ...json, v: 3 })).toBe(true);
    expect(bad({ ...json, inputs: { ...json.inputs, models: [{ ...json.inputs.models[0], priceIn: (1n << 256n).toString() }] } })).toBe(true);
    expect(bad({ ...json, inputs: { ...json.inputs, policy: { ...json.inputs.policy, lambdaBps: 10_001 } } })).toBe(true);
    expect(bad({ ...json, inputs: { ...json.inputs, extra: 1 } })).toBe(true);
    expect(bad({ ...json, inputs: { ...json.inputs, models: [{ ...json.inputs.models[0], stakers: [{ party: "x", stake: "-1" }] }] } })).toBe(true);
    expect(bad(json)).toBe(false);
  });
});
