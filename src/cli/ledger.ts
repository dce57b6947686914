/**
 * `openlora ledger …`: the node's economics through a running server's endpoints
 * (src/server/ledger-routes.ts). The server owns the ledger's SQLite file, so this command never
 * opens it: a second writer would break the receipt chain. It authenticates with --token-file,
 * else $OPENLORA_API_KEY, else the operator token file when this user can read it
 * (src/cli/credentials.ts) — or, with --agent-key-file F (a 0600 file holding a 0x private key),
 * signs each request as that key's address instead (src/auth/client.ts; --chain-id, else
 * $OPENLORA_CHAIN_ID, else 1, must be the server's). Who may run what is docs/api-access.md.
 *
 * Prints the server's JSON answer on stdout. A server error prints `error [CODE]: message` on
 * stderr (the code from the error body) and exits 1; usage errors throw INVALID_ARGUMENT (exit 2
 * through main.ts); an unreachable server is NOT_READY (exit 1). `verify` exits 1 when a check fails.
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { oerr } from "../errors.js";
import type { Hex } from "viem";
import { signingFetch } from "../auth/client.js";
import { clientCredential, readSecretFile } from "./credentials.js";

function agentKey(file: string): Hex {
  const k = readSecretFile(file, "the --agent-key-file");
  if (!/^0x[0-9a-fA-F]{64}$/.test(k)) throw oerr("INVALID_ARGUMENT", `--agent-key-file ${file} must hold a 0x-prefixed 32-byte hex private key`);
  return k as Hex;
}

export const LEDGER_USAGE = `  openlora ledger <command> [--url http://127.0.0.1:8000] [--token-file F | --agent-key-file F [--chain-id N]]
        (talks to a running 'openlora serve'; --agent-key-file signs as the key's address, see docs/api-access.md)
        models add --id <id> --kind base|adapter --owner <party> [--base-model <id>] --price-in <n> --price-out <n>
                   --content-hash <0x…32 bytes> --developer <party>=<share>... [--lineage <datanet>@<version>=<weight>]...
                   [--parent <model>=<weight>]... [--shares <developerBps>,<stakerBps>,<dataBps>]
        models list | models show <id>
        datanets create <id> --owner <party>
        datanets contribute <id> (--content <text> | --content-file <path>)      (as the account whose key is sent)
        datanets records <id> [--status pending|approved|rejected]
        datanets approve|reject <id> <record> | datanets publish <id>            (with the owner's key)
        datanets versions <id>
        agents create <id>            (prints the new account's API key, once)
        agents key <id>               (a new key; the old one stops working)
        agents show <id> | agents deposit|withdraw|stake|unstake <id> <amount>
        stake <model> <amount> | unstake <model> <amount>                      (the caller's own balance)
        balances [<party>] | payout <party> <amount>
        receipt <id> | events [--account <id>] [--after <n>] | checkpoint
        epoch close | epoch list
        verify                      (operator; exit 1 when a chain or the balances do not check out)
        Amounts are integers in atomic units, passed and printed as decimal strings.
`;

const DEFAULT_URL = "http://127.0.0.1:8000";

type Options = NonNullable<ParseArgsConfig["options"]>;

interface Parsed {
  values: Record<string, string | string[] | boolean | undefined>;
  positionals: string[];
}

function parse(argv: string[], options: Options = {}): Parsed {
  const { values, positionals } = parseArgs({ args: argv, options: { url: { type: "string" }, "token-file": { type: "string" }, "agent-key-file": { type: "string" }, "chain-id": { type: "string" }, ...options }, allowPositionals: true, strict: true });
  return { values: values as Parsed["values"], positionals };
}

/** Exactly the positionals `names`; usage error otherwise. */
function positional(p: Parsed, what: string, names: string[]): string[] {
  if (p.positionals.length !== names.length) {
    throw oerr("INVALID_ARGUMENT", `ledger ${what} takes ${names.length === 0 ? "no arguments" : names.map((n) => `<${n}>`).join(" ")}, got ${p.positionals.length === 0 ? "none" : p.positionals.map((x) => JSON.stringify(x)).join(" ")}`);
  }
  return p.positionals;
}

function str(p: Parsed, name: string, what: string): string {
  const v = p.values[name];
  if (typeof v !== "string" || v === "") throw oerr("INVALID_ARGUMENT", `ledger ${what} needs --${name}`);
  return v;
}

