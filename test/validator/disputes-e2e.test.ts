/**
 * The dispute game end to end on a local chain: `openlora serve --chain` (batches through an EigenDA
 * proxy stand-in, the tests-only fault switch set to alter the 6th completed request's middle token)
 * and three validators with keys and stakes (200, 200, 100 of a 500 total; a verdict needs 250 and a
 * majority), each replaying every receipt:
 * 1. honest epochs finalise with three attestations;
 * 2. a false replay challenge of an honest receipt is voted down by the validators' replays, and its
 *    challenger loses its bond;
 * 3. a batch the proxy will not serve is challenged as withheld; the node answers by publishing it in
 *    calldata (the challenger's bond goes to the node), and the validators then judge and attest it;
 * 4. a validator restarted mid-epoch (a new `openlora validate` process on its state file) resumes
 *    after the last epoch it judged, and one that repeats an epoch sends nothing twice;
 * 5. the altered token is caught by replay, challenged, voted a fault: the node's bond is slashed —
 *    the agent refunded its fee, the challenger rewarded — and the node is jailed, the epoch void; the
 *    node then admits no request (OPERATOR_JAILED) and its next post is refused on chain.
 */
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { getAddress, type Address } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { merkleProof } from "../../src/attribution/merkle.js";
import { receiptCourtArgs, receiptDigest } from "../../src/attribution/receipts.js";
import { signingFetch } from "../../src/auth/client.js";
import { SettlementAbi, TestTokenAbi, ValidatorCourtAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { connectChain } from "../../src/chain/client.js";
import { decodeBatch } from "../../src/da/batch.js";
import { EigenDaProxy, fetchEigenDa } from "../../src/da/eigenda.js";
import { ValidatorActor, type Action } from "../../src/validator/actions.js";
import { Replayer } from "../../src/validator/replay.js";
import { Validator, type EpochReport } from "../../src/validator/validator.js";
import { TEST_PARAMS, startTestChain, type TestChain } from "../helpers/chain.js";
import { runCli } from "../helpers/cli.js";
import { startEigenDaStandIn, type EigenDaStandIn } from "../helpers/eigenda-stand-in.js";
import { startServer, type ServerProcess } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";
import { tinyNode } from "./fixture.js";

const dir = tempDir("openlora-disputes-");
const modelPath = join(dir, "tiny.gguf");
const adapters = join(dir, "adapters");
const contractsFile = join(dir, "contracts.json");
const [NODE, OWNER, AGENT, CHALLENGER] = [1, 2, 3, 8];
const VALIDATORS = [5, 6, 7] as const;
const STAKES = [200n, 200n, 100n];
const BOND = 1000n;
const [Upheld, Rejected, Answered] = [2, 3, 5];
const [Pending, Final, Voided] = [0, 2, 3];

let t: TestChain;
let server: ServerProcess;
let da: EigenDaStandIn;
let openai: OpenAI;
const a = (i: number): Address => t.addresses[i]!;
const get = async (path: string) => (await fetch(`http://127.0.0.1:${server.port}${path}`)).json() as Promise<Record<string, unknown>>;
const bal = (x: Address) => t.publicClient.readContract({ address: t.deployment.token, abi: TestTokenAbi, functionName: "balanceOf", args: [x] });
const vc = (functionName: string, args: readonly unknown[]) => t.publicClient.readContract({ address: t.deployment.validatorCourt!, abi: ValidatorCourtAbi, functionName, args } as never) as Promise<unknown>;
const stateOf = (i: number) => join(dir, `validator-${i}.json`);

async function closeAndWait(epoch: number): Promise<void> {
  expect((await fetch(`http://127.0.0.1:${server.port}/v1/epochs/close`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: "{}" })).status).toBe(200);
  for (let i = 0; i < 400 && (await get("/v1/chain")).lastEpochPosted !== epoch; i++) await new Promise((r) => setTimeout(r, 50));
  expect((await get("/v1/chain")).lastEpochPosted).toBe(epoch);
}

const complete = (seed: number) => openai.completions.create({ model: "style", prompt: `Once upon a time ${seed}`, max_tokens: 6, temperature: 0.8, seed });

let validators: Validator[];
const actors: ValidatorActor[] = [];
function validator(k: number, reports: EpochReport[] = []): Validator {
  return new Validator({
    client: t.publicClient, deployment: t.deployment, operator: a(NODE), stateFile: stateOf(VALIDATORS[k]!), replayRate: 1,
    replayer: new Replayer(modelPath, adapters, 2), eigenDa: new EigenDaProxy(da.url), actor: actors[k]!, onReport: (r) => reports.push(r),
  });
}

