/**
 * The node's connection to its chain: viem clients over one JSON-RPC URL, the node key as the
 * account that posts epochs, and the checks made before serving (right chain, our contracts there).
 */
import {
  BaseError, ContractFunctionRevertedError, createPublicClient, createWalletClient, defineChain, http, type Address, type Chain, type Hex, type PublicClient, type Transport, type WalletClient,
} from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { oerr, isOpenLoraError } from "../errors.js";

export interface ChainClients {
  url: string;
  chain: Chain;
  public: PublicClient<Transport, Chain>;
  wallet: WalletClient<Transport, Chain, PrivateKeyAccount>;
  account: PrivateKeyAccount;
}

/** Polling every 20 ms suits a local chain; a public chain is polled at viem's default. */
function pollingInterval(url: string): number {
  return /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(url) ? 20 : 4_000;
}

/**
 * Connects and reads the chain id (CHAIN_UNAVAILABLE when the endpoint does not answer;
 * CHAIN_ID_MISMATCH when it is not `expectChainId`).
 */
export async function connectChain(url: string, key: Hex, expectChainId?: number): Promise<ChainClients> {
  let chainId: number;
  const probe = createPublicClient({ transport: http(url, { retryCount: 0, timeout: 10_000 }) });
  try {
    chainId = await probe.getChainId();
  } catch (e) {
    throw oerr("CHAIN_UNAVAILABLE", `no JSON-RPC answer from ${url}: ${(e as Error).message.split("\n")[0]}`, { url });
  }
  if (expectChainId !== undefined && chainId !== expectChainId) {
    throw oerr("CHAIN_ID_MISMATCH", `${url} serves chain ${chainId}, the contracts file is for chain ${expectChainId}`, { url, chainId, expected: expectChainId });
  }
  const chain = defineChain({ id: chainId, name: `chain ${chainId}`, nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [url] } } });
  const transport = http(url, { retryCount: 2, timeout: 15_000 });
  const account = privateKeyToAccount(key);
  const interval = pollingInterval(url);
  return {
    url,
    chain,
    account,
    // cacheTime 0: each round reads the head afresh (viem caches it for a polling interval by default).
    public: createPublicClient({ chain, transport, pollingInterval: interval, cacheTime: 0 }),
    wallet: createWalletClient({ chain, transport, account, pollingInterval: interval }),
  };
}

/** True for errors that mean "the RPC endpoint did not answer" (retry later), not "the chain said no". */
export function isRpcOutage(e: unknown): boolean {
  if (isOpenLoraError(e, "CHAIN_UNAVAILABLE")) return true;
  const name = (e as { name?: string })?.name ?? "";
  const msg = String((e as Error)?.message ?? "");
  return /HttpRequestError|TimeoutError|SocketClosedError|WebSocketRequestError/.test(name) || /fetch failed|ECONNREFUSED|ECONNRESET|socket hang up|timed out/i.test(msg);
}

/** The custom error's name a contract reverted with (decoded against the call's ABI), or undefined. */
export function revertName(e: unknown): string | undefined {
  const r = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
  return r instanceof ContractFunctionRevertedError ? r.data?.errorName : undefined;
}

export type { Address };
