/**
 * `openlora serve`: the OpenAI-compatible server. It listens at once (503 NOT_READY while the model
 * loads in the engine thread), then serves; SIGTERM/SIGINT drain in-flight requests, then exit.
 */
import { availableParallelism, homedir } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { EigenDaProxy } from "../da/eigenda.js";
import { oerr } from "../errors.js";
import { relaxHeapGrowth } from "../engine/engine-client.js";
import { EngineSupervisor } from "../engine/supervisor.js";
import type { EngineInit } from "../engine/worker-messages.js";
import { buildServer, type EngineSlot } from "../server/index.js";
import { cacheDir, ensureDefaultModel, ensureDemoAdapters } from "../synth/default-model.js";
import { choiceArg, intArg, progressLine } from "./args.js";
import { operatorToken, readSecretFile } from "./credentials.js";
import { ChainNode } from "../chain/node.js";
import { openAttribution, parseFeePolicy, resolveNodeKey, type AttributionFlags } from "./serve-attribution.js";
import { devNodeKeyFile, prepareChain, type PreparedChain } from "./serve-chain.js";

export const SERVE_USAGE = `  openlora serve [--model <gguf file | HF folder>] [--adapters <dir>] [--port 8000] [--host 127.0.0.1]
                 [--threads N] [--kv-tokens N | --kv-blocks N] [--block-size 16] [--adapter-pool-mb 1024]
                 [--max-running 64] [--token-budget 512] [--prefill-chunk 256] [--max-queue 1024]
                 [--max-lora-rank 256] [--quantize q8_0|q4_0] [--no-mixed-adapters] [--drain-timeout-s 30] [--quiet]
                 [--ledger <sqlite file>] [--node-key-file <file>] [--operator-token-file <file>] [--treasury <party>]
                 [--min-agent-stake N] [--fee-policy protocol=N,operator=N,developer=N,staker=N,data=N,lambda=N] [--no-attribution]
                 [--chain <rpc url> --contracts <file> | --dev-chain [--dev-chain-port 8545]] [--epoch-interval-s 60] [--epoch-receipts N] [--confirmations N]
                 [--eigenda-proxy <url>]
        OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models, /v1/load_lora_adapter,
        /v1/unload_lora_adapter, /health, /metrics). Every adapter in --adapters is a model.
        Without --model, serves the embedded default demo model and demo adapters (generated once, cached).
        Every completion gets a signed receipt (header openlora-receipt; GET /v1/receipts/:id) in the
        ledger (default ~/.cache/openlora/ledger/<model>.sqlite, 0600, signing key beside it or $OPENLORA_NODE_KEY).
        State-changing endpoints need the operator token (default ~/.cache/openlora/operator.token, generated,
        0600); paid requests need an account's API key (docs/api-access.md).
        With --chain (or --dev-chain: a local anvil with the contracts deployed), deposits, stakes, models and access
        policies come from the chain, epochs are posted there and every party claims its earnings (docs/chain.md);
        each epoch's batch (receipts and token ids, for validators) goes in calldata, or to an EigenDA proxy with
        --eigenda-proxy (docs/validators.md).
`;

