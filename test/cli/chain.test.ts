/**
 * `openlora chain deploy` writes a contracts file a node can serve from; party actions refuse bad
 * input with codes before sending anything.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANVIL_KEYS, startAnvil, type LocalChain } from "../../src/chain/anvil.js";
import { connectChain } from "../../src/chain/client.js";
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
    const r = await runCli(["chain", "deploy", "--rpc", anvil.url, "--key-file", keyFile, "--out", out, "--challenge-window-s", "60"]);
    expect(r.code, r.stderr).toBe(0);
    const d = readDeployment(out);
    expect(d.chainId).toBe(anvil.chainId);
    expect(d.params.challengeWindow).toBe("60");
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

  it("refuses a readable key file, a malformed amount and a missing chain with codes", async () => {
    const open = join(dir, "open.key");
    writeFileSync(open, `${ANVIL_KEYS[1]}\n`, { mode: 0o644 });
    const contracts = join(dir, "contracts.json");
    const readable = await runCli(["chain", "balance", "--rpc", anvil.url, "--contracts", contracts, "--key-file", open]);
    expect(readable.code).not.toBe(0);
    expect(readable.stderr).toMatch(/error \[INVALID_ARGUMENT\].*(readable|mode)/i);
    const bad = await runCli(["chain", "mint", "--rpc", anvil.url, "--contracts", contracts, "--key-file", keyFile, "--to", "0x0000000000000000000000000000000000000001", "--amount", "1.5"]);
    expect(bad.stderr).toContain("INVALID_ARGUMENT");
    for (const v of ["-5", "1e3", "18446744073709551616"]) {
      const delay = await runCli(["chain", "deploy", "--rpc", anvil.url, "--key-file", keyFile, "--out", join(dir, "never.json"), "--terms-delay-s", v]);
      expect(delay.code, v).not.toBe(0);
      expect(delay.stderr).toContain("INVALID_ARGUMENT");
    }
    const none = await runCli(["chain", "balance", "--key-file", keyFile]);
    expect(none.stderr).toContain("INVALID_ARGUMENT");
  });
});
