/** Registry and Licence on a real anvil: terms history, validation, Datanets, licences, access policies. */
import { encodeAbiParameters, getContract, keccak256, parseEventLogs, zeroHash, type Address, type Hex } from "viem";
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from "vitest";
import { LicenceAbi, RegistryAbi, SettlementAbi, TestTokenAbi } from "../../src/chain/abi.js";
import { loadArtifact } from "../../src/chain/deploy.js";
import {
  errorNames, expectRevert, nameId, seenErrors, startTestChain, termsHash, testTerms, type TestChain, type TestWallet,
} from "../helpers/chain.js";

let c: TestChain;
let snap: Hex;
const BASE = "base-model";
const Kind = { Base: 0, Adapter: 1, Merged: 2 } as const;
const Access = { Public: 0, Allowlist: 1, Licence: 2, MinStake: 3 } as const;

const registry = (w: TestWallet) => getContract({ address: c.deployment.registry, abi: RegistryAbi, client: { public: c.publicClient, wallet: w } });
const licence = (w: TestWallet) => getContract({ address: c.deployment.licence, abi: LicenceAbi, client: { public: c.publicClient, wallet: w } });
const settlement = (w: TestWallet) => getContract({ address: c.deployment.settlement, abi: SettlementAbi, client: { public: c.publicClient, wallet: w } });
const token = (w: TestWallet) => getContract({ address: c.deployment.token, abi: TestTokenAbi, client: { public: c.publicClient, wallet: w } });

let owner: TestWallet, other: TestWallet, agent: TestWallet;
let baseId: Hex;

beforeAll(async () => {
  c = await startTestChain();
  [, owner, other, agent] = c.wallets as [TestWallet, TestWallet, TestWallet, TestWallet];
  await c.mine(registry(owner).write.registerModel([BASE, Kind.Base, zeroHash, testTerms(owner.account.address)]));
  baseId = nameId(BASE);
});
afterAll(async () => c?.stop());
beforeEach(async () => { snap = await c.snapshot(); });
afterEach(async () => { await c.revert(snap); });

describe("operators", () => {
  it("registers an operator with its URL and updates the URL on a second call", async () => {
    const op = c.wallets[4]!;
    expect(await registry(op).read.isOperator([op.account.address])).toBe(false);
    await expectRevert(registry(op).read.operatorUrl([op.account.address]), "UnknownOperator", [op.account.address]);
    await c.mine(registry(op).write.registerOperator(["http://a"]));
    expect(await registry(op).read.isOperator([op.account.address])).toBe(true);
    await c.mine(registry(op).write.registerOperator(["http://b"]));
    expect(await registry(op).read.operatorUrl([op.account.address])).toBe("http://b");
  });
});

