/**
 * Attribution end to end, against the spawned server and the CLI as users run them: every
 * completion gets a signed receipt (header, final stream chunk, GET /v1/receipts/:id); a paid
 * adapter refuses callers without an account or balance (402) before any compute and splits the
 * fee of those who pay; `openlora verify` replays a receipt bit for bit and detects tampering;
 * and a server killed with SIGKILL under load restarts with a valid chain and balanced accounts.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contentHash } from "../../src/attribution/content-hash.js";
import { receiptFromJSON, verifyReceiptSignature } from "../../src/attribution/receipts.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { runCli } from "../helpers/cli.js";
import { type ServerProcess, startServer } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const modelPath = join(dir, "tiny-qwen3-q8.gguf");
const adapterDir = join(dir, "adapters");
const ledgerPath = join(dir, "ledger.sqlite");
const MODEL = "tiny-qwen3-q8";
let server: ServerProcess;
let client: OpenAI;

const url = (p: string) => `http://127.0.0.1:${server.port}${p}`;
async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url(path), { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

beforeAll(async () => {
  writeGgufModel(modelPath, "tiny-qwen3", { seed: 9, type: "q8_0" });
  mkdirSync(adapterDir, { recursive: true });
  writeGgufLora(join(adapterDir, "free.gguf"), "tiny-qwen3", { seed: 1, rank: 8, alpha: 16, targets: ["q", "v"], type: "f32", strength: 0.1 });
  writeGgufLora(join(adapterDir, "paid.gguf"), "tiny-qwen3", { seed: 2, rank: 16, alpha: 16, targets: ["q", "k", "v", "o"], type: "f32", strength: 0.1 });
  server = await startServer(["--model", modelPath, "--adapters", adapterDir, "--threads", "2", "--ledger", ledgerPath]);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0 });
}, 180_000);

afterAll(async () => {
  await server?.stop();
});

describe("receipts", () => {
  it("gives every completion a signed receipt: header, final stream chunk, GET /v1/receipts/:id", async () => {
    const res = await post("/v1/completions", { model: "free", prompt: "Receipts for everyone", max_tokens: 6, temperature: 0.8, seed: 42 });
    expect(res.status).toBe(200);
    const id = res.headers.get("openlora-receipt");
    expect(id).toMatch(/^\d+$/);
    const body = await (await fetch(url(`/v1/receipts/${id}`))).json() as { json?: string; receipt?: unknown; signature: `0x${string}`; signer: string; typedData: { domain: { chainId: number } } };
    const receipt = receiptFromJSON(body.json ?? JSON.stringify(body.receipt));
    expect(receipt.id).toBe(Number(id));
    expect(receipt.adapters.map((a) => a.id)).toEqual(["free"]);
    expect(receipt.tokensOut).toBe(6);
    expect(receipt.sampling.seed).toBe(42);
    expect(await verifyReceiptSignature(receipt, body.signature, { chainId: Number(body.typedData.domain.chainId) })).toBe(true);

    const stream = await client.completions.create({ model: MODEL, prompt: "Streamed", max_tokens: 4, stream: true, temperature: 0 });
    let tag: string | undefined;
    for await (const chunk of stream) tag = (chunk as unknown as { openlora_receipt?: string }).openlora_receipt ?? tag;
    expect(Number(tag)).toBe(Number(id) + 1);
  });

  it("refuses a paid adapter without a key or balance (401/402) before any compute, and splits the fee of a paying agent", async () => {
    const listed = await post("/v1/ledger/models", {
      id: "paid", kind: "adapter", owner: "dev-ada", baseModel: MODEL, priceIn: "3", priceOut: "1000000000000000000000",
      developers: [{ party: "dev-ada", share: "1" }],
    }, server.operator);
    expect(listed.status).toBeLessThan(300);
    // The node hashed the served file itself: the listing names what the engine will load.
    expect(((await listed.json()) as { contentHash: string }).contentHash).toBe(await contentHash(join(adapterDir, "paid.gguf")));
    const before = await (await fetch(url("/metrics"))).text();
    const anon = await post("/v1/completions", { model: "paid", prompt: "hi", max_tokens: 4 });
    expect(anon.status).toBe(401);
    const created = (await (await post("/v1/accounts/agents", { id: "alice" }, server.operator)).json()) as { apiKey: string };
    // The public id is not a credential; a key without money is refused with 402.
    const byName = await post("/v1/completions", { model: "paid", prompt: "hi", max_tokens: 4 }, { authorization: "Bearer alice" });
    expect(byName.status).toBe(401);
    const broke = await post("/v1/completions", { model: "paid", prompt: "hi", max_tokens: 4 }, { authorization: `Bearer ${created.apiKey}` });
    expect(broke.status).toBe(402);
    expect(((await broke.json()) as { error: { code: string } }).error.code).toBe("INSUFFICIENT_BALANCE");
    const after = await (await fetch(url("/metrics"))).text();
    const gen = (t: string) => Number(/^openlora_generation_tokens_total (\d+)/m.exec(t)?.[1] ?? 0);
    expect(gen(after)).toBe(gen(before));

    expect((await post("/v1/accounts/agents/alice/deposit", { amount: "100000000000000000000000" }, server.operator)).status).toBeLessThan(300);
    const paid = await post("/v1/completions", { model: "paid", prompt: "hi", max_tokens: 4, ignore_eos: true }, { authorization: `Bearer ${created.apiKey}` });
    expect(paid.status).toBe(200);
    const receipt = receiptFromJSON(((await (await fetch(url(`/v1/receipts/${paid.headers.get("openlora-receipt")}`))).json()) as { json: string }).json);
    expect(receipt.agent).toBe("alice");
    expect(receipt.fee).toBe(BigInt(receipt.tokensIn) * 3n + 4n * 1_000_000_000_000_000_000_000n);
    expect(receipt.lines.reduce((a, l) => a + l.amount, 0n)).toBe(receipt.fee);
    const dev = (await (await fetch(url("/v1/balances/dev-ada"))).json()) as { balance?: string; amount?: string };
    expect(BigInt(dev.balance ?? dev.amount ?? "0")).toBeGreaterThan(0n);
  });
});

describe("openlora verify", () => {
  it("replays a receipt bit for bit, and detects a tampered one", async () => {
    const res = await post("/v1/completions", { model: "free", prompt: "Replay me exactly", max_tokens: 8, temperature: 0.9, top_p: 0.95, seed: 7 });
    const id = res.headers.get("openlora-receipt")!;
    const epoch = (await (await post("/v1/epochs/close", {}, server.operator)).json()) as { epoch: { id: number; root: string } | null };
    const checkpointFile = join(dir, "checkpoint.json");
    writeFileSync(checkpointFile, await (await fetch(url("/v1/ledger/checkpoint"))).text());
    const signer = ((await (await fetch(url(`/v1/receipts/${id}`))).json()) as { signer: string }).signer;
    expect(epoch.epoch).not.toBeNull();
    const copy = join(dir, "copy.sqlite");
    // A consistent snapshot while the server runs (WAL): SQLite's own backup.
    await new Database(ledgerPath, { readonly: true }).backup(copy);
    const ok = await runCli(["verify", id, "--ledger", copy, "--signer", signer, "--checkpoint", checkpointFile, "--model", modelPath, "--adapters", adapterDir, "--threads", "1"]);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      valid: true,
      checks: {
        signature: { ok: true }, chain: { ok: true }, balances: { ok: true }, checkpoint: { ok: true },
        proof: { ok: true, detail: `epoch ${epoch.epoch!.id}, root ${epoch.epoch!.root}` }, replay: { ok: true },
      },
    });
    // Without the node address from outside the file, verify refuses.
    const blind = await runCli(["verify", id, "--ledger", copy, "--no-replay"]);
    expect(blind.code).toBe(2);
    expect(blind.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: verify needs the node address you trust/);

    const tampered = join(dir, "tampered.sqlite");
    copyFileSync(copy, tampered);
    const db = new Database(tampered);
    const row = db.prepare("SELECT body FROM receipts WHERE id = ?").get(Number(id)) as { body: string };
    db.prepare("UPDATE receipts SET body = ? WHERE id = ?").run(row.body.replace(/"agent":"[^"]*"/, '"agent":"mallory"'), Number(id));
    db.close();
    const bad = await runCli(["verify", id, "--ledger", tampered, "--signer", signer, "--no-replay"]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ valid: false, checks: { signature: { ok: false } } });
  }, 120_000);
});

describe("crash safety", () => {
  it("after SIGKILL mid-load, the restarted server's chain verifies and every balance equals its receipts' lines", async () => {
    const crashLedger = join(dir, "crash.sqlite");
    const s = await startServer(["--model", modelPath, "--adapters", adapterDir, "--threads", "1", "--ledger", crashLedger]);
    // Eight clients keep requests in flight until the kill; the kill comes once three receipts
    // exist (not after a fixed time, which on a loaded machine may precede every receipt).
    let receipts = 0;
    let killed = false;
    let enough!: () => void;
    const threeReceipts = new Promise<void>((r) => { enough = r; });
    const client = async (): Promise<void> => {
      while (!killed) {
        const body = { model: "free", prompt: "load", max_tokens: 3 + Math.floor(Math.random() * 10), ignore_eos: true };
        const res = await post2(s.port, body).then(async (r) => { await r.text(); return r; }).catch(() => undefined);
        if (res?.headers.get("openlora-receipt") && ++receipts >= 3) enough();
      }
    };
    const clients = Array.from({ length: 8 }, client);
    await threeReceipts;
    killed = true;
    s.child.kill("SIGKILL");
    await Promise.all(clients);
    await s.stop();
    const again = await startServer(["--model", modelPath, "--adapters", adapterDir, "--threads", "1", "--ledger", crashLedger]);
    try {
      const v = (await (await fetch(`http://127.0.0.1:${again.port}/v1/ledger/verify`, { headers: again.operator })).json()) as { chain: { ok: boolean; receipts: number }; balances: { ok: boolean } };
      expect(v.chain.ok).toBe(true);
      expect(v.chain.receipts).toBeGreaterThan(0);
      expect(v.balances.ok).toBe(true);
      const res = await post2(again.port, { model: "free", prompt: "after", max_tokens: 2 });
      expect(res.status).toBe(200);
      expect(Number(res.headers.get("openlora-receipt"))).toBe(v.chain.receipts + 1);
    } finally {
      await again.stop();
    }
  }, 180_000);
});

function post2(port: number, body: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}
