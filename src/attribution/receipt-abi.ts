/**
 * The ABI encodings a version-2 receipt commits to (docs/economics.md, "Receipts"). Each part's
 * hash is keccak256 of `abi.encode` of the part as Solidity structs, so a contract can check a part
 * it is given against the signed receipt and compute with it (contracts/ReceiptLib.sol declares the
 * same structs). Parties, models and Datanet keys are strings: off chain they are arbitrary names.
 */
import { encodeAbiParameters, type Hex } from "viem";
import { keccak256 } from "../crypto/keccak.js";
import type { SamplingParams } from "../engine/sampling.js";
import type {
  AdapterUse, AttributionWeight, FeePolicy, ModelRef, ModelUse, SpanEvidence, SpanMatch, SplitLine, SplitRole,
} from "./types.js";

/** What a receipt's split was computed from: the SplitInput less the token counts and span credits (in the receipt already). */
export interface ReceiptInputs {
  policy: FeePolicy;
  treasury: string;
  operator: string;
  models: ModelUse[];
}

export const ROLE_CODES: Record<SplitRole, number> = { protocol: 0, operator: 1, developer: 2, staker: 3, data: 4 };
export const ROLES: readonly SplitRole[] = ["protocol", "operator", "developer", "staker", "data"];

// ---- the Solidity structs, as viem ABI parameters (contracts/ReceiptLib.sol) ----------------------

export const LINE_ABI = {
  type: "tuple", components: [
    { name: "party", type: "string" }, { name: "role", type: "uint8" }, { name: "model", type: "string" },
    { name: "datanet", type: "string" }, { name: "amount", type: "uint256" },
  ],
} as const;

export const CREDIT_ABI = {
  type: "tuple", components: [{ name: "datanet", type: "string" }, { name: "contributor", type: "string" }, { name: "matchedTokens", type: "uint32" }],
} as const;

export const SPAN_ABI = {
  type: "tuple", components: [
    { name: "datanet", type: "string" }, { name: "recordId", type: "uint64" }, { name: "contributor", type: "string" },
    { name: "start", type: "uint32" }, { name: "end", type: "uint32" },
  ],
} as const;

export const POLICY_ABI = {
  type: "tuple", components: [
    { name: "protocolBps", type: "uint16" }, { name: "operatorBps", type: "uint16" }, { name: "developerBps", type: "uint16" },
    { name: "stakerBps", type: "uint16" }, { name: "dataBps", type: "uint16" }, { name: "lambdaBps", type: "uint16" },
  ],
} as const;

export const MODEL_USE_ABI = {
  type: "tuple", components: [
    { name: "model", type: "string" }, { name: "priceIn", type: "uint256" }, { name: "priceOut", type: "uint256" },
    { name: "developers", type: "tuple[]", components: [{ name: "party", type: "string" }, { name: "share", type: "uint256" }] },
    { name: "stakers", type: "tuple[]", components: [{ name: "party", type: "string" }, { name: "stake", type: "uint256" }] },
    {
      name: "lineage", type: "tuple[]", components: [
        { name: "datanet", type: "string" }, { name: "weight", type: "uint256" },
        { name: "contributors", type: "tuple[]", components: [{ name: "party", type: "string" }, { name: "approvedTokens", type: "uint64" }] },
      ],
    },
    { name: "hasShares", type: "bool" }, { name: "developerBps", type: "uint16" }, { name: "stakerBps", type: "uint16" }, { name: "dataBps", type: "uint16" },
  ],
} as const;

export const INPUTS_ABI = {
  type: "tuple", components: [
    { name: "policy", ...POLICY_ABI }, { name: "treasury", type: "string" }, { name: "operator", type: "string" },
    { name: "models", type: "tuple[]", components: MODEL_USE_ABI.components },
  ],
} as const;

const MODEL_REF_ABI = { type: "tuple", components: [{ name: "id", type: "string" }, { name: "contentHash", type: "bytes32" }] } as const;
const ADAPTER_ABI = {
  type: "tuple[]", components: [{ name: "id", type: "string" }, { name: "contentHash", type: "bytes32" }, { name: "weightPpm", type: "uint32" }],
} as const;
const SAMPLING_ABI = { type: "tuple[]", components: [{ name: "name", type: "string" }, { name: "bits", type: "uint64" }] } as const;
const ATTRIBUTION_ABI = {
  type: "tuple[]", components: [{ name: "model", type: "string" }, { name: "datanet", type: "string" }, { name: "num", type: "uint256" }, { name: "den", type: "uint256" }],
} as const;

const arr = <T extends { components: readonly unknown[] }>(t: T) => ({ type: "tuple[]" as const, components: t.components });

// ---- values as the structs hold them -------------------------------------------------------------

export function linesAbi(lines: readonly SplitLine[]) {
  return lines.map((l) => ({ party: l.party, role: ROLE_CODES[l.role], model: l.model, datanet: l.datanet ?? "", amount: l.amount }));
}