describe("operators' fee policies", () => {
  const P = { protocolBps: 200, operatorBps: 2000, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 5000 };
  const ZERO = { protocolBps: 0, operatorBps: 0, developerBps: 0, stakerBps: 0, dataBps: 0, lambdaBps: 0 };

  it("version 1 applies at once, a change termsDelay seconds after its block; policyAt answers by block time", async () => {
    const hash = await owner.deployContract({ abi: RegistryAbi, bytecode: loadArtifact("Registry").bytecode, args: [600n] });
    const address = (await c.publicClient.waitForTransactionReceipt({ hash })).contractAddress!;
    const op = c.wallets[4]!;
    const r = getContract({ address, abi: RegistryAbi, client: { public: c.publicClient, wallet: op } });
    await c.mine(r.write.registerOperator(["http://op"]));
    const me = op.account.address;
    expect(await r.read.policyAt([me, 2n ** 64n - 1n])).toEqual([ZERO, 0]);
    const r1 = await c.mine(r.write.setOperatorPolicy([P]));
    const at1 = (await c.publicClient.getBlock({ blockNumber: r1.blockNumber })).timestamp;
    expect(parseEventLogs({ abi: RegistryAbi, eventName: "OperatorPolicySet", logs: r1.logs })[0]!.args).toEqual({ operator: me, version: 1, from: at1, policy: P });
    await c.increaseTime(10);
    const P2 = { ...P, operatorBps: 2500, developerBps: 4000, stakerBps: 3000 };
    const r2 = await c.mine(r.write.setOperatorPolicy([P2]));
    const at2 = (await c.publicClient.getBlock({ blockNumber: r2.blockNumber })).timestamp;
    expect(parseEventLogs({ abi: RegistryAbi, eventName: "OperatorPolicySet", logs: r2.logs })[0]!.args).toMatchObject({ version: 2, from: at2 + 600n, policy: P2 });
    expect(await r.read.policyAt([me, at1 - 1n])).toEqual([ZERO, 0]);
    expect(await r.read.policyAt([me, at1])).toEqual([P, 1]);
    expect(await r.read.policyAt([me, at2 + 599n])).toEqual([P, 1]);
    expect(await r.read.policyAt([me, at2 + 600n])).toEqual([P2, 2]);
    // Another operator's policy is its own.
    expect(await r.read.policyAt([owner.account.address, at2 + 600n])).toEqual([ZERO, 0]);
  });

  it("refuses a caller that is no operator and policies splitFee would refuse, with a reason", async () => {
    const op = c.wallets[4]!;
    await expectRevert(registry(op).write.setOperatorPolicy([P]), "UnknownOperator", [op.account.address]);
    await c.mine(registry(op).write.registerOperator(["http://op"]));
    const bad: [Partial<typeof P>, string][] = [
      [{ protocolBps: 10_001, operatorBps: 0 }, "protocolBps + operatorBps above 10000"],
      [{ protocolBps: 0, operatorBps: 10_001 }, "protocolBps + operatorBps above 10000"],
      [{ protocolBps: 5000, operatorBps: 5001 }, "protocolBps + operatorBps above 10000"],
      [{ developerBps: 5000, stakerBps: 2000, dataBps: 2999 }, "developerBps + stakerBps + dataBps is not 10000"],
      [{ developerBps: 0, stakerBps: 0, dataBps: 0 }, "developerBps + stakerBps + dataBps is not 10000"],
      [{ lambdaBps: 10_001 }, "lambdaBps above 10000"],
    ];
    for (const [over, reason] of bad) await expectRevert(registry(op).write.setOperatorPolicy([{ ...P, ...over }]), "InvalidPolicy", [reason]);
    await c.mine(registry(op).write.setOperatorPolicy([{ ...P, protocolBps: 0, operatorBps: 10_000, lambdaBps: 10_000 }]));
  });
});