/** Each validator's round (judging and acting on new epochs), then each one's dispute pass; every action sent. */
async function everyone(): Promise<{ reports: EpochReport[][]; actions: Action[][] }> {
  const reports: EpochReport[][] = [];
  for (const v of validators) reports.push(await v.round());
  const actions: Action[][] = [];
  for (const v of validators) actions.push(await v.disputes());
  return { reports, actions };
}

beforeAll(async () => {
  t = await startTestChain();
  da = await startEigenDaStandIn();
  const { nodeKeyFile } = await tinyNode(dir, t, ANVIL_KEYS[NODE]!, OWNER);
  for (const i of [NODE, AGENT, CHALLENGER, ...VALIDATORS]) {
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "mint", args: [a(i), 10n ** 18n] });
    await t.send(t.wallets[i]!, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.settlement, 10n ** 18n] });
  }
  server = await startServer(
    ["--model", modelPath, "--adapters", adapters, "--threads", "2", "--chain", t.anvil.url, "--contracts", contractsFile, "--node-key-file", nodeKeyFile,
      "--epoch-interval-s", "3600", "--confirmations", "0", "--eigenda-proxy", da.url],
    { env: { NODE_ENV: "test", OPENLORA_FAULT_INJECTION: "alter-output-token:6" } },
  );
  await t.send(t.wallets[NODE]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "bond", args: [BOND] });
  await t.send(t.wallets[AGENT]!, { address: t.deployment.settlement, abi: SettlementAbi, functionName: "deposit", args: [a(NODE), 1_000_000n] });
  const head = await t.publicClient.getBlockNumber();
  for (let i = 0; i < 600 && BigInt(((await get("/v1/chain")).followedBlock as string | null) ?? "0") < head; i++) await new Promise((r) => setTimeout(r, 50));
  openai = new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0, fetch: signingFetch(ANVIL_KEYS[AGENT]!, { chainId: t.deployment.chainId }) as never });
  for (const [k, i] of VALIDATORS.entries()) {
    actors.push(new ValidatorActor(await connectChain(t.anvil.url, ANVIL_KEYS[i]!, t.deployment.chainId), t.deployment, a(NODE)));
    expect((await actors[k]!.ensureStake(STAKES[k]!))?.tx).toBeDefined();
    expect(await actors[k]!.ensureStake(STAKES[k]!)).toBeNull();
  }
  validators = VALIDATORS.map((_, k) => validator(k));
}, 240_000);

afterAll(async () => {
  await server?.stop();
  await da?.stop();
  await t?.stop();
});

