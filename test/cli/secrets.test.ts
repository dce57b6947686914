/**
 * The node's secrets as `openlora serve` handles them: the operator token is generated at first
 * start into a 0600 file; the ledger and its companions are 0600; the node key comes from a file
 * or the environment, never the command line, and a key file other users can read is refused.
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { clientCredential } from "../../src/cli/credentials.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { runCli } from "../helpers/cli.js";
import { startServer } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-secrets-");
const modelPath = join(dir, "tiny.gguf");
writeGgufModel(modelPath, "tiny-llama3", { seed: 3, type: "q8_0" });
const KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const mode = (p: string) => statSync(p).mode & 0o777;

describe("openlora serve's secrets", () => {
  it("refuses a node key on the command line without echoing it, and a key file others can read", async () => {
    const argv = await runCli(["serve", "--model", modelPath, "--node-key", KEY, "--port", "0"]);
    expect(argv.code).toBe(2);
    expect(argv.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --node-key is refused/);
    expect(argv.stderr.includes(KEY.slice(2, 20))).toBe(false);
    const open = join(dir, "open.key");
    writeFileSync(open, `${KEY}\n`, { mode: 0o644 });
    const readable = await runCli(["serve", "--model", modelPath, "--node-key-file", open, "--ledger", join(dir, "x.sqlite"), "--port", "0", "--quiet"]);
    expect(readable.code).toBe(2);
    expect(readable.stderr).toMatch(/can be read by other users/);
  }, 60_000);

  it("generates the operator token 0600 at first start, keeps the ledger 0600, and signs with the key from the environment", async () => {
    const cache = join(dir, "cache");
    mkdirSync(cache);
    const ledger = join(dir, "env-ledger", "l.sqlite");
    const s = await startServer(["--model", modelPath, "--threads", "1", "--ledger", ledger], {
      env: { OPENLORA_CACHE: cache, OPENLORA_NODE_KEY: KEY }, defaultOperatorToken: true,
    });
    try {
      const tokenFile = join(cache, "operator.token");
      expect(mode(tokenFile)).toBe(0o600);
      const token = readFileSync(tokenFile, "utf8").trim();
      expect(token).toMatch(/^olo_[A-Za-z0-9_-]{43}$/);
      expect(s.stderr().includes(token)).toBe(false);
      const close = await fetch(`http://127.0.0.1:${s.port}/v1/epochs/close`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: "{}" });
      expect(close.status).toBe(200);
      const model = ((await (await fetch(`${s.baseURL}/models`)).json()) as { data: { id: string }[] }).data[0]!.id;
      const res = await fetch(`${s.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, prompt: "hi", max_tokens: 2 }) });
      expect(res.status).toBe(200);
      const receipt = (await (await fetch(`http://127.0.0.1:${s.port}/v1/receipts/${res.headers.get("openlora-receipt")}`)).json()) as { signer: string };
      expect(receipt.signer).toBe(privateKeyToAccount(KEY).address);
      for (const p of [ledger, `${ledger}-wal`, `${ledger}-shm`]) expect(mode(p), p).toBe(0o600);
      expect(mode(join(dir, "env-ledger"))).toBe(0o700);
    } finally {
      await s.stop();
    }
  }, 120_000);
});

describe("openlora ledger's credential", () => {
  it("sends the default operator token to a server on this machine only; a named credential anywhere", () => {
    const file = join(dir, "op.token");
    writeFileSync(file, "olo_local-operator-token-0000000000000000000000\n", { mode: 0o600 });
    const saved = { file: process.env.OPENLORA_OPERATOR_TOKEN_FILE, key: process.env.OPENLORA_API_KEY };
    process.env.OPENLORA_OPERATOR_TOKEN_FILE = file;
    delete process.env.OPENLORA_API_KEY;
    try {
      for (const local of ["http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:8000"]) expect(clientCredential(undefined, local), local).toBe("olo_local-operator-token-0000000000000000000000");
      for (const remote of ["https://node.example.com", "http://10.0.0.7:8000", "http://127.0.0.1.evil.com"]) expect(clientCredential(undefined, remote), remote).toBeUndefined();
      process.env.OPENLORA_API_KEY = "olk_named";
      expect(clientCredential(undefined, "https://node.example.com")).toBe("olk_named");
    } finally {
      if (saved.file === undefined) delete process.env.OPENLORA_OPERATOR_TOKEN_FILE; else process.env.OPENLORA_OPERATOR_TOKEN_FILE = saved.file;
      if (saved.key === undefined) delete process.env.OPENLORA_API_KEY; else process.env.OPENLORA_API_KEY = saved.key;
    }
  });
});