describe("models and terms", () => {
  it("ids are keccak256 of the name and the creator owns the entry", async () => {
    expect(await registry(other).read.modelOwner([baseId])).toBe(owner.account.address);
    await expectRevert(registry(other).read.modelOwner([nameId("nope")]), "UnknownModel", [nameId("nope")]);
    await expectRevert(registry(owner).write.registerModel([BASE, Kind.Base, zeroHash, testTerms(owner.account.address)]), "AlreadyRegistered", [baseId]);
    await expectRevert(registry(owner).write.registerModel(["", Kind.Base, zeroHash, testTerms(owner.account.address)]), "InvalidName");
  });

  it("termsAt answers the version in force at a time, by block time", async () => {
    const t1 = testTerms(owner.account.address, { priceIn: 5n });
    const r1 = await c.mine(registry(owner).write.registerModel(["m", Kind.Adapter, baseId, t1]));
    const at1 = (await c.publicClient.getBlock({ blockNumber: r1.blockNumber })).timestamp;
    await c.increaseTime(1000);
    const t2 = testTerms(owner.account.address, { priceIn: 7n, hasShares: true, developerBps: 5000, stakerBps: 2000, dataBps: 3000 });
    const r2 = await c.mine(registry(owner).write.setTerms([nameId("m"), t2]));
    const at2 = (await c.publicClient.getBlock({ blockNumber: r2.blockNumber })).timestamp;
    const id = nameId("m");
    expect(await registry(owner).read.termsAt([id, at1 - 1n])).toEqual([zeroHash, 0]);
    expect(await registry(owner).read.termsAt([id, at1])).toEqual([termsHash(t1), 1]);
    expect(await registry(owner).read.termsAt([id, at2 - 1n])).toEqual([termsHash(t1), 1]);
    expect(await registry(owner).read.termsAt([id, at2])).toEqual([termsHash(t2), 2]);
    expect(await registry(owner).read.termsAt([id, at2 + 10n ** 9n])).toEqual([termsHash(t2), 2]);
    const logs = parseEventLogs({ abi: RegistryAbi, eventName: "TermsSet", logs: r2.logs });
    expect(logs[0]!.args).toMatchObject({ id, version: 2, from: at2 });
    expect(logs[0]!.args.terms.priceIn).toBe(7n);
    await expectRevert(registry(other).write.setTerms([id, t2]), "NotOwner", [id, other.account.address]);
  });

  it("terms take effect termsDelay seconds after their block, registration included", async () => {
    const hash = await owner.deployContract({ abi: RegistryAbi, bytecode: loadArtifact("Registry").bytecode, args: [600n] });
    const address = (await c.publicClient.waitForTransactionReceipt({ hash })).contractAddress!;
    const r = getContract({ address, abi: RegistryAbi, client: { public: c.publicClient, wallet: owner } });
    expect(await r.read.termsDelay()).toBe(600n);
    const t1 = testTerms(owner.account.address, { priceIn: 5n });
    const r1 = await c.mine(r.write.registerModel([BASE, Kind.Base, zeroHash, t1]));
    const at1 = (await c.publicClient.getBlock({ blockNumber: r1.blockNumber })).timestamp;
    expect(parseEventLogs({ abi: RegistryAbi, eventName: "TermsSet", logs: r1.logs })[0]!.args).toMatchObject({ version: 1, from: at1 + 600n });
    await c.increaseTime(10);
    const t2 = testTerms(owner.account.address, { priceIn: 6n });
    const r2 = await c.mine(r.write.setTerms([baseId, t2]));
    const at2 = (await c.publicClient.getBlock({ blockNumber: r2.blockNumber })).timestamp;
    expect(parseEventLogs({ abi: RegistryAbi, eventName: "TermsSet", logs: r2.logs })[0]!.args).toMatchObject({ version: 2, from: at2 + 600n });
    expect(await r.read.termsAt([baseId, at1 + 599n])).toEqual([zeroHash, 0]);
    expect(await r.read.termsAt([baseId, at1 + 600n])).toEqual([termsHash(t1), 1]);
    expect(await r.read.termsAt([baseId, at2 + 599n])).toEqual([termsHash(t1), 1]);
    expect(await r.read.termsAt([baseId, at2 + 600n])).toEqual([termsHash(t2), 2]);
    expect(await r.read.termsFrom([baseId, 1])).toBe(at1 + 600n);
    expect(await r.read.termsFrom([baseId, 2])).toBe(at2 + 600n);
    for (const v of [0, 3]) await expectRevert(r.read.termsFrom([baseId, v]), "UnknownTermsVersion", [baseId, v]);
    await expectRevert(r.read.termsFrom([nameId("nope"), 1]), "UnknownModel", [nameId("nope")]);
    expect(await registry(owner).read.termsDelay()).toBe(0n);
  });

  it("refuses invalid terms with a reason", async () => {
    const me = owner.account.address;
    const bad = async (name: string, kind: number, base: Hex, over: Parameters<typeof testTerms>[1]) => {
      const d = await expectRevert(registry(owner).write.registerModel([name, kind, base, testTerms(me, over)]), "InvalidTerms");
      return d.args[0] as string;
    };
    expect(await bad("x", Kind.Adapter, baseId, { developers: [] })).toMatch(/no developers/);
    expect(await bad("x", Kind.Adapter, baseId, { developers: [{ party: me, share: 0n }] })).toMatch(/sum to zero/);
    expect(await bad("x", Kind.Adapter, baseId, { developers: [{ party: "0x0000000000000000000000000000000000000000", share: 1n }] })).toMatch(/zero address/);
    expect(await bad("x", Kind.Adapter, baseId, { hasShares: true, developerBps: 5000, stakerBps: 2000, dataBps: 2999 })).toMatch(/10000/);
    expect(await bad("x", Kind.Base, baseId, {})).toMatch(/base model has no base model/);
    expect(await bad("x", Kind.Adapter, nameId("nope"), {})).toMatch(/not a registered base/);
    await c.mine(registry(owner).write.registerModel(["a1", Kind.Adapter, baseId, testTerms(me)]));
    expect(await bad("x", Kind.Adapter, nameId("a1"), {})).toMatch(/not a registered base/);
    expect(await bad("x", Kind.Merged, baseId, {})).toMatch(/needs parents/);
    expect(await bad("x", Kind.Adapter, baseId, { parents: [{ model: nameId("a1"), weight: 1n }] })).toMatch(/only a merged/);
    expect(await bad("x", Kind.Merged, baseId, { parents: [{ model: baseId, weight: 1n }] })).toMatch(/parent is not/);
    expect(await bad("x", Kind.Merged, baseId, { parents: [{ model: nameId("a1"), weight: 0n }] })).toMatch(/zero parent weight/);
    expect(await bad("x", Kind.Adapter, baseId, { lineage: [{ datanet: nameId("dn"), version: 1, weight: 1n }] })).toMatch(/unknown Datanet version/);
    await c.mine(registry(owner).write.createDatanet(["dn"]));
    await c.mine(registry(owner).write.publishVersion([nameId("dn"), zeroHash, [], []]));
    expect(await bad("x", Kind.Adapter, baseId, { lineage: [{ datanet: nameId("dn"), version: 1, weight: 0n }] })).toMatch(/zero lineage weight/);
    expect(await bad("x", Kind.Merged, baseId, { parents: [{ model: nameId("a1"), weight: 1n }], lineage: [{ datanet: nameId("dn"), version: 1, weight: 1n }] })).toMatch(/lineage comes from its parents/);
    // The valid forms pass.
    await c.mine(registry(owner).write.registerModel(["a2", Kind.Adapter, baseId, testTerms(me, { lineage: [{ datanet: nameId("dn"), version: 1, weight: 3n }] })]));
    await c.mine(registry(owner).write.registerModel(["mg", Kind.Merged, baseId, testTerms(me, { parents: [{ model: nameId("a1"), weight: 1n }, { model: nameId("a2"), weight: 2n }] })]));
    expect(await registry(owner).read.modelOwner([nameId("mg")])).toBe(me);
  });
});

