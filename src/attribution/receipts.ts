/**
 * Inference receipts: one per request, signed by the node as EIP-712 typed data. The signed
 * struct stays small; the large parts (models, sampling, split lines, attribution, spans and, from
 * version 2, the split's inputs) enter it as hashes: version 1 (no `v`) of their canonical JSON
 * (canonical.ts), version 2 of their ABI encoding (receipt-abi.ts), which a contract can check and
 * recompute the split from. The receipt's hash is its EIP-712 digest: the next receipt's prevHash
 * and the leaf of its epoch's Merkle tree.
 */
import {
  domainSeparator, getAddress, hashTypedData, hexToBytes, isAddress, isAddressEqual, numberToHex, recoverTypedDataAddress,
  type Address, type Hex, type TypedDataDomain,
} from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import type { SamplingParams } from "../engine/sampling.js";
import { oerr } from "../errors.js";
import { keccak256 } from "../crypto/keccak.js";
import { MAX_WEIGHT_PPM, compositionWeightPpm } from "../adapters/composition.js";
import { canonicalHash, canonicalJson } from "./canonical.js";
import { ZERO_HASH } from "./merkle.js";
import { matchedTokens, splitFee } from "./fees.js";
import { creditsAbi, inputsAbi, linesAbi, spansAbi, v2PartHashes, type ReceiptInputs } from "./receipt-abi.js";
import type { AdapterUse, AttributionWeight, ModelRef, ModelUse, SpanEvidence, SpanMatch, SplitLine, SplitResult } from "./types.js";

export type { ReceiptInputs } from "./receipt-abi.js";

/** Why generation ended; "failed" = an engine error after some tokens were produced. */
export type ReceiptFinish = "length" | "stop" | "eos" | "cancelled" | "failed";
const FINISHES: readonly string[] = ["length", "stop", "eos", "cancelled", "failed"];

export interface Receipt {
  /** 2 for version 2; absent on version 1 (the rule its hash was made by). */
  v?: 2;
  /** Sequence number: 1, 2, 3, … on each node. */
  id: number;
  /** Unix milliseconds when the request was settled. */
  time: number;
  /** The node's signing address. */
  node: Address;
  agent: string;
  /** hashTokenIds of the prompt's and the output's token ids. */
  promptHash: Hex;
  outputHash: Hex;
  base: ModelRef;
  adapters: AdapterUse[];
  sampling: SamplingParams;
  tokensIn: number;
  tokensOut: number;
  finish: ReceiptFinish;
  fee: bigint;
  lines: SplitLine[];
  attribution: AttributionWeight[];
  spans: SpanEvidence[];
  /** Matched output tokens per (Datanet version, contributor) that the data split used. */
  credits: SpanMatch[];
  /** The previous receipt's hash (EIP-712 digest); 0x00…0 for the first. */
  prevHash: Hex;
  /** Version 2: what the split was computed from (with tokensIn, tokensOut and credits). */
  inputs?: ReceiptInputs;
}

export interface ReceiptDomainOptions {
  /** Default 1. */
  chainId?: number;
  verifyingContract?: Address;
}

export const RECEIPT_TYPES = {
  Receipt: [
    { name: "id", type: "uint64" },
    { name: "time", type: "uint64" },
    { name: "node", type: "address" },
    { name: "agent", type: "string" },
    { name: "promptHash", type: "bytes32" },
    { name: "outputHash", type: "bytes32" },
    { name: "modelsHash", type: "bytes32" },
    { name: "samplingHash", type: "bytes32" },
    { name: "tokensIn", type: "uint32" },
    { name: "tokensOut", type: "uint32" },
    { name: "finish", type: "string" },
    { name: "fee", type: "uint256" },
    { name: "splitHash", type: "bytes32" },
    { name: "attributionHash", type: "bytes32" },
    { name: "spansHash", type: "bytes32" },
    { name: "prevHash", type: "bytes32" },
  ],
} as const;

/** Version 2: version 1's fields with inputsHash before prevHash; domain version "2". */
export const RECEIPT_V2_TYPES = {
  Receipt: [...RECEIPT_TYPES.Receipt.slice(0, 15), { name: "inputsHash", type: "bytes32" }, RECEIPT_TYPES.Receipt[15]],
} as const;