function optStr(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

function many(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v : [];
}

/** "<key>=<value>", split at the last "=" (names may contain "="; values are digits). */
function keyValue(arg: string, flag: string, shape: string): [string, string] {
  const i = arg.lastIndexOf("=");
  if (i <= 0 || i === arg.length - 1) throw oerr("INVALID_ARGUMENT", `--${flag} must be ${shape}, got "${arg}"`);
  return [arg.slice(0, i), arg.slice(i + 1)];
}

function intOf(v: string, what: string): number {
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v))) throw oerr("INVALID_ARGUMENT", `${what} must be a non-negative integer, got "${v}"`);
  return Number(v);
}

function modelBody(p: Parsed): Record<string, unknown> {
  const body: Record<string, unknown> = {
    id: str(p, "id", "models add"),
    kind: str(p, "kind", "models add"),
    owner: str(p, "owner", "models add"),
    priceIn: str(p, "price-in", "models add"),
    priceOut: str(p, "price-out", "models add"),
    contentHash: str(p, "content-hash", "models add"),
  };
  const base = optStr(p, "base-model");
  if (base !== undefined) body.baseModel = base;
  const devs = many(p, "developer");
  if (devs.length === 0) throw oerr("INVALID_ARGUMENT", "ledger models add needs at least one --developer <party>=<share>");
  body.developers = devs.map((d) => {
    const [party, share] = keyValue(d, "developer", "<party>=<share>");
    return { party, share };
  });
  const lineage = many(p, "lineage");
  if (lineage.length > 0) {
    body.lineage = lineage.map((l) => {
      const [key, weight] = keyValue(l, "lineage", "<datanet>@<version>=<weight>");
      const at = key.lastIndexOf("@");
      if (at <= 0) throw oerr("INVALID_ARGUMENT", `--lineage must be <datanet>@<version>=<weight>, got "${l}"`);
      return { datanet: key.slice(0, at), version: intOf(key.slice(at + 1), "--lineage version"), weight };
    });
  }
  const parents = many(p, "parent");
  if (parents.length > 0) {
    body.parents = parents.map((x) => {
      const [model, weight] = keyValue(x, "parent", "<model>=<weight>");
      return { model, weight };
    });
  }
  const shares = optStr(p, "shares");
  if (shares !== undefined) {
    const parts = shares.split(",");
    if (parts.length !== 3) throw oerr("INVALID_ARGUMENT", `--shares must be <developerBps>,<stakerBps>,<dataBps>, got "${shares}"`);
    const [developerBps, stakerBps, dataBps] = parts.map((x) => intOf(x.trim(), "--shares")) as [number, number, number];
    body.shares = { developerBps, stakerBps, dataBps };
  }
  return body;
}

/** What to send: method, path (already encoded) and optional JSON body. */
interface Call {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
}

const seg = (s: string): string => encodeURIComponent(s);

