/**
 * `openlora chain deploy` writes a contracts file a node can serve from; party actions refuse bad
 * input with codes before sending anything.
 */
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANVIL_KEYS, startAnvil, type LocalChain } from "../../src/chain/anvil.js";
import { connectChain } from "../../src/chain/client.js";
import { RegistryAbi } from "../../src/chain/abi.js";
import { checkDeployment, readDeployment } from "../../src/chain/deploy.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-chain-cli-");
let anvil: LocalChain;
const keyFile = join(dir, "deployer.key");

beforeAll(async () => {
  anvil = await startAnvil();
  writeFileSync(keyFile, `${ANVIL_KEYS[0]}\n`, { mode: 0o600 });
}, 60_000);
afterAll(async () => { await anvil?.stop(); });

describe("openlora chain", () => {
  it("deploys the contracts and writes a contracts file that checks against the chain", async () => {
    const out = join(dir, "contracts.json");
    const r = await runCli(["chain", "deploy", "--rpc", anvil.url, "--key-file", keyFile, "--out", out, "--challenge-window-s", "60",
      "--validator-min-stake", "7", "--challenge-bond", "3", "--vote-window-s", "20", "--answer-window-s", "25", "--validator-unbonding-s", "90", "--quorum-bps", "6000"]);
    expect(r.code, r.stderr).toBe(0);
    const d = readDeployment(out);
    expect(d.chainId).toBe(anvil.chainId);
    expect(d.params.challengeWindow).toBe("60");
    expect(d.validators).toEqual({ minStake: "7", challengeBond: "3", voteWindow: "20", answerWindow: "25", unbondingDelay: "90", quorumBps: 6000 });
    const c = await connectChain(anvil.url, ANVIL_KEYS[0]!);
    await expect(checkDeployment(c.public, d)).resolves.not.toThrow();
  });

  it("deploys with a terms delay; register-model says when the terms are in force and --wait returns after that", async () => {
    const out = join(dir, "delayed.json");
    const r = await runCli(["chain", "deploy", "--rpc", anvil.url, "--key-file", keyFile, "--out", out, "--terms-delay-s", "2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(readDeployment(out).params.termsDelay).toBe("2");
    const reg = await runCli(["chain", "register-model", "--rpc", anvil.url, "--contracts", out, "--key-file", keyFile, "--name", "m", "--kind", "base",
      "--price-in", "1", "--price-out", "2", "--content-hash", `0x${"ab".repeat(32)}`, "--wait"]);
    expect(reg.code, reg.stderr).toBe(0);
    const printed = JSON.parse(reg.stdout) as { inForceFrom: string; tx: string };
    const c = await connectChain(anvil.url, ANVIL_KEYS[0]!);
    const block = await c.public.getBlock({ blockNumber: (await c.public.getTransactionReceipt({ hash: printed.tx as `0x${string}` })).blockNumber });
    expect(Date.parse(printed.inForceFrom)).toBe((Number(block.timestamp) + 2) * 1000);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(printed.inForceFrom));
  });

  it("fee-policy: the operator's first policy is in force at once, a change after the terms delay (--wait returns then)", async () => {
    const out = join(dir, "delayed.json");
    const opKey = join(dir, "operator.key");
    writeFileSync(opKey, `${ANVIL_KEYS[3]}\n`, { mode: 0o600 });
    const bps = (protocol: number, operator: number, developer = 5000, staker = 2000, data = 3000, lambda = 5000) =>
      ["--protocol-bps", String(protocol), "--operator-bps", String(operator), "--developer-bps", String(developer), "--staker-bps", String(staker), "--data-bps", String(data), "--lambda-bps", String(lambda)];
    const policy = (...a: string[]) => runCli(["chain", "fee-policy", "--rpc", anvil.url, "--contracts", out, "--key-file", opKey, ...a]);
    const stranger = await policy(...bps(200, 2000));
    expect(stranger.code).not.toBe(0);
    expect(stranger.stderr).toMatch(/CHAIN_TX_FAILED.*UnknownOperator/);
    const c = await connectChain(anvil.url, ANVIL_KEYS[3]!);
    const d = readDeployment(out);
    await c.public.waitForTransactionReceipt({ hash: await c.wallet.writeContract({ address: d.registry, abi: RegistryAbi, functionName: "registerOperator", args: ["http://op"] }) });
    const first = await policy(...bps(200, 2000));
    expect(first.code, first.stderr).toBe(0);
    const p1 = JSON.parse(first.stdout) as { version: number; inForceFrom: string; tx: Hex; policy: Record<string, number> };
    expect(p1.version).toBe(1);
    expect(p1.policy).toEqual({ protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 });
    const at = async (tx: Hex) => Number((await c.public.getBlock({ blockNumber: (await c.public.getTransactionReceipt({ hash: tx })).blockNumber })).timestamp) * 1000;
    expect(Date.parse(p1.inForceFrom)).toBe(await at(p1.tx));
    const second = await policy(...bps(100, 2500), "--wait");
    expect(second.code, second.stderr).toBe(0);
    const p2 = JSON.parse(second.stdout) as { version: number; inForceFrom: string; tx: Hex };
    expect(p2.version).toBe(2);
    expect(Date.parse(p2.inForceFrom)).toBe((await at(p2.tx)) + 2000);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(p2.inForceFrom));
    const [now] = await c.public.readContract({ address: d.registry, abi: RegistryAbi, functionName: "policyAt", args: [c.account.address, BigInt(Math.floor(Date.parse(p2.inForceFrom) / 1000))] });
    expect(now.operatorBps).toBe(2500);
    // Refused before sending: a bps above 10000, a missing part; refused on chain with its reason: shares not summing to 10000.
    expect((await policy(...bps(200, 10_001))).stderr).toContain("INVALID_ARGUMENT");
    expect((await policy(...bps(200, 2000).slice(0, -2))).stderr).toMatch(/INVALID_ARGUMENT.*lambda-bps/);
    expect((await policy(...bps(200, 2000, 5000, 2000, 2999))).stderr).toMatch(/CHAIN_TX_FAILED.*InvalidPolicy/);
  });

  it("refuses a readable key file, a malformed amount and a missing chain with codes", async () => {
    const open = join(dir, "open.key");
    writeFileSync(open, `${ANVIL_KEYS[1]}\n`, { mode: 0o644 });
    const contracts = join(dir, "contracts.json");
    const readable = await runCli(["chain", "balance", "--rpc", anvil.url, "--contracts", contracts, "--key-file", open]);
    expect(readable.code).not.toBe(0);
    expect(readable.stderr).toMatch(/error \[INVALID_ARGUMENT\].*(readable|mode)/i);
    const bad = await runCli(["chain", "mint", "--rpc", anvil.url, "--contracts", contracts, "--key-file", keyFile, "--to", "0x0000000000000000000000000000000000000001", "--amount", "1.5"]);
    expect(bad.stderr).toContain("INVALID_ARGUMENT");
    const quorum = await runCli(["chain", "deploy", "--rpc", anvil.url, "--key-file", keyFile, "--out", join(dir, "never.json"), "--quorum-bps", "0"]);
    expect([quorum.code, quorum.stderr.match(/INVALID_ARGUMENT/)?.[0]]).toEqual([2, "INVALID_ARGUMENT"]);
    for (const v of ["-5", "1e3", "18446744073709551616"]) {
      const delay = await runCli(["chain", "deploy", "--rpc", anvil.url, "--key-file", keyFile, "--out", join(dir, "never.json"), "--terms-delay-s", v]);
      expect(delay.code, v).not.toBe(0);
      expect(delay.stderr).toContain("INVALID_ARGUMENT");
    }
    const none = await runCli(["chain", "balance", "--key-file", keyFile]);
    expect(none.stderr).toContain("INVALID_ARGUMENT");
  });

  it("check-receipt refuses a malformed receipt id and a receipt that is not one, with codes, sending nothing", async () => {
    const out = join(dir, "delayed.json");
    const hostile = createServer((_req, res) => { res.setHeader("content-type", "application/json"); res.end(JSON.stringify({ json: "{not json", signature: "0x00" })); });
    await new Promise<void>((r) => hostile.listen(0, "127.0.0.1", () => r()));
    const check = (...a: string[]) => runCli(["chain", "check-receipt", "--rpc", anvil.url, "--contracts", out, "--key-file", keyFile, "--server", `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`, ...a]);
    try {
      for (const v of ["-1", "1e3", "x", ""]) {
        const r = await check("--receipt", v);
        expect(r.code, v).toBe(2);
        expect(r.stderr).toContain("INVALID_ARGUMENT");
      }
      const bad = await check("--receipt", "1", "--send");
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain("RECEIPT_INVALID");
    } finally {
      hostile.close();
    }
  });
});