export type ReceiptVersion = 1 | 2;
export const receiptVersion = (r: Pick<Receipt, "v">): ReceiptVersion => (r.v === 2 ? 2 : 1);

/** The domain of version `version` receipts (events and checkpoints stay on version 1's). */
export function receiptDomain(opts: ReceiptDomainOptions = {}, version: ReceiptVersion = 1): TypedDataDomain {
  const chainId = opts.chainId ?? 1;
  if (!Number.isSafeInteger(chainId) || chainId < 1) throw oerr("INVALID_ARGUMENT", `chainId must be a positive integer, got ${chainId}`);
  const v = String(version);
  return opts.verifyingContract
    ? { name: "openlora", version: v, chainId, verifyingContract: getAddress(opts.verifyingContract) }
    : { name: "openlora", version: v, chainId };
}

/** keccak256 over the token ids, each as a 4-byte big-endian uint32, concatenated (empty: keccak256(0x)). */
export function hashTokenIds(ids: readonly number[]): Hex {
  const bytes = new Uint8Array(ids.length * 4);
  const view = new DataView(bytes.buffer);
  ids.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) throw oerr("INVALID_ARGUMENT", `token id ${t} is not a uint32`);
    view.setUint32(i * 4, t, false);
  });
  return keccak256(bytes);
}

/** The bytes32 commitments of the receipt's large parts (see docs/economics.md), by its version's rule. */
export function receiptPartHashes(r: Receipt): { modelsHash: Hex; samplingHash: Hex; splitHash: Hex; attributionHash: Hex; spansHash: Hex; inputsHash?: Hex } {
  if (r.v === 2) {
    if (!r.inputs) throw oerr("RECEIPT_INVALID", "a version 2 receipt needs its inputs");
    return v2PartHashes({ ...r, inputs: r.inputs });
  }
  return {
    modelsHash: canonicalHash({ base: r.base, adapters: r.adapters }),
    samplingHash: canonicalHash(r.sampling),
    splitHash: canonicalHash(r.lines),
    attributionHash: canonicalHash(r.attribution),
    spansHash: canonicalHash({ credits: r.credits, spans: r.spans }),
  };
}

/** The EIP-712 message (the struct a contract would see). */
export function receiptMessage(r: Receipt) {
  return {
    id: BigInt(r.id),
    time: BigInt(r.time),
    node: r.node,
    agent: r.agent,
    promptHash: r.promptHash,
    outputHash: r.outputHash,
    ...receiptPartHashes(r),
    tokensIn: r.tokensIn,
    tokensOut: r.tokensOut,
    finish: r.finish,
    fee: r.fee,
    prevHash: r.prevHash,
  } as const;
}

/** ReceiptCourt.proveBadSplit's first two arguments for a version 2 receipt: the signed struct and its split parts. */
export function receiptCourtArgs(r: Receipt) {
  if (r.v !== 2 || !r.inputs) throw oerr("RECEIPT_INVALID", "only a version 2 receipt can be judged on chain");
  const m = receiptMessage(r);
  return [
    { ...m, inputsHash: m.inputsHash! },
    { lines: linesAbi(r.lines), inputs: inputsAbi(r.inputs), credits: creditsAbi(r.credits), spans: spansAbi(r.spans) },
  ] as const;
}

/** A model's terms as the Registry stores them (IRegistry.Terms; termsAt answers keccak256(abi.encode(terms))). */
export interface RegistryTerms {
  contentHash: Hex;
  priceIn: bigint;
  priceOut: bigint;
  developers: readonly { party: Address; share: bigint }[];
  hasShares: boolean;
  developerBps: number;
  stakerBps: number;
  dataBps: number;
  lineage: readonly { datanet: Hex; version: number; weight: bigint }[];
  parents: readonly { model: Hex; weight: bigint }[];
}

/** The index of `model` (an index or a name) in a version 2 receipt's inputs; INVALID_ARGUMENT when it has none. */
function inputsModelIndex(r: Receipt, model: number | string): number {
  const models = r.inputs?.models ?? [];
  const index = typeof model === "number" ? model : models.findIndex((m) => m.model === model);
  if (!Number.isSafeInteger(index) || index < 0 || index >= models.length) {
    throw oerr("INVALID_ARGUMENT", `the receipt's inputs have no model ${String(model)}`);
  }
  return index;
}

