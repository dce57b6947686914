/**
 * The node's secrets on disk: the operator's token (required by every state-changing endpoint,
 * src/server/access.ts) and the node's receipt-signing key. Both live in files only their owner
 * can read (0600, in a 0700 folder when we create it); a secret file others can read is refused,
 * as ssh refuses a readable private key. Neither is ever taken from the command line, where every
 * user of the machine can read it in the process list: a flag names a file, or the secret comes
 * from the environment.
 *
 *   operator token  --operator-token-file F, else $OPENLORA_OPERATOR_TOKEN_FILE, else
 *                   <cache>/operator.token (generated at first start: "olo_" + 32 random bytes, base64url)
 *   node key        --node-key-file F, else $OPENLORA_NODE_KEY (0x-hex), else <ledger>.key (generated)
 *   client side     `openlora ledger` sends --token-file F, else $OPENLORA_API_KEY, else the
 *                   operator token file if this user can read it and the server is on this machine
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Hex } from "viem";
import { generatePrivateKey } from "viem/accounts";
import { oerr } from "../errors.js";
import { OPERATOR_TOKEN_PREFIX } from "../server/access.js";
import { cacheDir } from "../synth/default-model.js";

export function defaultOperatorTokenFile(): string {
  return process.env.OPENLORA_OPERATOR_TOKEN_FILE ?? join(cacheDir(), "operator.token");
}

/** Reads a secret file, refusing one that group or others may read. */
export function readSecretFile(path: string, what: string): string {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    throw oerr("INVALID_ARGUMENT", `${what} file ${path} does not exist`);
  }
  if ((mode & 0o077) !== 0) {
    throw oerr("INVALID_ARGUMENT", `${what} file ${path} can be read by other users (mode ${(mode & 0o777).toString(8)}); make it private: chmod 600 ${path}`);
  }
  return readFileSync(path, "utf8").trim();
}

/** Writes a new secret file (0600; its folder 0700 when created here). */
export function writeSecretFile(path: string, value: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(path, `${value}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
}

/** The operator token from `file` (default: defaultOperatorTokenFile()), generated there at first use. */
export function operatorToken(file: string | undefined, log: (m: string) => void): { token: string; path: string } {
  const path = file ?? defaultOperatorTokenFile();
  if (!existsSync(path)) {
    if (file !== undefined) throw oerr("INVALID_ARGUMENT", `--operator-token-file ${path} does not exist`);
    writeSecretFile(path, `${OPERATOR_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`);
    log(`generated the operator token in ${path} (mode 0600): state-changing endpoints need it as Authorization: Bearer <token>`);
  }
  const token = readSecretFile(path, "the operator token");
  if (!token.startsWith(OPERATOR_TOKEN_PREFIX) || token.length < OPERATOR_TOKEN_PREFIX.length + 32) {
    throw oerr("INVALID_ARGUMENT", `the operator token in ${path} is malformed (expected ${OPERATOR_TOKEN_PREFIX} followed by at least 32 characters)`);
  }
  return { token, path };
}

/** A private key from a 0600 file. */
export function keyFile(path: string, what: string): Hex {
  return hexKey(readSecretFile(path, what), `${what} file ${path}`);
}

function hexKey(k: string, where: string): Hex {
  if (!/^0x[0-9a-fA-F]{64}$/.test(k)) throw oerr("INVALID_ARGUMENT", `${where} must hold a 0x-prefixed 32-byte hex private key`);
  return k as Hex;
}

/** The node key: --node-key-file, else $OPENLORA_NODE_KEY, else `<ledger>.key`, generated at first use. */
export function nodeKey(file: string | undefined, ledgerPath: string, log: (m: string) => void): Hex {
  if (file !== undefined) return hexKey(readSecretFile(file, "the node key"), `--node-key-file ${file}`);
  const env = process.env.OPENLORA_NODE_KEY;
  if (env !== undefined && env !== "") return hexKey(env.trim(), "OPENLORA_NODE_KEY");
  const keyPath = `${ledgerPath}.key`;
  if (existsSync(keyPath)) return hexKey(readSecretFile(keyPath, "the node key"), keyPath);
  writeSecretFile(keyPath, generatePrivateKey());
  log(`generated the node's receipt-signing key in ${keyPath} (mode 0600)`);
  return hexKey(readSecretFile(keyPath, "the node key"), keyPath);
}

/**
 * What `openlora ledger` sends as its bearer credential, if anything. The operator token found in
 * its default file goes to a server on this machine only (a typo'd or hostile --url must not
 * receive it); for another host, name the credential (--token-file or $OPENLORA_API_KEY).
 */
export function clientCredential(file: string | undefined, serverUrl: string): string | undefined {
  if (file !== undefined) return readSecretFile(file, "the --token-file");
  const env = process.env.OPENLORA_API_KEY;
  if (env !== undefined && env !== "") return env.trim();
  const op = defaultOperatorTokenFile();
  return isLoopback(serverUrl) && existsSync(op) ? readSecretFile(op, "the operator token") : undefined;
}

function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
