/** deployOpenLora, the deployment file and checkDeployment on a real anvil; expectRevert itself. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createPublicClient, getAddress, getContract, http, zeroAddress, type Address, type PublicClient } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReceiptCourtAbi, RegistryAbi, RegistryCourtAbi, SettlementAbi, TestTokenAbi, ValidatorCourtAbi } from "../../src/chain/abi.js";
import { freePort } from "../../src/chain/anvil.js";
import {
  checkDeployment, deployOpenLora, isCurrentDeployment, loadArtifact, parseDeployment, readDeployment, sameCode, writeDeployment, type CoreAddresses, type Deployment,
} from "../../src/chain/deploy.js";
import { isOpenLoraError, type ErrorCode } from "../../src/errors.js";
import { expectRevert, startTestChain, type TestChain } from "../helpers/chain.js";
import { tempDir } from "../helpers/tmp.js";

let c: TestChain;
const dir = tempDir("openlora-deploy-");

beforeAll(async () => { c = await startTestChain(); });
afterAll(async () => c?.stop());

async function code(p: Promise<unknown> | (() => unknown)): Promise<ErrorCode | undefined> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (isOpenLoraError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe("deployOpenLora", () => {
  it("deploys on a given token, wires the contracts and calls the court step with their addresses", async () => {
    const w = c.wallets[1]!;
    const token = c.deployment.token;
    let seen: CoreAddresses | undefined;
    const d = await deployOpenLora(w, c.publicClient, {
      token, treasury: c.addresses[2]!, challengeWindow: 11n, withdrawDelay: 12n, unbondingDelay: 13n, slashRewardBps: 14, termsDelay: 15n,
      court: async (addrs) => {
        seen = addrs;
        // A stand-in court: any contract; ReceiptCourt plugs in here.
        const hash = await w.deployContract({ abi: TestTokenAbi, bytecode: loadArtifact("TestToken").bytecode });
        return (await c.publicClient.waitForTransactionReceipt({ hash })).contractAddress!;
      },
    });
    expect(d.token).toBe(token);
    expect(seen).toEqual({ token, registry: d.registry, licence: d.licence, inbox: d.inbox, settlement: d.settlement });
    const s = getContract({ address: d.settlement, abi: SettlementAbi, client: c.publicClient });
    expect(await s.read.court()).toBe(d.court);
    expect([await s.read.challengeWindow(), await s.read.withdrawDelay(), await s.read.unbondingDelay(), await s.read.slashRewardBps(), await s.read.treasury()])
      .toEqual([11n, 12n, 13n, 14, c.addresses[2]]);
    expect(await c.publicClient.readContract({ address: d.registry, abi: RegistryAbi, functionName: "termsDelay" })).toBe(15n);
    expect(d.params).toEqual({ treasury: c.addresses[2], challengeWindow: "11", withdrawDelay: "12", unbondingDelay: "13", slashRewardBps: 14, termsDelay: "15" });
    const block = await c.publicClient.getTransactionReceipt({ hash: (await c.publicClient.getBlock({ blockNumber: BigInt(d.deployBlock), includeTransactions: true })).transactions[0]!.hash });
    expect(getAddress(block.contractAddress!)).toBe(d.registry);
    await checkDeployment(c.publicClient, d);
    // Not the default courts: a dev chain holding it would be deployed afresh.
    expect(await isCurrentDeployment(c.publicClient, d)).toBe(false);
  });

  it("the default deployment has ReceiptCourt with RegistryCourt as its deputy, and is this build's", async () => {
    const d = c.deployment;
    const deputy = await c.publicClient.readContract({ address: d.court!, abi: ReceiptCourtAbi, functionName: "deputy" });
    expect(sameCode((await c.publicClient.getCode({ address: deputy }))!, loadArtifact("RegistryCourt").deployedBytecode)).toBe(true);
    expect(await c.publicClient.readContract({ address: deputy, abi: RegistryCourtAbi, functionName: "court" })).toBe(getAddress(d.court!));
    expect(await isCurrentDeployment(c.publicClient, d)).toBe(true);
    // Another build's contract at an address, or wiring that does not close: not current (no throw).
    expect(await isCurrentDeployment(c.publicClient, { ...d, court: d.token })).toBe(false);
    expect(await isCurrentDeployment(c.publicClient, { ...d, registry: d.licence })).toBe(false);
    expect(await isCurrentDeployment(c.publicClient, { ...d, court: null })).toBe(false);
    expect(await isCurrentDeployment(c.publicClient, { ...d, validatorCourt: null, validators: null })).toBe(false);
  });

  it("the default deployment has a ValidatorCourt with the given parameters, wired as Settlement's disputes", async () => {
    const d = c.deployment;
    expect(d.validatorCourt).not.toBeNull();
    expect(await c.publicClient.readContract({ address: d.settlement, abi: SettlementAbi, functionName: "disputes" })).toBe(d.validatorCourt);
    const read = (functionName: string) => c.publicClient.readContract({ address: d.validatorCourt!, abi: ValidatorCourtAbi, functionName } as never);
    expect([await read("minStake"), await read("challengeBond"), await read("voteWindow"), await read("answerWindow"), await read("unbondingDelay"), await read("quorumBps")])
      .toEqual([100n, 40n, 30n, 30n, 50n, 5000]);
    expect(d.validators).toEqual({ minStake: "100", challengeBond: "40", voteWindow: "30", answerWindow: "30", unbondingDelay: "50", quorumBps: 5000 });
    // Defaults for what is not given.
    const dflt = await deployOpenLora(c.wallets[1]!, c.publicClient, { token: d.token, treasury: c.addresses[2]! });
    expect(dflt.validators).toEqual({ minStake: "1000000000000000000", challengeBond: "1000000000000000000", voteWindow: "1800", answerWindow: "1800", unbondingDelay: "86400", quorumBps: 5000 });
    await checkDeployment(c.publicClient, dflt);
    for (const bad of [{ quorumBps: 0 }, { quorumBps: 10_001 }, { minStake: 0n }, { voteWindow: 0n }, { answerWindow: 0n }, { challengeBond: 1n << 128n }, { unbondingDelay: -1n }]) {
      expect(await code(deployOpenLora(c.wallets[1]!, c.publicClient, { treasury: c.addresses[2]!, validators: bad })), JSON.stringify(bad, (_k, v: unknown) => String(v))).toBe("INVALID_ARGUMENT");
    }
  });

  it("refuses bad options", async () => {
    expect(await code(deployOpenLora(c.wallets[1]!, c.publicClient, { treasury: c.addresses[2]!, slashRewardBps: 10_001 }))).toBe("INVALID_ARGUMENT");
    expect(await code(deployOpenLora(c.wallets[1]!, c.publicClient, { treasury: "0x1" as Address }))).toBe("INVALID_ARGUMENT");
    expect(await code(deployOpenLora(c.wallets[1]!, c.publicClient, { treasury: c.addresses[2]!, challengeWindow: -1n }))).toBe("INVALID_ARGUMENT");
    expect(await code(deployOpenLora(c.wallets[1]!, c.publicClient, { treasury: c.addresses[2]!, termsDelay: -1n }))).toBe("INVALID_ARGUMENT");
    expect(await code(deployOpenLora(c.wallets[1]!, c.publicClient, { treasury: c.addresses[2]!, termsDelay: 1n << 64n }))).toBe("INVALID_ARGUMENT");
  });
});

describe("the deployment file", () => {
  it("round-trips", () => {
    const f = join(dir, "d.json");
    writeDeployment(f, c.deployment);
    expect(readDeployment(f)).toEqual(c.deployment);
  });

  it("refuses a missing, non-JSON or malformed file with INVALID_ARGUMENT", async () => {
    expect(await code(() => readDeployment(join(dir, "none.json")))).toBe("INVALID_ARGUMENT");
    writeFileSync(join(dir, "bad.json"), "{");
    expect(await code(() => readDeployment(join(dir, "bad.json")))).toBe("INVALID_ARGUMENT");
    const good = JSON.parse(JSON.stringify(c.deployment)) as Record<string, unknown>;
    const broken: [string, unknown][] = [
      ["chainId", "31337"], ["registry", "0x12"], ["court", 5], ["deployBlock", 7], ["deployBlock", "-1"],
      ["params", null], ["params", { ...(good.params as object), challengeWindow: "1e3" }], ["params", { ...(good.params as object), slashRewardBps: 1.5 }], ["params", { ...(good.params as object), termsDelay: undefined }],
    ];
    for (const [k, v] of broken) expect(await code(() => parseDeployment({ ...good, [k]: v })), k).toBe("INVALID_ARGUMENT");
    expect(await code(() => parseDeployment([]))).toBe("INVALID_ARGUMENT");
    expect(parseDeployment({ ...good, token: (good.token as string).toLowerCase() }).token).toBe(c.deployment.token);
    for (const v of [null, { ...(good.validators as object), quorumBps: 0 }, { ...(good.validators as object), voteWindow: "x" }]) {
      expect(await code(() => parseDeployment({ ...good, validators: v })), JSON.stringify(v)).toBe("INVALID_ARGUMENT");
    }
    // A file from before validators: no ValidatorCourt.
    const { validatorCourt: _v, validators: _p, ...older } = good;
    expect(parseDeployment(older)).toMatchObject({ validatorCourt: null, validators: null });
  });
});

describe("checkDeployment", () => {
  it("names a chain id mismatch, missing or foreign code, wrong wiring, an unreachable RPC", async () => {
    const d = c.deployment;
    expect(await code(checkDeployment(c.publicClient, d))).toBeUndefined();
    expect(await code(checkDeployment(c.publicClient, { ...d, chainId: 1 }))).toBe("CHAIN_ID_MISMATCH");
    expect(await code(checkDeployment(c.publicClient, { ...d, registry: c.addresses[5]! }))).toBe("CHAIN_CONTRACT_MISSING");
    expect(await code(checkDeployment(c.publicClient, { ...d, settlement: d.token }))).toBe("CHAIN_CONTRACT_MISSING");
    expect(await code(checkDeployment(c.publicClient, { ...d, court: c.addresses[5]! }))).toBe("CHAIN_CONTRACT_MISSING");
    expect(await code(checkDeployment(c.publicClient, { ...d, court: d.token }))).toBe("CHAIN_CONTRACT_MISSING"); // Settlement.court() is 0
    expect(await code(checkDeployment(c.publicClient, { ...d, params: { ...d.params, termsDelay: "7" } }))).toBe("CHAIN_CONTRACT_MISSING");
    expect(await code(checkDeployment(c.publicClient, { ...d, validatorCourt: d.token }))).toBe("CHAIN_CONTRACT_MISSING");
    expect(await code(checkDeployment(c.publicClient, { ...d, validators: { ...d.validators!, quorumBps: 1 } }))).toBe("CHAIN_CONTRACT_MISSING");
    expect(await code(checkDeployment(c.publicClient, { ...d, validatorCourt: null, validators: null }))).toBe("CHAIN_CONTRACT_MISSING"); // Settlement.disputes() is set
    const other: Deployment = await deployOpenLora(c.wallets[0]!, c.publicClient, { token: d.token, treasury: c.addresses[9]! });
    expect(await code(checkDeployment(c.publicClient, { ...d, settlement: other.settlement }))).toBe("CHAIN_CONTRACT_MISSING");
    const dead = createPublicClient({ transport: http(`http://127.0.0.1:${await freePort()}`, { retryCount: 0 }) }) as PublicClient;
    expect(await code(checkDeployment(dead, d))).toBe("CHAIN_UNAVAILABLE");
  });

  it("sameCode ignores only 32-byte zero runs of the artifact (immutables)", () => {
    const art = `0x6001${"00".repeat(32)}6002` as const;
    expect(sameCode(`0x6001${"ab".repeat(32)}6002`, art)).toBe(true);
    expect(sameCode(`0x6001${"ab".repeat(32)}6003`, art)).toBe(false);
    expect(sameCode("0x6001000000", "0x6001000001")).toBe(false);
    expect(sameCode(`0x6101${"00".repeat(31)}ff`, `0x6001${"00".repeat(31)}ff`)).toBe(false);
    expect(sameCode("0x6001", `0x600100`)).toBe(false);
  });
});

describe("expectRevert", () => {
  it("fails on success, on another error and on other arguments", async () => {
    const s = getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: c.wallets[1]! } });
    await expect(expectRevert(s.read.court(), "NotCourt")).rejects.toThrow(/succeeded/);
    await expect(expectRevert(s.write.slash([zeroAddress, zeroAddress]), "ZeroAmount")).rejects.toThrow(/NotCourt/);
    await expect(expectRevert(s.write.slash([zeroAddress, zeroAddress]), "NotCourt", [zeroAddress])).rejects.toThrow();
    await expectRevert(s.write.slash([zeroAddress, zeroAddress]), "NotCourt", [c.addresses[1]]);
  });
});