/**
 * ReceiptCourt.proveBadTerms's arguments: the signed struct, the inputs part, the signature, which model of
 * the inputs (its index, or its name) and the registry's terms of that model at the receipt's time.
 */
export function proveBadTermsArgs(r: Receipt, signature: Hex, model: number | string, terms: RegistryTerms) {
  const [struct, parts] = receiptCourtArgs(r);
  return [struct, parts.inputs, signature, BigInt(inputsModelIndex(r, model)), terms] as const;
}

/** ReceiptCourt.proveBadStakers's arguments: the signed struct, the inputs part, the signature, which model. */
export function proveBadStakersArgs(r: Receipt, signature: Hex, model: number | string) {
  const [struct, parts] = receiptCourtArgs(r);
  return [struct, parts.inputs, signature, BigInt(inputsModelIndex(r, model))] as const;
}

/** RegistryCourt.proveBadPolicy's arguments: the signed struct, the inputs part, the signature. */
export function proveBadPolicyArgs(r: Receipt, signature: Hex) {
  const [struct, parts] = receiptCourtArgs(r);
  return [struct, parts.inputs, signature] as const;
}

const NO_TERMS: RegistryTerms = {
  contentHash: ZERO_HASH, priceIn: 0n, priceOut: 0n, developers: [], hasShares: false, developerBps: 0, stakerBps: 0, dataBps: 0, lineage: [], parents: [],
};

/**
 * RegistryCourt.proveBadMergedLineage's arguments: the signed struct, the inputs part, the signature, which
 * model, its registry terms at the receipt's time (with parents) and its ancestry, depth-first: per parent in
 * their order, the parent's terms at the time the merge's apply from (null for a parent without terms then),
 * a merged parent's followed at once by its own parents' at the time its terms apply from. For a merge of
 * plain adapters that is just its parents' terms.
 */
export function proveBadMergedLineageArgs(r: Receipt, signature: Hex, model: number | string, merged: RegistryTerms, ancestry: readonly (RegistryTerms | null)[]) {
  const [struct, parts] = receiptCourtArgs(r);
  return [struct, parts.inputs, signature, BigInt(inputsModelIndex(r, model)), merged, ancestry.map((p) => p ?? NO_TERMS)] as const;
}

/** A Datanet version as Registry.publishVersion took it (the DatanetVersionPublished event's root, contributors, approvedTokens). */
export interface PublishedVersion {
  root: Hex;
  contributors: readonly Address[];
  approvedTokens: readonly bigint[];
}

/**
 * ReceiptCourt.proveBadContributors's arguments: the signed struct, the inputs part, the signature, which model,
 * which of its lineage entries (its index, or its key "name@version") and that Datanet version as published.
 */
export function proveBadContributorsArgs(r: Receipt, signature: Hex, model: number | string, entry: number | string, version: PublishedVersion) {
  const [struct, parts] = receiptCourtArgs(r);
  const m = inputsModelIndex(r, model);
  const lineage = r.inputs!.models[m]!.lineage;
  const index = typeof entry === "number" ? entry : lineage.findIndex((e) => e.datanet === entry);
  if (!Number.isSafeInteger(index) || index < 0 || index >= lineage.length) {
    throw oerr("INVALID_ARGUMENT", `model ${r.inputs!.models[m]!.model} of the receipt's inputs has no lineage entry ${String(entry)}`);
  }
  return [struct, parts.inputs, signature, BigInt(m), BigInt(index), version] as const;
}

export function receiptTypedData(r: Receipt, opts: ReceiptDomainOptions = {}) {
  const types: typeof RECEIPT_TYPES | typeof RECEIPT_V2_TYPES = r.v === 2 ? RECEIPT_V2_TYPES : RECEIPT_TYPES;
  return { domain: receiptDomain(opts, receiptVersion(r)), types, primaryType: "Receipt" as const, message: receiptMessage(r) };
}

