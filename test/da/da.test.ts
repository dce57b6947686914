import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { getAddress, keccak256, toHex, zeroHash, type Address, type Hex } from "viem";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { receiptToJSON } from "../../src/attribution/receipts.js";
import { BatchInboxAbi, SettlementAbi } from "../../src/chain/abi.js";
import { ANVIL_KEYS } from "../../src/chain/anvil.js";
import { connectChain, type ChainClients } from "../../src/chain/client.js";
import { BATCH_FORMAT, decodeBatch, encodeBatch, MAX_BATCH_BYTES, type EpochBatch } from "../../src/da/batch.js";
import { fetchCalldata, publishCalldata } from "../../src/da/calldata.js";
import { batchCommitment, chunksOf, MAX_CHUNK } from "../../src/da/commitment.js";
import { EigenDaProxy, fetchEigenDa, publishEigenDa } from "../../src/da/eigenda.js";
import { isOpenLoraError } from "../../src/errors.js";
import type { Ledger } from "../../src/ledger/index.js";
import { courtLedger, NODE_KEY, settleRequest } from "../chain/court-fixture.js";
import { startEigenDaStandIn, type EigenDaStandIn } from "../helpers/eigenda-stand-in.js";
import { errorNames, expectRevert, seenErrors, startTestChain, type TestChain } from "../helpers/chain.js";

const code = async (p: Promise<unknown> | (() => unknown)): Promise<string> => {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return isOpenLoraError(e) ? e.code : `not typed: ${(e as Error).message}`;
  }
  return "no error";
};

describe("an epoch batch", () => {
  let ledger: Ledger;
  let batch: EpochBatch;
  beforeAll(async () => {
    ledger = courtLedger(join(mkdtempSync(join(tmpdir(), "openlora-da-")), "l.sqlite"), 31337, `0x${"c0".repeat(20)}`);
    for (let i = 0; i < 3; i++) await settleRequest(ledger, i);
    const e = ledger.closeEpoch()!;
    batch = ledger.chain.epochBatch(e.id, getAddress(ledger.nodeAddress));
  });
  afterAll(() => ledger.close());

  it("holds every receipt of the epoch as stored, its signature and token ids, and decodes to the same", () => {
    expect(batch.entries.map((e) => JSON.parse(e.body).id)).toEqual([batch.firstReceipt, batch.firstReceipt + 1, batch.firstReceipt + 2]);
    for (const [i, e] of batch.entries.entries()) {
      const stored = ledger.getReceipt(batch.firstReceipt + i);
      expect(e.body).toBe(receiptToJSON(stored.receipt));
      expect(e.signature).toBe(stored.signature);
      expect({ prompt: e.prompt, output: e.output }).toEqual(ledger.receiptTokens(batch.firstReceipt + i));
    }
    const payload = encodeBatch(batch);
    const d = decodeBatch(payload, batch);
    expect(d.entries.map(({ receipt: _r, ...rest }) => rest)).toEqual(batch.entries);
    expect(d.entries[1]!.receipt).toEqual(ledger.getReceipt(batch.firstReceipt + 1).receipt);
  });

  it("refuses a batch of another node, epoch or range, a misplaced receipt, wrong token counts, junk and a bomb", async () => {
    const payload = encodeBatch(batch);
    const raw = (o: unknown) => new Uint8Array(deflateRawSync(Buffer.from(JSON.stringify(o))));
    const base = { format: BATCH_FORMAT, node: batch.node, epoch: batch.epoch, firstReceipt: batch.firstReceipt, lastReceipt: batch.lastReceipt, entries: batch.entries };
    const cases: [string, Uint8Array, Partial<EpochBatch>?][] = [
      ["another node", payload, { node: `0x${"11".repeat(20)}` as Address }],
      ["another epoch", payload, { epoch: batch.epoch + 1 }],
      ["another range", payload, { lastReceipt: batch.lastReceipt + 1 }],
      ["another format", raw({ ...base, format: "x/2" })],
      ["swapped receipts", raw({ ...base, entries: [batch.entries[1], batch.entries[0], batch.entries[2]] })],
      ["a short prompt", raw({ ...base, entries: [{ ...batch.entries[0], prompt: batch.entries[0]!.prompt.slice(1) }, ...batch.entries.slice(1)] })],
      ["a negative token", raw({ ...base, entries: [{ ...batch.entries[0], output: [-1, ...batch.entries[0]!.output.slice(1)] }, ...batch.entries.slice(1)] })],
      ["a body that is no receipt", raw({ ...base, entries: [{ ...batch.entries[0], body: "{}" }, ...batch.entries.slice(1)] })],
      ["no signature", raw({ ...base, entries: [{ ...batch.entries[0], signature: 7 }, ...batch.entries.slice(1)] })],
      ["not JSON", new Uint8Array(deflateRawSync(Buffer.from("{no")))],
      ["not DEFLATE", new Uint8Array([0xff, 0xff, 0xff, 0xff])],
    ];
    for (const [what, p, over] of cases) expect(await code(() => decodeBatch(p, { ...batch, ...over })), what).toBe("DA_BATCH_INVALID");
    // 1 KiB of DEFLATE that would inflate past the bound stops at the bound.
    const bomb = new Uint8Array(deflateRawSync(Buffer.alloc(MAX_BATCH_BYTES + 1)));
    expect(bomb.length).toBeLessThan(MAX_BATCH_BYTES / 500);
    expect(await code(() => decodeBatch(bomb, batch))).toBe("DA_BATCH_INVALID");
    expect(await code(() => encodeBatch({ ...batch, entries: batch.entries.slice(1) }))).toBe("DA_BATCH_INVALID");
  });
});