export function creditsAbi(credits: readonly SpanMatch[]) {
  return credits.map((c) => ({ datanet: c.datanet, contributor: c.contributor, matchedTokens: c.matchedTokens }));
}

export function spansAbi(spans: readonly SpanEvidence[]) {
  return spans.map((s) => ({ datanet: s.datanet, recordId: BigInt(s.recordId), contributor: s.contributor, start: s.start, end: s.end }));
}

export function inputsAbi(i: ReceiptInputs) {
  const p = i.policy;
  return {
    policy: { protocolBps: p.protocolBps, operatorBps: p.operatorBps, developerBps: p.developerBps, stakerBps: p.stakerBps, dataBps: p.dataBps, lambdaBps: p.lambdaBps },
    treasury: i.treasury,
    operator: i.operator,
    models: i.models.map((m) => ({
      model: m.model, priceIn: m.priceIn, priceOut: m.priceOut,
      developers: m.developers.map((d) => ({ party: d.party, share: d.share })),
      stakers: m.stakers.map((s) => ({ party: s.party, stake: s.stake })),
      lineage: m.lineage.map((e) => ({
        datanet: e.datanet, weight: e.weight,
        contributors: e.contributors.map((c) => ({ party: c.party, approvedTokens: BigInt(c.approvedTokens) })),
      })),
      // Absent shares encode as all zeros, so the encoding stays one-to-one.
      hasShares: m.shares !== undefined,
      developerBps: m.shares?.developerBps ?? 0, stakerBps: m.shares?.stakerBps ?? 0, dataBps: m.shares?.dataBps ?? 0,
    })),
  };
}

/** Lines as a contract returns them (FeeSplit's Line[]) back to SplitLines. */
export function linesFromAbi(lines: readonly { party: string; role: number; model: string; datanet: string; amount: bigint }[]): SplitLine[] {
  return lines.map((l) => {
    const role = ROLES[l.role]!;
    return role === "data" ? { party: l.party, role, model: l.model, datanet: l.datanet, amount: l.amount } : { party: l.party, role, model: l.model, amount: l.amount };
  });
}

/** A float's IEEE-754 binary64 bit pattern; -0 as +0 (JSON cannot tell them apart). */
export function floatBits(x: number): bigint {
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, x === 0 ? 0 : x);
  return v.getBigUint64(0);
}

// ---- the encodings and their hashes --------------------------------------------------------------

export const encodeLines = (lines: readonly SplitLine[]): Hex => encodeAbiParameters([arr(LINE_ABI)], [linesAbi(lines)]);
export const encodeInputs = (i: ReceiptInputs): Hex => encodeAbiParameters([INPUTS_ABI], [inputsAbi(i)]);
export const encodeSpans = (credits: readonly SpanMatch[], spans: readonly SpanEvidence[]): Hex =>
  encodeAbiParameters([arr(CREDIT_ABI), arr(SPAN_ABI)], [creditsAbi(credits), spansAbi(spans)]);
export const encodeModels = (base: ModelRef, adapters: readonly AdapterUse[]): Hex =>
  encodeAbiParameters([MODEL_REF_ABI, ADAPTER_ABI], [{ id: base.id, contentHash: base.contentHash }, adapters.map((a) => ({ id: a.id, contentHash: a.contentHash, weightPpm: a.weightPpm }))]);
/** The parameters given, sorted by name (UTF-16 order), each with its value's float64 bits. */
export const encodeSampling = (s: SamplingParams): Hex => {
  const entries = Object.entries(s).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return encodeAbiParameters([SAMPLING_ABI], [entries.map(([name, v]) => ({ name, bits: floatBits(v as number) }))]);
};
export const encodeAttribution = (a: readonly AttributionWeight[]): Hex =>
  encodeAbiParameters([ATTRIBUTION_ABI], [a.map((w) => ({ model: w.model, datanet: w.datanet, num: w.num, den: w.den }))]);

export interface V2PartHashes {
  modelsHash: Hex;
  samplingHash: Hex;
  splitHash: Hex;
  attributionHash: Hex;
  spansHash: Hex;
  inputsHash: Hex;
}

export function v2PartHashes(r: {
  base: ModelRef; adapters: readonly AdapterUse[]; sampling: SamplingParams; lines: readonly SplitLine[];
  attribution: readonly AttributionWeight[]; credits: readonly SpanMatch[]; spans: readonly SpanEvidence[]; inputs: ReceiptInputs;
}): V2PartHashes {
  return {
    modelsHash: keccak256(encodeModels(r.base, r.adapters)),
    samplingHash: keccak256(encodeSampling(r.sampling)),
    splitHash: keccak256(encodeLines(r.lines)),
    attributionHash: keccak256(encodeAttribution(r.attribution)),
    spansHash: keccak256(encodeSpans(r.credits, r.spans)),
    inputsHash: keccak256(encodeInputs(r.inputs)),
  };
}
