/**
 * A node that lies about one output token, end to end: `openlora serve` started with the tests-only
 * switch (NODE_ENV=test, OPENLORA_FAULT_INJECTION=alter-output-token[:K], src/server/fault-injection.ts)
 * signs receipts whose output is not the model's: internally consistent (the output hash is the
 * hash of the token ids the ledger keeps) and validly signed. `openlora verify` and the validator's
 * Replayer (src/validator/replay.ts) judge the same receipt from the same prompt token ids and agree,
 * both ways: not ok for an altered receipt (streamed or not), ok for an honest one. Outside tests the
 * switch is refused at start.
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashTokenIds, receiptFromJSON, type Receipt } from "../../src/attribution/receipts.js";
import { fromTokenBlob } from "../../src/ledger/token-blob.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { Replayer, type ReplayResult } from "../../src/validator/replay.js";
import { runCli } from "../helpers/cli.js";
import { startServer, type ServerProcess } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const modelPath = join(dir, "tiny.gguf");
const adapters = join(dir, "adapters");
const MODEL = "tiny";
/** A token-id prompt: the ids the replay needs are exactly the ones sent. */
const PROMPT = [785, 3974, 13876, 38835, 34208, 916, 279];
const MAX_TOKENS = 6;

let every: ServerProcess;
let second: ServerProcess;
let replayer: Replayer;
let copies = 0;

const ledgerOf = (name: string): string => join(dir, `${name}.sqlite`);
const testEnv = (spec: string): Record<string, string> => ({ NODE_ENV: "test", OPENLORA_FAULT_INJECTION: spec });

beforeAll(async () => {
  writeGgufModel(modelPath, "tiny-qwen3", { seed: 9, type: "q8_0" });
  writeGgufLora(join(adapters, "style.gguf"), "tiny-qwen3", { seed: 1, rank: 8, alpha: 16, targets: ["q", "v"], type: "f32", strength: 0.1 });
  const args = (ledger: string) => ["--model", modelPath, "--adapters", adapters, "--threads", "2", "--ledger", ledgerOf(ledger)];
  [every, second] = await Promise.all([
    startServer(args("every"), { env: testEnv("alter-output-token") }),
    startServer(args("second"), { env: testEnv("alter-output-token:2") }),
  ]);
  replayer = new Replayer(modelPath, adapters, 2);
}, 180_000);

afterAll(async () => {
  await Promise.all([every?.stop(), second?.stop()]);
});

