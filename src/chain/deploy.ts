/**
 * Deploys and wires the openlora contracts, and reads/writes/checks the deployment file that
 * `--contracts FILE` names.
 *
 * Order: TestToken (only when no token is given), Registry(termsDelay), Licence(registry, token),
 * BatchInbox (epoch batches' data availability), Settlement(token, registry, inbox, treasury, windows…), Registry.wire(settlement, licence), then the
 * ReceiptCourt(registry, settlement) with its deputy RegistryCourt(court) (ReceiptCourt.setDeputy) — or,
 * when `opts.court` is given, whatever court it deploys from the addresses so far — and
 * Settlement.setCourt; with the default court, ValidatorCourt(settlement, court, validator params)
 * (the validator set and replay/withheld disputes) and Settlement.setDisputes. Every wiring call
 * can be made once only.
 */
import { readFileSync, writeFileSync } from "node:fs";
import {
  getAddress, isAddress, type Abi, type Address, type Hex, type PublicClient, type WalletClient,
} from "viem";
import { OpenLoraError, oerr } from "../errors.js";
import { BatchInboxAbi, LicenceAbi, ReceiptCourtAbi, RegistryAbi, RegistryCourtAbi, SettlementAbi, TestTokenAbi, ValidatorCourtAbi } from "./abi.js";

export interface DeployOptions {
  /** The settlement ERC-20; a fresh TestToken when absent. */
  token?: Address;
  /** Receives the slashed bonds less the challenger's reward. */
  treasury: Address;
  /** Seconds from an epoch's post until it can be claimed. Default 3600. */
  challengeWindow?: bigint;
  /** Seconds from a withdrawal request until it can be withdrawn. Default 3600. */
  withdrawDelay?: bigint;
  /** Seconds an unstake waits. Default 86400. */
  unbondingDelay?: bigint;
  /** Challenger's part of a slashed bond, basis points. Default 5000. */
  slashRewardBps?: number;
  /**
   * Seconds from the block that sets a model's terms until they are in force. Default 3600. A node
   * learns of a change that long before it applies, and stops serving when its view of the chain is
   * older than half of it (CHAIN_VIEW_STALE): 0 leaves a node that follows with lag exposed to
   * signing receipts under superseded terms, which proveBadTerms slashes (tests only).
   */
  termsDelay?: bigint;
  /** Deploys another court than ReceiptCourt(registry, settlement) and returns its address (tests); no ValidatorCourt then. */
  court?: (addrs: CoreAddresses) => Promise<Address>;
  /** The ValidatorCourt's parameters; each defaults to DEFAULT_VALIDATOR_PARAMS. */
  validators?: Partial<ValidatorParams<bigint>>;
}

/** ValidatorCourt's parameters (contracts/ValidatorCourt.sol, docs/validators.md). */
export interface ValidatorParams<N> {
  /** The least stake (token units) that lets a validator attest and vote. */
  minStake: N;
  /** What a challenger deposits with a dispute (token units). */
  challengeBond: N;
  /** Seconds a replay dispute's vote lasts. */
  voteWindow: N;
  /** Seconds an operator has to publish a withheld batch. */
  answerWindow: N;
  /** Seconds a validator's unstake waits. */
  unbondingDelay: N;
  /** Of the total validator stake, what a verdict needs, basis points (1..10000). */
  quorumBps: number;
}

export interface CoreAddresses {
  token: Address;
  registry: Address;
  licence: Address;
  /** BatchInbox: where epoch batches are published (calldata) or announced (EigenDA). */
  inbox: Address;
  settlement: Address;
}

export interface DeploymentParams {
  treasury: Address;
  /** Seconds, decimal strings (JSON has no bigint). */
  challengeWindow: string;
  withdrawDelay: string;
  unbondingDelay: string;
  slashRewardBps: number;
  termsDelay: string;
}

export interface Deployment extends CoreAddresses {
  chainId: number;
  court: Address | null;
  /** ValidatorCourt; null with a custom court (or a file from before validators). */
  validatorCourt: Address | null;
  /** Its parameters, decimal strings; null when validatorCourt is. */
  validators: ValidatorParams<string> | null;
  /** The block of the first deployment transaction, decimal: where event scans start. */
  deployBlock: string;
  params: DeploymentParams;
}