describe("Datanets", () => {
  const sorted = (n: number) => c.addresses.slice(0, n).map((a) => a.toLowerCase() as Address).sort();

  it("publishes versions 1, 2 with the hash of (root, contributors, approvedTokens)", async () => {
    const id = nameId("dn");
    await c.mine(registry(owner).write.createDatanet(["dn"]));
    expect(await registry(owner).read.datanetOwner([id])).toBe(owner.account.address);
    await expectRevert(registry(owner).read.datanetVersionHash([id, 1]), "UnknownDatanetVersion", [id, 1]);
    const contributors = sorted(3);
    const root = keccak256("0x01");
    await c.mine(registry(owner).write.publishVersion([id, root, contributors, [10n, 20n, 30n]]));
    await c.mine(registry(owner).write.publishVersion([id, zeroHash, contributors.slice(0, 1), [5n]]));
    const want = keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "address[]" }, { type: "uint256[]" }], [root, contributors, [10n, 20n, 30n]]));
    expect(await registry(owner).read.datanetVersionHash([id, 1])).toBe(want);
    expect(await registry(owner).read.datanetVersions([id])).toBe(2);
    await expectRevert(registry(owner).read.datanetVersionHash([id, 3]), "UnknownDatanetVersion", [id, 3]);
  });

  it("refuses a second creation, strangers, unknown ids and malformed versions", async () => {
    const id = nameId("dn");
    await expectRevert(registry(owner).write.createDatanet([""]), "InvalidName");
    await c.mine(registry(owner).write.createDatanet(["dn"]));
    await expectRevert(registry(other).write.createDatanet(["dn"]), "AlreadyRegistered", [id]);
    await expectRevert(registry(other).write.publishVersion([id, zeroHash, [], []]), "NotOwner", [id, other.account.address]);
    await expectRevert(registry(owner).write.publishVersion([nameId("zz"), zeroHash, [], []]), "UnknownDatanet", [nameId("zz")]);
    await expectRevert(registry(owner).read.datanetVersionHash([nameId("zz"), 1]), "UnknownDatanet", [nameId("zz")]);
    const [a, b] = sorted(2) as [Address, Address];
    const v = async (cs: Address[], ts: bigint[]) => (await expectRevert(registry(owner).write.publishVersion([id, zeroHash, cs, ts]), "InvalidVersion")).args[0];
    expect(await v([a, b], [1n])).toMatch(/length/);
    expect(await v([b, a], [1n, 1n])).toMatch(/ascending/);
    expect(await v([a, a], [1n, 1n])).toMatch(/ascending/);
    expect(await v(["0x0000000000000000000000000000000000000000"], [1n])).toMatch(/ascending/);
  });
});

describe("wiring", () => {
  it("is done once, by the deployer", async () => {
    expect(await registry(owner).read.settlement()).toBe(c.deployment.settlement);
    expect(await registry(owner).read.licence()).toBe(c.deployment.licence);
    await expectRevert(registry(owner).write.wire([owner.account.address, owner.account.address]), "NotDeployer", [owner.account.address]);
    await expectRevert(registry(c.wallets[0]!).write.wire([owner.account.address, owner.account.address]), "AlreadyWired");
  });
});

