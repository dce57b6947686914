/**
 * `openlora serve --chain URL --contracts FILE` and `--dev-chain`: the chain a node settles on.
 * --dev-chain starts anvil (npm package @foundry-rs/anvil) on 127.0.0.1, its state kept in
 * ~/.cache/openlora/dev-chain/ across restarts, deploys the contracts there the first time (with
 * anvil's first well-known key; a test ERC-20 as the token) and funds the node's address with gas.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseEther, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ANVIL_KEYS, startAnvil, type LocalChain } from "../chain/anvil.js";
import { connectChain } from "../chain/client.js";
import { deployOpenLora, isCurrentDeployment, readDeployment, writeDeployment, type Deployment } from "../chain/deploy.js";
import { oerr } from "../errors.js";
import { cacheDir } from "../synth/default-model.js";
import { writeSecretFile } from "./credentials.js";

export interface ChainFlags {
  chain: string | undefined;
  contracts: string | undefined;
  devChain: boolean;
  /** --dev-chain's port on 127.0.0.1; default 8545. */
  devChainPort?: number;
}

export interface PreparedChain {
  url: string;
  deployment: Deployment;
  contractsFile: string;
  /** Stops the dev chain (undefined for an external one). */
  stop?: () => Promise<void>;
}

export function devChainDir(): string {
  return join(cacheDir(), "dev-chain");
}

/** The dev chain's node key: one file, so the funded operator address stays the same across restarts. */
export function devNodeKeyFile(log: (m: string) => void): string {
  const file = join(devChainDir(), "node.key");
  if (!existsSync(file)) {
    writeSecretFile(file, generatePrivateKey());
    log(`dev chain: generated the node key in ${file} (mode 0600)`);
  }
  return file;
}

export async function prepareChain(f: ChainFlags, nodeKey: Hex, log: (m: string) => void): Promise<PreparedChain | undefined> {
  if (f.devChain && (f.chain !== undefined || f.contracts !== undefined)) throw oerr("INVALID_ARGUMENT", "--dev-chain starts its own chain: do not combine it with --chain or --contracts");
  if (!f.devChain && f.chain === undefined && f.contracts === undefined) return undefined;
  if (!f.devChain) {
    if (f.chain === undefined || f.contracts === undefined) throw oerr("INVALID_ARGUMENT", "--chain URL and --contracts FILE go together (the file is what `openlora chain deploy` wrote)");
    return { url: f.chain, deployment: readDeployment(f.contracts), contractsFile: f.contracts };
  }
  const dir = devChainDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const local: LocalChain = await startAnvil({ stateFile: join(dir, "anvil-state.json"), port: f.devChainPort ?? 8545 });
  try {
    const contractsFile = join(dir, "contracts.json");
    const deployer = await connectChain(local.url, ANVIL_KEYS[0]!);
    let deployment: Deployment | undefined;
    // A file or contracts of an older openlora (code that is not this build's) are deployed afresh.
    const d = existsSync(contractsFile) ? (() => { try { return readDeployment(contractsFile); } catch { return undefined; } })() : undefined;
    if (d && d.chainId === local.chainId && (await isCurrentDeployment(deployer.public, d))) deployment = d;
    if (!deployment) {
      // Short windows, so the whole flow (terms in force, post, window, claim) runs in a minute on one machine.
      deployment = await deployOpenLora(deployer.wallet, deployer.public, { treasury: privateKeyToAccount(ANVIL_KEYS[9]!).address, challengeWindow: 20n, withdrawDelay: 20n, unbondingDelay: 60n, termsDelay: 5n,
        validators: { voteWindow: 10n, answerWindow: 10n, unbondingDelay: 60n },
      });
      writeDeployment(contractsFile, deployment);
      log(`dev chain: deployed the contracts (${contractsFile})`);
    }
    const node = privateKeyToAccount(nodeKey).address;
    if ((await deployer.public.getBalance({ address: node })) < parseEther("1")) {
      const hash = await deployer.wallet.sendTransaction({ to: node, value: parseEther("100") });
      await deployer.public.waitForTransactionReceipt({ hash });
    }
    writeFileSync(join(dir, "rpc.url"), `${local.url}\n`);
    log(`dev chain: anvil on ${local.url} (chain ${local.chainId}); contracts in ${contractsFile}; anvil's well-known test keys hold ETH`);
    return { url: local.url, deployment, contractsFile, stop: () => local.stop() };
  } catch (e) {
    await local.stop();
    throw e;
  }
}
