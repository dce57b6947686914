/**
 * Shared types of the economics core. Money, stakes, shares and weights are bigint (exact);
 * token counts and basis points are plain integers (validated as safe non-negative integers).
 */
import type { Hex } from "viem";

export type SplitRole = "protocol" | "operator" | "developer" | "staker" | "data";

/** One payout of a request: `party` earns `amount` atomic units for `role` on `model`. */
export interface SplitLine {
  party: string;
  role: SplitRole;
  /** The model (base model or adapter id) whose fee F_m this line is part of. */
  model: string;
  /** Data lines only: the Datanet version key ("id@version") the contributor is paid through. */
  datanet?: string;
  amount: bigint;
}

/** How N_m (the fee left after protocol and operator) is split; the three sum to 10000. */
export interface ShareBps {
  developerBps: number;
  stakerBps: number;
  dataBps: number;
}

/** The node policy: all parts in basis points (1/10000). */
export interface FeePolicy extends ShareBps {
  protocolBps: number;
  operatorBps: number;
  /** λ: how much span evidence (vs lineage) decides data weights. */
  lambdaBps: number;
}

export interface DeveloperShare {
  party: string;
  share: bigint;
}

export interface StakeAmount {
  party: string;
  stake: bigint;
}

export interface ContributorTokens {
  party: string;
  /** Tokens of this contributor's approved records in the Datanet version. */
  approvedTokens: number;
}

/** One Datanet version a model was trained on, with its integer lineage weight. */
export interface LineageEntry {
  /** Version key, "id@version". */
  datanet: string;
  weight: bigint;
  contributors: ContributorTokens[];
}

/** Matched output tokens of one contributor in one Datanet version (aggregated span evidence). */
export interface SpanMatch {
  datanet: string;
  contributor: string;
  matchedTokens: number;
}

/** One verbatim match of the output in a Datanet record: output tokens [start, end). */
export interface SpanEvidence {
  datanet: string;
  recordId: number;
  contributor: string;
  start: number;
  end: number;
}

/** One model of a request (the base model or an adapter) as the fee split sees it. */
export interface ModelUse {
  model: string;
  /** Atomic units per prompt token and per output token. */
  priceIn: bigint;
  priceOut: bigint;
  developers: DeveloperShare[];
  /** Stakes on this model at the time of the request. */
  stakers: StakeAmount[];
  lineage: LineageEntry[];
  /** A per-model override of β/γ/δ chosen by the model's owner; the node's when absent. */
  shares?: ShareBps;
}

export interface SplitInput {
  tokensIn: number;
  tokensOut: number;
  models: ModelUse[];
  /** Span evidence of the request, aggregated per Datanet version and contributor. */
  spans: SpanMatch[];
  policy: FeePolicy;
  treasury: string;
  operator: string;
}

/** The share of model m's data bucket that went to Datanet d, as an exact reduced fraction. */
export interface AttributionWeight {
  model: string;
  datanet: string;
  num: bigint;
  den: bigint;
}

export interface SplitResult {
  total: bigint;
  /** F_m per model, in input order. */
  fees: { model: string; fee: bigint }[];
  /** Per model in input order, then recipients in canonical order; zero amounts omitted. */
  lines: SplitLine[];
  attribution: AttributionWeight[];
}

export interface ModelRef {
  id: string;
  /** keccak256 (or other 32-byte digest) of the model or adapter files. */
  contentHash: Hex;
}

export interface AdapterUse extends ModelRef {
  /** Composition weight in parts per million (1.0 = 1_000_000), so it is exact. */
  weightPpm: number;
}