export const DEFAULT_PARAMS = { challengeWindow: 3600n, withdrawDelay: 3600n, unbondingDelay: 86_400n, slashRewardBps: 5000, termsDelay: 3600n } as const;
/** The vote and answer windows fit inside the default challenge window, so a dispute opened in it ends in it. */
export const DEFAULT_VALIDATOR_PARAMS: ValidatorParams<bigint> = {
  minStake: 10n ** 18n, challengeBond: 10n ** 18n, voteWindow: 1800n, answerWindow: 1800n, unbondingDelay: 86_400n, quorumBps: 5000,
};

type ContractName = "TestToken" | "Registry" | "Licence" | "BatchInbox" | "Settlement" | "ReceiptCourt" | "RegistryCourt" | "ValidatorCourt";
const ABIS: Record<ContractName, Abi> = {
  TestToken: TestTokenAbi, Registry: RegistryAbi, Licence: LicenceAbi, BatchInbox: BatchInboxAbi, Settlement: SettlementAbi, ReceiptCourt: ReceiptCourtAbi, RegistryCourt: RegistryCourtAbi,
  ValidatorCourt: ValidatorCourtAbi,
};

interface ArtifactFile {
  bytecode: Hex;
  deployedBytecode: Hex;
}

const artifactCache = new Map<string, ArtifactFile>();

/** contracts/artifacts/<name>.json; the same relative path from src/chain and from dist/chain. */
export function loadArtifact(name: string): ArtifactFile {
  let a = artifactCache.get(name);
  if (!a) {
    const file = new URL(`../../contracts/artifacts/${name}.json`, import.meta.url);
    a = JSON.parse(readFileSync(file, "utf8")) as ArtifactFile;
    artifactCache.set(name, a);
  }
  return a;
}

const U64_MAX = (1n << 64n) - 1n;
const U128_MAX = (1n << 128n) - 1n;

function checkSeconds(name: string, v: bigint): bigint {
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX) throw oerr("INVALID_ARGUMENT", `${name} must be a uint64 number of seconds`);
  return v;
}

function checkUint(name: string, v: bigint, max: bigint, min = 0n): bigint {
  if (typeof v !== "bigint" || v < min || v > max) throw oerr("INVALID_ARGUMENT", `${name} must be an integer in ${min}..${max}`);
  return v;
}

