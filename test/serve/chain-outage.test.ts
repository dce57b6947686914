/**
 * An RPC outage seen by a client of `openlora serve --chain` (official openai client): serving goes
 * on while the node's view of the chain is younger than half the Registry's terms delay, then
 * requests are refused with 503 CHAIN_VIEW_STALE (the node could miss a terms change in force and
 * sign a receipt a court would slash), and served again once the chain is back and followed.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { writeDeployment } from "../../src/chain/deploy.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { rpcProxy, startTestChain, type RpcProxy, type TestChain } from "../helpers/chain.js";
import { startServer, type ServerProcess } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-chain-outage-");
const modelPath = join(dir, "tiny.gguf");
const TERMS_DELAY_S = 20;

let t: TestChain;
let proxy: RpcProxy;
let server: ServerProcess;
let openai: OpenAI;

const chainStatus = async () => (await (await fetch(`http://127.0.0.1:${server.port}/v1/chain`)).json()) as { admitsUntil: string | null; lastError: string | null };
const complete = () => openai.completions.create({ model: "tiny", prompt: "Once upon", max_tokens: 2 });

async function until(what: string, ok: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await chainStatus())}`);
}

beforeAll(async () => {
  t = await startTestChain({ termsDelay: BigInt(TERMS_DELAY_S) });
  proxy = await rpcProxy(t.anvil.url);
  writeGgufModel(modelPath, "tiny-qwen3", { seed: 9, type: "q8_0" });
  const contracts = join(dir, "contracts.json");
  writeDeployment(contracts, t.deployment);
  const key = join(dir, "node.key");
  writeFileSync(key, `${ANVIL_KEYS[1]}\n`, { mode: 0o600 });
  server = await startServer(["--model", modelPath, "--threads", "2", "--chain", proxy.url, "--contracts", contracts, "--node-key-file", key, "--confirmations", "0"]);
  openai = new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0 });
}, 240_000);

afterAll(async () => {
  await server?.stop();
  await proxy?.close();
  await t?.stop();
});

describe("an RPC outage while serving on a chain", () => {
  it("serves on for half the terms delay, then refuses with CHAIN_VIEW_STALE, and serves again once followed", async () => {
    expect((await complete()).choices[0]!.text.length).toBeGreaterThan(0);
    const s = await chainStatus();
    expect(Date.parse(s.admitsUntil!) - Date.now()).toBeGreaterThan((TERMS_DELAY_S / 2 - 5) * 1000);

    proxy.down = "all";
    // Serving goes on: the view is seconds old, the delay 20 s.
    expect((await complete()).choices[0]!.text.length).toBeGreaterThan(0);
    const admitsUntil = Date.parse((await chainStatus()).admitsUntil!);
    await new Promise((r) => setTimeout(r, Math.max(0, admitsUntil - Date.now() + 300)));
    const refused = await complete().catch((e: unknown) => e as { status: number; code: string; message: string });
    expect(refused).toMatchObject({ status: 503, code: "CHAIN_VIEW_STALE" });
    expect((await chainStatus()).lastError).not.toBeNull();

    proxy.down = false;
    await until("the node to follow again", async () => Date.parse((await chainStatus()).admitsUntil!) > Date.now() + 1000);
    expect((await complete()).choices[0]!.text.length).toBeGreaterThan(0);
  }, 120_000);
});