describe("validators with keys against a node", () => {
  it("honest epochs finalise with three attestations; a false challenge is voted down and costs its bond", async () => {
    for (const seed of [1, 2, 3]) await complete(seed);
    await closeAndWait(1);
    const { reports } = await everyone();
    for (const r of reports) {
      expect(r.map((x) => [x.epoch, x.verdict, x.source, x.replayed.length])).toEqual([[1, "honest", "eigenda", 3]]);
      expect(r[0]!.actions.map((x) => [x.action, x.tx !== undefined])).toEqual([["attest", true]]);
    }
    expect(await vc("attestations", [a(NODE), 1n])).toBe(3n);
    expect(await vc("attestedStake", [a(NODE), 1n])).toBe(500n);

    // Someone challenges an honest receipt of epoch 1 (from the published batch): a false claim.
    const post = await t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName: "epochOf", args: [a(NODE), 1n] });
    const batch = decodeBatch(await fetchEigenDa(t.publicClient, t.deployment.inbox, new EigenDaProxy(da.url), a(NODE), post.batchCommitment, BigInt(t.deployment.deployBlock)),
      { node: a(NODE), epoch: 1, firstReceipt: Number(post.firstReceipt), lastReceipt: Number(post.lastReceipt) });
    const domain = { chainId: t.deployment.chainId, verifyingContract: t.deployment.court! };
    const digests = batch.entries.map((e) => receiptDigest(e.receipt, domain));
    const ch = t.wallets[CHALLENGER]!;
    await t.send(ch, { address: t.deployment.token, abi: TestTokenAbi, functionName: "approve", args: [t.deployment.validatorCourt!, 10n ** 18n] });
    const c0 = await bal(a(CHALLENGER));
    await t.send(ch, { address: t.deployment.validatorCourt!, abi: ValidatorCourtAbi, functionName: "challengeReplay", args: [a(NODE), 1n, receiptCourtArgs(batch.entries[1]!.receipt)[0], batch.entries[1]!.signature, merkleProof(digests, 1)] });
    expect(await vc("epochStatus", [a(NODE), 1n])).toBe(1);
    const { actions } = await everyone();
    // v1 votes no (200: undecided), v2 votes no (400 ≥ 250, a majority) and resolves: rejected; v3 finds it closed.
    expect(actions.map((xs) => xs.map((x) => [x.action, x.detail, x.tx !== undefined]))).toEqual([
      [["vote", "no fault", true]],
      [["vote", "no fault", true], ["resolve", "Rejected", true]],
      [],
    ]);
    expect(((await vc("disputeOf", [0n])) as { outcome: number }).outcome).toBe(Rejected);
    expect(await bal(a(CHALLENGER))).toBe(c0 - BigInt(TEST_PARAMS.validators.challengeBond));
    expect(await vc("epochStatus", [a(NODE), 1n])).toBe(Pending);
  }, 180_000);

  it("a batch the DA layer does not serve is challenged as withheld; the node answers in calldata and the epoch is judged", async () => {
    da.mode = "withhold";
    await complete(4);
    await closeAndWait(2);
    const first = await everyone();
    expect(first.reports.map((r) => r.map((x) => [x.epoch, x.verdict]))).toEqual([[[2, "withheld"]], [[2, "withheld"]], [[2, "withheld"]]]);
    expect(first.reports.map((r) => r[0]!.actions.map((x) => [x.action, x.tx !== undefined ? "sent" : x.skipped]))).toEqual([
      [["challengeWithheld", "sent"]], [["challengeWithheld", "AlreadyDisputed"]], [["challengeWithheld", "AlreadyDisputed"]],
    ]);
    // The node sees the dispute on its next round, publishes the batch through BatchInbox and resolves it.
    let d = (await vc("disputeOf", [1n])) as { outcome: number; kind: number };
    for (let i = 0; i < 400 && d.outcome === 1; i++) {
      await new Promise((r) => setTimeout(r, 50));
      d = (await vc("disputeOf", [1n])) as { outcome: number; kind: number };
    }
    expect([d.kind, d.outcome]).toEqual([1, Answered]);
    da.mode = "ok";
    const second = await everyone();
    for (const r of second.reports) {
      expect(r.map((x) => [x.epoch, x.verdict, x.source])).toEqual([[2, "honest", "calldata"]]);
      expect(r[0]!.actions.map((x) => x.action)).toEqual(["attest"]);
    }
    expect(await vc("attestations", [a(NODE), 2n])).toBe(3n);
  }, 180_000);

  it("a validator restarted mid-epoch resumes after the last epoch it judged, and repeats no transaction", async () => {
    await complete(5);
    // v3 stops here (mid-epoch: epoch 3 is open) and comes back as a new process on its state file.
    await closeAndWait(3);
    const keyFile = join(dir, "v3.key");
    writeFileSync(keyFile, `${ANVIL_KEYS[VALIDATORS[2]]}\n`, { mode: 0o600 });
    const r = await runCli(["validate", "--chain", t.anvil.url, "--contracts", contractsFile, "--operator", a(NODE), "--model", modelPath, "--adapters", adapters,
      "--state", stateOf(VALIDATORS[2]), "--replay-rate", "1", "--eigenda-proxy", da.url, "--key-file", keyFile, "--stake", "100", "--once"]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as EpochReport);
    expect(lines.map((l) => [l.epoch, l.verdict, l.actions.map((x) => x.action)])).toEqual([[3, "honest", ["attest"]]]);
    expect(r.stderr).toMatch(/acting as 0x/);
    // The same validator, its progress set back an epoch (a crash after the attest, before the save): nothing twice.
    const s = JSON.parse(readFileSync(stateOf(VALIDATORS[2]), "utf8")) as { lastEpoch: number };
    writeFileSync(stateOf(VALIDATORS[2]), JSON.stringify({ ...s, lastEpoch: 2 }));
    validators[2] = validator(2);
    const { reports } = await everyone();
    expect(reports.map((x) => x.map((y) => [y.epoch, y.actions.map((z) => z.tx !== undefined ? "sent" : z.skipped)]))).toEqual([[[3, ["sent"]]], [[3, ["sent"]]], [[3, ["AlreadyAttested"]]]]);
    expect(await vc("attestations", [a(NODE), 3n])).toBe(3n);
    await t.increaseTime(TEST_PARAMS.challengeWindow);
    expect(await vc("epochStatus", [a(NODE), 1n])).toBe(Final);
  }, 180_000);

  it("an altered output token is caught by replay and slashed: the agent refunded, the challenger rewarded, the node jailed", async () => {
    await complete(6); // the 6th completed request: its middle token altered before the receipt is signed
    await complete(7);
    await closeAndWait(4);
    const treasury = t.deployment.params.treasury;
    const [v1, agent0, t0] = [await bal(a(VALIDATORS[0])), await bal(a(AGENT)), await bal(treasury)];
    const reports: EpochReport[][] = [];
    for (const v of validators) reports.push(await v.round());
    // Served while the dispute is open (admitted: only posting waits), settled after: its epoch is never posted.
    await complete(8);
    const actions: Action[][] = [];
    for (const v of validators) actions.push(await v.disputes());
    for (const r of reports) {
      expect(r.map((x) => [x.epoch, x.verdict, x.findings.map((f) => f.check)])).toEqual([[4, "faulty", ["replay"]]]);
    }
    const altered = reports[0]![0]!.findings[0]!.receipt;
    expect(reports.map((r) => r[0]!.actions.map((x) => [x.action, x.receipt, x.tx !== undefined ? "sent" : x.skipped]))).toEqual([
      [["challengeReplay", altered, "sent"]], [["challengeReplay", altered, "AlreadyDisputed"]], [["challengeReplay", altered, "AlreadyDisputed"]],
    ]);
    expect(actions.map((xs) => xs.map((x) => [x.action, x.detail]))).toEqual([[["vote", "fault"]], [["vote", "fault"], ["resolve", "Upheld"]], []]);
    const d = (await vc("disputeOf", [2n])) as { outcome: number; fee: bigint; agent: Address };
    expect(d.outcome).toBe(Upheld);
    expect(getAddress(d.agent)).toBe(a(AGENT));
    expect(d.fee > 0n).toBe(true);
    const reward = ((BOND - d.fee) * BigInt(TEST_PARAMS.slashRewardBps)) / 10_000n;
    expect(await bal(a(AGENT))).toBe(agent0 + d.fee);
    expect(await bal(a(VALIDATORS[0]))).toBe(v1 - BigInt(TEST_PARAMS.validators.challengeBond) + BigInt(TEST_PARAMS.validators.challengeBond) + reward);
    expect(await bal(treasury)).toBe(t0 + BOND - d.fee - reward);
    const settle = (functionName: string, args: readonly unknown[]) => t.publicClient.readContract({ address: t.deployment.settlement, abi: SettlementAbi, functionName, args } as never) as Promise<unknown>;
    expect(await settle("bondOf", [a(NODE)])).toBe(0n);
    expect(await settle("jailedFrom", [a(NODE)])).toBe(4n);
    expect(await vc("epochStatus", [a(NODE), 4n])).toBe(Voided);
    expect(await vc("epochStatus", [a(NODE), 3n])).toBe(Final);
    // The node reads that it is jailed: it admits no request (503 OPERATOR_JAILED), and a post is refused on chain.
    let status = await get("/v1/chain");
    for (let i = 0; i < 200 && status.jailedFrom !== 4; i++) {
      await new Promise((r) => setTimeout(r, 50));
      status = await get("/v1/chain");
    }
    expect(status.jailedFrom).toBe(4);
    const refused = await complete(9).then(() => null, (e: unknown) => e as { status: number; code: string });
    expect(refused).toMatchObject({ status: 503, code: "OPERATOR_JAILED" });
    expect((await fetch(`http://127.0.0.1:${server.port}/v1/epochs/close`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: "{}" })).status).toBe(200);
    let chain = await get("/v1/chain");
    for (let i = 0; i < 200 && !/OperatorJailed/.test(JSON.stringify(chain)); i++) {
      await new Promise((r) => setTimeout(r, 50));
      chain = await get("/v1/chain");
    }
    expect(JSON.stringify(chain)).toMatch(/OperatorJailed/);
    expect(chain.lastEpochPosted).toBe(4);
  }, 180_000);
});
