/**
 * `openlora validate`: checks one operator's posted epochs from the chain and its data availability layer
 * alone (src/validator/validator.ts) — every receipt's signature, hash-chain link, inclusion under the posted
 * root, token hashes, split to the unit and inputs against the registry in force — and replays a sample
 * bit-exact from the model and adapter files. One JSON line per epoch on stdout, progress on stderr; the
 * state file keeps the last epoch judged, so a restart resumes after it. `--once`: one round, exit 3 when an
 * epoch is faulty. With `--key-file` it acts on chain (src/validator/actions.ts): stakes up to `--stake`,
 * attests honest epochs, sends the single-receipt proofs, challenges replay mismatches and withheld batches,
 * votes on the operator's disputes and resolves them; each action is a JSON line too.
 */
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { createPublicClient, getAddress, http, isAddress, type Address, type PublicClient } from "viem";
import { connectChain } from "../chain/client.js";
import { checkDeployment, readDeployment } from "../chain/deploy.js";
import { EigenDaProxy } from "../da/eigenda.js";
import { oerr } from "../errors.js";
import { ValidatorActor, type Action } from "../validator/actions.js";
import { Replayer } from "../validator/replay.js";
import { Validator, type EpochReport } from "../validator/validator.js";
import { intArg } from "./args.js";
import { keyFile } from "./credentials.js";

export const VALIDATE_USAGE = `  openlora validate --chain <rpc url> --contracts <file> (--operator <0x address> | --node <node url>)
                    [--model <path> --adapters <dir>] [--replay-rate R] [--state <file>] [--eigenda-proxy <url>]
                    [--threads N] [--poll-s S] [--once] [--key-file <0600 file> [--stake N]]
        Follows the operator's posted epochs: fetches each batch from calldata (or the EigenDA proxy), checks every
        receipt (signature, link, root, tokens, split, registry terms, stakes, contributors, policy) and replays a
        sample (default rate 0.05; 0 without --model). One JSON line per epoch; --once exits 3 if one is faulty.
        With --key-file the key acts on chain: stakes up to --stake N (ValidatorCourt), attests honest epochs, sends
        single-receipt fraud proofs, challenges replay mismatches and withheld batches (a bond each), votes on the
        operator's disputes after replaying the disputed receipt, and resolves them. One JSON line per action.
`;

