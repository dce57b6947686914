/**
 * Validator throughput (issue #16's targets): receipts judged per second without replay, on an epoch of
 * N receipts (default 10,000; target: under 10 s), and replay throughput as a fraction of serving
 * throughput. A real ledger on a real chain node (anvil, the real contracts; a base model and an adapter
 * registered with terms, a staker, the node's declared policy) settles N requests, closes the epoch and
 * posts it with its batch in calldata (the node's poster). Then, each run on a fresh Validator: the batch
 * fetched from calldata, decoded and every receipt judged (signature, link, root, tokens, split, registry).
 * Beside it, the same receipts judged the way `openlora chain check-receipt` does (every proof simulated
 * over RPC), on a sample of 20. Replay: the engine generates K requests (as a node serves one at a time)
 * and a Replayer replays them, both on the synthetic model (smollm2-135m-shaped q8_0 unless --preset).
 *   npx tsx bench/validator.ts [--receipts 10000] [--runs 5] [--replays 8] [--tokens 32] [--threads 2]
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Address, Hex } from "viem";
import { hashTokenIds, type Receipt } from "../src/attribution/receipts.js";
import type { FeePolicy } from "../src/attribution/types.js";
import { RegistryAbi, SettlementAbi, TestTokenAbi } from "../src/chain/abi.js";
import { ANVIL_KEYS } from "../src/chain/anvil.js";
import { checkReceipt } from "../src/chain/challenger.js";
import { ChainNode } from "../src/chain/node.js";
import { generate } from "../src/engine/generate.js";
import { partyOf } from "../src/ledger/chain-book.js";
import { Ledger } from "../src/ledger/index.js";
import { loadModel } from "../src/model/load.js";
import { native } from "../src/native/index.js";
import { writeGgufModel } from "../src/synth/synthesize.js";
import { Replayer } from "../src/validator/replay.js";
import { Validator } from "../src/validator/validator.js";
import { nameId, startTestChain, testTerms } from "../test/helpers/chain.js";

const { values } = parseArgs({ options: { receipts: { type: "string" }, runs: { type: "string" }, replays: { type: "string" }, tokens: { type: "string" }, threads: { type: "string" }, preset: { type: "string" } } });
const N = Number(values.receipts ?? 10_000);
const RUNS = Number(values.runs ?? 5);
const REPLAYS = Number(values.replays ?? 8);
const TOKENS = Number(values.tokens ?? 32);
const THREADS = Number(values.threads ?? 2);
const stats = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! }; };
const f = (x: number, d = 0) => x.toFixed(d);

const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const NODE_KEY = ANVIL_KEYS[1]! as Hex;
const dir = mkdtempSync(join(tmpdir(), "openlora-bench-validator-"));
const t = await startTestChain();
try {
  const [node, owner, agent, staker, treasury] = [t.addresses[1]!, t.addresses[2]!, t.addresses[3]!, t.addresses[4]!, t.addresses[9]!] as Address[];
  const reg = t.deployment.registry;
  await t.send(t.wallets[2]!, { address: reg, abi: RegistryAbi, functionName: "registerModel", args: ["base", 0, `0x${"0".repeat(64)}`, testTerms(owner!, { priceIn: 3n, priceOut: 7n })] });
  await t.send(t.wallets[2]!, { address: reg, abi: RegistryAbi, functionName: "registerModel", args: ["style", 1, nameId("base"), testTerms(owner!, { priceIn: 1n, priceOut: 2n })] });
  for (const i of [3, 4]) {
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [t.addresses[i]!, 10n ** 24n] });
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.settlement, 10n ** 24n] });
  }
  await t.send(t.wallets[4]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "stake", args: [nameId("style"), 400n] });
  const ledger = new Ledger({ path: join(dir, "node.sqlite"), nodeKey: NODE_KEY, policy: POLICY, treasury: partyOf(treasury!), operator: partyOf(node!), chainId: t.deployment.chainId, verifyingContract: t.deployment.court!, onChain: true, now: () => t.clock() });
  const chainNode = await ChainNode.start({ url: t.anvil.url, deployment: t.deployment, nodeKey: NODE_KEY, confirmations: 0, epochIntervalMs: 3_600_000 }, ledger);
  await t.send(t.wallets[3]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [node!, 10n ** 20n] });
  await chainNode.flush();

  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const r = ledger.reserve(partyOf(agent!), 10_000n);
    const prompt = Array.from({ length: 24 }, (_, k) => (i * 31 + k * 7) % 49_000);
    const output = Array.from({ length: TOKENS }, (_, k) => (i * 17 + k * 13) % 49_000);
    await ledger.settle(r, { baseModel: "base", adapters: i % 2 ? [{ id: "style", weightPpm: 1_000_000 }] : [], promptTokens: prompt, outputTokens: output, sampling: { seed: i, temperature: 0.7 }, finish: "length" });
  }
  const settleS = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  await chainNode.closeAndPost();
  const postS = (performance.now() - t1) / 1000;
  const e = await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "epochOf", args: [node!, 1n] });
  const payloadBytes = (await import("../src/da/batch.js")).encodeBatch(ledger.chain.epochBatch(1, node!)).length;
  console.log(`epoch 1: ${N} receipts (settled in ${f(settleS, 1)} s), batch ${f(payloadBytes / 1e6, 2)} MB deflated in ${Math.ceil(payloadBytes / 96_000)} chunks, published and posted in ${f(postS, 1)} s; batchOnChain ${e.batchOnChain}`);

  const ms: number[] = [];
  const check: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const v = new Validator({ client: t.publicClient, deployment: t.deployment, operator: node!, stateFile: join(dir, `state-${run}.json`), replayRate: 0 });
    const s = performance.now();
    const [rep] = await v.round();
    ms.push(performance.now() - s);
    check.push(rep!.checkMs);
    if (rep!.verdict !== "honest" || rep!.receipts !== N) throw new Error(`run ${run}: ${JSON.stringify(rep).slice(0, 400)}`);
  }
  const all = stats(ms);
  const only = stats(check);
  console.log(`\n| ${N}-receipt epoch, no replay | runs | median | min | max |\n|---|---|---|---|---|`);
  console.log(`| whole round (registry view, fetch from calldata, decode, judge), s | ${RUNS} | ${f(all.median / 1000, 2)} | ${f(all.min / 1000, 2)} | ${f(all.max / 1000, 2)} |`);
  console.log(`| decode + judge only, s | ${RUNS} | ${f(only.median / 1000, 2)} | ${f(only.min / 1000, 2)} | ${f(only.max / 1000, 2)} |`);
  console.log(`| receipts per second (whole round) | ${RUNS} | ${f(N / (all.median / 1000))} | ${f(N / (all.max / 1000))} | ${f(N / (all.min / 1000))} |`);

  // Baseline: the same receipts judged by simulating every on-chain proof over RPC (check-receipt's path).
  const per: number[] = [];
  for (let i = 1; i <= 20; i++) {
    const stored = ledger.getReceipt(i * Math.floor(N / 20));
    const s = performance.now();
    const checks = await checkReceipt(t.publicClient, t.deployment, stored.receipt, stored.signature, t.addresses[6]!);
    per.push(performance.now() - s);
    if (checks.some((c) => c.verdict === "slashes")) throw new Error(`receipt ${stored.receipt.id}: ${JSON.stringify(checks)}`);
  }
  const p = stats(per);
  console.log(`| baseline: check-receipt (proofs simulated over RPC), receipts per second | 20 | ${f(1000 / p.median, 1)} | ${f(1000 / p.max, 1)} | ${f(1000 / p.min, 1)} |`);
  await chainNode.stop();
  ledger.close();

  // Replay vs serving on the same machine: K generations, then K replays of their receipts.
  const preset = values.preset ?? "smollm2-135m";
  const modelPath = writeGgufModel(join(dir, "m.gguf"), preset, { seed: 3, type: "q8_0" });
  native.setThreads(THREADS);
  const loaded = await loadModel(modelPath);
  const replayer = new Replayer(modelPath, undefined, THREADS);
  const { contentHash } = await import("../src/attribution/content-hash.js");
  const hash = await contentHash(modelPath);
  const serveS: number[] = [];
  const replayS: number[] = [];
  for (let k = 0; k < REPLAYS; k++) {
    const prompt = Array.from({ length: 16 }, (_, j) => (k * 97 + j * 11) % 40_000);
    const sampling = { seed: k, temperature: 0.8 };
    const s = performance.now();
    const out = generate(loaded, { prompt, maxTokens: TOKENS, sampling, ignoreEos: true });
    serveS.push((performance.now() - s) / 1000);
    // The fields a replay reads; the rest of a receipt plays no part in it.
    const receipt = { base: { id: "m", contentHash: hash }, adapters: [], sampling, tokensIn: prompt.length, tokensOut: TOKENS, outputHash: hashTokenIds(out.tokens) } as unknown as Receipt;
    const s2 = performance.now();
    const r = await replayer.replay(receipt, prompt);
    replayS.push((performance.now() - s2) / 1000);
    if (!r.ok) throw new Error(r.detail);
  }
  const sv = stats(serveS.slice(1));
  const rp = stats(replayS.slice(1));
  console.log(`\n| ${preset} q8_0, ${TOKENS} tokens, threads ${THREADS} | runs | median | min | max |\n|---|---|---|---|---|`);
  console.log(`| serving: generate, tok/s | ${REPLAYS - 1} | ${f(TOKENS / sv.median, 1)} | ${f(TOKENS / sv.max, 1)} | ${f(TOKENS / sv.min, 1)} |`);
  console.log(`| replay (Replayer), tok/s | ${REPLAYS - 1} | ${f(TOKENS / rp.median, 1)} | ${f(TOKENS / rp.max, 1)} | ${f(TOKENS / rp.min, 1)} |`);
  console.log(`replay / serving (medians): ${f(sv.median / rp.median, 3)} (first run of each dropped: the model's first touch)`);
} finally {
  await t.stop();
}
