/**
 * `openlora serve`'s ledger: where it lives, the node's signing key, the node's fee policy, and
 * the attribution service wired to the engine. Defaults are documented in docs/economics.md.
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Address } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { validatePolicy } from "../attribution/fees.js";
import type { FeePolicy } from "../attribution/types.js";
import { oerr } from "../errors.js";
import type { EngineHandle } from "../engine/protocol.js";
import { Ledger } from "../ledger/ledger.js";
import { AttributionService } from "../server/attribution.js";
import { cacheDir } from "../synth/default-model.js";
import { nodeKey } from "./credentials.js";

/** 2% protocol, 20% operator; of the rest 50% developers, 20% stakers, 30% data; λ = 0.5. */
export const DEFAULT_POLICY: FeePolicy = { protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };

export interface AttributionFlags {
  ledgerPath: string | undefined;
  /** On a chain: its id, the contract receipts name (verifyingContract) and the treasury's address. */
  chain?: { chainId: number; settlement: Address; verifyingContract?: Address; treasury: Address };
  /** A file holding the node key (never the key itself): src/cli/credentials.ts. */
  nodeKeyFile: string | undefined;
  treasury: string;
  minAgentStake: bigint;
  /** --fee-policy; DEFAULT_POLICY when absent. On a chain, what the node declares if it has declared none. */
  policy?: FeePolicy;
}

const POLICY_KEYS = { protocol: "protocolBps", operator: "operatorBps", developer: "developerBps", staker: "stakerBps", data: "dataBps", lambda: "lambdaBps" } as const;

/** "protocol=200,operator=2000,developer=5000,staker=2000,data=3000,lambda=5000": every part, in bps. */
export function parseFeePolicy(text: string): FeePolicy {
  const out: Partial<Record<keyof FeePolicy, number>> = {};
  for (const part of text.split(",")) {
    const m = /^\s*([a-z]+)\s*=\s*(\d{1,5})\s*$/.exec(part);
    const key = m ? POLICY_KEYS[m[1] as keyof typeof POLICY_KEYS] : undefined;
    if (!m || !key) throw oerr("INVALID_ARGUMENT", `--fee-policy: "${part}" is not <part>=<bps> with part one of ${Object.keys(POLICY_KEYS).join(", ")}`);
    if (out[key] !== undefined) throw oerr("INVALID_ARGUMENT", `--fee-policy: ${m[1]} is given twice`);
    out[key] = Number(m[2]);
  }
  const missing = Object.entries(POLICY_KEYS).filter(([, k]) => out[k] === undefined).map(([n]) => n);
  if (missing.length > 0) throw oerr("INVALID_ARGUMENT", `--fee-policy: missing ${missing.join(", ")}`);
  const policy = out as FeePolicy;
  validatePolicy(policy);
  return policy;
}

/** Off-chain and each chain deployment get their own ledger file (a ledger's receipts name their chain). */
export function defaultLedgerPath(modelId: string, chain?: { chainId: number; settlement: Address }): string {
  const suffix = chain ? `@chain${chain.chainId}-${chain.settlement.slice(2, 10).toLowerCase()}` : "";
  return join(cacheDir(), "ledger", `${modelId}${suffix}.sqlite`);
}

/** The node key openAttribution will use (the chain connection needs it first). */
export function resolveNodeKey(f: Pick<AttributionFlags, "ledgerPath" | "nodeKeyFile" | "chain">, modelId: string, log: (m: string) => void) {
  const path = f.ledgerPath ?? defaultLedgerPath(modelId, f.chain);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  return nodeKey(f.nodeKeyFile, path, log);
}

export async function openAttribution(engine: EngineHandle, f: AttributionFlags, log: (m: string) => void): Promise<AttributionService> {
  const path = f.ledgerPath ?? defaultLedgerPath(engine.info.modelId, f.chain);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const key = nodeKey(f.nodeKeyFile, path, log);
  // On a chain every party is its lowercase address (src/ledger/chain-book.ts), the operator's too.
  const onChain = f.chain
    ? { onChain: true, operator: privateKeyToAccount(key).address.toLowerCase(), treasury: f.chain.treasury.toLowerCase(), chainId: f.chain.chainId, ...(f.chain.verifyingContract ? { verifyingContract: f.chain.verifyingContract } : {}) }
    : { treasury: f.treasury };
  const ledger = new Ledger({ path, nodeKey: key, policy: f.policy ?? DEFAULT_POLICY, minAgentStake: f.minAgentStake, ...onChain });
  const service = new AttributionService(ledger, engine, { id: engine.info.modelId, contentHash: engine.info.modelContentHash }, ledger.operatorParty);
  const { released, versions } = await service.start();
  log(`ledger ${path} (node ${ledger.nodeAddress}); ${versions} Datanet versions indexed${released ? `; ${released} reservations of interrupted requests released` : ""}`);
  return service;
}