/** One completion over HTTP (streamed or not); its receipt id from the header or the final chunk. */
async function complete(s: ServerProcess, body: Record<string, unknown>): Promise<number> {
  const res = await fetch(`${s.baseURL}/completions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: PROMPT, max_tokens: MAX_TOKENS, ignore_eos: true, temperature: 0.8, seed: 11, ...body }),
  });
  expect(res.status).toBe(200);
  if (body.stream !== true) {
    await res.json();
    return Number(res.headers.get("openlora-receipt"));
  }
  let tag: string | undefined;
  for (const line of (await res.text()).split("\n")) {
    if (!line.startsWith("data: {")) continue;
    tag = (JSON.parse(line.slice(6)) as { openlora_receipt?: string }).openlora_receipt ?? tag;
  }
  return Number(tag);
}

interface Judged {
  receipt: Receipt;
  /** What the node stored (and would publish in an epoch batch) for the receipt. */
  stored: { prompt: number[]; output: number[] };
  verify: { code: number; report: { valid: boolean; checks: Record<string, { ok: boolean; detail: string }> } };
  replay: ReplayResult;
}

/** The same receipt judged twice: `openlora verify` on a copy of the node's ledger, and the Replayer on the receipt and its prompt ids. */
async function judge(s: ServerProcess, ledger: string, id: number): Promise<Judged> {
  expect(Number.isSafeInteger(id) && id > 0).toBe(true);
  const served = (await (await fetch(`${s.baseURL}/receipts/${id}`)).json()) as { json: string; signer: string };
  const receipt = receiptFromJSON(served.json);
  const copy = join(dir, `copy-${++copies}.sqlite`);
  // A consistent snapshot while the server runs (WAL): SQLite's own backup.
  const live = new Database(ledgerOf(ledger), { readonly: true });
  await live.backup(copy);
  live.close();
  const db = new Database(copy, { readonly: true });
  const row = db.prepare("SELECT prompt, output FROM receipt_tokens WHERE receipt_id = ?").get(id) as { prompt: Buffer; output: Buffer };
  db.close();
  const stored = { prompt: fromTokenBlob(row.prompt), output: fromTokenBlob(row.output) };
  const cli = await runCli(["verify", String(id), "--ledger", copy, "--signer", served.signer, "--model", modelPath, "--adapters", adapters, "--threads", "1"]);
  expect(cli.stderr).toBe("");
  const replay = await replayer.replay(receipt, PROMPT);
  return { receipt, stored, verify: { code: cli.code, report: JSON.parse(cli.stdout) as Judged["verify"]["report"] }, replay };
}

/** Everything but the replay holds: the lie is consistent and signed; verify and the Replayer both say it is not the model's output. */
function expectCaught(j: Judged): void {
  expect(j.stored.prompt).toEqual(PROMPT);
  expect(j.stored.output).toHaveLength(MAX_TOKENS);
  expect(hashTokenIds(j.stored.output)).toBe(j.receipt.outputHash);
  const { signature, chain, balances, split, replay } = j.verify.report.checks;
  expect([signature!.ok, chain!.ok, balances!.ok, split!.ok]).toEqual([true, true, true, true]);
  expect(j.verify.code).toBe(1);
  expect(j.verify.report.valid).toBe(false);
  expect(replay!.ok).toBe(false);
  expect(replay!.detail).toMatch(/^replayed output hashes to 0x[0-9a-f]{64}, the receipt says /);
  expect(j.replay.ok).toBe(false);
  expect(j.replay.detail).toBe(replay!.detail);
  // The model's output differs from what was signed in exactly the middle token, by one.
  const mid = Math.floor(MAX_TOKENS / 2);
  const model = j.replay.tokens!;
  expect(model.filter((t, i) => t !== j.stored.output[i])).toEqual([model[mid]]);
  expect(j.stored.output[mid] === model[mid]! + 1 || j.stored.output[mid] === 0).toBe(true);
}

function expectHonest(j: Judged): void {
  expect(j.stored.prompt).toEqual(PROMPT);
  expect(hashTokenIds(j.stored.output)).toBe(j.receipt.outputHash);
  expect(j.verify.code).toBe(0);
  expect(j.verify.report.valid).toBe(true);
  expect(j.verify.report.checks.replay).toMatchObject({ ok: true });
  expect(j.replay.ok).toBe(true);
  expect(j.replay.detail).toBe(j.verify.report.checks.replay!.detail);
  expect(j.replay.tokens).toEqual(j.stored.output);
}

describe("a node serving with fault injection (tests only)", () => {
  it("alter-output-token: every receipt, streamed or not, with or without an adapter, fails openlora verify's replay, and the Replayer agrees", async () => {
    const plain = await complete(every, { model: "style" });
    expectCaught(await judge(every, "every", plain));
    const streamed = await complete(every, { model: MODEL, stream: true });
    expect(streamed).toBe(plain + 1);
    expectCaught(await judge(every, "every", streamed));
  }, 120_000);

  it("alter-output-token:2: only the second completed request lies; verify and the Replayer say ok for the others and not ok for it", async () => {
    const ids = [];
    for (const body of [{ model: "style" }, { model: "style", stream: true }, { model: MODEL }]) ids.push(await complete(second, body));
    expect(ids).toEqual([1, 2, 3]);
    const [first, altered, third] = await Promise.all(ids.map((id) => judge(second, "second", id)));
    expectHonest(first!);
    expectCaught(altered!);
    expectHonest(third!);
    // The same request (prompt, adapter, sampling, seed) answered honestly and with the lie: one token apart.
    expect(altered!.replay.tokens).toEqual(first!.stored.output);
  }, 120_000);

  it("outside tests the switch is refused at start: NODE_ENV=production exits 1 with FAULT_INJECTION_REFUSED; a malformed value exits 2", async () => {
    const args = ["--model", modelPath, "--adapters", adapters, "--threads", "1", "--ledger", ledgerOf("refused")];
    for (const [env, code, error] of [
      [{ NODE_ENV: "production", OPENLORA_FAULT_INJECTION: "alter-output-token" }, 1, "FAULT_INJECTION_REFUSED"],
      [{ NODE_ENV: "", OPENLORA_FAULT_INJECTION: "alter-output-token:1" }, 1, "FAULT_INJECTION_REFUSED"],
      [testEnv("alter-every-token"), 2, "INVALID_ARGUMENT"],
      [testEnv("alter-output-token:0"), 2, "INVALID_ARGUMENT"],
    ] as const) {
      let started: ServerProcess | undefined;
      const failure = await startServer(args, { env, timeoutMs: 60_000 }).then((s) => { started = s; return undefined; }, (e: Error) => e.message);
      await started?.stop();
      expect(started, `${JSON.stringify(env)} started a server`).toBeUndefined();
      expect(failure).toMatch(new RegExp(`^server exited \\(${code}\\):\\n[\\s\\S]*error \\[${error}\\]`));
    }
  }, 120_000);
});
