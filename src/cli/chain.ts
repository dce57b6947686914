/**
 * `openlora chain …`: deploy the contracts, and every party's own transactions — an agent's
 * deposit and stake, an owner's model listing and access policy, a staker's stake, anyone's claim.
 * The node sends none of these: each is signed by the party's key (--key-file, a 0600 file, or
 * $OPENLORA_CHAIN_KEY; on the dev chain --dev-account N names one of anvil's well-known keys).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getAddress, isAddress, keccak256, parseEventLogs, toBytes, type Abi, type Address, type Hex } from "viem";
import { contentHash } from "../attribution/content-hash.js";
import { receiptFromJSON } from "../attribution/receipts.js";
import { signingFetch } from "../auth/client.js";
import { LicenceAbi, RegistryAbi, SettlementAbi, TestTokenAbi } from "../chain/abi.js";
import { ANVIL_KEYS } from "../chain/anvil.js";
import { checkReceipt } from "../chain/challenger.js";
import { connectChain, type ChainClients } from "../chain/client.js";
import { deployOpenLora, readDeployment, writeDeployment, type Deployment } from "../chain/deploy.js";
import { ERROR_TABLE, oerr, type ErrorCode } from "../errors.js";
import { readSecretFile } from "./credentials.js";
import { devChainDir } from "./serve-chain.js";

export const CHAIN_USAGE = `  openlora chain deploy --rpc <url> --key-file <file> --out <contracts.json> [--token <erc20>] [--treasury <address>]
                       [--challenge-window-s N] [--withdraw-delay-s N] [--unbonding-delay-s N] [--slash-reward-bps N]
                       [--terms-delay-s N]   (terms take effect N s after their block; default 3600)
                       [--validator-min-stake N] [--challenge-bond N] [--vote-window-s N] [--answer-window-s N]
                       [--validator-unbonding-s N] [--quorum-bps N]   (ValidatorCourt: who attests and votes, what a dispute costs)
  openlora chain <action> (--rpc <url> --contracts <file> --key-file <file> | --dev [--dev-account N]) [--server <node url>]
        mint [--to <address>] --amount N           (the test token only; default to the key's address)
        deposit --amount N [--operator <address>]  (approves and deposits at the node: --operator, or --server's)
        stake-agent --amount N | stake --model <name> --amount N [--wait] | unstake --model <name> --amount N [--wait]
                       (a model's stake counts for receipts from 'inForceFrom', the terms delay after its block)
        request-withdrawal --amount N [--operator <address>] | withdraw   (with the committed spend the node posted)
        register-model --name <name> --kind base|adapter [--base <name>] --price-in N --price-out N
                       (--files <model file or adapter folder> | --content-hash 0x…) [--developer <address>=<share>]...
                       [--wait]   (the terms are in force from 'inForceFrom'; --wait returns then)
        access --model <name> --policy public|allowlist|licence|min-stake [--min-stake N]
        fee-policy --protocol-bps N --operator-bps N --developer-bps N --staker-bps N --data-bps N --lambda-bps N [--wait]
                       (with the node's key: the policy its receipts split by, from 'inForceFrom'; the first at once)
        allow --model <name> --agent <address> [--remove] | licence-mint --model <name> --to <address> --amount N
        claim [--account <address>]                 (the proof comes from --server; the tokens go to the account)
        check-receipt --receipt N [--send]          (every fraud proof of --server's receipt N (and N + 1), simulated with the
                       chain's terms, stakes, Datanet versions, policy and epochs; exit 3 when one would slash; --send sends it)
        complete --model <name> --prompt <text> [--max-tokens N]   (a completion paid by the key's account, signed)
        balance [--account <address>]
        With --dev, the RPC URL and contracts are those of 'openlora serve --dev-chain'. --server defaults to
        http://127.0.0.1:8000.
`;

const ACCESS_POLICIES = ["public", "allowlist", "licence", "min-stake"] as const;

export async function runChain(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      rpc: { type: "string" }, contracts: { type: "string" }, "key-file": { type: "string" }, dev: { type: "boolean" }, "dev-account": { type: "string" },
      server: { type: "string" }, out: { type: "string" }, token: { type: "string" }, treasury: { type: "string" },
      "challenge-window-s": { type: "string" }, "withdraw-delay-s": { type: "string" }, "unbonding-delay-s": { type: "string" }, "slash-reward-bps": { type: "string" },
      "terms-delay-s": { type: "string" }, wait: { type: "boolean" },
      "validator-min-stake": { type: "string" }, "challenge-bond": { type: "string" }, "vote-window-s": { type: "string" }, "answer-window-s": { type: "string" },
      "validator-unbonding-s": { type: "string" }, "quorum-bps": { type: "string" },
      to: { type: "string" }, amount: { type: "string" }, operator: { type: "string" }, model: { type: "string" }, name: { type: "string" }, kind: { type: "string" },
      base: { type: "string" }, "price-in": { type: "string" }, "price-out": { type: "string" }, files: { type: "string" }, "content-hash": { type: "string" },
      developer: { type: "string", multiple: true }, policy: { type: "string" }, "min-stake": { type: "string" }, agent: { type: "string" },
      remove: { type: "boolean" }, account: { type: "string" }, receipt: { type: "string" }, send: { type: "boolean" },
      "protocol-bps": { type: "string" }, "operator-bps": { type: "string" }, "developer-bps": { type: "string" }, "staker-bps": { type: "string" },
      "data-bps": { type: "string" }, "lambda-bps": { type: "string" }, prompt: { type: "string" }, "max-tokens": { type: "string" },
    },
  });
  const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`);
  const key = (): Hex => {
    if (values.dev) return ANVIL_KEYS[intOf(values["dev-account"] ?? "0", "dev-account", 9)]!;
    if (values["key-file"] !== undefined) return hexKey(readSecretFile(values["key-file"], "the chain key"));
    const env = process.env.OPENLORA_CHAIN_KEY;
    if (env) return hexKey(env.trim());
    throw oerr("INVALID_ARGUMENT", "name the key that signs: --key-file <0600 file>, $OPENLORA_CHAIN_KEY, or --dev [--dev-account N]");
  };

  if (action === "deploy") {
    if (values.rpc === undefined || values.out === undefined) throw oerr("INVALID_ARGUMENT", "chain deploy needs --rpc and --out");
    const c = await connectChain(values.rpc, key());
    const secs = (k: string) => (values[k as keyof typeof values] === undefined ? undefined : BigInt(intOf(values[k as keyof typeof values] as string, k)));
    const d = await deployOpenLora(c.wallet, c.public, {
      treasury: values.treasury !== undefined ? address(values.treasury, "treasury") : c.account.address,
      ...(values.token !== undefined ? { token: address(values.token, "token") } : {}),
      ...opt("challengeWindow", secs("challenge-window-s")), ...opt("withdrawDelay", secs("withdraw-delay-s")), ...opt("unbondingDelay", secs("unbonding-delay-s")),
      ...opt("termsDelay", secs("terms-delay-s")),
      ...(values["slash-reward-bps"] !== undefined ? { slashRewardBps: intOf(values["slash-reward-bps"], "slash-reward-bps", 10_000) } : {}),
      validators: {
        ...opt("minStake", values["validator-min-stake"] === undefined ? undefined : amountOf(values["validator-min-stake"])),
        ...opt("challengeBond", values["challenge-bond"] === undefined ? undefined : amountOf(values["challenge-bond"])),
        ...opt("voteWindow", secs("vote-window-s")), ...opt("answerWindow", secs("answer-window-s")), ...opt("unbondingDelay", secs("validator-unbonding-s")),
        ...(values["quorum-bps"] !== undefined ? { quorumBps: intOf(values["quorum-bps"], "quorum-bps", 10_000) } : {}),
      },
    });
    writeDeployment(values.out, d);
    print(d);
    return 0;
  }

  const { url, deployment } = target(values.dev === true, values.rpc, values.contracts);
  const c = await connectChain(url, key(), deployment.chainId);
  const server = values.server ?? "http://127.0.0.1:8000";
  const me = c.account.address;
  const send = (address: Address, abi: Abi, functionName: string, args: readonly unknown[]) => sendTx(c, address, abi, functionName, args);
  const amount = () => amountOf(values.amount);
  const model = () => nameHash(required(values.model, "model"));
  const operator = async () => (values.operator !== undefined ? address(values.operator, "operator") : ((await getJson(`${server}/v1/chain`)) as { operator: Address }).operator);

  switch (action) {
    case "mint":
      print({ tx: await send(deployment.token, TestTokenAbi, "mint", [values.to !== undefined ? address(values.to, "to") : me, amount()]) });
      return 0;
    case "deposit": {
      const op = await operator();
      await send(deployment.token, TestTokenAbi, "approve", [deployment.settlement, amount()]);
      print({ operator: op, tx: await send(deployment.settlement, SettlementAbi, "deposit", [op, amount()]) });
      return 0;
    }
    case "stake-agent":
      await send(deployment.token, TestTokenAbi, "approve", [deployment.settlement, amount()]);
      print({ tx: await send(deployment.settlement, SettlementAbi, "stakeAgent", [amount()]) });
      return 0;
    case "stake":
    case "unstake": {
      if (action === "stake") await send(deployment.token, TestTokenAbi, "approve", [deployment.settlement, amount()]);
      const tx = await send(deployment.settlement, SettlementAbi, action === "stake" ? "stake" : "requestUnstake", [model(), amount()]);
      const [changed] = parseEventLogs({ abi: SettlementAbi, eventName: "StakeChanged", logs: (await c.public.getTransactionReceipt({ hash: tx })).logs });
      const fromMs = Number(changed!.args.from) * 1000;
      print({ tx, total: changed!.args.total.toString(), inForceFrom: new Date(fromMs).toISOString() });
      await waitIf(values.wait, fromMs);
      return 0;
    }
    case "fee-policy": {
      const bps = (k: "protocol-bps" | "operator-bps" | "developer-bps" | "staker-bps" | "data-bps" | "lambda-bps") => intOf(required(values[k], k), k, 10_000);
      const policy = {
        protocolBps: bps("protocol-bps"), operatorBps: bps("operator-bps"), developerBps: bps("developer-bps"),
        stakerBps: bps("staker-bps"), dataBps: bps("data-bps"), lambdaBps: bps("lambda-bps"),
      };
      const tx = await send(deployment.registry, RegistryAbi, "setOperatorPolicy", [policy]);
      const [set] = parseEventLogs({ abi: RegistryAbi, eventName: "OperatorPolicySet", logs: (await c.public.getTransactionReceipt({ hash: tx })).logs });
      const fromMs = Number(set!.args.from) * 1000;
      print({ tx, version: set!.args.version, policy, inForceFrom: new Date(fromMs).toISOString() });
      await waitIf(values.wait, fromMs);
      return 0;
    }
    case "check-receipt": {
      const n = intOf(required(values.receipt, "receipt"), "receipt", Number.MAX_SAFE_INTEGER);
      const got = (await getJson(`${server}/v1/receipts/${n}`)) as { json: string; signature: Hex };
      const receipt = receiptFromJSON(got.json);
      const after = (await getJson(`${server}/v1/receipts/${n + 1}`, true)) as { json: string; signature: Hex } | null;
      const next = after ? { receipt: receiptFromJSON(after.json), signature: after.signature } : undefined;
      const checks = await checkReceipt(c.public, deployment, receipt, got.signature, me, next);
      const lie = checks.find((x) => x.verdict === "slashes");
      const sent = lie && values.send ? { proof: lie.proof, tx: await send(lie.call!.address, lie.call!.abi, lie.call!.functionName, lie.call!.args) } : undefined;
      print({ receipt: receipt.id, node: receipt.node, checks: checks.map(({ proof, verdict, detail }) => ({ proof, verdict, detail })), ...(sent ? { sent } : {}) });
      return lie ? 3 : 0;
    }
    case "request-withdrawal":
      print({ tx: await send(deployment.settlement, SettlementAbi, "requestWithdrawal", [await operator(), amount()]) });
      return 0;
    case "withdraw": {
      const claim = (await getJson(`${server}/v1/chain/claims/${me}`, true)) as { operator: Address; committed: { cumulative: string; proof: Hex[] } | null } | null;
      const op = claim?.operator ?? (await operator());
      const committed = claim?.committed ?? { cumulative: "0", proof: [] };
      print({ tx: await send(deployment.settlement, SettlementAbi, "withdraw", [op, BigInt(committed.cumulative), committed.proof]) });
      return 0;
    }
    case "register-model": {
      const kind = required(values.kind, "kind");
      if (kind !== "base" && kind !== "adapter") throw oerr("INVALID_ARGUMENT", `--kind must be base or adapter, got "${kind}"`);
      const hash = values["content-hash"] !== undefined ? hex32(values["content-hash"]) : await contentHash(required(values.files, "files (or --content-hash)"));
      const developers = (values.developer ?? [`${me}=1`]).map((d) => {
        const [a, s] = d.split("=");
        return { party: address(a ?? "", "developer"), share: amountOf(s ?? "1") };
      });
      const terms = { contentHash: hash, priceIn: amountOf(required(values["price-in"], "price-in")), priceOut: amountOf(required(values["price-out"], "price-out")), developers, hasShares: false, developerBps: 0, stakerBps: 0, dataBps: 0, lineage: [], parents: [] };
      const base = kind === "base" ? `0x${"0".repeat(64)}` : nameHash(required(values.base, "base"));
      const tx = await send(deployment.registry, RegistryAbi, "registerModel", [values.name, kind === "base" ? 0 : 1, base, terms]);
      const [set] = parseEventLogs({ abi: RegistryAbi, eventName: "TermsSet", logs: (await c.public.getTransactionReceipt({ hash: tx })).logs });
      const fromMs = Number(set!.args.from) * 1000;
      print({ id: nameHash(required(values.name, "name")), contentHash: hash, tx, inForceFrom: new Date(fromMs).toISOString() });
      await waitIf(values.wait, fromMs);
      return 0;
    }
    case "access": {
      const p = required(values.policy, "policy");
      const i = (ACCESS_POLICIES as readonly string[]).indexOf(p);
      if (i < 0) throw oerr("INVALID_ARGUMENT", `--policy must be one of ${ACCESS_POLICIES.join(", ")}`);
      print({ tx: await send(deployment.registry, RegistryAbi, "setAccess", [model(), i, amountOf(values["min-stake"] ?? "0")]) });
      return 0;
    }
    case "allow":
      print({ tx: await send(deployment.registry, RegistryAbi, "setAllowed", [model(), address(required(values.agent, "agent"), "agent"), values.remove !== true]) });
      return 0;
    case "licence-mint":
      print({ tx: await send(deployment.licence, LicenceAbi, "mint", [model(), address(required(values.to, "to"), "to"), amount()]) });
      return 0;
    case "claim": {
      const account = values.account !== undefined ? address(values.account, "account") : me;
      const p = (await getJson(`${server}/v1/chain/claims/${account}`)) as { operator: Address; earned: { epoch: number; cumulative: string; proof: Hex[] } | null };
      if (!p.earned) throw oerr("CLAIM_NOT_FOUND", `${account} has no earnings in a posted epoch of this node yet`);
      const before = await balance(c, deployment, account);
      const tx = await send(deployment.settlement, SettlementAbi, "claim", [p.operator, BigInt(p.earned.epoch), account, BigInt(p.earned.cumulative), p.earned.proof]);
      print({ account, epoch: p.earned.epoch, cumulative: p.earned.cumulative, paid: (await balance(c, deployment, account)) - before, tx });
      return 0;
    }
    case "complete": {
      const f = signingFetch(key(), { chainId: deployment.chainId });
      const r = await f(`${server}/v1/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: required(values.model, "model"), prompt: required(values.prompt, "prompt"), max_tokens: intOf(values["max-tokens"] ?? "16", "max-tokens") }),
      });
      const body = (await r.json()) as { choices?: { text: string }[]; usage?: unknown; error?: { code: string; message: string } };
      if (!r.ok) {
        // The server's own code when it is one of ours (ACCESS_DENIED, CHAIN_VIEW_STALE, INSUFFICIENT_BALANCE, …).
        const code = body.error?.code !== undefined && Object.hasOwn(ERROR_TABLE, body.error.code) ? (body.error.code as ErrorCode) : "INTERNAL";
        throw oerr(code, `the node answered ${r.status}: ${body.error?.message ?? ""}`);
      }
      print({ agent: me.toLowerCase(), text: body.choices?.[0]?.text, usage: body.usage, receipt: r.headers.get("openlora-receipt") });
      return 0;
    }
    case "balance": {
      const account = values.account !== undefined ? address(values.account, "account") : me;
      print({ account, token: deployment.token, balance: await balance(c, deployment, account) });
      return 0;
    }
    default:
      process.stderr.write(`error [INVALID_ARGUMENT]: unknown chain action "${action ?? ""}"\n\n${CHAIN_USAGE}`);
      return 2;
  }
}

function target(dev: boolean, rpc: string | undefined, contracts: string | undefined): { url: string; deployment: Deployment } {
  if (dev) {
    const dir = devChainDir();
    let url: string;
    try {
      url = rpc ?? readFileSync(join(dir, "rpc.url"), "utf8").trim();
    } catch {
      throw oerr("CHAIN_UNAVAILABLE", "no dev chain is running: start 'openlora serve --dev-chain' first");
    }
    return { url, deployment: readDeployment(contracts ?? join(dir, "contracts.json")) };
  }
  if (rpc === undefined || contracts === undefined) throw oerr("INVALID_ARGUMENT", "name the chain: --rpc <url> --contracts <file> (or --dev)");
  return { url: rpc, deployment: readDeployment(contracts) };
}

async function sendTx(c: ChainClients, address: Address, abi: Abi, functionName: string, args: readonly unknown[]): Promise<Hex> {
  let hash: Hex;
  try {
    hash = await c.wallet.writeContract({ address, abi, functionName, args } as never);
  } catch (e) {
    const reason = (e as { cause?: { data?: { errorName?: string } }; shortMessage?: string }).cause?.data?.errorName ?? (e as { shortMessage?: string }).shortMessage ?? (e as Error).message;
    throw oerr("CHAIN_TX_FAILED", `${functionName}: ${reason}`, { function: functionName });
  }
  const r = await c.public.waitForTransactionReceipt({ hash });
  if (r.status !== "success") throw oerr("CHAIN_TX_FAILED", `${functionName} was reverted (tx ${hash})`, { tx: hash });
  return hash;
}

async function balance(c: ChainClients, d: Deployment, account: Address): Promise<bigint> {
  return c.public.readContract({ address: d.token, abi: TestTokenAbi, functionName: "balanceOf", args: [account] });
}

async function getJson(url: string, notFoundIsNull = false): Promise<unknown> {
  let r: Response;
  try {
    r = await fetch(url);
  } catch (e) {
    throw oerr("CHAIN_UNAVAILABLE", `the node at ${new URL(url).origin} does not answer: ${(e as Error).message}`);
  }
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (r.status === 404 && notFoundIsNull) return null;
  if (!r.ok) throw oerr(r.status === 404 ? "CLAIM_NOT_FOUND" : "CHAIN_UNAVAILABLE", `${url}: ${body.error?.message ?? r.status}`);
  return body;
}

function nameHash(name: string): Hex {
  return keccak256(toBytes(name));
}

function required(v: string | undefined, name: string): string {
  if (v === undefined || v === "") throw oerr("INVALID_ARGUMENT", `--${name} is required`);
  return v;
}

function address(v: string, name: string): Address {
  if (!isAddress(v, { strict: false })) throw oerr("INVALID_ARGUMENT", `--${name} must be a 0x address, got "${v.slice(0, 64)}"`);
  return getAddress(v);
}

function amountOf(v: string | undefined): bigint {
  if (v === undefined || !/^(0|[1-9][0-9]*)$/.test(v) || v.length > 78) throw oerr("INVALID_ARGUMENT", `--amount (and prices, shares) must be a non-negative integer of atomic units, got "${v ?? ""}"`);
  return BigInt(v);
}

function intOf(v: string, name: string, max = Number.MAX_SAFE_INTEGER): number {
  // Decimal digits only: Number() would also take "1e3", "0x10", " 5" and "" (0).
  const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw oerr("INVALID_ARGUMENT", `--${name} must be an integer in [0, ${max}], got "${v}"`);
  return n;
}

function hex32(v: string): Hex {
  if (!/^0x[0-9a-fA-F]{64}$/.test(v)) throw oerr("INVALID_ARGUMENT", `--content-hash must be 32 bytes of 0x hex`);
  return v.toLowerCase() as Hex;
}

function hexKey(v: string): Hex {
  if (!/^0x[0-9a-fA-F]{64}$/.test(v)) throw oerr("INVALID_ARGUMENT", "the chain key must be 32 bytes of 0x-prefixed hex");
  return v as Hex;
}

function opt<K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: V };
}

/** --wait: returns once `fromMs` has passed, and a second more for the node's clock and this machine's to agree. */
async function waitIf(wait: boolean | undefined, fromMs: number): Promise<void> {
  if (wait) await new Promise((r) => setTimeout(r, Math.max(0, fromMs + 1000 - Date.now())));
}
