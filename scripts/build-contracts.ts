/**
 * Compiles contracts/*.sol and writes contracts/artifacts/<Name>.json (ABI + bytecode, what the
 * node deploys) and src/chain/abi.ts (typed ABIs). Run after editing a contract:
 *   npx tsx scripts/build-contracts.ts
 * test/chain/artifacts.test.ts fails while the committed files differ from a fresh compile.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compileContracts, deployable, renderAbiModule, renderArtifact } from "../src/chain/solc.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const t0 = Date.now();
const artifacts = compileContracts(root);
const dir = join(root, "contracts", "artifacts");
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) if (f.endsWith(".json")) rmSync(join(dir, f));
for (const a of deployable(artifacts)) writeFileSync(join(dir, `${a.contractName}.json`), renderArtifact(a));
writeFileSync(join(root, "src", "chain", "abi.ts"), renderAbiModule(artifacts));
console.log(`compiled ${artifacts.length} contracts in ${Date.now() - t0} ms: ${artifacts.map((a) => `${a.contractName} (${(a.deployedBytecode.length - 2) / 2} B)`).join(", ")}`);