export async function deployOpenLora(wallet: WalletClient, publicClient: PublicClient, opts: DeployOptions): Promise<Deployment> {
  const account = wallet.account;
  if (!account) throw oerr("INVALID_ARGUMENT", "the wallet client has no account");
  if (!isAddress(opts.treasury, { strict: false })) throw oerr("INVALID_ARGUMENT", "treasury is not an address");
  const challengeWindow = checkSeconds("challengeWindow", opts.challengeWindow ?? DEFAULT_PARAMS.challengeWindow);
  const withdrawDelay = checkSeconds("withdrawDelay", opts.withdrawDelay ?? DEFAULT_PARAMS.withdrawDelay);
  const unbondingDelay = checkSeconds("unbondingDelay", opts.unbondingDelay ?? DEFAULT_PARAMS.unbondingDelay);
  const termsDelay = checkSeconds("termsDelay", opts.termsDelay ?? DEFAULT_PARAMS.termsDelay);
  const slashRewardBps = opts.slashRewardBps ?? DEFAULT_PARAMS.slashRewardBps;
  if (!Number.isInteger(slashRewardBps) || slashRewardBps < 0 || slashRewardBps > 10_000) {
    throw oerr("INVALID_ARGUMENT", "slashRewardBps must be an integer in 0..10000");
  }
  const v = { ...DEFAULT_VALIDATOR_PARAMS, ...opts.validators };
  const validators: ValidatorParams<bigint> = {
    minStake: checkUint("validators.minStake", v.minStake, U128_MAX, 1n),
    challengeBond: checkUint("validators.challengeBond", v.challengeBond, U128_MAX),
    voteWindow: checkUint("validators.voteWindow", v.voteWindow, U64_MAX, 1n),
    answerWindow: checkUint("validators.answerWindow", v.answerWindow, U64_MAX, 1n),
    unbondingDelay: checkSeconds("validators.unbondingDelay", v.unbondingDelay),
    quorumBps: v.quorumBps,
  };
  if (!Number.isInteger(validators.quorumBps) || validators.quorumBps < 1 || validators.quorumBps > 10_000) {
    throw oerr("INVALID_ARGUMENT", "validators.quorumBps must be an integer in 1..10000");
  }
  const chainId = await rpc(() => publicClient.getChainId());
  let firstBlock: bigint | undefined;

  const mined = async (hash: Hex, what: string) => {
    const r = await rpc(() => publicClient.waitForTransactionReceipt({ hash, pollingInterval: publicClient.pollingInterval }));
    if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `${what} reverted (tx ${hash})`, { tx: hash });
    if (firstBlock === undefined || r.blockNumber < firstBlock) firstBlock = r.blockNumber;
    return r;
  };
  const deploy = async (name: ContractName, args: readonly unknown[]): Promise<Address> => {
    const hash = await tx(() => wallet.deployContract({ abi: ABIS[name], bytecode: loadArtifact(name).bytecode, args, account, chain: wallet.chain ?? null }), `deploy ${name}`);
    const r = await mined(hash, `deploy ${name}`);
    if (!r.contractAddress) throw oerr("CHAIN_TX_FAILED", `deploy ${name}: no contract address in the receipt`);
    return getAddress(r.contractAddress);
  };
  const call = async (address: Address, abi: Abi, functionName: string, args: readonly unknown[]) => {
    const hash = await tx(() => wallet.writeContract({ address, abi, functionName, args, account, chain: wallet.chain ?? null }), functionName);
    await mined(hash, functionName);
  };

  const token = opts.token ? getAddress(opts.token) : await deploy("TestToken", []);
  const registry = await deploy("Registry", [termsDelay]);
  const licence = await deploy("Licence", [registry, token]);
  const inbox = await deploy("BatchInbox", []);
  const settlement = await deploy("Settlement", [token, registry, inbox, getAddress(opts.treasury), challengeWindow, withdrawDelay, unbondingDelay, slashRewardBps]);
  await call(registry, RegistryAbi, "wire", [settlement, licence]);
  // The ReceiptCourt (fraud proofs of single receipts) is the only address that may slash.
  // Its deputy, RegistryCourt (ReceiptCourt.deputy()), proves what ReceiptCourt has no room left for and slashes through it.
  const court = opts.court ? getAddress(await opts.court({ token, registry, licence, inbox, settlement })) : await deploy("ReceiptCourt", [registry, settlement]);
  if (!opts.court) await call(court, ReceiptCourtAbi, "setDeputy", [await deploy("RegistryCourt", [court])]);
  await call(settlement, SettlementAbi, "setCourt", [court]);
  let validatorCourt: Address | null = null;
  if (!opts.court) {
    validatorCourt = await deploy("ValidatorCourt", [settlement, court, validators]);
    await call(settlement, SettlementAbi, "setDisputes", [validatorCourt]);
  }
  return {
    chainId, token, registry, licence, inbox, settlement, court, validatorCourt,
    validators: validatorCourt ? stringParams(validators) : null,
    deployBlock: (firstBlock ?? 0n).toString(),
    params: {
      treasury: getAddress(opts.treasury),
      challengeWindow: challengeWindow.toString(),
      withdrawDelay: withdrawDelay.toString(),
      unbondingDelay: unbondingDelay.toString(),
      slashRewardBps,
      termsDelay: termsDelay.toString(),
    },
  };
}

function stringParams(p: ValidatorParams<bigint>): ValidatorParams<string> {
  return {
    minStake: p.minStake.toString(), challengeBond: p.challengeBond.toString(), voteWindow: p.voteWindow.toString(),
    answerWindow: p.answerWindow.toString(), unbondingDelay: p.unbondingDelay.toString(), quorumBps: p.quorumBps,
  };
}

async function rpc<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof OpenLoraError) throw e;
    throw new OpenLoraError("CHAIN_UNAVAILABLE", `chain RPC failed: ${(e as Error).message.split("\n")[0]}`, undefined, { cause: e });
  }
}

async function tx<T>(f: () => Promise<T>, what: string): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new OpenLoraError("CHAIN_TX_FAILED", `${what} failed: ${(e as Error).message.split("\n")[0]}`, undefined, { cause: e });
  }
}

// ---- the deployment file

export function writeDeployment(file: string, d: Deployment): void {
  writeFileSync(file, `${JSON.stringify(parseDeployment(d), null, 2)}\n`);
}

export function readDeployment(file: string): Deployment {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new OpenLoraError("INVALID_ARGUMENT", `cannot read the contracts file ${file}: ${(e as NodeJS.ErrnoException).code ?? "error"}`, { file }, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new OpenLoraError("INVALID_ARGUMENT", `the contracts file ${file} is not JSON`, { file }, { cause: e });
  }
  return parseDeployment(json);
}

