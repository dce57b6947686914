/**
 * The whole flow on a chain, over HTTP with the official openai client: models, a Datanet and
 * access policies listed on chain by their owners; an agent deposits on chain and pays for
 * completions with signed requests; the node posts its epoch; the developer, the staker and the
 * data contributor whose record the answer quoted claim on chain exactly their ledger lines, and the
 * court upholds every part of the node's receipt. Each
 * access policy admits and refuses before any compute; bad chain settings fail at start with codes.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { type Address, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contentHash } from "../../src/attribution/content-hash.js";
import { signingFetch } from "../../src/auth/client.js";
import { proveBadContributorsArgs, proveBadPolicyArgs, proveBadStakersArgs, proveBadTermsArgs, receiptCourtArgs, receiptFromJSON } from "../../src/attribution/receipts.js";
import { LicenceAbi, ReceiptCourtAbi, RegistryAbi, RegistryCourtAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS, freePort } from "../../src/chain/anvil.js";
import { writeDeployment } from "../../src/chain/deploy.js";
import { writeGgufLora } from "../../src/synth/adapters.js";
import { writeGgufModel } from "../../src/synth/synthesize.js";
import { expectRevert, nameId, registryCourtOf, startTestChain, testTerms, TEST_PARAMS, type TestChain } from "../helpers/chain.js";
import { runCli } from "../helpers/cli.js";
import { metric, startServer, type ServerProcess } from "../helpers/serve.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-chain-flow-");
const modelPath = join(dir, "tiny.gguf");
const adapters = join(dir, "adapters");
const MODEL = "tiny";
const ZERO32: Hex = `0x${"0".repeat(64)}`;
const [NODE, OWNER, AGENT, STAKER, CONTRIBUTOR, OTHER] = [1, 2, 3, 4, 5, 6];

let t: TestChain;
let server: ServerProcess;
let contractsFile = "";
let nodeKeyFile = "";
const a = (i: number): Address => t.addresses[i]!;
const lower = (i: number) => a(i).toLowerCase();

function client(i: number): OpenAI {
  return new OpenAI({ baseURL: server.baseURL, apiKey: "unused", maxRetries: 0, fetch: signingFetch(ANVIL_KEYS[i]!, { chainId: t.deployment.chainId }) as never });
}

async function signedPost(i: number, path: string, body: unknown): Promise<Response> {
  const f = signingFetch(ANVIL_KEYS[i]!, { chainId: t.deployment.chainId });
  return f(`http://127.0.0.1:${server.port}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

const get = async (path: string) => (await fetch(`http://127.0.0.1:${server.port}${path}`)).json() as Promise<Record<string, unknown>>;
const tokenBalance = (who: Address) => t.publicClient.readContract({ address: t.deployment.token, abi: TestTokenAbi, functionName: "balanceOf", args: [who] });
const send = (i: number, address: Address, abi: unknown, functionName: string, args: unknown[]) => t.send(t.wallets[i]!, { address, abi: abi as never, functionName, args });

/** Waits until the node has followed the chain up to its head. */
async function synced(): Promise<void> {
  const head = await t.publicClient.getBlockNumber();
  for (let i = 0; i < 600; i++) {
    const s = await get("/v1/chain");
    if (BigInt((s.followedBlock as string | null) ?? "0") >= head) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the node did not follow the chain to block ${head}: ${JSON.stringify(await get("/v1/chain"))}`);
}

beforeAll(async () => {
  t = await startTestChain();
  writeGgufModel(modelPath, "tiny-qwen3", { seed: 9, type: "q8_0" });
  for (const [name, seed] of [["quoted", 1], ["licensed", 2], ["vip", 3], ["stakers", 4]] as const) {
    writeGgufLora(join(adapters, `${name}.gguf`), "tiny-qwen3", { seed, rank: 8, alpha: 16, targets: ["q", "v"], type: "f32", strength: 0.1 });
  }
  contractsFile = join(dir, "contracts.json");
  writeDeployment(contractsFile, t.deployment);
  nodeKeyFile = join(dir, "node.key");
  writeFileSync(nodeKeyFile, `${ANVIL_KEYS[NODE]}\n`, { mode: 0o600 });

  const reg = t.deployment.registry;
  await send(OWNER, reg, RegistryAbi, "registerModel", [MODEL, 0, ZERO32, testTerms(a(OWNER), { contentHash: await contentHash(modelPath), priceIn: 1n, priceOut: 2n })]);
  for (const name of ["licensed", "vip", "stakers"]) {
    await send(OWNER, reg, RegistryAbi, "registerModel", [name, 1, nameId(MODEL), testTerms(a(OWNER), { contentHash: await contentHash(join(adapters, `${name}.gguf`)), priceIn: 1n, priceOut: 1n })]);
  }
  await send(OWNER, reg, RegistryAbi, "setAccess", [nameId("licensed"), 2, 0n]);
  await send(OWNER, reg, RegistryAbi, "setAccess", [nameId("vip"), 1, 0n]);
  await send(OWNER, reg, RegistryAbi, "setAccess", [nameId("stakers"), 3, 100n]);
  await send(OWNER, reg, RegistryAbi, "setAllowed", [nameId("vip"), a(AGENT), true]);
  for (const i of [AGENT, STAKER, OTHER]) {
    await send(i, t.deployment.token, TestTokenAbi, "mint", [a(i), 10n ** 18n]);
    await send(i, t.deployment.token, TestTokenAbi, "approve", [t.deployment.settlement, 10n ** 18n]);
  }
  await send(STAKER, t.deployment.settlement, SettlementAbi, "stake", [nameId(MODEL), 1000n]);

  server = await startServer(["--model", modelPath, "--adapters", adapters, "--threads", "2", "--chain", t.anvil.url, "--contracts", contractsFile, "--node-key-file", nodeKeyFile, "--epoch-interval-s", "3600", "--confirmations", "0",
    "--fee-policy", "protocol=300,operator=1500,developer=6000,staker=1500,data=2500,lambda=4000"]);
  // The agent funds its account at this node (the node is a registered operator by now).
  await send(AGENT, t.deployment.settlement, SettlementAbi, "deposit", [a(NODE), 1_000_000n]);
  await send(OTHER, t.deployment.settlement, SettlementAbi, "deposit", [a(NODE), 1_000_000n]);
  await synced();
}, 240_000);

afterAll(async () => {
  await server?.stop();
  await t?.stop();
});

describe("serving on a chain", () => {
  it("declared its --fee-policy on chain at its first start, and reports it", async () => {
    const want = { protocolBps: 300, operatorBps: 1500, developerBps: 6000, stakerBps: 1500, dataBps: 2500, lambdaBps: 4000 };
    const [onChain, version] = await t.publicClient.readContract({ address: t.deployment.registry, abi: RegistryAbi, functionName: "policyAt", args: [a(NODE), 2n ** 64n - 1n] });
    expect([onChain, version]).toEqual([want, 1]);
    expect((await get("/v1/chain")).feePolicy).toMatchObject({ version: 1, policy: want });
  });

  it("mirrors the chain: the owner's prices, the deposit, the stake", async () => {
    const m = await get(`/v1/ledger/models/${MODEL}`);
    expect([m.priceIn, m.priceOut, m.owner]).toEqual(["1", "2", lower(OWNER)]);
    expect((await get(`/v1/accounts/agents/${lower(AGENT)}`)).balance).toBe("1000000");
  });

  it("a Datanet contributor's quoted record, a paid completion, an epoch on chain, and every party claims its lines", async () => {
    const first = await client(AGENT).completions.create({ model: "quoted", prompt: "Tell me", max_tokens: 12, temperature: 0, seed: 5 });
    const quote = first.choices[0]!.text;
    // The Datanet: created by the operator for its owner, the record contributed and approved with
    // their own signatures, the version published on the node and then on chain by its owner.
    expect((await fetch(`http://127.0.0.1:${server.port}/v1/datanets`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: JSON.stringify({ id: "stories", owner: lower(OWNER) }) })).status).toBe(200);
    const rec = await signedPost(CONTRIBUTOR, "/v1/datanets/stories/records", { content: quote });
    expect(rec.status).toBe(200);
    const record = (await rec.json()) as { id: number; tokenCount: number };
    expect((await signedPost(OWNER, `/v1/datanets/stories/records/${record.id}/approve`, {})).status).toBe(200);
    const pub = (await (await signedPost(OWNER, "/v1/datanets/stories/publish", {})).json()) as { version: number; root: Hex };
    await send(OWNER, t.deployment.registry, RegistryAbi, "createDatanet", ["stories"]);
    await send(OWNER, t.deployment.registry, RegistryAbi, "publishVersion", [nameId("stories"), pub.root, [a(CONTRIBUTOR)], [BigInt(record.tokenCount)]]);
    const quotedTerms = testTerms(a(OWNER), {
      contentHash: await contentHash(join(adapters, "quoted.gguf")), priceIn: 2n, priceOut: 5n, lineage: [{ datanet: nameId("stories"), version: pub.version, weight: 1n }],
    });
    await send(OWNER, t.deployment.registry, RegistryAbi, "registerModel", ["quoted", 1, nameId(MODEL), quotedTerms]);
    await synced();
    const { data: paid, response } = await client(AGENT).completions.create({ model: "quoted", prompt: "Tell me", max_tokens: 12, temperature: 0, seed: 5 }).withResponse();
    expect(paid.choices[0]!.text).toBe(quote);

    // The court on the real deployment upholds every part of the honest node's receipt: its split, the
    // registry's terms, Settlement's stakers, the contributors of the Datanet version as published, and
    // the fee policy the node declared on chain when it started (with Settlement's treasury and itself as operator).
    const got = (await get(`/v1/receipts/${response.headers.get("openlora-receipt")}`)) as { json: string; signature: Hex };
    const receipt = receiptFromJSON(got.json);
    expect(receipt.lines.some((l) => l.role === "data" && l.party === lower(CONTRIBUTOR))).toBe(true);
    expect(receipt.inputs!.policy).toMatchObject({ protocolBps: 300, operatorBps: 1500, lambdaBps: 4000 });
    expect(receipt.inputs!.models.find((m) => m.model === MODEL)!.stakers).toEqual([{ party: lower(STAKER), stake: 1000n }]);
    const court = (functionName: string, args: readonly unknown[]) => send(OTHER, t.deployment.court!, ReceiptCourtAbi, functionName, [...args]);
    const [struct, parts] = receiptCourtArgs(receipt);
    await expectRevert(court("proveBadSplit", [struct, parts, got.signature]), "ReceiptConsistent");
    await expectRevert(court("proveBadTerms", proveBadTermsArgs(receipt, got.signature, "quoted", quotedTerms)), "TermsConsistent");
    await expectRevert(court("proveBadStakers", proveBadStakersArgs(receipt, got.signature, MODEL)), "StakersConsistent");
    await expectRevert(send(OTHER, await registryCourtOf(t), RegistryCourtAbi, "proveBadPolicy", [...proveBadPolicyArgs(receipt, got.signature)]), "PolicyConsistent");
    const version = { root: pub.root, contributors: [a(CONTRIBUTOR)], approvedTokens: [BigInt(record.tokenCount)] };
    await expectRevert(court("proveBadContributors", proveBadContributorsArgs(receipt, got.signature, "quoted", `stories@${pub.version}`, version)), "ContributorsConsistent");
    // The same, as anyone runs it: every proof's arguments gathered from the chain, simulated, none slashes.
    const check = await runCli(["chain", "check-receipt", "--rpc", t.anvil.url, "--contracts", contractsFile, "--server", `http://127.0.0.1:${server.port}`, "--receipt", String(receipt.id)], { OPENLORA_CHAIN_KEY: ANVIL_KEYS[OTHER]! });
    expect(check.code, check.stderr).toBe(0);
    const checks = (JSON.parse(check.stdout) as { checks: { proof: string; verdict: string; detail: string }[] }).checks;
    expect(checks.filter((x) => x.verdict !== "stands")).toEqual([]);
    expect(Object.fromEntries(checks.map((x) => [x.proof, x.detail]))).toMatchObject({
      proveBadSplit: "ReceiptConsistent", proveBadPolicy: "PolicyConsistent", "proveBadTerms(quoted)": "TermsConsistent",
      [`proveBadStakers(${MODEL})`]: "StakersConsistent", [`proveBadContributors(quoted, stories@${pub.version})`]: "ContributorsConsistent",
    });

    expect((await fetch(`http://127.0.0.1:${server.port}/v1/epochs/close`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: "{}" })).status).toBe(200);
    for (let i = 0; i < 200 && (await get("/v1/chain")).lastEpochPosted !== 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await get("/v1/chain")).lastEpochPosted).toBe(1);
    const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
    expect(metric(metrics, "openlora_chain_last_epoch_posted")).toBe(1);
    expect(metric(metrics, "openlora_chain_pending_epochs")).toBe(0);
    await t.increaseTime(TEST_PARAMS.challengeWindow + 1n);

    const balances = new Map(((await get("/v1/balances")).data as { party: string; amount: string }[]).map((b) => [b.party, BigInt(b.amount)]));
    for (const who of [OWNER, STAKER, CONTRIBUTOR]) {
      const want = balances.get(lower(who)) ?? 0n;
      expect(want, `${who}: ${JSON.stringify([...balances].map(([k, v]) => [k, v.toString()]))}\n${server.stderr().split("\n").filter((l) => /warn|"level":40/.test(l)).join("\n")}`).toBeGreaterThan(0n);
      const before = await tokenBalance(a(who));
      const r = await runCli(["chain", "claim", "--rpc", t.anvil.url, "--contracts", contractsFile, "--server", `http://127.0.0.1:${server.port}`, "--account", a(who)], { OPENLORA_CHAIN_KEY: ANVIL_KEYS[OTHER]! });
      expect(r.code, r.stderr).toBe(0);
      expect((await tokenBalance(a(who))) - before).toBe(want);
    }

    // Once posted, the paid receipt against its successor and the posted epoch: the chain of receipts
    // links, and epoch 1 ends with the receipt the node signed as its last. (Not receipt 1: its model was
    // registered in the same second, and with the tests' terms delay of 0 the node cannot have known.)
    const checkAll = async (id: number) => {
      const r = await runCli(["chain", "check-receipt", "--rpc", t.anvil.url, "--contracts", contractsFile, "--server", `http://127.0.0.1:${server.port}`, "--receipt", String(id)], { OPENLORA_CHAIN_KEY: ANVIL_KEYS[OTHER]! });
      expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);
      return Object.fromEntries((JSON.parse(r.stdout) as { checks: { proof: string; detail: string }[] }).checks.map((x) => [x.proof, x.detail]));
    };
    await client(AGENT).completions.create({ model: "quoted", prompt: "Again", max_tokens: 4, temperature: 0, seed: 6 });
    expect(await checkAll(receipt.id)).toMatchObject({ [`proveEquivocation(${receipt.id}, ${receipt.id + 1})`]: "NoEquivocation", "proveNotPosted(epoch 1)": "ReceiptPosted" });
  });

  it("each access policy admits whom it names and refuses the rest before any compute", async () => {
    const refused = async (i: number, model: string) => {
      const before = await get(`/v1/accounts/agents/${lower(i)}`);
      const e = await client(i).completions.create({ model, prompt: "hi", max_tokens: 2 }).catch((x: unknown) => x as { status: number; code: string });
      expect(e).toMatchObject({ status: 403, code: "ACCESS_DENIED" });
      expect((await get(`/v1/accounts/agents/${lower(i)}`)).balance).toBe(before.balance);
    };
    const admitted = async (i: number, model: string) => {
      const r = await client(i).completions.create({ model, prompt: "hi", max_tokens: 2 });
      expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    };
    await admitted(AGENT, "vip");
    await refused(OTHER, "vip");
    await refused(AGENT, "licensed");
    await send(OWNER, t.deployment.licence, LicenceAbi, "mint", [nameId("licensed"), a(AGENT), 1n]);
    await synced();
    await admitted(AGENT, "licensed");
    await refused(AGENT, "stakers");
    await send(AGENT, t.deployment.settlement, SettlementAbi, "stakeAgent", [100n]);
    await synced();
    await admitted(AGENT, "stakers");
    const anonymous = await fetch(`${server.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "vip", prompt: "hi", max_tokens: 2 }) });
    expect(anonymous.status).toBe(403);
  });

  it("answers claim proofs to anyone, and a hostile account value with a typed error", async () => {
    const res = async (account: string) => {
      const r = await fetch(`http://127.0.0.1:${server.port}/v1/chain/claims/${account}`);
      return { status: r.status, body: (await r.json()) as { error?: { code: string; message: string } } };
    };
    const bad = await res("not-an-address");
    expect([bad.status, bad.body.error?.code]).toEqual([400, "INVALID_ARGUMENT"]);
    const long = await fetch(`http://127.0.0.1:${server.port}/v1/chain/claims/${"0x".padEnd(4000, "f")}`);
    expect(long.status).toBe(413);
    expect(await long.text()).not.toContain("ffffffffffffffffffff");
    const nobody = await res("0x000000000000000000000000000000000000dEaD");
    expect([nobody.status, nobody.body.error?.code]).toEqual([404, "CLAIM_NOT_FOUND"]);
  });

  it("refuses what only the chain may record: a deposit on the node's word, a model listed by the node", async () => {
    const dep = await fetch(`http://127.0.0.1:${server.port}/v1/accounts/agents/${lower(AGENT)}/deposit`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: JSON.stringify({ amount: "5" }) });
    expect(dep.status).toBe(409);
    const listed = await fetch(`http://127.0.0.1:${server.port}/v1/ledger/models`, { method: "POST", headers: { ...server.operator, "content-type": "application/json" }, body: JSON.stringify({ id: "x", kind: "base", owner: "o", priceIn: "0", priceOut: "0", contentHash: ZERO32, developers: [{ party: "o", share: "1" }] }) });
    expect(listed.status).toBe(409);
  });
});

