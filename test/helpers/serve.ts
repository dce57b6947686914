/** Spawns `openlora serve` (the npm bin over dist/) and waits until it is ready. */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const bin = join(import.meta.dirname, "..", "..", "bin", "openlora.js");

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  baseURL: string;
  /** The server's operator token (its own 0600 file, unless the args name one). */
  operatorToken: string;
  /** Headers that authenticate as the operator. */
  operator: Record<string, string>;
  stderr: () => string;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
}

/** Each server gets its own ledger in a temp folder unless the args name one (or turn attribution off). */
/**
 * `opts.env`: extra environment; `opts.defaultOperatorToken`: pass no --operator-token-file, so the
 * server uses (and at first start generates) its default one under $OPENLORA_CACHE.
 */
export async function startServer(args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; defaultOperatorToken?: boolean } = {}): Promise<ServerProcess> {
  const tmp = mkdtempSync(join(tmpdir(), "openlora-serve-"));
  const own = args.includes("--ledger") || args.includes("--no-attribution") ? [] : ["--ledger", join(tmp, "ledger.sqlite")];
  let operatorToken = `olo_${randomBytes(32).toString("base64url")}`;
  const tokenAt = args.indexOf("--operator-token-file");
  if (tokenAt >= 0) {
    operatorToken = readFileSync(args[tokenAt + 1]!, "utf8").trim();
  } else if (opts.defaultOperatorToken) {
    operatorToken = "";
  } else {
    const file = join(tmp, "operator.token");
    writeFileSync(file, `${operatorToken}\n`, { mode: 0o600 });
    own.push("--operator-token-file", file);
  }
  const child = spawn(process.execPath, [bin, "serve", "--port", "0", ...own, ...args], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...opts.env } });
  let err = "";
  child.stderr!.setEncoding("utf8");
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server not ready in time:\n${err}`)), opts.timeoutMs ?? 120_000);
    child.stderr!.on("data", (d: string) => {
      err += d;
      const m = /ready: .* on http:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(err);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}):\n${err}`)); });
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child, port, baseURL: `http://127.0.0.1:${port}/v1`, stderr: () => err,
    operatorToken, operator: { authorization: `Bearer ${operatorToken}` },
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

/** One Prometheus sample's value (no labels), or undefined. */
export function metric(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}
