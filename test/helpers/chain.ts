/**
 * A real local chain for tests: anvil with the openlora contracts deployed, clients for every
 * anvil key, time travel, and `expectRevert` that checks a revert by its custom error's name.
 */
import {
  createPublicClient, createWalletClient, decodeErrorResult, http, BaseError, ContractFunctionRevertedError,
  encodeAbiParameters, keccak256, toBytes, type Abi, type AbiFunction, type Account, type Address, type Hex, type PublicClient, type TransactionReceipt, type WalletClient, type Chain, type Transport,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";
import { deepStrictEqual } from "node:assert/strict";
import { createServer, request as httpRequest } from "node:http";
import * as abis from "../../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil, type LocalChain, type StartAnvilOptions } from "../../src/chain/anvil.js";
import { deployOpenLora, type DeployOptions, type Deployment } from "../../src/chain/deploy.js";
import type { RegistryTerms } from "../../src/attribution/receipts.js";

export type TestWallet = WalletClient<Transport, Chain, Account>;

export interface TestChain {
  anvil: LocalChain;
  publicClient: PublicClient;
  /** wallets[i] signs with ANVIL_KEYS[i]; wallets[0] deployed the contracts. */
  wallets: TestWallet[];
  addresses: Address[];
  deployment: Deployment;
  snapshot(): Promise<Hex>;
  revert(id: Hex): Promise<void>;
  /** Moves the chain's clock forward and mines a block with the new time. */
  increaseTime(seconds: bigint | number): Promise<void>;
  /** The latest block's timestamp. */
  now(): Promise<bigint>;
  /**
   * The wall clock moved by every increaseTime so far (ms): the clock of a ledger that follows this
   * chain, so terms set after a time warp come into force for it as they would without one.
   */
  clock(): number;
  /** Sends a contract call from `wallet` and waits for it; throws (like a write) when it reverts. */
  /** Waits for a sent transaction (e.g. `contract.write.f(...)`) and asserts it succeeded. */
  mine(hash: Hex | Promise<Hex>): Promise<TransactionReceipt>;
  send(wallet: TestWallet, call: { address: Address; abi: Abi; functionName: string; args?: readonly unknown[] }): Promise<TransactionReceipt>;
  stop(): Promise<void>;
}

/**
 * Test defaults: short windows (seconds), the treasury is ANVIL_KEYS[9]'s address, terms in force
 * at once (termsDelay 0: the tests of the delay deploy with one); validators: a stake of 100 units
 * attests and votes, a dispute costs 40, votes and answers last 30 s, a verdict needs half the stake.
 */
export const TEST_PARAMS = {
  challengeWindow: 100n, withdrawDelay: 50n, unbondingDelay: 200n, slashRewardBps: 2500, termsDelay: 0n,
  validators: { minStake: 100n, challengeBond: 40n, voteWindow: 30n, answerWindow: 30n, unbondingDelay: 50n, quorumBps: 5000 },
} as const;

export async function startTestChain(opts: Partial<DeployOptions> = {}, anvilOpts: StartAnvilOptions = {}): Promise<TestChain> {
  const anvil = await startAnvil(anvilOpts);
  const chain = { ...foundry, rpcUrls: { default: { http: [anvil.url] } } } as Chain;
  const transport = http(anvil.url);
  // cacheTime 0: a test reads the head right after its own transaction (viem caches it for a polling interval).
  const publicClient = createPublicClient({ chain, transport, pollingInterval: 20, cacheTime: 0 }) as PublicClient;
  const wallets = ANVIL_KEYS.map((k) => createWalletClient({ account: privateKeyToAccount(k), chain, transport, pollingInterval: 20 }));
  const addresses = wallets.map((w) => w.account.address);
  let warpMs = 0;
  try {
    const deployment = await deployOpenLora(wallets[0]!, publicClient, { ...TEST_PARAMS, treasury: addresses[9]!, ...opts });
    const request = (method: string, params: unknown[]) => publicClient.request({ method, params } as never) as Promise<unknown>;
    return {
      anvil, publicClient, wallets, addresses, deployment,
      snapshot: async () => (await request("evm_snapshot", [])) as Hex,
      revert: async (id) => {
        if ((await request("evm_revert", [id])) !== true) throw new Error(`evm_revert ${id} failed`);
      },
      clock: () => Date.now() + warpMs,
      increaseTime: async (s) => {
        await request("evm_increaseTime", [Number(s)]);
        warpMs += Number(s) * 1000;
        await request("evm_mine", []);
      },
      now: async () => (await publicClient.getBlock()).timestamp,
      mine: async (hash) => {
        const h = await hash;
        const r = await publicClient.waitForTransactionReceipt({ hash: h });
        if (r.status !== "success") throw new Error(`tx ${h} reverted`);
        return r;
      },
      send: async (wallet, call) => {
        const hash = await wallet.writeContract({ ...call, args: call.args ?? [] } as never);
        const r = await publicClient.waitForTransactionReceipt({ hash });
        if (r.status !== "success") throw new Error(`${call.functionName} reverted in tx ${hash}`);
        return r;
      },
      stop: () => anvil.stop(),
    };
  } catch (e) {
    await anvil.stop();
    throw e;
  }
}

/** A JSON-RPC proxy to `target` that can be switched off: an RPC outage without losing the chain's state. */
export interface RpcProxy {
  url: string;
  /** "all": every request fails (the socket is cut); "sends": only transactions. */
  down: false | "all" | "sends";
  /** The JSON-RPC methods asked through the proxy, in order (clear it to count from a point). */
  methods: string[];
  close(): Promise<void>;
}

export async function rpcProxy(target: string): Promise<RpcProxy> {
  const p: RpcProxy = { url: "", down: false, methods: [], close: async () => {} };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        const msg = JSON.parse(body.toString("utf8")) as { method?: string } | { method?: string }[];
        for (const m of Array.isArray(msg) ? msg : [msg]) p.methods.push(String(m.method));
      } catch { /* not JSON: passed on as it is */ }
      if (p.down === "all" || (p.down === "sends" && body.includes("eth_sendRawTransaction"))) { req.socket.destroy(); return; }
      const up = httpRequest(target, { method: req.method, headers: req.headers }, (r) => { res.writeHead(r.statusCode ?? 502, r.headers); r.pipe(res); });
      up.on("error", () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const a = server.address();
  p.url = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  p.close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return p;
}

/** Every custom error of the generated ABIs (so a revert bubbling up from another contract decodes too). */
const ALL_ERRORS: Abi = (() => {
  const seen = new Set<string>();
  const out: Abi[number][] = [];
  for (const abi of Object.values(abis) as Abi[]) {
    for (const item of abi) {
      if (item.type !== "error") continue;
      const key = `${item.name}(${item.inputs.map((i) => i.type).join(",")})`;
      if (!seen.has(key)) { seen.add(key); out.push(item); }
    }
  }
  return out;
})();

/** Settlement's errors of the validator disputes: test/chain/settlement-disputes.test.ts triggers them. */
export const SETTLEMENT_DISPUTE_ERRORS = ["DisputesAlreadySet", "EpochDisputed", "NotDisputes", "OperatorDisputed", "OperatorJailed"];

/** Every error name expectRevert has matched in this test file. */
export const seenErrors = new Set<string>();

export interface DecodedRevert {
  errorName: string;
  args: readonly unknown[];
}

/** The custom error of a failed call or transaction, decoded against every openlora ABI (+ `extra`). */
export function decodeRevert(e: unknown, extra: Abi = []): DecodedRevert | undefined {
  if (!(e instanceof BaseError)) return undefined;
  const reverted = e.walk((x) => x instanceof ContractFunctionRevertedError) as ContractFunctionRevertedError | null;
  let raw = reverted?.raw;
  if (!raw) {
    const withData = e.walk((x) => typeof (x as { data?: unknown }).data === "string") as { data?: Hex } | null;
    raw = withData?.data;
  }
  if (!raw || raw === "0x") return undefined;
  try {
    const d = decodeErrorResult({ abi: [...ALL_ERRORS, ...extra], data: raw });
    return { errorName: d.errorName, args: (d.args ?? []) as readonly unknown[] };
  } catch {
    return undefined;
  }
}

/** Awaits `p` and asserts it reverted with the custom error `errorName` (and `args`, when given). */
export async function expectRevert(p: Promise<unknown>, errorName: string, args?: readonly unknown[], extra: Abi = []): Promise<DecodedRevert> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new Error(`expected a revert with ${errorName}, but the call succeeded`);
  const d = decodeRevert(err, extra);
  if (!d) throw new Error(`expected a revert with ${errorName}, got: ${(err as Error).message?.split("\n").slice(0, 3).join(" ")}`);
  if (d.errorName !== errorName) throw new Error(`expected a revert with ${errorName}, got ${d.errorName}(${d.args.map(String).join(", ")})`);
  seenErrors.add(errorName);
  if (args) deepStrictEqual(normalise(d.args), normalise(args), `${errorName}'s arguments`);
  return d;
}

