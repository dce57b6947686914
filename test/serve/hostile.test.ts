/**
 * The hostile corpus, against `openlora serve` as users run it (the spawned bin, the official
 * openai client): extreme and out-of-rule sampling values and composition weights, adapters with
 * huge finite values and scales, symlinks out of the adapter folder, unauthenticated calls to every
 * state-changing endpoint, another agent's public id used as a key, a re-signed and a truncated
 * ledger. After each group the server still serves the base model and every good adapter exactly
 * as before, its ledger verifies, and no error body carried a secret, a long quote or a server path.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FeePolicy } from "../../src/attribution/types.js";
import { Ledger } from "../../src/ledger/index.js";
import { ENDPOINTS } from "../../src/server/access.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeSafetensors } from "../../src/formats/safetensors.js";
import { getPreset, writeGgufModel } from "../../src/synth/synthesize.js";
import { runCli } from "../helpers/cli.js";
import { assertHarmlessMessage, writeHostileCorpus, type HostileAdapter } from "../helpers/hostile-adapters.js";
import { type ServerProcess, startServer } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-hostile-");
const modelPath = join(dir, "tiny.gguf");
const adapterDir = join(dir, "adapters");
const outsideDir = join(dir, "outside");
const ledgerPath = join(dir, "ledger.sqlite");
const GOOD = ["good1", "good2"];
let server: ServerProcess;
let client: OpenAI;
let model: string;
let corpus: HostileAdapter[];
const baseline = new Map<string, string>();
const url = (p: string) => `http://127.0.0.1:${server.port}${p}`;

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url(path), { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

const PROBE = { prompt: "The hostile corpus", max_tokens: 6, temperature: 0, ignore_eos: true };
async function probe(m: string): Promise<string> {
  return (await client.completions.create({ ...PROBE, model: m } as OpenAI.Completions.CompletionCreateParamsNonStreaming)).choices[0]!.text;
}

/** An error body must name no server path, carry no secret and quote little. */
function harmless(text: string): void {
  assertHarmlessMessage(text);
  for (const p of [adapterDir, outsideDir, dir, homedir()]) expect(text.includes(p), `${p} in ${text.slice(0, 300)}`).toBe(false);
}

/** The base model and every good adapter answer exactly as before, /health is 200, the ledger verifies. */
async function stillServing(): Promise<void> {
  expect((await fetch(url("/health"))).status).toBe(200);
  for (const m of [model, ...GOOD]) expect(await probe(m), m).toBe(baseline.get(m));
  const v = (await (await fetch(url("/v1/ledger/verify"), { headers: server.operator })).json()) as { chain: { ok: boolean }; balances: { ok: boolean } };
  expect(v.chain.ok).toBe(true);
  expect(v.balances.ok).toBe(true);
}

beforeAll(async () => {
  writeGgufModel(modelPath, "tiny-llama3", { seed: 5, type: "q8_0" });
  mkdirSync(adapterDir, { recursive: true });
  GOOD.forEach((g, i) => writeGgufLora(join(adapterDir, `${g}.gguf`), "tiny-llama3", { seed: 10 + i, rank: 8, alpha: 16, targets: ["q", "v"], type: "f16", strength: 0.1 }));
  // At the load bounds exactly (|value| = 1024, scale = 1024): it loads, and what it computes overflows.
  writeEdgeAdapter(join(adapterDir, "edge"));
  // Listed with a price before its first use (good1 and good2 are listed free by theirs).
  writeGgufLora(join(adapterDir, "priced.gguf"), "tiny-llama3", { seed: 20, rank: 4, alpha: 8, targets: ["q"], type: "f32", strength: 0.1 });
  corpus = writeHostileCorpus(adapterDir, outsideDir, "tiny-llama3");
  server = await startServer(["--model", modelPath, "--adapters", adapterDir, "--threads", "2", "--ledger", ledgerPath]);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: "EMPTY", maxRetries: 0 });
  model = (await client.models.list()).data.find((m) => (m as unknown as { parent: string | null }).parent === null)!.id;
  for (const m of [model, ...GOOD]) baseline.set(m, await probe(m));
}, 180_000);