/** The receipt's hash: its EIP-712 digest (viem's hashTypedData gives the same; test/attribution/receipt-digest.test.ts). */
export function receiptDigest(r: Receipt, opts: ReceiptDomainOptions = {}): Hex {
  const version = receiptVersion(r);
  const fields = version === 2 ? RECEIPT_V2_TYPES.Receipt : RECEIPT_TYPES.Receipt;
  const m = receiptMessage(r) as Record<string, unknown>;
  // Every field of a receipt is one 32-byte word: numbers big-endian, an address left-padded, a string's keccak256.
  const words = new Uint8Array(32 * (fields.length + 1));
  words.set(RECEIPT_TYPE_HASHES[version], 0);
  fields.forEach((f, i) => {
    const at = 32 * (i + 1);
    const v = m[f.name];
    if (f.type === "string") words.set(hexToBytes(keccak256(utf8.encode(v as string))), at);
    else if (f.type === "bytes32" || f.type === "address") {
      const b = hexToBytes(v as Hex);
      if (b.length !== (f.type === "address" ? 20 : 32)) throw oerr("RECEIPT_INVALID", `receipt ${f.name} is not a ${f.type}`);
      words.set(b, at + 32 - b.length);
    }
    else {
      const n = BigInt(v as number | bigint);
      if (n < 0n || n >> BigInt(f.type.slice(4)) !== 0n) throw oerr("RECEIPT_INVALID", `receipt ${f.name} ${n} is not a ${f.type}`);
      words.set(hexToBytes(numberToHex(n, { size: 32 })), at);
    }
  });
  const out = new Uint8Array(66);
  out.set([0x19, 0x01], 0);
  out.set(hexToBytes(domainSeparatorOf(opts, version)), 2);
  out.set(hexToBytes(keccak256(words)), 34);
  return keccak256(out);
}

/** receiptDigest by viem's EIP-712 implementation: the reference the fast path is tested against. */
export function receiptDigestReference(r: Receipt, opts: ReceiptDomainOptions = {}): Hex {
  return hashTypedData(receiptTypedData(r, opts));
}

const utf8 = new TextEncoder();
const typeHashOf = (fields: readonly { name: string; type: string }[]) =>
  hexToBytes(keccak256(utf8.encode(`Receipt(${fields.map((f) => `${f.type} ${f.name}`).join(",")})`)));
const RECEIPT_TYPE_HASHES: Record<ReceiptVersion, Uint8Array> = { 1: typeHashOf(RECEIPT_TYPES.Receipt), 2: typeHashOf(RECEIPT_V2_TYPES.Receipt) };
const domainSeparators = new Map<string, Hex>();

function domainSeparatorOf(opts: ReceiptDomainOptions, version: ReceiptVersion): Hex {
  const key = `${opts.chainId ?? 1}:${opts.verifyingContract ?? ""}:${version}`;
  let d = domainSeparators.get(key);
  if (d === undefined) {
    d = domainSeparator({ domain: receiptDomain(opts, version) });
    domainSeparators.set(key, d);
  }
  return d;
}

export async function signReceipt(r: Receipt, signer: Hex | PrivateKeyAccount, opts: ReceiptDomainOptions = {}): Promise<Hex> {
  const account = typeof signer === "string" ? privateKeyToAccount(signer) : signer;
  if (!isAddressEqual(account.address, r.node)) {
    throw oerr("INVALID_ARGUMENT", `receipt names node ${r.node} but the key is ${account.address}`);
  }
  return account.signTypedData(receiptTypedData(r, opts));
}

/** True when `signature` over the receipt's typed data recovers to the receipt's node address. */
export async function verifyReceiptSignature(r: Receipt, signature: Hex, opts: ReceiptDomainOptions = {}): Promise<boolean> {
  try {
    const signer = await recoverTypedDataAddress({ ...receiptTypedData(r, opts), signature });
    return isAddressEqual(signer, r.node);
  } catch {
    return false;
  }
}

export interface BuildReceiptInput {
  id: number;
  time: number;
  node: Address;
  agent: string;
  promptTokens: readonly number[];
  outputTokens: readonly number[];
  base: ModelRef;
  adapters: AdapterUse[];
  sampling: SamplingParams;
  finish: ReceiptFinish;
  split: Pick<SplitResult, "total" | "lines" | "attribution">;
  spans: SpanEvidence[];
  /** Default: matchedTokens(spans), distinct output positions per (Datanet version, contributor). */
  credits?: SpanMatch[];
  prevHash?: Hex;
  /** The split's inputs (tokensIn, tokensOut and spans aside): given, the receipt is version 2. */
  inputs?: ReceiptInputs;
}

