/**
 * The README's "On a chain" steps, as a user types them: `openlora serve --dev-chain` (anvil started
 * and the contracts deployed by the node) and each party's `openlora chain … --dev` command — the
 * owner lists the model and waits for its terms, the agent funds its account and pays for a
 * completion, a staker stakes, the epoch is posted, the developer and the staker claim, the agent
 * withdraws the unspent rest. The windows (20 s) are skipped by moving the chain's clock.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { freePort } from "../../src/chain/anvil.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { runCli } from "../helpers/cli.js";
import { startServer, type ServerProcess } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-dev-chain-");
const cache = join(dir, "cache");
const modelPath = join(dir, "tiny.gguf");
const M = "tiny";
let server: ServerProcess;
let serverUrl = "";

/** `openlora chain <args> --dev --server <node>` on the dev chain's files; its JSON output. */
async function chain(...args: string[]): Promise<Record<string, unknown>> {
  const r = await runCli(["chain", ...args, "--dev", "--server", serverUrl], { OPENLORA_CACHE: cache });
  if (r.code !== 0) throw new Error(`openlora chain ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const status = async () => (await (await fetch(`${serverUrl}/v1/chain`)).json()) as { lastEpochPosted: number | null; operator: string };

async function rpc(method: string, params: unknown[]): Promise<unknown> {
  const url = readFileSync(join(cache, "dev-chain", "rpc.url"), "utf8").trim();
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
  const body = (await r.json()) as { result?: unknown; error?: unknown };
  if (body.error !== undefined) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
  return body.result;
}

/** Waits until the node has posted an epoch after `after` (0: none yet), then moves the chain past its challenge window. */
async function postedAndClaimable(after: number): Promise<number> {
  for (let i = 0; i < 600; i++) {
    const e = (await status()).lastEpochPosted ?? 0;
    if (e > after) {
      await rpc("evm_increaseTime", [21]);
      await rpc("evm_mine", []);
      return e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no epoch posted after ${after}: ${JSON.stringify(await status())}`);
}

beforeAll(async () => {
  writeGgufModel(modelPath, "tiny-qwen3", { seed: 9, type: "q8_0" });
  server = await startServer(["--model", modelPath, "--threads", "2", "--dev-chain", "--dev-chain-port", String(await freePort()), "--epoch-interval-s", "2"], { env: { OPENLORA_CACHE: cache } });
  serverUrl = `http://127.0.0.1:${server.port}`;
}, 240_000);

afterAll(async () => {
  await server?.stop();
});

describe("the README's dev-chain steps", () => {
  it("list, fund, stake, complete, post, claim, withdraw — each party with its own key", async () => {
    const listed = await chain("register-model", "--dev-account", "2", "--name", M, "--kind", "base", "--price-in", "1", "--price-out", "3", "--wait", "--files", modelPath);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(listed.inForceFrom as string));
    await chain("mint", "--dev-account", "3", "--amount", "1000000");
    await chain("deposit", "--dev-account", "3", "--amount", "100000");
    await chain("mint", "--dev-account", "4", "--amount", "1000");
    const staked = await chain("stake", "--dev-account", "4", "--model", M, "--amount", "500", "--wait");
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(staked.inForceFrom as string));
    const done = await chain("complete", "--dev-account", "3", "--model", M, "--prompt", "Once upon a time", "--max-tokens", "8");
    expect(String(done.text).length).toBeGreaterThan(0);
    const receipt = (await (await fetch(`${serverUrl}/v1/receipts/${String(done.receipt)}`)).json()) as { receipt: { fee: string; lines: { party: string; role: string; amount: string }[] } };
    const fee = BigInt(receipt.receipt.fee);
    const lineOf = (role: string) => receipt.receipt.lines.filter((l) => l.role === role).reduce((s, l) => s + BigInt(l.amount), 0n);
    expect(fee).toBeGreaterThan(0n);
    expect(lineOf("developer")).toBeGreaterThan(0n);
    expect(lineOf("staker")).toBeGreaterThan(0n);
    // Anyone checks the receipt against the chain: every proof stands (exit 0).
    const checked = await chain("check-receipt", "--dev-account", "5", "--receipt", String(done.receipt));
    expect((checked.checks as { verdict: string }[]).length).toBeGreaterThanOrEqual(4);
    expect((checked.checks as { verdict: string }[]).every((x) => x.verdict === "stands")).toBe(true);

    const epoch = await postedAndClaimable(0);
    const dev = await chain("claim", "--dev-account", "2");
    expect(BigInt(dev.paid as string)).toBe(lineOf("developer"));
    const staker = await chain("claim", "--dev-account", "4");
    expect(BigInt(staker.paid as string)).toBe(lineOf("staker"));

    await chain("request-withdrawal", "--dev-account", "3", "--amount", "99000");
    await postedAndClaimable(epoch);
    await chain("withdraw", "--dev-account", "3");
    expect(BigInt((await chain("balance", "--dev-account", "3")).balance as string)).toBe(1_000_000n - 100_000n + 99_000n);
  }, 180_000);
});