/** Validates a deployment object (from JSON); throws INVALID_ARGUMENT naming the bad field. */
export function parseDeployment(v: unknown): Deployment {
  const o = obj(v, "deployment");
  const chainId = o.chainId;
  if (typeof chainId !== "number" || !Number.isSafeInteger(chainId) || chainId <= 0) bad("chainId", "a positive integer");
  const p = obj(o.params, "params");
  const bps = p.slashRewardBps;
  if (typeof bps !== "number" || !Number.isInteger(bps) || bps < 0 || bps > 10_000) bad("params.slashRewardBps", "an integer in 0..10000");
  const validatorCourt = o.validatorCourt === undefined || o.validatorCourt === null ? null : addr(o.validatorCourt, "validatorCourt");
  let validators: ValidatorParams<string> | null = null;
  if (validatorCourt) {
    const vp = obj(o.validators, "validators");
    const q = vp.quorumBps;
    if (typeof q !== "number" || !Number.isInteger(q) || q < 1 || q > 10_000) bad("validators.quorumBps", "an integer in 1..10000");
    validators = {
      minStake: decimal(vp.minStake, "validators.minStake", U128_MAX),
      challengeBond: decimal(vp.challengeBond, "validators.challengeBond", U128_MAX),
      voteWindow: decimal(vp.voteWindow, "validators.voteWindow", U64_MAX),
      answerWindow: decimal(vp.answerWindow, "validators.answerWindow", U64_MAX),
      unbondingDelay: decimal(vp.unbondingDelay, "validators.unbondingDelay", U64_MAX),
      quorumBps: q,
    };
  }
  return {
    chainId,
    token: addr(o.token, "token"),
    registry: addr(o.registry, "registry"),
    licence: addr(o.licence, "licence"),
    inbox: addr(o.inbox, "inbox"),
    settlement: addr(o.settlement, "settlement"),
    court: o.court === null ? null : addr(o.court, "court"),
    validatorCourt,
    validators,
    deployBlock: decimal(o.deployBlock, "deployBlock"),
    params: {
      treasury: addr(p.treasury, "params.treasury"),
      challengeWindow: decimal(p.challengeWindow, "params.challengeWindow", U64_MAX),
      withdrawDelay: decimal(p.withdrawDelay, "params.withdrawDelay", U64_MAX),
      unbondingDelay: decimal(p.unbondingDelay, "params.unbondingDelay", U64_MAX),
      slashRewardBps: bps,
      termsDelay: decimal(p.termsDelay, "params.termsDelay", U64_MAX),
    },
  };
}

function obj(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(name, "an object");
  return v as Record<string, unknown>;
}

function addr(v: unknown, name: string): Address {
  if (typeof v !== "string" || !isAddress(v, { strict: false })) bad(name, "an address");
  return getAddress(v);
}

function decimal(v: unknown, name: string, max?: bigint): string {
  if (typeof v !== "string" || !/^(0|[1-9][0-9]{0,77})$/.test(v) || (max !== undefined && BigInt(v) > max)) bad(name, "a decimal string");
  return v;
}

function bad(field: string, want: string): never {
  throw oerr("INVALID_ARGUMENT", `contracts file: ${field} must be ${want}`, { field });
}

// ---- checking a deployment against the chain

/**
 * Throws CHAIN_ID_MISMATCH when the RPC serves another chain, CHAIN_CONTRACT_MISSING when an
 * address has no code, or code that is not the artifact's (immutables aside), or the contracts
 * are not wired to each other as the file says; CHAIN_UNAVAILABLE when the RPC fails.
 */