describe("bad chain settings fail at start with a code", () => {
  const start = (args: string[]) => runCli(["serve", "--model", modelPath, "--port", "0", "--ledger", join(dir, `bad-${Math.random()}.sqlite`), "--node-key-file", nodeKeyFile, ...args]);

  it("an unreachable RPC endpoint: CHAIN_UNAVAILABLE", async () => {
    const r = await start(["--chain", `http://127.0.0.1:${await freePort()}`, "--contracts", contractsFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("CHAIN_UNAVAILABLE");
  });

  it("a contracts file of another chain: CHAIN_ID_MISMATCH", async () => {
    const other = join(dir, "other-chain.json");
    writeDeployment(other, { ...t.deployment, chainId: 10 });
    const r = await start(["--chain", t.anvil.url, "--contracts", other]);
    expect(r.stderr).toContain("CHAIN_ID_MISMATCH");
  });

  it("no contract at the addresses: CHAIN_CONTRACT_MISSING", async () => {
    const empty = join(dir, "empty.json");
    writeDeployment(empty, { ...t.deployment, settlement: a(OTHER), registry: a(OTHER) });
    const r = await start(["--chain", t.anvil.url, "--contracts", empty]);
    expect(r.stderr).toContain("CHAIN_CONTRACT_MISSING");
  });
});