describe("Licence", () => {
  it("the model's owner mints and prices; a buyer pays the owner and holds the licence", async () => {
    const id = baseId;
    const tokenId = BigInt(id);
    await expectRevert(licence(other).write.mint([id, other.account.address, 1n]), "NotModelOwner", [id, other.account.address]);
    await expectRevert(licence(owner).write.mint([id, other.account.address, 0n]), "ZeroAmount");
    await c.mine(licence(owner).write.mint([id, other.account.address, 2n]));
    expect(await licence(owner).read.balanceOf([other.account.address, tokenId])).toBe(2n);
    await expectRevert(licence(agent).write.buy([id, 1n]), "NotForSale", [id]);
    await expectRevert(licence(other).write.setPrice([id, 5n]), "NotModelOwner", [id, other.account.address]);
    await c.mine(licence(owner).write.setPrice([id, 5n]));
    await c.mine(token(agent).write.mint([agent.account.address, 100n]));
    await expectRevert(licence(agent).write.buy([id, 3n]), "ERC20InsufficientAllowance");
    await c.mine(token(agent).write.approve([c.deployment.licence, 100n]));
    await expectRevert(licence(agent).write.buy([id, 0n]), "ZeroAmount");
    const before = await token(owner).read.balanceOf([owner.account.address]);
    await c.mine(licence(agent).write.buy([id, 3n]));
    expect(await token(owner).read.balanceOf([owner.account.address])).toBe(before + 15n);
    expect(await token(owner).read.balanceOf([agent.account.address])).toBe(85n);
    expect(await licence(owner).read.balanceOf([agent.account.address, tokenId])).toBe(3n);
    await expectRevert(licence(owner).write.mint([nameId("nope"), agent.account.address, 1n]), "UnknownModel", [nameId("nope")]);
  });
});

describe("canAccess", () => {
  const access = (who: Address) => registry(owner).read.canAccess([baseId, who]);
  const me = () => agent.account.address;

  it("Public admits anyone; unknown models revert", async () => {
    expect(await access(me())).toBe(true);
    await expectRevert(registry(owner).read.canAccess([nameId("nope"), me()]), "UnknownModel");
    await expectRevert(registry(other).write.setAccess([baseId, Access.Allowlist, 0n]), "NotOwner", [baseId, other.account.address]);
    await expectRevert(registry(other).write.setAllowed([baseId, me(), true]), "NotOwner", [baseId, other.account.address]);
  });

  it("Allowlist admits exactly the allowed agents", async () => {
    await c.mine(registry(owner).write.setAccess([baseId, Access.Allowlist, 0n]));
    expect(await access(me())).toBe(false);
    await c.mine(registry(owner).write.setAllowed([baseId, me(), true]));
    expect(await access(me())).toBe(true);
    expect(await access(other.account.address)).toBe(false);
    await c.mine(registry(owner).write.setAllowed([baseId, me(), false]));
    expect(await access(me())).toBe(false);
  });

  it("Licence admits holders (minted or bought) and no longer one that gave its licence away", async () => {
    await c.mine(registry(owner).write.setAccess([baseId, Access.Licence, 0n]));
    expect(await access(me())).toBe(false);
    await c.mine(licence(owner).write.mint([baseId, me(), 1n]));
    expect(await access(me())).toBe(true);
    await c.mine(licence(agent).write.safeTransferFrom([me(), other.account.address, BigInt(baseId), 1n, "0x"]));
    expect(await access(me())).toBe(false);
    expect(await access(other.account.address)).toBe(true);
    const buyer = c.wallets[5]!;
    await c.mine(licence(owner).write.setPrice([baseId, 4n]));
    await c.mine(token(buyer).write.mint([buyer.account.address, 4n]));
    await c.mine(token(buyer).write.approve([c.deployment.licence, 4n]));
    expect(await access(buyer.account.address)).toBe(false);
    await c.mine(licence(buyer).write.buy([baseId, 1n]));
    expect(await access(buyer.account.address)).toBe(true);
  });

  it("MinStake admits an agent staked at least minStake, and stops at its unstake request", async () => {
    await c.mine(registry(owner).write.setAccess([baseId, Access.MinStake, 100n]));
    await c.mine(token(agent).write.mint([me(), 1000n]));
    await c.mine(token(agent).write.approve([c.deployment.settlement, 1000n]));
    await c.mine(settlement(agent).write.stakeAgent([99n]));
    expect(await access(me())).toBe(false);
    await c.mine(settlement(agent).write.stakeAgent([1n]));
    expect(await access(me())).toBe(true);
    await c.mine(settlement(agent).write.requestAgentUnstake([1n]));
    expect(await access(me())).toBe(false);
  });
});

it("every custom error of Registry and Licence was triggered above", () => {
  const ours = (n: string) => !/^(ERC1155|ERC20|SafeERC20|ReentrancyGuard|SafeCast)/.test(n);
  const want = [...new Set([...errorNames(RegistryAbi), ...errorNames(LicenceAbi)].filter(ours))].sort();
  expect(want.filter((n) => !seenErrors.has(n))).toEqual([]);
});
