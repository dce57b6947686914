/**
 * `openlora serve`'s ledger: where it lives, the node's signing key, the node's fee policy, and
 * the attribution service wired to the engine. Defaults are documented in docs/economics.md.
 */
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import type { FeePolicy } from "../attribution/types.js";
import type { EngineHandle } from "../engine/protocol.js";
import { Ledger } from "../ledger/ledger.js";
import { AttributionService } from "../server/attribution.js";
import { cacheDir } from "../synth/default-model.js";
import { nodeKey } from "./credentials.js";

/** 2% protocol, 20% operator; of the rest 50% developers, 20% stakers, 30% data; λ = 0.5. */
export const DEFAULT_POLICY: FeePolicy = { protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };

export interface AttributionFlags {
  ledgerPath: string | undefined;
  /** A file holding the node key (never the key itself): src/cli/credentials.ts. */
  nodeKeyFile: string | undefined;
  treasury: string;
  minAgentStake: bigint;
}

export function defaultLedgerPath(modelId: string): string {
  return join(cacheDir(), "ledger", `${modelId}.sqlite`);
}

export async function openAttribution(engine: EngineHandle, f: AttributionFlags, log: (m: string) => void): Promise<AttributionService> {
  const path = f.ledgerPath ?? defaultLedgerPath(engine.info.modelId);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const ledger = new Ledger({ path, nodeKey: nodeKey(f.nodeKeyFile, path, log), policy: DEFAULT_POLICY, treasury: f.treasury, minAgentStake: f.minAgentStake });
  const service = new AttributionService(ledger, engine, { id: engine.info.modelId, contentHash: engine.info.modelContentHash }, ledger.nodeAddresses()[0]!);
  const { released, versions } = await service.start();
  log(`ledger ${path} (node ${ledger.nodeAddress}); ${versions} Datanet versions indexed${released ? `; ${released} reservations of interrupted requests released` : ""}`);
  return service;
}
