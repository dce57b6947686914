/**
 * The files and registry entries a validator test's node serves: a tiny q8_0 Qwen3-shaped model and one
 * rank-8 adapter ("tiny" base at 1/2 per token, "style" adapter at 1/1, both owned by `owner`), the
 * contracts file and the node's 0600 key file.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Hex } from "viem";
import { contentHash } from "../../src/attribution/content-hash.js";
import { RegistryAbi } from "../../src/chain/abi.js";
import { writeDeployment } from "../../src/chain/deploy.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { nameId, testTerms, type TestChain } from "../helpers/chain.js";

export interface NodeFiles {
  modelPath: string;
  adapters: string;
  contractsFile: string;
  nodeKeyFile: string;
}

export async function tinyNode(dir: string, t: TestChain, nodeKey: Hex, owner: number): Promise<NodeFiles> {
  const files = { modelPath: join(dir, "tiny.gguf"), adapters: join(dir, "adapters"), contractsFile: join(dir, "contracts.json"), nodeKeyFile: join(dir, "node.key") };
  writeGgufModel(files.modelPath, "tiny-qwen3", { seed: 9, type: "q8_0" });
  writeGgufLora(join(files.adapters, "style.gguf"), "tiny-qwen3", { seed: 1, rank: 8, alpha: 16, targets: ["q", "v"], type: "f32", strength: 0.1 });
  writeDeployment(files.contractsFile, t.deployment);
  writeFileSync(files.nodeKeyFile, `${nodeKey}\n`, { mode: 0o600 });
  const o = t.addresses[owner]!;
  const register = (args: readonly unknown[]) => t.send(t.wallets[owner]!, { address: t.deployment.registry, abi: RegistryAbi, functionName: "registerModel", args });
  await register(["tiny", 0, `0x${"0".repeat(64)}`, testTerms(o, { contentHash: await contentHash(files.modelPath), priceIn: 1n, priceOut: 2n })]);
  await register(["style", 1, nameId("tiny"), testTerms(o, { contentHash: await contentHash(join(files.adapters, "style.gguf")), priceIn: 1n, priceOut: 1n })]);
  return files;
}