afterAll(async () => {
  await server?.stop();
});

/** A PEFT adapter on layer 0's q projection with every A and B value 1024 and lora_alpha = 1024 · r. */
function writeEdgeAdapter(at: string): void {
  const p = getPreset("tiny-llama3");
  const r = 4;
  const q = p.nHeads * p.headDim;
  mkdirSync(at, { recursive: true });
  const t = "base_model.model.model.layers.0.self_attn.q_proj";
  const ones = (n: number) => new Uint8Array(new Float32Array(n).fill(1024).buffer);
  writeSafetensors(join(at, "adapter_model.safetensors"), [
    { name: `${t}.lora_A.weight`, dtype: "F32", shape: [r, p.hiddenSize], data: ones(r * p.hiddenSize) },
    { name: `${t}.lora_B.weight`, dtype: "F32", shape: [q, r], data: ones(q * r) },
  ]);
  writeFileSync(join(at, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r, lora_alpha: 1024 * r, target_modules: ["q_proj"], layers_to_transform: [0] }));
}

describe("hostile requests", () => {
  it("refuses composition weights outside the rule and survives every extreme sampling value", async () => {
    for (const weight of [1e10, -1, 10.000001, 1e308, -0.5]) {
      const e = await client.completions.create({ ...PROBE, model, adapters: [{ id: "good1", weight }] } as OpenAI.Completions.CompletionCreateParamsNonStreaming).then(() => undefined, (x: unknown) => x);
      expect(e, String(weight)).toBeInstanceOf(OpenAI.APIError);
      expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
      expect((e as InstanceType<typeof OpenAI.APIError>).code).toBe("INVALID_ARGUMENT");
    }
    // The largest allowed weight, on both adapters: output or a typed error for this request alone.
    const big = await post("/v1/completions", { ...PROBE, model, adapters: [{ id: "good1", weight: 10 }, { id: "good2", weight: 10 }] });
    expect([200, 422]).toContain(big.status);
    // An adapter at the load bounds, at the largest weight, beside normal requests in the same batches:
    // it fails alone with LOGITS_NONFINITE; the others are exactly what they are alone.
    const [edge, ...normal] = await Promise.all([
      post("/v1/completions", { ...PROBE, model, adapters: [{ id: "edge", weight: 10 }] }),
      ...[model, ...GOOD].map((m) => probe(m)),
    ]);
    expect(edge!.status).toBe(422);
    expect(((await edge!.json()) as { error: { code: string } }).error.code).toBe("LOGITS_NONFINITE");
    expect(normal).toEqual([model, ...GOOD].map((m) => baseline.get(m)));
    const extremes: Record<string, unknown>[] = [
      { temperature: 1e-300 }, { temperature: 1e300 }, { temperature: 2, top_p: 1e-300 }, { temperature: 1, top_k: Number.MAX_SAFE_INTEGER },
      { temperature: 1, min_p: 1 }, { repetition_penalty: 1e-300 }, { repetition_penalty: 1e300 }, { temperature: 1e300, repetition_penalty: 1e-300 },
      { presence_penalty: 2, frequency_penalty: -2 }, { seed: Number.MAX_SAFE_INTEGER, temperature: 1 }, { seed: -Number.MAX_SAFE_INTEGER, temperature: 1 },
      { logprobs: 5, temperature: 1e300 }, { stop: ["a", "b", "c", "d"], temperature: 1 },
    ];
    for (const x of extremes) {
      for (const m of [model, "good1"]) {
        const res = await post("/v1/completions", { ...PROBE, ...x, model: m });
        const text = await res.text();
        expect(res.status, `${JSON.stringify(x)}: ${text.slice(0, 200)}`).toBe(200);
        harmless(text);
      }
    }
    await stillServing();
  });
});