export function buildReceipt(input: BuildReceiptInput): Receipt {
  const sampling: Record<string, number> = {};
  for (const [k, v] of Object.entries(input.sampling)) if (v !== undefined) sampling[k] = v as number;
  const r: Receipt = {
    ...(input.inputs ? { v: 2 as const } : {}),
    id: input.id,
    time: input.time,
    node: input.node,
    agent: input.agent,
    promptHash: hashTokenIds(input.promptTokens),
    outputHash: hashTokenIds(input.outputTokens),
    base: { id: input.base.id, contentHash: input.base.contentHash },
    adapters: input.adapters.map((a) => ({ id: a.id, contentHash: a.contentHash, weightPpm: a.weightPpm })),
    sampling,
    tokensIn: input.promptTokens.length,
    tokensOut: input.outputTokens.length,
    finish: input.finish,
    fee: input.split.total,
    lines: input.split.lines.map((l) => ({ ...l })),
    attribution: input.split.attribution.map((a) => ({ ...a })),
    spans: input.spans.map((s) => ({ datanet: s.datanet, recordId: s.recordId, contributor: s.contributor, start: s.start, end: s.end })),
    credits: (input.credits ?? matchedTokens(input.spans)).map((c) => ({ datanet: c.datanet, contributor: c.contributor, matchedTokens: c.matchedTokens })),
    prevHash: input.prevHash ?? ZERO_HASH,
  };
  if (input.inputs) r.inputs = copyInputs(input.inputs);
  validateReceipt(r);
  return r;
}

/** A plain copy holding exactly the fields that are encoded (a ModelUse from the ledger carries more). */
function copyInputs(i: ReceiptInputs): ReceiptInputs {
  return {
    policy: { protocolBps: i.policy.protocolBps, operatorBps: i.policy.operatorBps, developerBps: i.policy.developerBps, stakerBps: i.policy.stakerBps, dataBps: i.policy.dataBps, lambdaBps: i.policy.lambdaBps },
    treasury: i.treasury,
    operator: i.operator,
    models: i.models.map((m) => {
      const out: ModelUse = {
        model: m.model, priceIn: m.priceIn, priceOut: m.priceOut,
        developers: m.developers.map((d) => ({ party: d.party, share: d.share })),
        stakers: m.stakers.map((x) => ({ party: x.party, stake: x.stake })),
        lineage: m.lineage.map((e) => ({ datanet: e.datanet, weight: e.weight, contributors: e.contributors.map((c) => ({ party: c.party, approvedTokens: c.approvedTokens })) })),
      };
      if (m.shares) out.shares = { developerBps: m.shares.developerBps, stakerBps: m.shares.stakerBps, dataBps: m.shares.dataBps };
      return out;
    }),
  };
}

/**
 * The off-chain twin of ReceiptCourt.proveBadSplit: for a version 2 receipt, whether its fee and
 * lines are what splitFee makes of its own inputs, token counts and credits. Null when they are (or
 * the receipt is version 1, which carries no inputs); else the reason.
 */
export function receiptSplitProblem(r: Receipt): string | null {
  if (r.v !== 2 || !r.inputs) return null;
  let split: SplitResult;
  try {
    split = splitFee({ ...r.inputs, tokensIn: r.tokensIn, tokensOut: r.tokensOut, spans: r.credits });
  } catch (e) {
    return `its inputs do not split: ${(e as Error).message}`;
  }
  if (split.total !== r.fee) return `its inputs make a fee of ${split.total}, it states ${r.fee}`;
  if (canonicalJson(split.lines) !== canonicalJson(r.lines)) return "its lines are not the split of its inputs";
  if (canonicalJson(split.attribution) !== canonicalJson(r.attribution)) return "its attribution is not that of its inputs";
  return null;
}

/** Canonical JSON of the receipt (bigints as decimal strings); receiptFromJSON inverts it exactly. */
export function receiptToJSON(r: Receipt): string {
  return canonicalJson(r);
}

