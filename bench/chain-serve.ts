/**
 * What settling on a chain costs a serving node: the same batch of B paid streaming completions
 * through two spawned `openlora serve` processes on the same synthetic model and threads, with
 * attribution on and a priced base model —
 *
 *   off chain: a fresh SQLite ledger; the operator lists the model with its prices, creates an
 *              account and credits a deposit; requests carry the account's API key;
 *   on chain:  anvil with the contracts deployed; the owner registers the model with the same prices
 *              on the Registry, the agent deposits at the node through Settlement; the node follows
 *              the chain (`--confirmations 0`) and closes and posts an epoch every 5 s with receipts
 *              (`--epoch-interval-s 5`), so following and posting run during the rounds; requests are
 *              EIP-712-signed by the agent (signingFetch), its account being its lowercase address.
 *
 * Rounds interleaved (off on off on …), ratios per round. While one side runs, the other server is
 * stopped (SIGSTOP), so neither side's idle background work (the chain side polls anvil every
 * 200 ms) is charged to the other. Signatures are made before a round's clock starts (a real client
 * signs on its own machine; here it would share the server's two cores); their cost is reported.
 * Each round also reports the CPU time (from /proc) of the server's threads and of anvil, and each
 * side's CPU over 3 idle seconds (background work: following, posting). BENCH_NODE_ARGS passes Node
 * options to both servers (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
 *
 *   npx tsc -p tsconfig.build.json && npx tsx bench/chain-serve.ts [--rounds 5] [--batch 16] [--tokens 32] [--threads 2]
 *                                                                 [--prompt-tokens 16] [--preset smollm2-135m] [--type q8_0]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { createPublicClient, createWalletClient, http, type Abi, type Address, type Chain, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";
import { contentHash } from "../src/attribution/content-hash.js";
import { signingFetch } from "../src/auth/client.js";
import { RegistryAbi, SettlementAbi, TestTokenAbi } from "../src/chain/abi.js";
import { ANVIL_KEYS, startAnvil, type LocalChain } from "../src/chain/anvil.js";
import { deployOpenLora, writeDeployment } from "../src/chain/deploy.js";
import { DEFAULT_POLICY } from "../src/cli/serve-attribution.js";
import { Ledger } from "../src/ledger/ledger.js";
import { cacheDir } from "../src/synth/default-model.js";
import { type GgufWeightType, writeGgufModel } from "../src/synth/synthesize.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "smollm2-135m" }, type: { type: "string", default: "q8_0" },
    batch: { type: "string", default: "16" }, tokens: { type: "string", default: "32" }, "prompt-tokens": { type: "string", default: "16" },
    rounds: { type: "string", default: "5" }, threads: { type: "string", default: "2" },
  },
});
const B = Number(values.batch);
const N = Number(values.tokens);
const P = Number(values["prompt-tokens"]);
const ROUNDS = Number(values.rounds);
const threads = Number(values.threads);
const [DEPLOYER, NODE, OWNER, AGENT] = [0, 1, 2, 3];
const PRICE_IN = 1n;
const PRICE_OUT = 2n;
const FUNDS = 10n ** 18n;
const ZERO32: Hex = `0x${"0".repeat(64)}`;
const bin = join(import.meta.dirname, "..", "bin", "openlora.js");

function summary(xs: number[], digits = 1): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return `${med.toFixed(digits)} (${s[0]!.toFixed(digits)}–${s.at(-1)!.toFixed(digits)})`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** B prompts of P token ids (the same for both sides). */
function prompts(): number[][] {
  let x = 12345;
  const next = () => { x = (Math.imul(x, 1103515245) + 12345) >>> 0; return x; };
  return Array.from({ length: B }, () => Array.from({ length: P }, () => 1000 + (next() % 40_000)));
}

interface Server {
  child: ChildProcess;
  port: number;
  root: string;
  stderr: () => string;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

async function startServer(args: string[]): Promise<Server> {
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS?.split(" ").filter(Boolean) ?? []), bin, "serve", "--port", "0", "--threads", String(threads), "--max-running", String(Math.max(64, B)), ...args], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8");
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready in 180 s:\n${err}`)), 180_000);
    child.stderr!.on("data", (d: string) => {
      err = (err + d).slice(-20_000);
      const m = /ready: .* on http:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(err);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}:\n${err}`)); });
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child, port, root: `http://127.0.0.1:${port}`, stderr: () => err,
    pause: () => { child.kill("SIGSTOP"); },
    resume: () => { child.kill("SIGCONT"); },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGCONT");
      child.kill("SIGTERM");
      await exited;
    },
  };
}