describe("hostile adapter files", () => {
  it("refuses each corpus entry with its code, as a served model and as a runtime load, and leaks nothing", async () => {
    const served = new Set((await client.models.list()).data.map((m) => m.id));
    expect(corpus.length).toBeGreaterThan(20);
    for (const h of corpus) {
      const res = await post("/v1/completions", { ...PROBE, model: h.name });
      const text = await res.text();
      harmless(text);
      if (h.scan === "skipped") {
        expect(served.has(h.name), h.name).toBe(false);
        expect(res.status, h.name).toBe(404);
        expect(JSON.parse(text).error.code).toBe("MODEL_NOT_SERVED");
      } else {
        expect(served.has(h.name), h.name).toBe(true);
        expect(JSON.parse(text).error.code, `${h.name}: ${text.slice(0, 300)}`).toBe("ADAPTER_LOAD_FAILED");
      }
      const rt = await post("/v1/load_lora_adapter", { lora_name: `rt-${h.name}`, lora_path: h.format === "gguf" ? `${h.name}.gguf` : h.name }, server.operator);
      const rtText = await rt.text();
      harmless(rtText);
      expect(rt.status, `${h.name}: ${rtText.slice(0, 300)}`).toBeGreaterThanOrEqual(400);
      expect(rt.status).toBeLessThan(500);
      expect(JSON.parse(rtText).error.code, h.name).toBe(h.runtimeCode);
    }
    expect((await client.models.list()).data.map((m) => m.id).filter((id) => id.startsWith("rt-"))).toEqual([]);
    await stillServing();
  });
});

describe("hostile callers", () => {
  it("refuses every state-changing endpoint to the anonymous and to foreign bearer values, changing nothing", async () => {
    const before = (await (await fetch(url("/v1/ledger/verify"), { headers: server.operator })).json()) as { chain: { receipts: number; events: number } };
    const adaptersBefore = (await client.models.list()).data.map((m) => m.id);
    const fill = (u: string) => u.replace(":id", "victim").replace(":record", "1").replace(":party", "victim").replace(":model", model);
    for (const rule of ENDPOINTS.filter((e) => e.access !== "public" && e.access !== "inference")) {
      for (const auth of [undefined, "Bearer EMPTY", "Bearer victim", `Bearer ${server.operatorToken}x`]) {
        const res = await fetch(url(fill(rule.url)), {
          method: rule.method, headers: { ...(auth ? { authorization: auth } : {}), ...(rule.method === "POST" ? { "content-type": "application/json" } : {}) },
          ...(rule.method === "POST" ? { body: JSON.stringify({ id: "x", amount: "1", lora_name: "good1", lora_path: "good1.gguf" }) } : {}),
        });
        expect(res.status, `${rule.method} ${rule.url} as ${auth ?? "nobody"}`).toBe(401);
      }
    }
    const after = (await (await fetch(url("/v1/ledger/verify"), { headers: server.operator })).json()) as { chain: { receipts: number; events: number } };
    expect(after.chain.events).toBe(before.chain.events);
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(adaptersBefore);
    await stillServing();
  });

  it("does not let another agent's public id spend its balance", async () => {
    const listed = await post("/v1/ledger/models", { id: "priced", kind: "adapter", owner: "dev", baseModel: model, priceIn: "1", priceOut: "1", developers: [{ party: "dev", share: "1" }] }, server.operator);
    expect(listed.status).toBe(200);
    const victim = (await (await post("/v1/accounts/agents", { id: "victim" }, server.operator)).json()) as { apiKey: string };
    await post("/v1/accounts/agents/victim/deposit", { amount: "1000000" }, server.operator);
    const thief = new OpenAI({ baseURL: server.baseURL, apiKey: "victim", maxRetries: 0 });
    await expect(thief.completions.create({ ...PROBE, model: "priced" } as OpenAI.Completions.CompletionCreateParamsNonStreaming)).rejects.toMatchObject({ status: 401, code: "UNAUTHENTICATED" });
    const balance = async () => ((await (await fetch(url("/v1/accounts/agents/victim"))).json()) as { balance: string }).balance;
    expect(await balance()).toBe("1000000");
    const owner = new OpenAI({ baseURL: server.baseURL, apiKey: victim.apiKey, maxRetries: 0 });
    expect((await owner.completions.create({ ...PROBE, model: "priced" } as OpenAI.Completions.CompletionCreateParamsNonStreaming)).usage!.completion_tokens).toBe(PROBE.max_tokens);
    expect(BigInt(await balance())).toBeLessThan(1_000_000n);
    await stillServing();
  });
});