export function receiptFromJSON(text: string): Receipt {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw oerr("RECEIPT_INVALID", `receipt is not JSON: ${(e as Error).message}`);
  }
  if (!isObj(o)) throw oerr("RECEIPT_INVALID", "receipt is not a JSON object");
  const arr = (k: string): Record<string, unknown>[] => {
    const v = o[k];
    if (!Array.isArray(v) || !v.every(isObj)) throw oerr("RECEIPT_INVALID", `receipt.${k} must be an array of objects`);
    return v as Record<string, unknown>[];
  };
  const r = {
    ...o,
    ...(o.inputs === undefined ? {} : { inputs: inputsFromJSON(o.inputs) }),
    fee: big(o.fee, "fee"),
    lines: arr("lines").map((l, i) => ({ ...l, amount: big(l.amount, `lines[${i}].amount`) })),
    attribution: arr("attribution").map((a, i) => ({ ...a, num: big(a.num, `attribution[${i}].num`), den: big(a.den, `attribution[${i}].den`) })),
  } as unknown as Receipt;
  validateReceipt(r);
  return r;
}

function inputsFromJSON(v: unknown): ReceiptInputs {
  const bad = (msg: string): never => { throw oerr("RECEIPT_INVALID", `receipt.inputs: ${msg}`); };
  const objs = (x: unknown, name: string): Record<string, unknown>[] =>
    Array.isArray(x) && x.every(isObj) ? (x as Record<string, unknown>[]) : bad(`${name} must be an array of objects`);
  if (!isObj(v)) bad("must be an object");
  const i = v as Record<string, unknown>;
  return {
    ...i,
    models: objs(i.models, "models").map((m, k) => ({
      ...m,
      priceIn: big(m.priceIn, `inputs.models[${k}].priceIn`),
      priceOut: big(m.priceOut, `inputs.models[${k}].priceOut`),
      developers: objs(m.developers, `models[${k}].developers`).map((d, j) => ({ ...d, share: big(d.share, `inputs.models[${k}].developers[${j}].share`) })),
      stakers: objs(m.stakers, `models[${k}].stakers`).map((d, j) => ({ ...d, stake: big(d.stake, `inputs.models[${k}].stakers[${j}].stake`) })),
      lineage: objs(m.lineage, `models[${k}].lineage`).map((e, j) => ({ ...e, weight: big(e.weight, `inputs.models[${k}].lineage[${j}].weight`) })),
    })),
  } as unknown as ReceiptInputs;
}

const HEX32 = /^0x[0-9a-f]{64}$/;
const U256 = 1n << 256n;
const KEYS = ["v", "inputs", "id", "time", "node", "agent", "promptHash", "outputHash", "base", "adapters", "sampling", "tokensIn", "tokensOut", "finish", "fee", "lines", "attribution", "spans", "credits", "prevHash"];

