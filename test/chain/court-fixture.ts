/**
 * A ReceiptCourt on anvil over MockRegistry/MockSettlement, and a real ledger signing v2 receipts in the
 * court's domain (test/chain/receipt-court.test.ts, bench/court-gas.ts). The integrator swaps the mocks
 * for the real Registry/Settlement deploy.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  createPublicClient, createWalletClient, http, keccak256, stringToHex,
  type Abi, type Address, type Hex, type HttpTransport, type PublicClient, type WalletClient,
} from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { foundry } from "viem/chains";
import type { FeePolicy } from "../../src/attribution/types.js";
import { MockRegistryAbi, MockSettlementAbi, ReceiptCourtAbi, RegistryCourtAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS, type LocalChain } from "../../src/chain/anvil.js";
import { Ledger, type SettleInput } from "../../src/ledger/index.js";

export const NODE_KEY = ANVIL_KEYS[1]!;
export const POLICY: FeePolicy = { protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };

const artifact = (name: string): Hex =>
  (JSON.parse(readFileSync(join(import.meta.dirname, `../../contracts/artifacts/${name}.json`), "utf8")) as { bytecode: Hex }).bytecode;

export interface CourtEnv {
  client: PublicClient<HttpTransport, typeof foundry>;
  wallet: (key: Hex) => WalletClient<HttpTransport, typeof foundry, PrivateKeyAccount>;
  registry: Address;
  settlement: Address;
  court: Address;
  /** ReceiptCourt's deputy (RegistryCourt): proveBadPolicy, proveBadMergedLineage. */
  registryCourt: Address;
  /** The node address: a registered operator with a bond of 1000. */
  node: Address;
}

export async function deployCourt(chain: LocalChain): Promise<CourtEnv> {
  const transport = http(chain.url);
  const client = createPublicClient({ chain: foundry, transport, pollingInterval: 20 });
  const wallet = (key: Hex) => createWalletClient({ account: privateKeyToAccount(key), chain: foundry, transport, pollingInterval: 20 });
  const deployer = wallet(ANVIL_KEYS[0]!);
  const deploy = async (abi: Abi, name: string, args: unknown[] = []): Promise<Address> => {
    const hash = await deployer.deployContract({ abi, bytecode: artifact(name), args });
    return (await client.waitForTransactionReceipt({ hash })).contractAddress!;
  };
  const registry = await deploy(MockRegistryAbi, "MockRegistry");
  const settlement = await deploy(MockSettlementAbi, "MockSettlement");
  const court = await deploy(ReceiptCourtAbi, "ReceiptCourt", [registry, settlement]);
  const registryCourt = await deploy(RegistryCourtAbi, "RegistryCourt", [court]);
  const send = async (hash: Promise<Hex>) => client.waitForTransactionReceipt({ hash: await hash });
  await send(deployer.writeContract({ address: court, abi: ReceiptCourtAbi, functionName: "setDeputy", args: [registryCourt] }));
  await send(deployer.writeContract({ address: settlement, abi: MockSettlementAbi, functionName: "setCourt", args: [court] }));
  const node = privateKeyToAccount(NODE_KEY).address;
  await send(deployer.writeContract({ address: registry, abi: MockRegistryAbi, functionName: "setOperator", args: [node, true] }));
  await send(deployer.writeContract({ address: settlement, abi: MockSettlementAbi, functionName: "setBond", args: [node, 1000n] }));
  return { client, wallet, registry, settlement, court, registryCourt, node };
}

const h = (s: string): Hex => keccak256(stringToHex(s));

/** 1 base + 2 adapters over 2 Datanets with 3 contributors, stakers on one adapter, an agent with money. */
export function courtLedger(path: string, chainId: number, court: Address): Ledger {
  let t = 1_700_000_000_000;
  const l = new Ledger({ path, nodeKey: NODE_KEY, policy: POLICY, treasury: "treasury", operator: "op", chainId, verifyingContract: court, now: () => t++ });
  l.createDatanet("legal", "olivia");
  for (const [who, ids] of [["carol", [10, 11, 12, 13, 14, 15]], ["dave", [20, 21, 22]]] as const) {
    l.approveRecord("legal", l.contribute("legal", { contributor: who, content: who, tokenIds: [...ids] }).id, "olivia");
  }
  l.publishVersion("legal", "olivia");
  l.createDatanet("cases", "olivia");
  l.approveRecord("cases", l.contribute("cases", { contributor: "frank", content: "Roe", tokenIds: [30, 31, 32] }).id, "olivia");
  l.publishVersion("cases", "olivia");
  l.registerModel({ id: "llama", kind: "base", owner: "meta", priceIn: 1n, priceOut: 2n, contentHash: h("llama"), developers: [{ party: "meta", share: 1n }] });
  l.registerModel({
    id: "legal-lora", kind: "adapter", owner: "alice", baseModel: "llama", priceIn: 10n, priceOut: 40n, contentHash: h("legal-lora"),
    developers: [{ party: "alice", share: 2n }, { party: "bob", share: 1n }],
    lineage: [{ datanet: "legal", version: 1, weight: 7n }, { datanet: "cases", version: 1, weight: 3n }],
  });
  l.registerModel({
    id: "case-lora", kind: "adapter", owner: "gina", baseModel: "llama", priceIn: 5n, priceOut: 7n, contentHash: h("case-lora"),
    developers: [{ party: "gina", share: 1n }], lineage: [{ datanet: "cases", version: 1, weight: 1n }],
  });
  for (const [staker, amount] of [["sam", 30n], ["tess", 10n]] as const) {
    l.createAgent(staker);
    l.deposit(staker, amount);
    l.stake(staker, "legal-lora", amount);
  }
  l.createAgent("agent");
  l.deposit("agent", 10n ** 12n);
  return l;
}

/** Settles one request using both adapters; `extra` output tokens vary the receipt. */
export async function settleRequest(l: Ledger, extra = 0) {
  const input: SettleInput = {
    baseModel: "llama", adapters: [{ id: "legal-lora", weightPpm: 700_000 }, { id: "case-lora", weightPpm: 300_000 }],
    promptTokens: [1, 2, 3, 4, 5], outputTokens: [10, 11, 12, 13, 20, 21, 30, 31, 99, ...Array.from({ length: extra }, (_, i) => 100 + i)],
    sampling: { temperature: 0.7, topP: 0.9, seed: 7 }, finish: "length",
    spans: [
      { datanet: "legal@1", recordId: 1, contributor: "carol", start: 0, end: 4 },
      { datanet: "legal@1", recordId: 2, contributor: "dave", start: 4, end: 6 },
      { datanet: "cases@1", recordId: 3, contributor: "frank", start: 6, end: 8 },
    ],
  };
  const worst = l.worstCaseFee({ baseModel: "llama", adapters: ["legal-lora", "case-lora"], tokensIn: 5, maxTokens: input.outputTokens.length });
  return l.settle(l.reserve("agent", worst), input);
}
