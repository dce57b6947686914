// Placeholder until the contracts branch lands (its deploy.ts replaces this file).
import type { Address } from "viem";

export interface Deployment {
  chainId: number;
  token: Address;
  registry: Address;
  licence: Address;
  settlement: Address;
  court: Address | null;
  deployBlock: string;
  treasury: Address;
}
import type { PublicClient, WalletClient } from "viem";
export declare function deployOpenLora(wallet: WalletClient, pub: PublicClient, opts: { treasury: Address }): Promise<Deployment>;
export declare function readDeployment(file: string): Deployment;
export declare function writeDeployment(file: string, d: Deployment): void;