export async function runServe(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, adapters: { type: "string" }, port: { type: "string" }, host: { type: "string" },
      threads: { type: "string" }, "kv-tokens": { type: "string" }, "kv-blocks": { type: "string" }, "block-size": { type: "string" },
      "adapter-pool-mb": { type: "string" }, "max-running": { type: "string" }, "token-budget": { type: "string" },
      "prefill-chunk": { type: "string" }, "max-queue": { type: "string" }, "max-lora-rank": { type: "string" },
      quantize: { type: "string" }, "no-mixed-adapters": { type: "boolean" }, "drain-timeout-s": { type: "string" },
      quiet: { type: "boolean" }, ledger: { type: "string" }, "node-key": { type: "string" }, "node-key-file": { type: "string" },
      "operator-token-file": { type: "string" }, treasury: { type: "string" }, "min-agent-stake": { type: "string" }, "no-attribution": { type: "boolean" },
      "fee-policy": { type: "string" },
      chain: { type: "string" }, contracts: { type: "string" }, "dev-chain": { type: "boolean" }, "dev-chain-port": { type: "string" },
      "epoch-interval-s": { type: "string" }, "epoch-receipts": { type: "string" }, confirmations: { type: "string" }, "eigenda-proxy": { type: "string" },
    },
  });
  if (values["node-key"] !== undefined) {
    throw oerr("INVALID_ARGUMENT", "--node-key is refused: a key on the command line is visible to every user of the machine; use --node-key-file <0600 file> or OPENLORA_NODE_KEY");
  }
  const quiet = values.quiet === true;
  const log = (msg: string): void => { if (!quiet) process.stderr.write(`${msg}\n`); };
  const port = intArg(values.port, "port", 0, 8000)!;
  if (port > 65535) throw oerr("INVALID_ARGUMENT", `--port must be <= 65535, got ${port}`);
  const host = values.host ?? "127.0.0.1";
  const feePolicy = values["fee-policy"] !== undefined ? parseFeePolicy(values["fee-policy"]) : undefined;
  const threads = intArg(values.threads, "threads", 1, availableParallelism())!;
  const drainTimeoutMs = intArg(values["drain-timeout-s"], "drain-timeout-s", 0, 30)! * 1000;

  let modelPath = values.model;
  let adaptersDir = values.adapters;
  if (modelPath === undefined) {
    modelPath = ensureDefaultModel(log, !quiet && process.stderr.isTTY ? progressLine("generating") : undefined);
    adaptersDir ??= ensureDemoAdapters(log);
    log(`serving the embedded default model ${modelPath} with demo adapters from ${adaptersDir} (random weights: the text is noise, the machinery is real)`);
  }
  const core: NonNullable<EngineInit["core"]> = {};
  const setInt = (flag: string, key: keyof typeof core, min: number): void => {
    const v = intArg(values[flag as keyof typeof values] as string | undefined, flag, min);
    if (v !== undefined) (core as Record<string, number>)[key] = v;
  };
  setInt("kv-blocks", "kvBlocks", 1);
  setInt("block-size", "blockSize", 1);
  setInt("max-running", "maxRunning", 1);
  setInt("token-budget", "tokenBudget", 1);
  setInt("prefill-chunk", "prefillChunk", 1);
  setInt("max-queue", "maxQueue", 0);
  setInt("max-lora-rank", "maxLoraRank", 1);
  const poolMb = intArg(values["adapter-pool-mb"], "adapter-pool-mb", 1);
  if (poolMb !== undefined) core.adapterPoolBytes = poolMb * 1024 * 1024;
  if (values["no-mixed-adapters"]) core.mixedAdapters = false;
  const init: EngineInit = {
    modelPath, threads, core,
    ...(adaptersDir !== undefined ? { adaptersDir } : {}),
    ...(values["kv-tokens"] !== undefined ? { kvTokens: intArg(values["kv-tokens"], "kv-tokens", 1)! } : {}),
    ...(values.quantize !== undefined ? { quantize: choiceArg(values.quantize, "quantize", ["q8_0", "q4_0"] as const)! } : {}),
  };

  // Flags that can be checked before the model loads are checked first: a bad one fails in a moment.
  const minStake = values["min-agent-stake"] ?? "0";
  if (!/^\d+$/.test(minStake)) throw oerr("INVALID_ARGUMENT", `--min-agent-stake must be a non-negative integer, got "${minStake}"`);
  if (values["node-key-file"] !== undefined) readSecretFile(values["node-key-file"], "the node key");
  const devChainPort = intArg(values["dev-chain-port"], "dev-chain-port", 1);
  const chainFlags = { chain: values.chain, contracts: values.contracts, devChain: values["dev-chain"] === true, ...(devChainPort !== undefined ? { devChainPort } : {}) };
  const onChain = chainFlags.devChain || chainFlags.chain !== undefined || chainFlags.contracts !== undefined;
  if (onChain && values["no-attribution"]) throw oerr("INVALID_ARGUMENT", "--chain/--dev-chain settle receipts: they need attribution (drop --no-attribution)");
  const epochIntervalMs = intArg(values["epoch-interval-s"], "epoch-interval-s", 1, 60)! * 1000;
  const epochReceipts = intArg(values["epoch-receipts"], "epoch-receipts", 1);
  const confirmations = intArg(values.confirmations, "confirmations", 0, chainFlags.devChain ? 0 : 2)!;
  const eigenDaProxy = values["eigenda-proxy"];
  if (eigenDaProxy !== undefined) {
    if (!onChain) throw oerr("INVALID_ARGUMENT", "--eigenda-proxy publishes epoch batches: it needs --chain or --dev-chain");
    new EigenDaProxy(eigenDaProxy); // checks the URL before the model loads
  }
  const operator = operatorToken(values["operator-token-file"], log);
  const slot: EngineSlot = { state: "loading", engine: undefined, message: "loading the model" };
  const app = await buildServer(slot, {
    logger: !quiet, operatorToken: operator.token,
    redactPaths: [
      ...(adaptersDir !== undefined ? [{ path: resolve(adaptersDir), label: "<adapters>" }] : []),
      { path: resolve(modelPath), label: "<model>" }, { path: cacheDir(), label: "<cache>" }, { path: homedir(), label: "~" },
    ],
  });
  await app.listen({ port, host });
  const address = app.server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  log(`openlora listening on http://${host}:${bound}/v1 (loading ${modelPath})`);

  let shuttingDown = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log(`${signal}: draining in-flight requests (up to ${drainTimeoutMs / 1000} s)`);
    slot.state = "draining";
    slot.message = "shutting down";
    const engine = slot.engine;
    if (engine) {
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, drainTimeoutMs).unref());
      await Promise.race([engine.drain().catch(() => {}), timeout]);
    }
    await app.close();
    await engine?.close();
    await slot.chain?.stop();
    slot.attribution?.ledger.close();
    await chain?.stop?.();
    log("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  let engine: EngineSupervisor | undefined;
  let chain: PreparedChain | undefined;
  try {
    const showProgress = !quiet && process.stderr.isTTY;
    relaxHeapGrowth();
    // The supervisor restarts the engine thread if it dies (503 NOT_READY meanwhile).
    engine = await EngineSupervisor.start(init, { log, ...(showProgress ? { onProgress: progressLine("loading model") } : {}) });
    if (shuttingDown) { await engine.close(); return 0; }
    if (!values["no-attribution"]) {
      let nodeKeyFile = values["node-key-file"];
      if (chainFlags.devChain && nodeKeyFile === undefined && !process.env.OPENLORA_NODE_KEY) nodeKeyFile = devNodeKeyFile(log);
      const flags: AttributionFlags = { ledgerPath: values.ledger, nodeKeyFile, treasury: values.treasury ?? "protocol-treasury", minAgentStake: BigInt(minStake),
        ...(feePolicy ? { policy: feePolicy } : {}) };
      if (onChain) {
        chain = await prepareChain(chainFlags, resolveNodeKey(flags, engine.info.modelId, log), log);
        const d = chain!.deployment;
        flags.chain = { chainId: d.chainId, settlement: d.settlement, treasury: d.params.treasury, ...(d.court ? { verifyingContract: d.court } : {}) };
      }
      slot.attribution = await openAttribution(engine, flags, log);
      if (chain) {
        slot.chain = await ChainNode.start({
          url: chain.url, deployment: chain.deployment, nodeKey: resolveNodeKey(flags, engine.info.modelId, log), confirmations, epochIntervalMs,
          ...(epochReceipts !== undefined ? { epochReceipts } : {}), ...(eigenDaProxy !== undefined ? { eigenDaProxy } : {}), operatorUrl: `http://${host}:${bound}/v1`, log: app.log,
        }, slot.attribution.ledger);
        slot.chain.run();
        log(`on chain ${chain.deployment.chainId} via ${chain.url}: operator ${slot.chain.status().operator}, settlement ${chain.deployment.settlement}`);
      }
    }
    slot.engine = engine;
    slot.state = "ready";
    delete slot.message;
    const adapters = await engine.listAdapters();
    log(`ready: model "${engine.info.modelId}" and ${adapters.length} adapters on http://${host}:${bound}/v1 (${threads} threads, ${engine.info.kvBlocks} KV blocks of ${engine.info.blockSize})`);
  } catch (e) {
    await app.close();
    await engine?.close();
    await slot.chain?.stop();
    await chain?.stop?.();
    throw e;
  }
  return new Promise<number>(() => {}); // serves until a signal ends the process
}