describe("BatchInbox and the data availability layers", () => {
  let c: TestChain;
  let node: ChainClients;
  let other: ChainClients;
  let eigen: EigenDaStandIn;
  const random = (n: number, seed: number) => {
    const out = new Uint8Array(n);
    let x = seed;
    for (let i = 0; i < n; i++) out[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    return out;
  };
  beforeAll(async () => {
    c = await startTestChain();
    node = await connectChain(c.anvil.url, NODE_KEY);
    other = await connectChain(c.anvil.url, ANVIL_KEYS[5]!);
    eigen = await startEigenDaStandIn();
  });
  afterAll(async () => {
    await eigen?.stop();
    await c?.stop();
  });
  const inbox = () => c.deployment.inbox;
  const publish = (w: ChainClients, args: readonly [Hex, number, number, Uint8Array]) =>
    w.wallet.writeContract({ address: inbox(), abi: BatchInboxAbi, functionName: "publish", args: [args[0], args[1], args[2], toHex(args[3])] });

  it("commits to a batch as the contract does, chunk by chunk, and gives the same bytes back from calldata", async () => {
    expect(await c.publicClient.readContract({ address: inbox(), abi: BatchInboxAbi, functionName: "MAX_CHUNK" })).toBe(BigInt(MAX_CHUNK));
    const payload = random(2 * MAX_CHUNK + 1234, 1);
    expect(chunksOf(payload).map((x) => x.length)).toEqual([MAX_CHUNK, MAX_CHUNK, 1234]);
    const { commitment, txs } = await publishCalldata(node, inbox(), payload);
    expect(commitment).toBe(batchCommitment(payload));
    expect(txs).toHaveLength(3);
    expect(await c.publicClient.readContract({ address: inbox(), abi: BatchInboxAbi, functionName: "available", args: [node.account.address, commitment] })).toBe(true);
    // Another publisher's availability is its own.
    expect(await c.publicClient.readContract({ address: inbox(), abi: BatchInboxAbi, functionName: "available", args: [other.account.address, commitment] })).toBe(false);
    const head = await c.publicClient.getBlockNumber();
    expect(Buffer.from(await fetchCalldata(c.publicClient, inbox(), node.account.address, commitment, 0n, head)).equals(Buffer.from(payload))).toBe(true);
    // Publishing again sends nothing.
    expect((await publishCalldata(node, inbox(), payload)).txs).toEqual([]);
  });

  it("resumes a publication where it stopped; a half-published batch is not available and not fetchable", async () => {
    const payload = random(MAX_CHUNK + 10, 2);
    const commitment = batchCommitment(payload);
    const [c0, c1] = chunksOf(payload) as [Uint8Array, Uint8Array];
    await c.mine(publish(node, [commitment, 0, 2, c0]));
    expect(await c.publicClient.readContract({ address: inbox(), abi: BatchInboxAbi, functionName: "progressOf", args: [node.account.address, commitment] })).toBe(1);
    const head = await c.publicClient.getBlockNumber();
    expect(await code(fetchCalldata(c.publicClient, inbox(), node.account.address, commitment, 0n, head))).toBe("DA_UNAVAILABLE");
    expect(await code(fetchCalldata(c.publicClient, inbox(), node.account.address, keccak256("0x01"), 0n, head))).toBe("DA_UNAVAILABLE");
    expect((await publishCalldata(node, inbox(), payload)).txs).toHaveLength(1);
    // Every revert of the contract.
    await expectRevert(publish(node, [commitment, 0, 2, c0]), "AlreadyAvailable", [commitment]);
    const p2 = random(MAX_CHUNK + 10, 3);
    const k2 = batchCommitment(p2);
    const [d0, d1] = chunksOf(p2) as [Uint8Array, Uint8Array];
    await expectRevert(publish(node, [k2, 2, 2, d0]), "BadChunkIndex", [2, 2]);
    await expectRevert(publish(node, [k2, 1, 2, d1]), "ChunkOutOfOrder", [0, 1]);
    await expectRevert(publish(node, [k2, 0, 2, d1]), "BadChunkLength", [10n]);
    await expectRevert(publish(node, [k2, 0, 1, new Uint8Array(0)]), "BadChunkLength", [0n]);
    await expectRevert(publish(node, [k2, 0, 1, random(MAX_CHUNK + 1, 4)]), "BadChunkLength", [BigInt(MAX_CHUNK + 1)]);
    await c.mine(publish(node, [k2, 0, 2, d0]));
    const wrong = await expectRevert(publish(node, [k2, 1, 2, c1]), "CommitmentMismatch");
    expect(wrong.args[1]).toBe(k2);
  });

  it("Settlement records the batch's commitment with the epoch and whether BatchInbox held it", async () => {
    const op = c.wallets[1]!;
    const [reg] = [c.deployment.registry];
    const { RegistryAbi } = await import("../../src/chain/abi.js");
    await c.mine(op.writeContract({ address: reg, abi: RegistryAbi, functionName: "registerOperator", args: ["http://op"] }));
    const payload = random(500, 5);
    const { commitment } = await publishCalldata(node, inbox(), payload);
    const post = (epoch: bigint, first: bigint, k: Hex) => op.writeContract({ address: c.deployment.settlement, abi: SettlementAbi, functionName: "postEpoch", args: [epoch, zeroHash, first, first, zeroHash, zeroHash, k] });
    await c.mine(post(1n, 1n, commitment));
    await c.mine(post(2n, 2n, keccak256("0x02")));
    const e1 = await c.publicClient.readContract({ address: c.deployment.settlement, abi: SettlementAbi, functionName: "epochOf", args: [op.account.address, 1n] });
    const e2 = await c.publicClient.readContract({ address: c.deployment.settlement, abi: SettlementAbi, functionName: "epochOf", args: [op.account.address, 2n] });
    expect([e1.batchCommitment, e1.batchOnChain, e2.batchCommitment, e2.batchOnChain]).toEqual([commitment, true, keccak256("0x02"), false]);
  });

  it("through an EigenDA proxy: stored once, announced on chain, fetched and checked; a proxy that withholds, corrupts, fails or floods is caught", async () => {
    const proxy = new EigenDaProxy(eigen.url);
    const payload = random(300_000, 6);
    const { commitment, certificate } = await publishEigenDa(node, inbox(), proxy, payload, 0n);
    expect(commitment).toBe(batchCommitment(payload));
    expect(eigen.blobs.has(certificate)).toBe(true);
    await publishEigenDa(node, inbox(), proxy, payload, 0n);
    expect(eigen.puts).toBe(1);
    expect(Buffer.from(await fetchEigenDa(c.publicClient, inbox(), proxy, node.account.address, commitment, 0n)).equals(Buffer.from(payload))).toBe(true);
    // Announced by another address: not this publisher's batch.
    expect(await code(fetchEigenDa(c.publicClient, inbox(), proxy, other.account.address, commitment, 0n))).toBe("DA_UNAVAILABLE");
    for (const [mode, want] of [["withhold", "DA_UNAVAILABLE"], ["corrupt", "DA_COMMITMENT_MISMATCH"], ["down", "DA_UNAVAILABLE"], ["flood", "DA_BATCH_INVALID"]] as const) {
      eigen.mode = mode;
      expect(await code(fetchEigenDa(c.publicClient, inbox(), proxy, node.account.address, commitment, 0n)), mode).toBe(want);
    }
    eigen.mode = "down";
    expect(await code(publishEigenDa(node, inbox(), proxy, random(10, 7), 0n))).toBe("DA_UNAVAILABLE");
    eigen.mode = "ok";
    expect(await code(fetchEigenDa(c.publicClient, inbox(), new EigenDaProxy("http://127.0.0.1:1"), node.account.address, commitment, 0n))).toBe("DA_UNAVAILABLE");
    expect(await code(() => new EigenDaProxy("file:///etc/passwd"))).toBe("INVALID_ARGUMENT");
  });

  it("every custom error of BatchInbox was triggered above", () => {
    expect(errorNames(BatchInboxAbi).filter((n) => !seenErrors.has(n))).toEqual([]);
  });
});