export async function runValidate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      chain: { type: "string" }, contracts: { type: "string" }, operator: { type: "string" }, node: { type: "string" },
      model: { type: "string" }, adapters: { type: "string" }, "replay-rate": { type: "string" }, state: { type: "string" },
      "eigenda-proxy": { type: "string" }, threads: { type: "string" }, "poll-s": { type: "string" }, once: { type: "boolean" },
      "key-file": { type: "string" }, stake: { type: "string" },
    },
  });
  if (values.chain === undefined || values.contracts === undefined) throw oerr("INVALID_ARGUMENT", "validate needs --chain <rpc url> and --contracts <file>");
  const rate = values["replay-rate"] === undefined ? (values.model ? 0.05 : 0) : Number(values["replay-rate"]);
  if (!(rate >= 0 && rate <= 1)) throw oerr("INVALID_ARGUMENT", "--replay-rate must be a number in [0, 1]");
  const pollS = values["poll-s"] === undefined ? 5 : Number(values["poll-s"]);
  if (!(pollS > 0 && pollS <= 3600)) throw oerr("INVALID_ARGUMENT", "--poll-s must be in (0, 3600]");
  const threads = intArg(values.threads, "threads", 1, availableParallelism()) ?? Math.min(2, availableParallelism());
  const deployment = readDeployment(values.contracts);
  const client = createPublicClient({ transport: http(values.chain, { retryCount: 2, timeout: 15_000 }) }) as PublicClient;
  await checkDeployment(client, deployment);
  const operator = await operatorOf(values.operator, values.node);
  const stateFile = values.state ?? `validator-${operator.toLowerCase()}.json`;
  if (values.stake !== undefined && values["key-file"] === undefined) throw oerr("INVALID_ARGUMENT", "--stake needs --key-file (the key that stakes)");
  if (values.stake !== undefined && !/^(0|[1-9][0-9]{0,77})$/.test(values.stake)) throw oerr("INVALID_ARGUMENT", `--stake must be a non-negative integer of token units, got "${values.stake}"`);
  const actor = values["key-file"] === undefined ? undefined
    : new ValidatorActor(await connectChain(values.chain, keyFile(values["key-file"], "the validator key"), deployment.chainId), deployment, operator);
  const printAction = (a: Action) => {
    process.stdout.write(`${JSON.stringify(a)}\n`);
    process.stderr.write(`${a.action}${a.epoch !== undefined ? ` epoch ${a.epoch}` : ""}${a.dispute !== undefined ? ` dispute ${a.dispute}` : ""}${a.detail ? ` (${a.detail})` : ""}: ${a.tx ? `tx ${a.tx}` : `skipped, ${a.skipped}`}\n`);
  };
  if (actor && values.stake !== undefined) {
    const staked = await actor.ensureStake(BigInt(values.stake));
    if (staked) printAction(staked);
  }
  const v = new Validator({
    client, deployment, operator, stateFile, replayRate: rate,
    ...(values.model ? { replayer: new Replayer(values.model, values.adapters, threads) } : {}),
    ...(values["eigenda-proxy"] ? { eigenDa: new EigenDaProxy(values["eigenda-proxy"]) } : {}),
    ...(actor ? { actor } : {}),
    onReport: (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.stderr.write(`epoch ${r.epoch}: ${r.verdict}, ${r.receipts} receipts checked in ${r.checkMs.toFixed(0)} ms, ${r.replayed.length} replayed in ${r.replayMs.toFixed(0)} ms${r.findings.length ? `, ${r.findings.length} findings` : ""}${r.detail ? ` (${r.detail})` : ""}\n`);
      for (const a of r.actions) process.stderr.write(`  ${a.action}: ${a.tx ? `tx ${a.tx}` : `skipped, ${a.skipped}`}\n`);
    },
  });
  process.stderr.write(`validating operator ${operator} on chain ${deployment.chainId} from epoch ${v.lastEpoch + 1} (state ${stateFile}, replay rate ${rate}${actor ? `, acting as ${actor.address}` : ""})\n`);
  const faulty = (rs: EpochReport[]) => rs.some((r) => r.verdict === "faulty");
  const round = async () => {
    const reports = await v.round();
    for (const a of await v.disputes()) printAction(a);
    return reports;
  };
  if (values.once) return faulty(await round()) ? 3 : 0;
  let stop = false;
  process.once("SIGINT", () => { stop = true; });
  process.once("SIGTERM", () => { stop = true; });
  while (!stop) {
    await round();
    for (let waited = 0; waited < pollS * 1000 && !stop; waited += 200) await new Promise((r) => setTimeout(r, 200));
  }
  return 0;
}

async function operatorOf(flag: string | undefined, node: string | undefined): Promise<Address> {
  if ((flag === undefined) === (node === undefined)) throw oerr("INVALID_ARGUMENT", "name the operator to validate: --operator <0x address> or --node <node url> (exactly one)");
  if (flag !== undefined) {
    if (!isAddress(flag, { strict: false })) throw oerr("INVALID_ARGUMENT", `--operator ${flag} is not an address`);
    return getAddress(flag);
  }
  let s: { operator?: unknown };
  try {
    s = (await (await fetch(new URL("/v1/chain", node), { signal: AbortSignal.timeout(10_000) })).json()) as { operator?: unknown };
  } catch (e) {
    throw oerr("INVALID_ARGUMENT", `cannot read the operator from ${node}/v1/chain: ${(e as Error).message}`);
  }
  if (typeof s.operator !== "string" || !isAddress(s.operator, { strict: false })) throw oerr("INVALID_ARGUMENT", `${node}/v1/chain names no operator: is it serving on a chain?`);
  return getAddress(s.operator);
}