describe("a doctored ledger", () => {
  it("is caught by verify: re-signed with another key, and truncated after a kept checkpoint", async () => {
    const r = await post("/v1/completions", { ...PROBE, model: "good1" });
    const id = r.headers.get("openlora-receipt")!;
    await post("/v1/epochs/close", {}, server.operator);
    const signer = ((await (await fetch(url(`/v1/receipts/${id}`))).json()) as { signer: string }).signer;
    const kept = join(dir, "kept.json");
    writeFileSync(kept, await (await fetch(url("/v1/ledger/checkpoint"))).text());
    const copy = join(dir, "copy.sqlite");
    await new Database(ledgerPath, { readonly: true }).backup(copy);
    expect((await runCli(["verify", "--ledger", copy, "--signer", signer, "--checkpoint", kept])).code).toBe(0);

    // Re-signed: mallory appends entries under her own key; they verify only for whoever trusts her.
    const resigned = join(dir, "resigned.sqlite");
    copyFileSync(copy, resigned);
    const policy: FeePolicy = { protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };
    const mallory = new Ledger({ path: resigned, nodeKey: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", policy, treasury: "protocol-treasury" });
    mallory.deposit("victim", 10n ** 18n);
    mallory.close();
    const forged = await runCli(["verify", "--ledger", resigned, "--signer", signer]);
    expect(forged.code).toBe(1);
    expect(JSON.parse(forged.stdout).checks.chain).toMatchObject({ ok: false, detail: expect.stringContaining("not a trusted signer") });

    // Truncated: the last epoch's receipts and the epoch itself removed; every remaining link holds.
    const cut = join(dir, "cut.sqlite");
    copyFileSync(copy, cut);
    const db = new Database(cut);
    db.pragma("foreign_keys = OFF");
    const last = (db.prepare("SELECT MAX(id) AS id FROM epochs").get() as { id: number }).id;
    const from = (db.prepare("SELECT first_receipt AS f FROM epochs WHERE id = ?").get(last) as { f: number }).f;
    for (const t of ["receipt_lines", "receipt_tokens"]) db.prepare(`DELETE FROM ${t} WHERE receipt_id >= ?`).run(from);
    db.prepare("DELETE FROM reservations WHERE receipt_id >= ?").run(from);
    db.prepare("DELETE FROM receipts WHERE id >= ?").run(from);
    db.prepare("DELETE FROM epochs WHERE id = ?").run(last);
    db.close();
    const blind = JSON.parse((await runCli(["verify", "--ledger", cut, "--signer", signer])).stdout) as { checks: Record<string, { ok: boolean }> };
    expect(blind.checks.chain!.ok).toBe(true); // a truncation alone re-links: only a kept checkpoint exposes it
    const caught = await runCli(["verify", "--ledger", cut, "--signer", signer, "--checkpoint", kept]);
    expect(caught.code).toBe(1);
    expect(JSON.parse(caught.stdout).checks.checkpoint).toMatchObject({ ok: false, detail: expect.stringContaining("truncated") });
    await stillServing();
  });
});