function normalise(args: readonly unknown[]): unknown[] {
  return args.map((a) => (typeof a === "string" && /^0x[0-9a-fA-F]{40}$/.test(a) ? a.toLowerCase() : a));
}

/** The names of every custom error an ABI declares (to check the tests trigger all of them). */
export function errorNames(abi: Abi): string[] {
  return abi.filter((i) => i.type === "error").map((i) => (i as { name: string }).name).sort();
}

/** The Registry's Terms struct (one definition: src/attribution/receipts.ts). */
export type TermsInput = RegistryTerms;

/** Valid terms with one developer; override any field. */
export function testTerms(developer: Address, over: Partial<TermsInput> = {}): TermsInput {
  return {
    contentHash: `0x${"ab".repeat(32)}`, priceIn: 1n, priceOut: 2n, developers: [{ party: developer, share: 1n }],
    hasShares: false, developerBps: 0, stakerBps: 0, dataBps: 0, lineage: [], parents: [], ...over,
  };
}

const TERMS_PARAM = (() => {
  const f = abis.RegistryAbi.find((i) => i.type === "function" && i.name === "registerModel") as AbiFunction;
  return f.inputs[3]!;
})();

/** keccak256(abi.encode(terms)): what Registry.termsAt answers for these terms. */
export function termsHash(t: TermsInput): Hex {
  return keccak256(encodeAbiParameters([TERMS_PARAM], [t] as never));
}

/** keccak256(bytes(name)): a model's or Datanet's id. */
export function nameId(name: string): Hex {
  return keccak256(toBytes(name));
}

/** The deployment's RegistryCourt: ReceiptCourt's deputy (proveBadPolicy, proveBadMergedLineage). */
export async function registryCourtOf(t: TestChain): Promise<Address> {
  return t.publicClient.readContract({ address: t.deployment.court!, abi: abis.ReceiptCourtAbi, functionName: "deputy" });
}