/** The HTTP call a command line stands for (usage errors throw INVALID_ARGUMENT). */
export function ledgerCall(argv: string[]): { call: Call; url: string; verify: boolean; tokenFile: string | undefined; agentKeyFile: string | undefined; chainId: number } {
  const [cmd, ...rest] = argv;
  const sub = rest[0] !== undefined && !rest[0].startsWith("-") ? rest[0] : undefined;
  const subArgs = sub === undefined ? rest : rest.slice(1);
  let p: Parsed = { values: {}, positionals: [] };
  let call: Call;
  const need = (what: string, names: string[], options?: Options): string[] => {
    p = parse(subArgs, options);
    return positional(p, what, names);
  };
  switch (cmd) {
    case "models":
      switch (sub) {
        case "add":
          need("models add", [], {
            id: { type: "string" }, kind: { type: "string" }, owner: { type: "string" }, "base-model": { type: "string" },
            "price-in": { type: "string" }, "price-out": { type: "string" }, "content-hash": { type: "string" },
            developer: { type: "string", multiple: true }, lineage: { type: "string", multiple: true },
            parent: { type: "string", multiple: true }, shares: { type: "string" },
          });
          call = { method: "POST", path: "/v1/ledger/models", body: modelBody(p) };
          break;
        case "list": need("models list", []); call = { method: "GET", path: "/v1/ledger/models" }; break;
        case "show": { const [id] = need("models show", ["id"]); call = { method: "GET", path: `/v1/ledger/models/${seg(id!)}` }; break; }
        default: throw unknownSub("models", sub, "add, list or show");
      }
      break;
    case "datanets":
      switch (sub) {
        case "create": {
          const [id] = need("datanets create", ["id"], { owner: { type: "string" } });
          call = { method: "POST", path: "/v1/datanets", body: { id, owner: str(p, "owner", "datanets create") } };
          break;
        }
        case "contribute": {
          const [id] = need("datanets contribute", ["id"], { content: { type: "string" }, "content-file": { type: "string" } });
          const text = optStr(p, "content");
          const file = optStr(p, "content-file");
          if ((text === undefined) === (file === undefined)) throw oerr("INVALID_ARGUMENT", "ledger datanets contribute needs exactly one of --content <text> or --content-file <path>");
          let content = text;
          if (file !== undefined) {
            try {
              content = readFileSync(file, "utf8");
            } catch (e) {
              throw oerr("INVALID_ARGUMENT", `cannot read --content-file ${file}: ${(e as Error).message}`);
            }
          }
          call = { method: "POST", path: `/v1/datanets/${seg(id!)}/records`, body: { content } };
          break;
        }
        case "records": {
          const [id] = need("datanets records", ["id"], { status: { type: "string" } });
          const status = optStr(p, "status");
          call = { method: "GET", path: `/v1/datanets/${seg(id!)}/records${status === undefined ? "" : `?status=${seg(status)}`}` };
          break;
        }
        case "approve": case "reject": {
          const [id, record] = need(`datanets ${sub}`, ["id", "record"]);
          call = { method: "POST", path: `/v1/datanets/${seg(id!)}/records/${seg(record!)}/${sub}`, body: {} };
          break;
        }
        case "publish": {
          const [id] = need("datanets publish", ["id"]);
          call = { method: "POST", path: `/v1/datanets/${seg(id!)}/publish`, body: {} };
          break;
        }
        case "versions": { const [id] = need("datanets versions", ["id"]); call = { method: "GET", path: `/v1/datanets/${seg(id!)}/versions` }; break; }
        default: throw unknownSub("datanets", sub, "create, contribute, records, approve, reject, publish or versions");
      }
      break;
    case "agents":
      switch (sub) {
        case "create": { const [id] = need("agents create", ["id"]); call = { method: "POST", path: "/v1/accounts/agents", body: { id } }; break; }
        case "key": { const [id] = need("agents key", ["id"]); call = { method: "POST", path: `/v1/accounts/agents/${seg(id!)}/keys`, body: {} }; break; }
        case "show": { const [id] = need("agents show", ["id"]); call = { method: "GET", path: `/v1/accounts/agents/${seg(id!)}` }; break; }
        case "deposit": case "withdraw": case "stake": case "unstake": {
          const [id, amount] = need(`agents ${sub}`, ["id", "amount"]);
          call = { method: "POST", path: `/v1/accounts/agents/${seg(id!)}/${sub}`, body: { amount } };
          break;
        }
        default: throw unknownSub("agents", sub, "create, key, show, deposit, withdraw, stake or unstake");
      }
      break;
    case "stake": case "unstake": {
      p = parse(rest);
      const [model, amount] = positional(p, cmd, ["model", "amount"]);
      call = { method: "POST", path: cmd === "stake" ? "/v1/stakes" : "/v1/stakes/unstake", body: { model, amount } };
      break;
    }
    case "payout": {
      p = parse(rest);
      const [party, amount] = positional(p, "payout", ["party", "amount"]);
      call = { method: "POST", path: `/v1/balances/${seg(party!)}/payout`, body: { amount } };
      break;
    }
    case "events": {
      p = parse(rest, { account: { type: "string" }, after: { type: "string" } });
      positional(p, "events", []);
      const q = new URLSearchParams();
      for (const k of ["account", "after"]) { const v = optStr(p, k); if (v !== undefined) q.set(k, v); }
      call = { method: "GET", path: `/v1/ledger/events${q.size ? `?${q}` : ""}` };
      break;
    }
    case "checkpoint":
      p = parse(rest);
      positional(p, "checkpoint", []);
      call = { method: "GET", path: "/v1/ledger/checkpoint" };
      break;
    case "balances": {
      p = parse(rest);
      if (p.positionals.length > 1) positional(p, "balances", ["party"]);
      const party = p.positionals[0];
      call = { method: "GET", path: party === undefined ? "/v1/balances" : `/v1/balances/${seg(party)}` };
      break;
    }
    case "receipt": {
      p = parse(rest);
      const [id] = positional(p, "receipt", ["id"]);
      call = { method: "GET", path: `/v1/receipts/${seg(id!)}` };
      break;
    }
    case "epoch":
      switch (sub) {
        case "close": need("epoch close", []); call = { method: "POST", path: "/v1/epochs/close" }; break;
        case "list": need("epoch list", []); call = { method: "GET", path: "/v1/epochs" }; break;
        default: throw unknownSub("epoch", sub, "close or list");
      }
      break;
    case "verify":
      p = parse(rest);
      positional(p, "verify", []);
      call = { method: "GET", path: "/v1/ledger/verify" };
      break;
    default:
      throw oerr("INVALID_ARGUMENT", `unknown ledger command "${cmd}"\n\nUsage:\n${LEDGER_USAGE}`);
  }
  const tokenFile = optStr(p, "token-file");
  const agentKeyFile = optStr(p, "agent-key-file");
  if (tokenFile !== undefined && agentKeyFile !== undefined) throw oerr("INVALID_ARGUMENT", "ledger takes --token-file or --agent-key-file, not both");
  const chain = optStr(p, "chain-id") ?? process.env.OPENLORA_CHAIN_ID ?? "1";
  if (!/^[1-9][0-9]{0,15}$/.test(chain) || !Number.isSafeInteger(Number(chain))) throw oerr("INVALID_ARGUMENT", `--chain-id must be a positive integer, got "${chain}"`);
  return { call, url: serverUrl(optStr(p, "url")), verify: cmd === "verify", tokenFile, agentKeyFile, chainId: Number(chain) };
}