type Json = Record<string, unknown>;

async function call(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<Json> {
  const res = await fetch(url, { method, headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const json = (await res.json()) as Json;
  if (!res.ok) throw new Error(`${method} ${url}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** CPU time (ms, user + system, from /proc) of a process's threads by name; `main` is the thread whose id is the pid. */
function cpuByThread(pid: number | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (pid === undefined) return out;
  let tids: string[];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    let stat: string;
    try { stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8"); } catch { continue; }
    const close = stat.lastIndexOf(")");
    const name = Number(tid) === pid ? "main" : stat.slice(stat.indexOf("(") + 1, close);
    const f = stat.slice(close + 2).split(" "); // f[0] is field 3 (state): utime is field 14, stime 15
    out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * 10);
  }
  return out;
}

function cpuDelta(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  return new Map([...b].map(([k, v]) => [k, v - (a.get(k) ?? 0)]));
}

/** A request ready to send: URL and init (headers already signed or keyed). */
interface Prepared { url: string; init: RequestInit }

function completionBody(modelId: string, prompt: number[], maxTokens: number): string {
  return JSON.stringify({ model: modelId, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
}

/** One side of the comparison: how it prepares a batch of requests (timed apart from the batch). */
interface Side {
  name: string;
  server: Server;
  anvil?: LocalChain;
  prepare(bodies: string[]): Promise<Prepared[]>;
}

/** Streams one prepared completion; returns [ms to first token, tokens]. */
async function streamOne(p: Prepared, t0: number): Promise<[number, number]> {
  const res = await fetch(p.url, p.init);
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let first = 0;
  let tokens = 0;
  let buf = "";
  const decoder = new TextDecoder();
  for await (const part of res.body) {
    buf += decoder.decode(part as Uint8Array, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6)) as { choices: unknown[]; usage?: { completion_tokens: number }; error?: unknown };
      if (chunk.error) throw new Error(`stream error: ${JSON.stringify(chunk.error)}`);
      if (!first && chunk.choices.length) first = performance.now() - t0;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return [first, tokens];
}

interface RoundResult { tokS: number; ttftP50: number; signMs: number; cpu: Map<string, number>; chainCpuMs: number; secs: number }

async function runRound(side: Side, modelId: string, ps: number[][], maxTokens: number): Promise<RoundResult> {
  const s0 = performance.now();
  const reqs = await side.prepare(ps.map((p) => completionBody(modelId, p, maxTokens)));
  const signMs = performance.now() - s0;
  const pid = side.server.child.pid;
  const chainPid = side.anvil?.process.pid;
  const c0 = cpuByThread(pid);
  const a0 = cpuByThread(chainPid);
  const t0 = performance.now();
  const results = await Promise.all(reqs.map((r) => streamOne(r, t0)));
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuDelta(c0, cpuByThread(pid));
  const chainCpuMs = [...cpuDelta(a0, cpuByThread(chainPid)).values()].reduce((x, y) => x + y, 0);
  const tokens = results.reduce((a, x) => a + x[1], 0);
  if (tokens !== ps.length * maxTokens) throw new Error(`${side.name}: ${tokens} tokens, expected ${ps.length * maxTokens}`);
  return { tokS: tokens / secs, ttftP50: median(results.map((x) => x[0])), signMs, cpu, chainCpuMs, secs };
}

function writeSecret(file: string, value: string): string {
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return file;
}

/**
 * Off chain: a fresh ledger with the model listed with prices, a funded account. The served base
 * model is listed (free, under the operator) when serve starts, and `POST /v1/ledger/models` then
 * refuses a second listing (409 LEDGER_CONFLICT): so the priced listing is written into the fresh
 * ledger file before the server opens it, with the options serve opens it with (same node key,
 * fee policy, treasury), and serve finds it listed, checks its content hash and keeps its prices.
 */
async function offChainSide(dir: string, modelPath: string, modelId: string, hash: Hex): Promise<Side> {
  const token = `olo_${randomBytes(32).toString("base64url")}`;
  const ledgerPath = join(dir, "off.sqlite");
  const ledger = new Ledger({ path: ledgerPath, nodeKey: ANVIL_KEYS[NODE]!, policy: DEFAULT_POLICY, treasury: "protocol-treasury", minAgentStake: 0n });
  ledger.registerModel({ id: modelId, kind: "base", owner: "owner", priceIn: PRICE_IN, priceOut: PRICE_OUT, contentHash: hash, developers: [{ party: "owner", share: 1n }] });
  ledger.close();
  const server = await startServer([
    "--model", modelPath, "--ledger", ledgerPath,
    "--operator-token-file", writeSecret(join(dir, "off-operator.token"), token),
    "--node-key-file", writeSecret(join(dir, "off-node.key"), ANVIL_KEYS[NODE]!),
  ]);
  const op = { authorization: `Bearer ${token}` };
  let apiKey: string;
  try {
    const model = await call(`${server.root}/v1/ledger/models/${encodeURIComponent(modelId)}`, "GET");
    if (model.priceIn !== PRICE_IN.toString() || model.priceOut !== PRICE_OUT.toString()) throw new Error(`the off-chain node lists other prices: ${JSON.stringify(model)}`);
    ({ apiKey } = (await call(`${server.root}/v1/accounts/agents`, "POST", { id: "agent" }, op)) as { apiKey: string });
    await call(`${server.root}/v1/accounts/agents/agent/deposit`, "POST", { amount: FUNDS.toString() }, op);
  } catch (e) {
    await server.stop();
    throw e;
  }
  const headers = { "content-type": "application/json", authorization: `Bearer ${apiKey}` };
  return {
    name: "off chain", server,
    prepare: async (bodies) => bodies.map((body) => ({ url: `${server.root}/v1/completions`, init: { method: "POST", headers, body } })),
  };
}

interface ChainSide extends Side {
  anvil: LocalChain;
  status(): Promise<Json>;
}

/** On chain: anvil + contracts, the model on the Registry with the same prices, a deposit at the node. */
async function onChainSide(dir: string, modelPath: string, modelId: string, hash: Hex): Promise<ChainSide> {
  const anvil = await startAnvil();
  try {
    const chain = { ...foundry, rpcUrls: { default: { http: [anvil.url] } } } as Chain;
    const transport = http(anvil.url);
    const publicClient = createPublicClient({ chain, transport, pollingInterval: 20 });
    const wallets = ANVIL_KEYS.map((k) => createWalletClient({ account: privateKeyToAccount(k), chain, transport, pollingInterval: 20 }));
    const addr = (i: number): Address => wallets[i]!.account.address;
    const d = await deployOpenLora(wallets[DEPLOYER]! as never, publicClient as never, {
      // Terms in force 10 s after their block: the node admits while its view is under 5 s old (polls: 200 ms).
      challengeWindow: 100n, withdrawDelay: 50n, unbondingDelay: 200n, slashRewardBps: 2500, termsDelay: 10n, treasury: addr(9),
    });
    const send = async (i: number, address: Address, abi: Abi, functionName: string, args: readonly unknown[]) => {
      const h = await wallets[i]!.writeContract({ address, abi, functionName, args } as never);
      const r = await publicClient.waitForTransactionReceipt({ hash: h });
      if (r.status !== "success") throw new Error(`${functionName} reverted (tx ${h})`);
      return r;
    };
    await send(OWNER, d.registry, RegistryAbi, "registerModel", [modelId, 0, ZERO32, {
      contentHash: hash, priceIn: PRICE_IN, priceOut: PRICE_OUT, developers: [{ party: addr(OWNER), share: 1n }],
      hasShares: false, developerBps: 0, stakerBps: 0, dataBps: 0, lineage: [], parents: [],
    }]);
    const contracts = join(dir, "contracts.json");
    writeDeployment(contracts, d);
    const server = await startServer([
      "--model", modelPath, "--ledger", join(dir, "on.sqlite"),
      "--operator-token-file", writeSecret(join(dir, "on-operator.token"), `olo_${randomBytes(32).toString("base64url")}`),
      "--node-key-file", writeSecret(join(dir, "on-node.key"), ANVIL_KEYS[NODE]!),
      "--chain", anvil.url, "--contracts", contracts, "--confirmations", "0", "--epoch-interval-s", "5",
    ]);
    const status = () => call(`${server.root}/v1/chain`, "GET");
    try {
      // The node registered as an operator at start; now the agent funds its account there.
      await send(AGENT, d.token, TestTokenAbi, "mint", [addr(AGENT), FUNDS]);
      await send(AGENT, d.token, TestTokenAbi, "approve", [d.settlement, FUNDS]);
      const dep = await send(AGENT, d.settlement, SettlementAbi, "deposit", [addr(NODE), FUNDS]);
      for (let i = 0; ; i++) {
        if (BigInt((await status()).followedBlock as string | null ?? "0") >= dep.blockNumber) break;
        if (i > 1200) throw new Error(`the node did not follow to block ${dep.blockNumber}: ${JSON.stringify(await status())}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const account = (await call(`${server.root}/v1/accounts/agents/${addr(AGENT).toLowerCase()}`, "GET")) as { balance: string };
      if (BigInt(account.balance) !== FUNDS) throw new Error(`the agent's balance on the node is ${account.balance}, expected ${FUNDS}`);
      // The owner's terms come into force at their time; until then the node lists the model free.
      for (let i = 0; ; i++) {
        const model = await call(`${server.root}/v1/ledger/models/${encodeURIComponent(modelId)}`, "GET");
        if (model.priceIn === PRICE_IN.toString() && model.priceOut === PRICE_OUT.toString()) break;
        if (i > 300) throw new Error(`the node mirrors other prices: ${JSON.stringify(model)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (e) {
      await server.stop();
      throw e;
    }
    // signingFetch signs and hands the request to `fetch`: here a capture, so the batch is sent later, already signed.
    let captured: Prepared[] = [];
    const signer = signingFetch(ANVIL_KEYS[AGENT]!, {
      chainId: d.chainId,
      fetch: (async (url: string, init: RequestInit) => { captured.push({ url, init }); return new Response(null, { status: 204 }); }) as typeof fetch,
    });
    return {
      name: "on chain", server, anvil, status,
      prepare: async (bodies) => {
        captured = [];
        for (const body of bodies) await signer(`${server.root}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });
        return captured;
      },
    };
  } catch (e) {
    await anvil.stop();
    throw e;
  }
}

async function main(): Promise<void> {
  const cache = join(cacheDir(), "bench");
  mkdirSync(cache, { recursive: true });
  const modelPath = join(cache, `${values.preset}-${values.type}.gguf`);
  if (!existsSync(modelPath)) writeGgufModel(modelPath, values.preset!, { seed: 1, type: values.type as GgufWeightType });
  const modelId = basename(modelPath).replace(/\.gguf$/i, "");
  const hash = await contentHash(modelPath);
  const dir = mkdtempSync(join(tmpdir(), "openlora-chain-serve-"));
  const ps = prompts();
  let off: Side | undefined;
  let on: ChainSide | undefined;
  try {
    off = await offChainSide(dir, modelPath, modelId, hash);
    on = await onChainSide(dir, modelPath, modelId, hash);
    const served = ((await call(`${off.server.root}/v1/models`, "GET")).data as { id: string }[]).map((m) => m.id);
    if (!served.includes(modelId)) throw new Error(`the server serves ${served.join(", ")}, not ${modelId}`);
    console.log(`model ${values.preset} ${values.type} ("${modelId}", priceIn ${PRICE_IN}, priceOut ${PRICE_OUT}), batch ${B} × (${P} prompt + ${N} generated) tokens, ${threads} threads, ${ROUNDS} rounds, paid streaming completions`);
    const sides = [off, on];
    for (const s of sides) {
      for (const o of sides) if (o !== s) o.server.pause();
      s.server.resume();
      await runRound(s, modelId, ps.slice(0, 4), 4); // warm-up
    }
    // Background work alone (following, posting, timers): each side's CPU over 3 idle seconds.
    const idle = new Map<Side, number>();
    for (const s of sides) {
      for (const o of sides) if (o !== s) o.server.pause();
      s.server.resume();
      const c0 = cpuByThread(s.server.child.pid);
      await new Promise((r) => setTimeout(r, 3_000));
      idle.set(s, [...cpuDelta(c0, cpuByThread(s.server.child.pid)).values()].reduce((x, y) => x + y, 0) / 3);
    }
    const before = await on.status();
    const rows = new Map<Side, RoundResult[]>(sides.map((s) => [s, []]));
    const ratio: number[] = [];
    const ttftDelta: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of sides) {
        for (const o of sides) if (o !== s) o.server.pause();
        s.server.resume();
        rows.get(s)!.push(await runRound(s, modelId, ps, N));
      }
      const a = rows.get(off)!.at(-1)!;
      const b = rows.get(on)!.at(-1)!;
      ratio.push(b.tokS / a.tokS);
      ttftDelta.push(b.ttftP50 - a.ttftP50);
      console.log(`round ${r + 1}: off chain ${a.tokS.toFixed(1)} tok/s (p50 TTFT ${a.ttftP50.toFixed(0)} ms), on chain ${b.tokS.toFixed(1)} tok/s (p50 TTFT ${b.ttftP50.toFixed(0)} ms, ${B} signatures in ${b.signMs.toFixed(0)} ms before the clock), ratio ${(b.tokS / a.tokS).toFixed(3)}`);
    }
    const during = await on.status(); // the chain side ran last: it is not paused
    // Let the last chain round's receipts be closed and posted too, then read what the node did.
    await new Promise((r) => setTimeout(r, 7_000));
    const after = await on.status();
    const posted = Number(during.lastEpochPosted ?? 0) - Number(before.lastEpochPosted ?? 0);
    const epochs = (await call(`${on.server.root}/v1/epochs`, "GET")).data as Json[];
    const offR = rows.get(off)!;
    const onR = rows.get(on)!;
    console.log(`\non chain: lastEpochPosted ${String(before.lastEpochPosted)} before the rounds, ${String(during.lastEpochPosted)} at the end of the last round (${posted} posted during the rounds), ${String(after.lastEpochPosted)} 7 s later; followedBlock ${String(after.followedBlock)}, pendingEpochs ${String(after.pendingEpochs)}, lastError ${String(after.lastError)}`);
    console.log(`epochs closed on the node: ${epochs.length} (${JSON.stringify(epochs.map((e) => Object.fromEntries(Object.entries(e).filter(([k]) => ["id", "epoch", "count", "receipts", "firstReceipt", "lastReceipt"].includes(k)))))})`);
    console.log("\n| measure | off chain (SQLite ledger, API key) | on chain (anvil, signed requests) | on / off |");
    console.log("|---|---|---|---|");
    console.log(`| output tok/s, batch ${B} × ${N} | ${summary(offR.map((x) => x.tokS))} | ${summary(onR.map((x) => x.tokS))} | ${summary(ratio, 3)} |`);
    console.log(`| p50 time to first token in the batch (ms) | ${summary(offR.map((x) => x.ttftP50), 0)} | ${summary(onR.map((x) => x.ttftP50), 0)} | ${summary(ttftDelta, 0)} ms (on − off) |`);
    console.log(`| client: making the batch's requests (ms, before the clock) | ${summary(offR.map((x) => x.signMs), 2)} | ${summary(onR.map((x) => x.signMs), 0)} (${B} EIP-712 signatures) | |`);
    const names = [...new Set([...offR, ...onR].flatMap((x) => [...x.cpu.keys()]))].sort((a, b) => (a === "main" ? -1 : b === "main" ? 1 : a.localeCompare(b)));
    for (const name of names) {
      const per = (rs: RoundResult[]) => summary(rs.map((x) => x.cpu.get(name) ?? 0), 0);
      console.log(`| server CPU ms per round, thread ${name} | ${per(offR)} | ${per(onR)} | |`);
    }
    console.log(`| server CPU ms per idle second (background work) | ${idle.get(off)!.toFixed(0)} | ${idle.get(on)!.toFixed(0)} | |`);
    console.log(`| anvil CPU ms per round (a remote chain in production) | | ${summary(onR.map((x) => x.chainCpuMs), 0)} | |`);
    console.log(`| round wall ms | ${summary(offR.map((x) => x.secs * 1000), 0)} | ${summary(onR.map((x) => x.secs * 1000), 0)} | |`);
    console.log(`| epochs posted on chain during the rounds (lastEpochPosted) | | ${posted} (${String(before.lastEpochPosted)} → ${String(during.lastEpochPosted)}) | |`);
  } finally {
    await on?.server.stop().catch(() => {});
    await on?.anvil.stop().catch(() => {});
    await off?.server.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