/** Checks every field's type and range, and that the lines sum to the fee. RECEIPT_INVALID otherwise. */
export function validateReceipt(r: Receipt): void {
  const bad = (msg: string): never => { throw oerr("RECEIPT_INVALID", `receipt: ${msg}`); };
  const u = (v: unknown, name: string, max = Number.MAX_SAFE_INTEGER) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max) bad(`${name} must be an integer in [0, ${max}]`);
  };
  const str = (v: unknown, name: string) => { if (typeof v !== "string") bad(`${name} must be a string`); };
  const h32 = (v: unknown, name: string) => { if (typeof v !== "string" || !HEX32.test(v)) bad(`${name} must be lowercase 0x-prefixed bytes32 hex`); };
  const keys = Object.keys(r).filter((k) => (r as unknown as Record<string, unknown>)[k] !== undefined);
  const extra = keys.filter((k) => !KEYS.includes(k));
  if (extra.length) bad(`unknown fields ${extra.join(", ")}`);
  if (r.v !== undefined && r.v !== 2) bad("v must be 2 or absent (version 1)");
  if ((r.v === 2) !== (r.inputs !== undefined)) bad("inputs must be present exactly on version 2 receipts");
  u(r.id, "id");
  u(r.time, "time");
  if (typeof r.node !== "string" || !isAddress(r.node, { strict: true }) || getAddress(r.node) !== r.node) bad("node must be a checksummed address");
  str(r.agent, "agent");
  h32(r.promptHash, "promptHash");
  h32(r.outputHash, "outputHash");
  h32(r.prevHash, "prevHash");
  const only = (o: object, allowed: string[], name: string) => {
    const extra = Object.keys(o).filter((k) => !allowed.includes(k) && (o as Record<string, unknown>)[k] !== undefined);
    if (extra.length) bad(`${name} has unknown fields ${extra.join(", ")}`);
  };
  if (!isObj(r.base)) bad("base must be an object");
  only(r.base, ["id", "contentHash"], "base");
  str(r.base.id, "base.id");
  h32(r.base.contentHash, "base.contentHash");
  if (!Array.isArray(r.adapters)) bad("adapters must be an array");
  r.adapters.forEach((a, i) => {
    if (!isObj(a)) bad(`adapters[${i}] must be an object`);
    only(a, ["id", "contentHash", "weightPpm"], `adapters[${i}]`);
    str(a.id, `adapters[${i}].id`);
    h32(a.contentHash, `adapters[${i}].contentHash`);
    u(a.weightPpm, `adapters[${i}].weightPpm`, MAX_WEIGHT_PPM);
  });
  if (!isObj(r.sampling)) bad("sampling must be an object");
  for (const [k, v] of Object.entries(r.sampling)) if (typeof v !== "number" || !Number.isFinite(v)) bad(`sampling.${k} must be a finite number`);
  u(r.tokensIn, "tokensIn", 0xffffffff);
  u(r.tokensOut, "tokensOut", 0xffffffff);
  if (!FINISHES.includes(r.finish)) bad(`finish must be one of ${FINISHES.join(", ")}`);
  if (typeof r.fee !== "bigint" || r.fee < 0n || r.fee >= 1n << 256n) bad("fee must be a uint256");
  for (const k of ["lines", "attribution", "spans", "credits"] as const) if (!Array.isArray(r[k])) bad(`${k} must be an array`);
  let sum = 0n;
  r.lines.forEach((l, i) => {
    if (!isObj(l)) bad(`lines[${i}] must be an object`);
    only(l, ["party", "role", "model", "datanet", "amount"], `lines[${i}]`);
    str(l.party, `lines[${i}].party`);
    str(l.model, `lines[${i}].model`);
    if (!["protocol", "operator", "developer", "staker", "data"].includes(l.role)) bad(`lines[${i}].role is unknown`);
    if ((l.role === "data") !== (typeof l.datanet === "string")) bad(`lines[${i}].datanet must be present exactly on data lines`);
    if (typeof l.amount !== "bigint" || l.amount < 0n) bad(`lines[${i}].amount must be a non-negative integer`);
    sum += l.amount;
  });
  if (sum !== r.fee) bad(`lines sum to ${sum} but fee is ${r.fee}`);
  r.attribution.forEach((a, i) => {
    if (!isObj(a)) bad(`attribution[${i}] must be an object`);
    only(a, ["model", "datanet", "num", "den"], `attribution[${i}]`);
    str(a.model, `attribution[${i}].model`);
    str(a.datanet, `attribution[${i}].datanet`);
    if (typeof a.num !== "bigint" || typeof a.den !== "bigint" || a.num < 0n || a.den <= 0n) bad(`attribution[${i}] must be a non-negative fraction`);
  });
  r.spans.forEach((s, i) => {
    if (!isObj(s)) bad(`spans[${i}] must be an object`);
    only(s, ["datanet", "recordId", "contributor", "start", "end"], `spans[${i}]`);
    str(s.datanet, `spans[${i}].datanet`);
    str(s.contributor, `spans[${i}].contributor`);
    u(s.recordId, `spans[${i}].recordId`);
    u(s.start, `spans[${i}].start`);
    u(s.end, `spans[${i}].end`);
    if (s.end < s.start || s.end > r.tokensOut) bad(`spans[${i}] range [${s.start}, ${s.end}) is outside the output`);
  });
  r.credits.forEach((c, i) => {
    if (!isObj(c)) bad(`credits[${i}] must be an object`);
    only(c, ["datanet", "contributor", "matchedTokens"], `credits[${i}]`);
    str(c.datanet, `credits[${i}].datanet`);
    str(c.contributor, `credits[${i}].contributor`);
    u(c.matchedTokens, `credits[${i}].matchedTokens`, r.tokensOut);
  });
  if (r.v === 2) validateV2(r, bad, u, str, only);
}

