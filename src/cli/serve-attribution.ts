/**
 * `openlora serve`'s ledger: where it lives, the node's signing key, the node's fee policy, and
 * the attribution service wired to the engine. Defaults are documented in docs/economics.md.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Hex } from "viem";
import { generatePrivateKey } from "viem/accounts";
import type { FeePolicy } from "../attribution/types.js";
import type { EngineHandle } from "../engine/protocol.js";
import { oerr } from "../errors.js";
import { Ledger } from "../ledger/ledger.js";
import { AttributionService } from "../server/attribution.js";
import { cacheDir } from "../synth/default-model.js";

/** 2% protocol, 20% operator; of the rest 50% developers, 20% stakers, 30% data; λ = 0.5. */
export const DEFAULT_POLICY: FeePolicy = { protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };

export interface AttributionFlags {
  ledgerPath: string | undefined;
  nodeKey: string | undefined;
  treasury: string;
  minAgentStake: bigint;
}

export function defaultLedgerPath(modelId: string): string {
  return join(cacheDir(), "ledger", `${modelId}.sqlite`);
}

/** The node key: a 0x-hex private key, a file holding one, or (default) one generated next to the ledger, mode 0600. */
function nodeKey(flag: string | undefined, ledgerPath: string, log: (m: string) => void): Hex {
  const valid = (k: string): Hex => {
    const t = k.trim();
    if (!/^0x[0-9a-fA-F]{64}$/.test(t)) throw oerr("INVALID_ARGUMENT", "--node-key must be a 0x-prefixed 32-byte hex private key or a file holding one");
    return t as Hex;
  };
  if (flag !== undefined) return valid(existsSync(flag) ? readFileSync(flag, "utf8") : flag);
  const keyPath = `${ledgerPath}.key`;
  if (existsSync(keyPath)) return valid(readFileSync(keyPath, "utf8"));
  const key = generatePrivateKey();
  mkdirSync(dirname(keyPath), { recursive: true });
  writeFileSync(keyPath, `${key}\n`, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  log(`generated the node's receipt-signing key in ${keyPath}`);
  return key;
}

export async function openAttribution(engine: EngineHandle, modelPath: string, f: AttributionFlags, log: (m: string) => void): Promise<AttributionService> {
  const path = f.ledgerPath ?? defaultLedgerPath(engine.info.modelId);
  mkdirSync(dirname(path), { recursive: true });
  const ledger = new Ledger({ path, nodeKey: nodeKey(f.nodeKey, path, log), policy: DEFAULT_POLICY, treasury: f.treasury, minAgentStake: f.minAgentStake });
  const service = new AttributionService(ledger, engine, { id: engine.info.modelId, path: modelPath }, ledger.nodeAddresses()[0]!);
  const { released, versions } = await service.start();
  log(`ledger ${path} (node ${ledger.nodeAddresses()[0]}); ${versions} Datanet versions indexed${released ? `; ${released} reservations of interrupted requests released` : ""}`);
  return service;
}