export async function checkDeployment(publicClient: PublicClient, d: Deployment): Promise<void> {
  const chainId = await rpc(() => publicClient.getChainId());
  if (chainId !== d.chainId) {
    throw oerr("CHAIN_ID_MISMATCH", `the RPC serves chain ${chainId}, the contracts file names ${d.chainId}`, { rpc: chainId, file: d.chainId });
  }
  const missing = (what: string, address: Address, why: string): never => {
    throw oerr("CHAIN_CONTRACT_MISSING", `${what} at ${address}: ${why}`, { contract: what, address });
  };
  const code = async (what: string, address: Address): Promise<Hex> => {
    const c = await rpc(() => publicClient.getCode({ address }));
    if (!c || c === "0x") return missing(what, address, "no code");
    return c;
  };
  await code("token", d.token);
  if (d.court) await code("court", d.court);
  for (const [name, address] of [["Registry", d.registry], ["Licence", d.licence], ["BatchInbox", d.inbox], ["Settlement", d.settlement]] as const) {
    if (!sameCode(await code(name, address), loadArtifact(name).deployedBytecode)) missing(name, address, "the code is not this build's");
  }
  const read = async (address: Address, abi: Abi, functionName: string): Promise<Address> =>
    getAddress(await rpc(() => publicClient.readContract({ address, abi, functionName }) as Promise<Address>));
  const wiring: [string, Promise<Address>, Address][] = [
    ["Registry.settlement", read(d.registry, RegistryAbi, "settlement"), d.settlement],
    ["Registry.licence", read(d.registry, RegistryAbi, "licence"), d.licence],
    ["Licence.registry", read(d.licence, LicenceAbi, "registry"), d.registry],
    ["Licence.token", read(d.licence, LicenceAbi, "token"), d.token],
    ["Settlement.registry", read(d.settlement, SettlementAbi, "registry"), d.registry],
    ["Settlement.token", read(d.settlement, SettlementAbi, "token"), d.token],
    ["Settlement.inbox", read(d.settlement, SettlementAbi, "inbox"), d.inbox],
    ["Settlement.court", read(d.settlement, SettlementAbi, "court"), d.court ?? "0x0000000000000000000000000000000000000000"],
  ];
  if (d.validatorCourt) {
    if (!sameCode(await code("ValidatorCourt", d.validatorCourt), loadArtifact("ValidatorCourt").deployedBytecode)) missing("ValidatorCourt", d.validatorCourt, "the code is not this build's");
    wiring.push(
      ["ValidatorCourt.settlement", read(d.validatorCourt, ValidatorCourtAbi, "settlement"), d.settlement],
      ["ValidatorCourt.court", read(d.validatorCourt, ValidatorCourtAbi, "court"), d.court ?? "0x0000000000000000000000000000000000000000"],
    );
  }
  wiring.push(["Settlement.disputes", read(d.settlement, SettlementAbi, "disputes"), d.validatorCourt ?? "0x0000000000000000000000000000000000000000"]);
  for (const [what, got, want] of wiring) {
    const g = await got;
    if (g !== want) missing(what, g, `expected ${want}`);
  }
  const termsDelay = await rpc(() => publicClient.readContract({ address: d.registry, abi: RegistryAbi, functionName: "termsDelay" }) as Promise<bigint>);
  if (termsDelay.toString() !== d.params.termsDelay) missing("Registry.termsDelay", d.registry, `${termsDelay}, the file says ${d.params.termsDelay}`);
  if (d.validatorCourt && d.validators) {
    for (const k of ["minStake", "challengeBond", "voteWindow", "answerWindow", "unbondingDelay", "quorumBps"] as const) {
      const got = await rpc(() => publicClient.readContract({ address: d.validatorCourt!, abi: ValidatorCourtAbi, functionName: k }) as Promise<bigint | number>);
      if (got.toString() !== String(d.validators[k])) missing(`ValidatorCourt.${k}`, d.validatorCourt, `${got}, the file says ${d.validators[k]}`);
    }
  }
}

/**
 * Whether `d` is a deployment of this build with its default courts: checkDeployment passes, and the
 * court and its deputy hold this build's ReceiptCourt and RegistryCourt (the dev chain redeploys otherwise).
 */
export async function isCurrentDeployment(publicClient: PublicClient, d: Deployment): Promise<boolean> {
  try {
    await checkDeployment(publicClient, d);
    if (!d.court || !d.validatorCourt) return false;
    const court = await publicClient.getCode({ address: d.court });
    if (!court || !sameCode(court, loadArtifact("ReceiptCourt").deployedBytecode)) return false;
    const deputy = await publicClient.readContract({ address: d.court, abi: ReceiptCourtAbi, functionName: "deputy" });
    const code = await publicClient.getCode({ address: deputy });
    return !!code && sameCode(code, loadArtifact("RegistryCourt").deployedBytecode);
  } catch {
    return false;
  }
}

/**
 * Equal up to immutables: solc leaves each immutable as 32 zero bytes in deployedBytecode, so a
 * byte may differ only where the artifact has a run of at least 32 zero bytes.
 */
export function sameCode(onChain: Hex, artifact: Hex): boolean {
  if (onChain.length !== artifact.length) return false;
  const a = Buffer.from(onChain.slice(2), "hex");
  const b = Buffer.from(artifact.slice(2), "hex");
  let i = 0;
  while (i < a.length) {
    if (a[i] === b[i]) { i++; continue; }
    if (b[i] !== 0) return false;
    let s = i;
    while (s > 0 && b[s - 1] === 0) s--;
    let e = i;
    while (e < b.length && b[e] === 0) e++;
    if (e - s < 32) return false;
    i = e;
  }
  return true;
}
