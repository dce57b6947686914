/**
 * A local chain for `serve --dev-chain` and the tests: anvil from the npm package
 * `@foundry-rs/anvil` (the binary ships in `@foundry-rs/anvil-linux-amd64`; nothing downloads),
 * bound to 127.0.0.1 on a free port, one PID to stop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import type { Hex } from "viem";
import { oerr } from "../errors.js";

/** anvil's well-known development keys (mnemonic "test test … junk"): each starts with 10000 ETH. */
export const ANVIL_KEYS: readonly Hex[] = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
  "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
  "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
  "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
  "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
  "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
  "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
  "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

export const ANVIL_CHAIN_ID = 31337;

export interface LocalChain {
  url: string;
  port: number;
  chainId: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export function anvilBinary(): string {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = dirname(require.resolve("@foundry-rs/anvil-linux-amd64/package.json"));
  } catch {
    throw oerr("CHAIN_UNAVAILABLE", "anvil is not installed (npm package @foundry-rs/anvil); --dev-chain needs it");
  }
  const bin = join(pkg, "bin", "anvil");
  if (!existsSync(bin)) throw oerr("CHAIN_UNAVAILABLE", `anvil binary missing at ${bin}`);
  return bin;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface StartAnvilOptions {
  port?: number;
  /** Seconds per block; default: a block per transaction (instant mining). */
  blockTime?: number;
  /** Keep chain state in this file across restarts (anvil --state). */
  stateFile?: string;
  /** Record every opcode step, so debug_traceTransaction answers them (anvil --steps-tracing; benches only). */
  stepsTracing?: boolean;
}

/** Starts anvil and resolves once it answers JSON-RPC. */
export async function startAnvil(opts: StartAnvilOptions = {}): Promise<LocalChain> {
  const port = opts.port ?? (await freePort());
  const args = ["--host", "127.0.0.1", "--port", String(port), "--silent", "--chain-id", String(ANVIL_CHAIN_ID)];
  if (opts.blockTime) args.push("--block-time", String(opts.blockTime));
  if (opts.stateFile) args.push("--state", opts.stateFile);
  if (opts.stepsTracing) args.push("--steps-tracing");
  const child = spawn(anvilBinary(), args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(oerr("CHAIN_UNAVAILABLE", `anvil exited (${code}): ${stderr.trim()}`))));
  exited.catch(() => {});
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await Promise.race([
        fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }) }),
        exited,
      ]);
      if (r.ok) break;
    } catch (e) {
      if (child.exitCode !== null) throw e;
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw oerr("CHAIN_UNAVAILABLE", `anvil did not answer on ${url} within 15 s`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    port,
    chainId: ANVIL_CHAIN_ID,
    process: child,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    }),
  };
}