function unknownSub(cmd: string, sub: string | undefined, choices: string): Error {
  return oerr("INVALID_ARGUMENT", sub === undefined ? `ledger ${cmd} needs a subcommand: ${choices}` : `unknown ledger ${cmd} command "${sub}" (${choices})`);
}

/** The server's root URL: --url, else OPENLORA_URL, else http://127.0.0.1:8000; a trailing /v1 is dropped. */
function serverUrl(flag: string | undefined): string {
  const raw = flag ?? process.env.OPENLORA_URL ?? DEFAULT_URL;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw oerr("INVALID_ARGUMENT", `--url must be an http(s) URL such as ${DEFAULT_URL}, got "${raw}"`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw oerr("INVALID_ARGUMENT", `--url must be http or https, got "${raw}"`);
  return u.toString().replace(/\/+$/, "").replace(/\/v1$/, "");
}

export async function runLedger(argv: string[]): Promise<number> {
  if (argv.length === 0 || ["help", "--help", "-h"].includes(argv[0]!)) {
    process.stdout.write(`Usage:\n${LEDGER_USAGE}`);
    return argv.length === 0 ? 2 : 0;
  }
  const { call, url, verify, tokenFile, agentKeyFile, chainId } = ledgerCall(argv);
  const headers: Record<string, string> = {};
  let send: typeof fetch = fetch;
  if (agentKeyFile !== undefined) {
    send = signingFetch(agentKey(agentKeyFile), { chainId });
  } else {
    const credential = clientCredential(tokenFile, url);
    if (credential !== undefined) headers.authorization = `Bearer ${credential}`;
  }
  if (call.body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await send(url + call.path, { method: call.method, headers, ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw oerr("NOT_READY", `cannot reach the openlora server at ${url}: ${cause?.code ?? cause?.message ?? (e as Error).message} (is 'openlora serve' running with the ledger enabled?)`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const code = typeof err?.code === "string" ? err.code : `HTTP_${res.status}`;
    const message = typeof err?.message === "string" ? err.message : text.slice(0, 500) || res.statusText;
    process.stderr.write(`error [${code}]: ${message}\n`);
    return 1;
  }
  if (json === undefined) {
    process.stderr.write(`error [INTERNAL]: the server at ${url} answered ${call.method} ${call.path} with something that is not JSON\n`);
    return 1;
  }
  process.stdout.write(JSON.stringify(json, null, 2) + "\n");
  if (verify) {
    const v = json as { chain?: { ok?: unknown }; balances?: { ok?: unknown } };
    if (v.chain?.ok !== true || v.balances?.ok !== true) return 1;
  }
  return 0;
}
