/**
 * `openlora verify [<receipt id>] --ledger <file> --signer <address>`: checks a ledger file the way
 * a validator would, trusting nothing it holds but signatures by the node address it is given out
 * of band (`--signer 0x…`, or `--signer-file` naming a file that holds it; without one it refuses:
 * a file re-signed with another key would otherwise verify):
 *   chain      both signed chains (receipts, account events) link, hash and recover to the signer,
 *              and every epoch's root and signed checkpoint are right;
 *   balances   every balance is the sum of signed entries (src/ledger/audit.ts);
 *   checkpoint with `--checkpoint <file>` (a signed checkpoint kept from GET /v1/ledger/checkpoint or
 *              an epoch), the file still reaches it: a chain truncated after it is detected; without
 *              one, truncation cannot be excluded and the report says so;
 * and, given a receipt id: its signature, for a version 2 receipt its split recomputed from its own
 * inputs (what ReceiptCourt.proveBadSplit checks on chain), its Merkle proof once its epoch is closed, and a replay of
 * the inference from the same model and adapter files (content hashes checked first) with the same
 * prompt tokens and sampling parameters including the seed: the output tokens must hash to the
 * receipt's outputHash. The engine is deterministic and batch-invariant, so a replay matches bit
 * for bit or the receipt lies.
 *
 * Read-only: the ledger file is opened without writing (stop the server first, or use a copy).
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { getAddress, isAddress, type Address, type Hex } from "viem";
import { checkpointSignedBy, parseSignedCheckpoint } from "../attribution/checkpoints.js";
import { merkleProof, verifyMerkleProof } from "../attribution/merkle.js";
import { receiptDigest, receiptFromJSON, receiptSplitProblem, verifyReceiptSignature, type ReceiptDomainOptions } from "../attribution/receipts.js";
import { oerr } from "../errors.js";
import { auditBalances, checkAgainstCheckpoint, verifyChain } from "../ledger/audit.js";
import { fromTokenBlob } from "../ledger/token-blob.js";
import { Replayer } from "../validator/replay.js";
import { intArg } from "./args.js";

export const VERIFY_USAGE = `  openlora verify [<receipt id>] --ledger <sqlite file> (--signer <0x address> | --signer-file <file>)
                  [--checkpoint <file>] [--model <path>] [--adapters <dir>] [--no-replay] [--threads N]
        Checks the ledger's signed chains, balances and epochs against the node address you trust, that the file
        still reaches a signed checkpoint you kept, and (with a receipt id) the receipt's signature, split (v2) and Merkle proof
        and a replay of the inference from the model and adapter files (content hashes must match). Exit 0 = valid.
`;

type Check = { ok: boolean; detail: string };

function trustedSigner(flag: string | undefined, file: string | undefined): Address {
  if ((flag === undefined) === (file === undefined)) {
    throw oerr("INVALID_ARGUMENT", "verify needs the node address you trust, from outside the ledger: --signer <0x address> or --signer-file <file> (exactly one)");
  }
  let v = flag;
  if (file !== undefined) {
    try {
      v = readFileSync(file, "utf8").trim();
    } catch {
      throw oerr("INVALID_ARGUMENT", `cannot read --signer-file ${file}`);
    }
  }
  if (!isAddress(v!, { strict: false })) throw oerr("INVALID_ARGUMENT", "the signer must be a 0x-prefixed 20-byte address");
  return getAddress(v!);
}

export async function runVerify(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      ledger: { type: "string" }, model: { type: "string" }, adapters: { type: "string" }, "no-replay": { type: "boolean" },
      signer: { type: "string" }, "signer-file": { type: "string" }, checkpoint: { type: "string" }, threads: { type: "string" },
    },
  });
  if (positionals.length > 1 || (positionals.length === 1 && !/^[1-9]\d{0,15}$/.test(positionals[0]!))) throw oerr("INVALID_ARGUMENT", "verify takes at most one receipt id (a positive integer)");
  if (!values.ledger) throw oerr("INVALID_ARGUMENT", "verify needs --ledger <sqlite file>");
  const trusted = trustedSigner(values.signer, values["signer-file"]);
  const saved = values.checkpoint === undefined ? undefined : parseSignedCheckpoint(readCheckpointFile(values.checkpoint));
  const db = new Database(values.ledger, { readonly: true, fileMustExist: true });
  try {
    const opts = domainOf(db);
    const checks: Record<string, Check> = {};

    const chain = await verifyChain(db as never, opts, [trusted]);
    checks.chain = chain.ok
      ? { ok: true, detail: `${chain.receipts} receipts and ${chain.events} account events, every link and signature by ${trusted}; ${chain.epochs} epochs${chain.unsignedEpochs ? ` (${chain.unsignedEpochs} closed before epochs were signed)` : ", each root signed"}` }
      : { ok: false, detail: `broken at ${chain.badReceiptId !== undefined ? `receipt ${chain.badReceiptId}` : chain.badEventId !== undefined ? `event ${chain.badEventId}` : `epoch ${String(chain.badEpochId ?? "?")}`}: ${chain.reason}` };

    const audit = auditBalances(db as never);
    checks.balances = audit.ok
      ? { ok: true, detail: `${audit.agents} accounts and ${audit.parties} parties: every balance is the sum of signed entries` }
      : { ok: false, detail: `${audit.mismatches.length} mismatches, first: ${JSON.stringify(audit.mismatches[0])}` };

    if (saved) {
      const signed = await checkpointSignedBy(saved, trusted);
      const reach = checkAgainstCheckpoint(db as never, saved);
      checks.checkpoint = !signed
        ? { ok: false, detail: `the checkpoint is not signed by ${trusted}` }
        : reach.ok ? { ok: true, detail: `the file reaches the checkpoint of ${new Date(saved.checkpoint.time).toISOString()} (receipt ${saved.checkpoint.receipts}, event ${saved.checkpoint.events}, epoch ${saved.checkpoint.epoch})` }
        : { ok: false, detail: reach.reason };
    } else {
      checks.checkpoint = { ok: true, detail: "no --checkpoint given: entries removed from the end of the file (with their epochs) cannot be detected" };
    }

    let replayed: Check | undefined;
    if (positionals.length === 1) {
      const id = Number(positionals[0]);
      const row = db.prepare("SELECT r.body, r.hash, r.signature, r.epoch, t.prompt, t.output FROM receipts r LEFT JOIN receipt_tokens t ON t.receipt_id = r.id WHERE r.id = ?").get(id) as
        { body: string; hash: Hex; signature: Hex; epoch: number | null; prompt: Buffer | null; output: Buffer | null } | undefined;
      if (!row) throw oerr("LEDGER_NOT_FOUND", `no receipt ${id} in ${values.ledger}`, { id });
      const receipt = receiptFromJSON(row.body);
      const digest = receiptDigest(receipt, opts);
      const sigOk = digest === row.hash && receipt.node === trusted && (await verifyReceiptSignature(receipt, row.signature, opts));
      checks.signature = { ok: sigOk, detail: sigOk ? `receipt ${id} signed by ${receipt.node}` : `digest ${digest} / stored ${row.hash}, node ${receipt.node}, trusted ${trusted}` };
      const splitProblem = receiptSplitProblem(receipt);
      checks.split = receipt.v !== 2
        ? { ok: true, detail: "version 1 receipt: it carries no split inputs to recompute from" }
        : splitProblem === null ? { ok: true, detail: `fee ${receipt.fee} and ${receipt.lines.length} lines recomputed from the receipt's inputs` }
        : { ok: false, detail: splitProblem };
      if (row.epoch !== null) {
        const leaves = (db.prepare("SELECT hash FROM receipts WHERE epoch = ? ORDER BY id").all(row.epoch) as { hash: Hex }[]).map((r) => r.hash);
        const root = (db.prepare("SELECT root FROM epochs WHERE id = ?").get(row.epoch) as { root: Hex }).root;
        const ok = verifyMerkleProof(merkleProof(leaves, leaves.indexOf(row.hash)), root, digest);
        checks.proof = { ok, detail: `epoch ${row.epoch}, root ${root}` };
      } else {
        checks.proof = { ok: true, detail: "epoch not closed yet: no proof to check" };
      }
      if (values["no-replay"]) replayed = { ok: true, detail: "skipped (--no-replay)" };
      else if (!values.model) throw oerr("INVALID_ARGUMENT", "replay needs --model (or pass --no-replay)");
      else if (!row.prompt || !row.output) replayed = { ok: false, detail: "the ledger holds no tokens for this receipt" };
      else {
        const { ok, detail } = await new Replayer(values.model, values.adapters, intArg(values.threads, "threads", 1, availableParallelism())!).replay(receipt, fromTokenBlob(row.prompt));
        replayed = { ok, detail };
      }
      checks.replay = replayed;
    }

    const ok = Object.values(checks).every((c) => c.ok);
    process.stdout.write(`${JSON.stringify({ ...(positionals.length ? { receipt: Number(positionals[0]) } : {}), signer: trusted, valid: ok, checks }, null, 2)}\n`);
    return ok ? 0 : 1;
  } finally {
    db.close();
  }
}

function readCheckpointFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw oerr("INVALID_ARGUMENT", `cannot read --checkpoint ${path}`);
  }
}

/** The EIP-712 domain the file was created with (part of every hash; a wrong one only makes signatures fail). */
function domainOf(db: Database.Database): ReceiptDomainOptions {
  const raw = (db.prepare("SELECT value FROM meta WHERE key = 'eip712_domain'").get() as { value: string } | undefined)?.value ?? "{}";
  let d: { chainId?: number; verifyingContract?: Address };
  try {
    d = JSON.parse(raw) as typeof d;
  } catch {
    throw oerr("RECEIPT_INVALID", "the ledger's EIP-712 domain record is not JSON");
  }
  return { ...(d.chainId !== undefined ? { chainId: d.chainId } : {}), ...(d.verifyingContract ? { verifyingContract: d.verifyingContract } : {}) };
}

