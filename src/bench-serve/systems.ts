/**
 * The systems a serving benchmark compares, as data: each one's command line lives here and only
 * here. Every system is a separate server process started for one run and stopped after it, so
 * its peak memory and adapter counters belong to that run alone.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { waitForHealth } from "./server-probe.js";

export interface LaunchContext {
  repoRoot: string;
  modelPath: string;
  adapterDir: string;
  port: number;
  threads: number;
  /** Tokens one sequence needs: longest prompt + longest output. */
  contextSize: number;
  /** `node <openloraBin> serve …` */
  openloraBin: string;
  llamacpp: { maxContexts: number; sequences: number; baseSequences: number };
}

export interface SystemSpec {
  name: string;
  description: string;
  /** false: every request names the base model (the ceiling adapter serving should approach). */
  usesAdapters: boolean;
  /** Part of the default set. */
  byDefault: boolean;
  command(c: LaunchContext): { command: string; args: string[] };
}

const HERE = import.meta.dirname;
/** src/bench-serve or dist/bench-serve: the repository is two levels up either way. */
export const REPO_ROOT = resolve(HERE, "..", "..");

/**
 * Each launch gets a fresh ledger of its own (receipts stay on, as users run it): servers started
 * one after another must not share, or inherit, one ledger file.
 */
function openloraServe(c: LaunchContext, extra: string[], withAdapters = true): { command: string; args: string[] } {
  const ledger = join(mkdtempSync(join(tmpdir(), "openlora-bench-ledger-")), "ledger.sqlite");
  return {
    command: process.execPath,
    args: [c.openloraBin, "serve", "--model", c.modelPath, ...(withAdapters ? ["--adapters", c.adapterDir] : []),
      "--port", String(c.port), "--threads", String(c.threads), "--ledger", ledger, ...extra],
  };
}

function llamacppServe(c: LaunchContext): { command: string; args: string[] } {
  // Run from source under tsx when the harness itself runs from source, else the compiled sibling.
  const fromSource = import.meta.url.endsWith(".ts");
  const script = join(HERE, `llamacpp-server.${fromSource ? "ts" : "js"}`);
  return {
    command: process.execPath,
    args: [...(fromSource ? ["--import", "tsx"] : []), script, "--model", c.modelPath, "--lora-dir", c.adapterDir,
      "--threads", String(c.threads), "--port", String(c.port), "--context-size", String(c.contextSize),
      "--max-contexts", String(c.llamacpp.maxContexts), "--sequences", String(c.llamacpp.sequences),
      "--base-sequences", String(c.llamacpp.baseSequences)],
  };
}

export const SYSTEMS: readonly SystemSpec[] = [
  { name: "openlora", description: "openlora, heterogeneous (mixed-adapter) batching", usesAdapters: true, byDefault: true, command: (c) => openloraServe(c, []) },
  { name: "openlora-no-mixed", description: "openlora with heterogeneous batching off (one adapter per batch)", usesAdapters: true, byDefault: true, command: (c) => openloraServe(c, ["--no-mixed-adapters"]) },
  { name: "openlora-base", description: "openlora serving the base model only (the ceiling)", usesAdapters: false, byDefault: true, command: (c) => openloraServe(c, [], false) },
  { name: "llamacpp", description: "llama.cpp (node-llama-cpp): a context per adapter sharing the model, LRU-capped, batches sorted by sequence id", usesAdapters: true, byDefault: true, command: llamacppServe },
  { name: "llamacpp-base", description: "llama.cpp serving the base model only, one batched context", usesAdapters: false, byDefault: false, command: llamacppServe },
];

export function selectSystems(names: readonly string[] | undefined): SystemSpec[] {
  if (!names || names.length === 0) return SYSTEMS.filter((s) => s.byDefault);
  return names.map((n) => {
    const s = SYSTEMS.find((x) => x.name === n);
    if (!s) throw new Error(`unknown system "${n}" (known: ${SYSTEMS.map((x) => x.name).join(", ")})`);
    return s;
  });
}

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => ok(port));
    });
  });
}

export interface RunningSystem {
  spec: SystemSpec;
  origin: string;
  pid: number;
  commandLine: string;
  startupMs: number;
  stop(): Promise<void>;
}

function tail(path: string, chars = 1500): string {
  try {
    const t = readFileSync(path, "utf8");
    return t.slice(-chars);
  } catch {
    return "";
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((ok) => {
    const t = setTimeout(() => ok(false), ms);
    child.once("exit", () => { clearTimeout(t); ok(true); });
  });
}

/** Starts the system's server (output to logPath) and waits for GET /health = 200. */
export async function launchSystem(spec: SystemSpec, ctx: Omit<LaunchContext, "port">, logPath: string, startupTimeoutMs: number): Promise<RunningSystem> {
  const port = await freePort();
  const { command, args } = spec.command({ ...ctx, port });
  const commandLine = [command, ...args].join(" ");
  const fd = openSync(logPath, "a");
  const t0 = performance.now();
  const child = spawn(command, args, { cwd: ctx.repoRoot, stdio: ["ignore", fd, fd], env: process.env });
  closeSync(fd);
  let spawnError: Error | undefined;
  child.once("error", (e) => { spawnError = e; });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    if (!(await waitExit(child, 15_000))) {
      child.kill("SIGKILL");
      await waitExit(child, 5_000);
    }
  };
  const origin = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(origin, startupTimeoutMs, () => {
      if (spawnError) return `${spec.name}: could not start (${spawnError.message})`;
      if (child.exitCode !== null || child.signalCode !== null) {
        return `${spec.name} exited (${child.exitCode ?? child.signalCode}) before /health answered; command: ${commandLine}\n${tail(logPath)}`;
      }
      return undefined;
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { spec, origin, pid: child.pid!, commandLine, startupMs: performance.now() - t0, stop };
}