/** What a version 2 receipt adds: its inputs, and every integer within its ABI type. */
function validateV2(
  r: Receipt, bad: (msg: string) => never, u: (v: unknown, name: string, max?: number) => void,
  str: (v: unknown, name: string) => void, only: (o: object, allowed: string[], name: string) => void,
): void {
  const u256 = (v: unknown, name: string) => { if (typeof v !== "bigint" || v < 0n || v >= U256) bad(`${name} must be a uint256`); };
  const list = (v: unknown, name: string): unknown[] => (Array.isArray(v) ? v : bad(`${name} must be an array`));
  const obj = (v: unknown, name: string, allowed: string[]): Record<string, unknown> => {
    if (!isObj(v)) bad(`${name} must be an object`);
    only(v as object, allowed, name);
    return v as Record<string, unknown>;
  };
  r.lines.forEach((l, i) => u256(l.amount, `lines[${i}].amount`));
  r.attribution.forEach((a, i) => { u256(a.num, `attribution[${i}].num`); u256(a.den, `attribution[${i}].den`); });
  const i = obj(r.inputs, "inputs", ["policy", "treasury", "operator", "models"]);
  const p = obj(i.policy, "inputs.policy", ["protocolBps", "operatorBps", "developerBps", "stakerBps", "dataBps", "lambdaBps"]);
  for (const k of ["protocolBps", "operatorBps", "developerBps", "stakerBps", "dataBps", "lambdaBps"]) u(p[k], `inputs.policy.${k}`, 10_000);
  str(i.treasury, "inputs.treasury");
  str(i.operator, "inputs.operator");
  list(i.models, "inputs.models").forEach((mv, k) => {
    const n = `inputs.models[${k}]`;
    const m = obj(mv, n, ["model", "priceIn", "priceOut", "developers", "stakers", "lineage", "shares"]);
    str(m.model, `${n}.model`);
    u256(m.priceIn, `${n}.priceIn`);
    u256(m.priceOut, `${n}.priceOut`);
    list(m.developers, `${n}.developers`).forEach((d, j) => { const o = obj(d, `${n}.developers[${j}]`, ["party", "share"]); str(o.party, `${n}.developers[${j}].party`); u256(o.share, `${n}.developers[${j}].share`); });
    list(m.stakers, `${n}.stakers`).forEach((d, j) => { const o = obj(d, `${n}.stakers[${j}]`, ["party", "stake"]); str(o.party, `${n}.stakers[${j}].party`); u256(o.stake, `${n}.stakers[${j}].stake`); });
    list(m.lineage, `${n}.lineage`).forEach((e, j) => {
      const o = obj(e, `${n}.lineage[${j}]`, ["datanet", "weight", "contributors"]);
      str(o.datanet, `${n}.lineage[${j}].datanet`);
      u256(o.weight, `${n}.lineage[${j}].weight`);
      list(o.contributors, `${n}.lineage[${j}].contributors`).forEach((c, q) => {
        const x = obj(c, `${n}.lineage[${j}].contributors[${q}]`, ["party", "approvedTokens"]);
        str(x.party, `${n}.lineage[${j}].contributors[${q}].party`);
        u(x.approvedTokens, `${n}.lineage[${j}].contributors[${q}].approvedTokens`);
      });
    });
    if (m.shares !== undefined) {
      const s = obj(m.shares, `${n}.shares`, ["developerBps", "stakerBps", "dataBps"]);
      for (const key of ["developerBps", "stakerBps", "dataBps"]) u(s[key], `${n}.shares.${key}`, 10_000);
    }
  });
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function big(v: unknown, name: string): bigint {
  if (typeof v !== "string" || !/^(0|-?[1-9][0-9]*)$/.test(v)) throw oerr("RECEIPT_INVALID", `receipt.${name} must be a decimal integer string`);
  return BigInt(v);
}

/** Composition weight (a float, as requests carry it) to exact parts per million (src/adapters/composition.ts). */
export function weightToPpm(w: number): number {
  return compositionWeightPpm(w);
}
