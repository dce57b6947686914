/**
 * `openlora verify <receipt id> --ledger <file>`: checks one receipt the way a validator would —
 * its EIP-712 signature by the node, its link in the hash chain (the whole chain of the file is
 * walked), its Merkle proof when its epoch is closed — and replays the inference from the same
 * model and adapter files (content hashes checked first) with the same prompt tokens and sampling
 * parameters including the seed: the output tokens must hash to the receipt's outputHash. The
 * engine is deterministic and batch-invariant, so a replay matches bit for bit or the receipt lies.
 *
 * Read-only: the ledger file is opened without writing (stop the server first, or use a copy).
 */
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import type { Address, Hex } from "viem";
import { baseShapeOf } from "../adapters/base-shape.js";
import { createAdapterLoader } from "../adapters/loader.js";
import { AdapterRegistry } from "../adapters/registry.js";
import { contentHash } from "../attribution/content-hash.js";
import { verifyMerkleProof } from "../attribution/merkle.js";
import { hashTokenIds, receiptDigest, receiptFromJSON, verifyReceiptSignature, type Receipt } from "../attribution/receipts.js";
import { generate } from "../engine/generate.js";
import { oerr } from "../errors.js";
import { verifyChain } from "../ledger/audit.js";
import { loadModel } from "../model/load.js";
import { native } from "../native/index.js";
import { intArg } from "./args.js";

export const VERIFY_USAGE = `  openlora verify <receipt id> --ledger <sqlite file> [--model <path>] [--adapters <dir>] [--no-replay]
                  [--signer <0x address>] [--threads N]
        Checks a receipt's signature, chain link and Merkle proof, and replays the inference from the model
        and adapter files (their content hashes must match) with the same tokens and seed. Exit 0 = valid.
`;

type Check = { ok: boolean; detail: string };

export async function runVerify(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      ledger: { type: "string" }, model: { type: "string" }, adapters: { type: "string" }, "no-replay": { type: "boolean" },
      signer: { type: "string" }, threads: { type: "string" },
    },
  });
  if (positionals.length !== 1 || !/^\d+$/.test(positionals[0]!)) throw oerr("INVALID_ARGUMENT", "verify needs one receipt id (a positive integer)");
  if (!values.ledger) throw oerr("INVALID_ARGUMENT", "verify needs --ledger <sqlite file>");
  const id = Number(positionals[0]);
  const db = new Database(values.ledger, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT r.body, r.hash, r.signature, r.signer, r.epoch, t.prompt, t.output FROM receipts r LEFT JOIN receipt_tokens t ON t.receipt_id = r.id WHERE r.id = ?").get(id) as
      { body: string; hash: Hex; signature: Hex; signer: Address; epoch: number | null; prompt: Buffer | null; output: Buffer | null } | undefined;
    if (!row) throw oerr("LEDGER_NOT_FOUND", `no receipt ${id} in ${values.ledger}`, { id });
    const receipt = receiptFromJSON(row.body);
    const domain = JSON.parse((db.prepare("SELECT value FROM meta WHERE key = 'eip712_domain'").get() as { value: string } | undefined)?.value ?? "{}") as { chainId?: number; verifyingContract?: Address };
    const opts = { ...(domain.chainId !== undefined ? { chainId: domain.chainId } : {}), ...(domain.verifyingContract ? { verifyingContract: domain.verifyingContract } : {}) };
    const trusted = (values.signer ?? row.signer) as Address;
    const checks: Record<string, Check> = {};

    const digest = receiptDigest(receipt, opts);
    const sigOk = digest === row.hash && receipt.node.toLowerCase() === trusted.toLowerCase() && (await verifyReceiptSignature(receipt, row.signature, opts));
    checks.signature = { ok: sigOk, detail: sigOk ? `signed by ${receipt.node}` : `digest ${digest} / stored ${row.hash}, node ${receipt.node}, trusted ${trusted}` };

    const chain = await verifyChain(db as never, opts, [trusted]);
    checks.chain = { ok: chain.ok, detail: chain.ok ? `${chain.receipts} receipts, every link and signature valid` : `broken at receipt ${String(chain.badReceiptId ?? "?")}: ${chain.reason}` };

    if (row.epoch !== null) {
      const leaves = (db.prepare("SELECT hash FROM receipts WHERE epoch = ? ORDER BY id").all(row.epoch) as { hash: Hex }[]).map((r) => r.hash);
      const root = (db.prepare("SELECT root FROM epochs WHERE id = ?").get(row.epoch) as { root: Hex }).root;
      const { merkleProof } = await import("../attribution/merkle.js");
      const proof = merkleProof(leaves, leaves.indexOf(row.hash));
      const ok = verifyMerkleProof(proof, root, digest);
      checks.proof = { ok, detail: `epoch ${row.epoch}, root ${root}` };
    } else {
      checks.proof = { ok: true, detail: "epoch not closed yet: no proof to check" };
    }

    if (values["no-replay"]) checks.replay = { ok: true, detail: "skipped (--no-replay)" };
    else if (!values.model) throw oerr("INVALID_ARGUMENT", "replay needs --model (or pass --no-replay)");
    else if (!row.prompt || !row.output) checks.replay = { ok: false, detail: "the ledger holds no tokens for this receipt" };
    else checks.replay = await replay(receipt, fromBlob(row.prompt), values.model, values.adapters, intArg(values.threads, "threads", 1, availableParallelism())!);

    const ok = Object.values(checks).every((c) => c.ok);
    process.stdout.write(`${JSON.stringify({ receipt: id, valid: ok, checks }, null, 2)}\n`);
    return ok ? 0 : 1;
  } finally {
    db.close();
  }
}

async function replay(receipt: Receipt, prompt: number[], modelPath: string, adaptersDir: string | undefined, threads: number): Promise<Check> {
  const baseHash = await contentHash(modelPath);
  if (baseHash !== receipt.base.contentHash) return { ok: false, detail: `model file hash ${baseHash} differs from the receipt's ${receipt.base.contentHash}` };
  native.setThreads(threads);
  const loaded = await loadModel(modelPath);
  const registry = new AdapterRegistry();
  if (adaptersDir) await registry.scanDirectory(adaptersDir);
  const load = createAdapterLoader(baseShapeOf(loaded.config));
  const applied = [];
  for (const a of receipt.adapters) {
    const entry = registry.get(a.id);
    if (!entry) return { ok: false, detail: `adapter ${a.id} is not in ${adaptersDir ?? "(no --adapters)"}` };
    const h = await contentHash(entry.source.path);
    if (h !== a.contentHash) return { ok: false, detail: `adapter ${a.id} files hash ${h}, the receipt says ${a.contentHash}` };
    applied.push({ adapter: (await load(entry, new AbortController().signal)).weights, weight: a.weightPpm / 1_000_000 });
  }
  const out = generate(loaded, { prompt, maxTokens: receipt.tokensOut, sampling: receipt.sampling, ignoreEos: true, adapters: applied });
  const hash = hashTokenIds(out.tokens);
  return hash === receipt.outputHash
    ? { ok: true, detail: `${out.tokens.length} tokens replayed, output hash matches` }
    : { ok: false, detail: `replayed output hashes to ${hash}, the receipt says ${receipt.outputHash}` };
}

function fromBlob(b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= b.length; i += 4) out.push(b.readUInt32LE(i));
  return out;
}
