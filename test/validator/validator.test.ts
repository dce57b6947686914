/**
 * A validator against a real node on a local chain: `openlora serve --chain` answers completions from an
 * agent over the openai client, closes and posts epochs with their batches in calldata; the validator,
 * knowing nothing but the chain and the model files, judges every receipt and replays a sample bit-exact.
 * Then the node's key is used as a lying node would: an epoch whose batch alters one output token (output
 * hash and signature made to fit) is caught by replay, one with a split moved by a unit by the split check
 * (the proof named: proveBadSplit), one that names the wrong lastReceiptHash by proveNotPosted, and one
 * whose batch was never published is reported withheld. A validator restarted resumes after the last
 * epoch it judged.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { getAddress, keccak256, toHex, type Address, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { merkleRoot } from "../../src/attribution/merkle.js";
import { hashTokenIds, receiptDigest, receiptFromJSON, receiptToJSON, type Receipt } from "../../src/attribution/receipts.js";
import { nodeSigner } from "../../src/attribution/signing.js";
import { signingFetch } from "../../src/auth/client.js";
import { SettlementAbi, TestTokenAbi, ValidatorCourtAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { connectChain } from "../../src/chain/client.js";
import { decodeBatch, encodeBatch, type EpochBatch } from "../../src/da/batch.js";
import { fetchCalldata, publishCalldata } from "../../src/da/calldata.js";
import { ValidatorActor } from "../../src/validator/actions.js";
import { Replayer } from "../../src/validator/replay.js";
import { Validator, type EpochReport } from "../../src/validator/validator.js";
import { nameId, startTestChain, type TestChain } from "../helpers/chain.js";
import { runCli } from "../helpers/cli.js";
import { tinyNode } from "./fixture.js";
import { startServer, type ServerProcess } from "../helpers/serve.js";

const dir = mkdtempSync(join(tmpdir(), "openlora-validator-"));
const modelPath = join(dir, "tiny.gguf");
const adapters = join(dir, "adapters");
const [NODE, OWNER, AGENT, STAKER] = [1, 2, 3, 4];

let t: TestChain;
let server: ServerProcess;
const a = (i: number): Address => t.addresses[i]!;
const get = async (path: string) => (await fetch(`http://127.0.0.1:${server.port}${path}`)).json() as Promise<Record<string, unknown>>;

async function closeAndWait(epoch: number): Promise<void> {
  expect((await fetch(`http://127.0.0.1:${server.port}/v1/epochs/close`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: "{}" })).status).toBe(200);
  for (let i = 0; i < 400 && (await get("/v1/chain")).lastEpochPosted !== epoch; i++) await new Promise((r) => setTimeout(r, 50));
  expect((await get("/v1/chain")).lastEpochPosted).toBe(epoch);
}

function validator(stateFile: string, rate = 1, reports: EpochReport[] = []): Validator {
  return new Validator({ client: t.publicClient, deployment: t.deployment, operator: a(NODE), stateFile, replayRate: rate, replayer: new Replayer(modelPath, adapters, 2), onReport: (r) => reports.push(r) });
}

beforeAll(async () => {
  t = await startTestChain();
  const { contractsFile, nodeKeyFile } = await tinyNode(dir, t, ANVIL_KEYS[NODE]!, OWNER);
  for (const i of [AGENT, STAKER]) {
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [a(i), 10n ** 18n] });
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.settlement, 10n ** 18n] });
  }
  await t.send(t.wallets[STAKER]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "stake", args: [nameId("style"), 700n] });
  server = await startServer(["--model", modelPath, "--adapters", adapters, "--threads", "2", "--chain", t.anvil.url, "--contracts", contractsFile, "--node-key-file", nodeKeyFile, "--epoch-interval-s", "3600", "--confirmations", "0"]);
  await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [a(NODE), 1_000_000n] });
  const head = await t.publicClient.getBlockNumber();
  for (let i = 0; i < 600 && BigInt(((await get("/v1/chain")).followedBlock as string | null) ?? "0") < head; i++) await new Promise((r) => setTimeout(r, 50));
}, 240_000);

afterAll(async () => {
  await server?.stop();
  await t?.stop();
});

describe("a validator", () => {
  const stateFile = join(dir, "validator.json");

  it("judges an honest node's epochs from the chain alone, replaying bit-exact, and resumes after a restart", async () => {
    const openai = new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0, fetch: signingFetch(ANVIL_KEYS[AGENT]!, { chainId: t.deployment.chainId }) as never });
    for (const [model, seed] of [["tiny", 1], ["style", 2], ["style", 3]] as const) {
      await openai.completions.create({ model, prompt: `Once upon a time ${seed}`, max_tokens: 6, temperature: 0.8, seed });
    }
    await closeAndWait(1);
    const reports: EpochReport[] = [];
    const v = validator(stateFile, 1, reports);
    const first = await v.round();
    expect(first.map((r) => [r.epoch, r.verdict, r.receipts, r.source, r.findings])).toEqual([[1, "honest", 3, "calldata", []]]);
    expect(first[0]!.replayed).toHaveLength(3);
    await openai.completions.create({ model: "style", prompt: "Twice", max_tokens: 5, temperature: 0, seed: 4 });
    await closeAndWait(2);
    // A fresh validator on the same state file starts after epoch 1.
    const again = await validator(stateFile).round();
    expect(again.map((r) => [r.epoch, r.verdict, r.findings.length])).toEqual([[2, "honest", 0]]);
    expect(await validator(stateFile).round()).toEqual([]);
  }, 120_000);

  it("catches a node that alters one output token, moves a unit of the split, or posts another last receipt; an unpublished batch is withheld", async () => {
    const node = await connectChain(t.anvil.url, ANVIL_KEYS[NODE]!);
    const signer = nodeSigner(ANVIL_KEYS[NODE]!);
    const domain = { chainId: t.deployment.chainId, verifyingContract: t.deployment.court! };
    // The honest epoch 2 as published, the template of each lie (re-numbered after the node's last receipt).
    const e2 = await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "epochOf", args: [a(NODE), 2n] });
    const honest = decodeBatch(await fetchCalldata(t.publicClient, t.deployment.inbox, a(NODE), e2.batchCommitment, 0n, await t.publicClient.getBlockNumber()), { node: a(NODE), epoch: 2, firstReceipt: Number(e2.firstReceipt), lastReceipt: Number(e2.lastReceipt) });
    let [epoch, id, prev] = [3, Number(e2.lastReceipt) + 1, e2.lastReceiptHash];
    const lie = async (edit: (r: Receipt, output: number[]) => [Receipt, number[]], opts: { lastHash?: Hex; publish?: boolean } = {}) => {
      const e = honest.entries[0]!;
      const [r0, output] = edit({ ...e.receipt, id, prevHash: prev }, [...e.output]);
      const r = { ...r0, outputHash: hashTokenIds(output) };
      const digest = receiptDigest(r, domain);
      const batch: EpochBatch = { node: a(NODE), epoch, firstReceipt: id, lastReceipt: id, entries: [{ body: receiptToJSON(r), signature: signer.sign(digest), prompt: e.prompt, output }] };
      const payload = encodeBatch(batch);
      const commitment = opts.publish === false ? keccak256(toHex(payload)) : (await publishCalldata(node, t.deployment.inbox, payload)).commitment;
      await t.send(t.wallets[NODE]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "postEpoch", args: [BigInt(epoch), merkleRoot([digest]), BigInt(id), BigInt(id), opts.lastHash ?? digest, e2.payoutRoot, commitment] });
      [epoch, id, prev] = [epoch + 1, id + 1, opts.lastHash ?? digest];
    };
    await lie((r, out) => { out[2] = (out[2]! + 1) % 1000; return [r, out]; });
    await lie((r, out) => {
      const lines = r.lines.map((l) => ({ ...l }));
      const [i, j] = [lines.findIndex((l) => l.role === "developer"), lines.findIndex((l) => l.role === "operator")];
      lines[i]!.amount -= 1n;
      lines[j]!.amount += 1n;
      return [{ ...r, lines }, out];
    });
    await lie((r, out) => [r, out], { lastHash: keccak256("0x01") });
    await lie((r, out) => [r, out], { publish: false });
    const reports = await validator(stateFile).round();
    const summary = reports.map((r) => [r.epoch, r.verdict, r.findings.map((f) => [f.check, f.proof])]);
    expect(summary).toEqual([
      [3, "faulty", [["replay", null]]],
      [4, "faulty", [["split", "proveBadSplit"]]],
      [5, "faulty", [["root", "proveNotPosted"]]],
      [6, "withheld", []],
    ]);
    expect(reports[0]!.findings[0]!.detail).toMatch(/replayed output hashes to/);
    // Withheld stays unjudged: the next round tries epoch 6 again.
    expect((await validator(stateFile).round()).map((r) => [r.epoch, r.verdict])).toEqual([[6, "withheld"]]);
    expect(receiptFromJSON(honest.entries[0]!.body).id).toBe(Number(e2.firstReceipt));
  }, 120_000);

  it("with a key it sends the single-receipt proofs (slashing through ReceiptCourt) and challenges the withheld batch", async () => {
    const me = t.wallets[6]!;
    await t.send(me, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [me.account.address, 10n ** 18n] });
    const keyed = join(dir, "keyed.json");
    writeFileSync(keyed, JSON.stringify({ operator: a(NODE), settlement: t.deployment.settlement, lastEpoch: 3, scannedBlock: "0" }));
    const actor = new ValidatorActor(await connectChain(t.anvil.url, ANVIL_KEYS[6]!, t.deployment.chainId), t.deployment, a(NODE));
    const v = new Validator({ client: t.publicClient, deployment: t.deployment, operator: a(NODE), stateFile: keyed, replayRate: 0, actor });
    const reports = await v.round();
    expect(reports.map((r) => [r.epoch, r.verdict, r.actions.map((x) => [x.action, x.detail, x.tx !== undefined ? "sent" : x.skipped])])).toEqual([
      [4, "faulty", [["proof", "proveBadSplit", "sent"]]],
      [5, "faulty", [["proof", "proveNotPosted(epoch 5)", "sent"]]],
      [6, "withheld", [["challengeWithheld", undefined, "sent"]]],
    ]);
    const slashes = await t.publicClient.getContractEvents({ address: t.deployment.settlement, abi: SettlementAbi, eventName: "Slashed", args: { operator: a(NODE) }, fromBlock: 0n });
    expect(slashes.map((l) => getAddress(l.args.challenger!))).toEqual([me.account.address, me.account.address]);
    expect(await t.publicClient.readContract({ address: t.deployment.validatorCourt!, abi: ValidatorCourtAbi, functionName: "withheldDisputed", args: [a(NODE), 6n] })).toBe(true);
    // Once more: the withheld epoch is retried and its dispute not opened twice.
    expect((await v.round()).map((r) => [r.epoch, r.actions.map((x) => x.skipped)])).toEqual([[6, ["AlreadyDisputed"]]]);
  }, 120_000);

  it("openlora validate --once: one JSON line per epoch from a fresh state, exit 3 for a faulty one; bad arguments refused with codes", async () => {
    const contracts = join(dir, "contracts.json");
    const state = join(dir, "cli-state.json");
    writeFileSync(join(dir, "open.key"), `${ANVIL_KEYS[6]}\n`, { mode: 0o644 });
    const base = ["validate", "--chain", t.anvil.url, "--contracts", contracts];
    const r = await runCli([...base, "--node", `http://127.0.0.1:${server.port}`, "--model", modelPath, "--adapters", adapters, "--state", state, "--replay-rate", "1", "--once"]);
    expect(r.code, r.stderr).toBe(3);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as EpochReport);
    expect(lines.map((l) => [l.epoch, l.verdict])).toEqual([[1, "honest"], [2, "honest"], [3, "faulty"], [4, "faulty"], [5, "faulty"], [6, "withheld"]]);
    expect(r.stderr).toMatch(/epoch 1: honest, 3 receipts checked/);
    for (const [args, why] of [
      [[...base, "--once"], "no operator"],
      [[...base, "--operator", a(NODE), "--node", "http://127.0.0.1:1", "--once"], "both"],
      [[...base, "--operator", "0x12", "--once"], "not an address"],
      [[...base, "--operator", a(NODE), "--replay-rate", "2", "--once"], "rate"],
      [[...base, "--operator", a(NODE), "--replay-rate", "0.5", "--once"], "replay without a model"],
      [[...base, "--operator", a(AGENT), "--state", state, "--once"], "another operator's state"],
      [[...base, "--operator", a(NODE), "--stake", "100", "--once"], "stake without a key"],
      [[...base, "--operator", a(NODE), "--key-file", join(dir, "open.key"), "--once"], "a key file others can read"],
      [[...base, "--operator", a(NODE), "--key-file", join(dir, "node.key"), "--stake", "1e3", "--once"], "a stake that is not an integer"],
    ] as const) {
      const bad = await runCli([...args]);
      expect([bad.code, bad.stderr.match(/error \[([A-Z_]+)\]/)?.[1]], why).toEqual([2, "INVALID_ARGUMENT"]);
    }
  }, 120_000);
});
