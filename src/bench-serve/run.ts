/**
 * The serving benchmark (issue #5): for every sweep point, every system in turn (A B C A B C …) is
 * started as its own server process, driven with the identical seeded trace over streaming HTTP,
 * probed (/metrics before and after, peak RSS) and stopped. Writes requests.json (every request),
 * results.json, summary.md and the SVG plots into the output folder.
 *
 *   npx tsx src/bench-serve/run.ts --quick [--json] [--systems llamacpp,openlora] …
 *   (or `openlora bench serve …` once wired into the CLI)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseServeBenchArgs } from "./args.js";
import { native } from "../native/index.js";
import { type Assets, ensureAssets, existingAssets } from "./assets.js";
import { driveTrace } from "./client.js";
import { isEntryPoint } from "./entry-point.js";
import { type Point, pointLabel, type ServeBenchOptions, sweepPoints } from "./config.js";
import { computeMetrics, measured } from "./metrics.js";
import { aggregate, describeMachine, jsonSummary, type MachineInfo, markdownReport, plots, type RunResult } from "./report.js";
import { baseModelId, counterDelta, ForeignCpuMeter, MemorySampler, scrapeAdapterCounters } from "./server-probe.js";
import { launchSystem, REPO_ROOT, selectSystems, type SystemSpec } from "./systems.js";
import { generateTrace } from "./workload.js";

const log = (msg: string) => process.stderr.write(`${msg}\n`);

function prepareAssets(o: ServeBenchOptions): Assets {
  const needed = Math.max(...o.adapterCounts, o.concurrency === undefined ? o.rateSweepAdapters : 1);
  let assets: Assets;
  if (o.adapterDir) {
    assets = existingAssets(o.modelPath ?? ensureAssets({ ...assetSpec(o), count: 0 }, log).modelPath, o.adapterDir);
  } else {
    const made = ensureAssets({ ...assetSpec(o), count: needed }, log);
    assets = o.modelPath ? { ...made, modelPath: o.modelPath } : made;
  }
  if (assets.adapterIds.length < needed) throw new Error(`${assets.adapterDir} holds ${assets.adapterIds.length} GGUF adapters; the sweep needs ${needed}`);
  return { ...assets, modelPath: resolve(assets.modelPath), adapterDir: resolve(assets.adapterDir) };
}

function assetSpec(o: ServeBenchOptions) {
  return { preset: o.preset, weightType: o.weightType, modelSeed: 7, ranks: o.ranks, loraType: o.loraType, targets: o.targets, count: 0 };
}

async function runOne(spec: SystemSpec, point: Point, repeat: number, o: ServeBenchOptions, assets: Assets): Promise<RunResult> {
  const tag = `${spec.name}-n${point.adapters}-${point.rate !== undefined ? `r${point.rate}` : `c${point.concurrency}`}-${repeat}`;
  const sys = await launchSystem(spec, {
    repoRoot: REPO_ROOT, modelPath: assets.modelPath, adapterDir: assets.adapterDir, threads: o.threads,
    contextSize: o.promptLen[1] + o.outputLen[1] + 8, openloraBin: resolve(REPO_ROOT, o.openloraBin), llamacpp: o.llamacpp,
  }, join(o.outDir, "logs", `${tag}.log`), o.startupTimeoutS * 1000);
  const memory = new MemorySampler(sys.pid);
  try {
    const fallbackId = assets.modelPath.split("/").pop()!.replace(/\.gguf$/i, "");
    const baseId = await baseModelId(sys.origin, new Set(assets.adapterIds), fallbackId);
    const trace = generateTrace({
      seed: o.seed, requests: o.requests, adapters: point.adapters, popularity: o.popularity,
      arrival: point.concurrency !== undefined ? { mode: "closed", concurrency: point.concurrency } : { mode: "gamma", rate: point.rate!, cv: o.cv },
      promptLen: o.promptLen, outputLen: o.outputLen,
    });
    const before = await scrapeAdapterCounters(sys.origin);
    const cpu = new ForeignCpuMeter(sys.pid);
    const { records } = await driveTrace(trace, {
      baseURL: `${sys.origin}/v1`, usesAdapters: spec.usesAdapters, promptFormat: o.promptFormat, requestTimeoutMs: o.requestTimeoutS * 1000,
      modelFor: (r) => (spec.usesAdapters ? assets.adapterIds[r.adapterIndex]! : baseId),
    });
    const foreignCpu = cpu.stop();
    const after = await scrapeAdapterCounters(sys.origin);
    const peakRssBytes = memory.stop();
    const counters = counterDelta(before, after);
    return {
      system: spec.name, point, repeat, commandLine: sys.commandLine, baseModelId: baseId, startupMs: sys.startupMs,
      metrics: computeMetrics(measured(records, o.warmup), o.sloTtftMs), records,
      ...(peakRssBytes !== undefined ? { peakRssBytes } : {}), ...(foreignCpu !== undefined ? { foreignCpu } : {}), ...(counters ? { adapterCounters: counters } : {}),
    };
  } finally {
    memory.stop();
    await sys.stop();
  }
}

export async function executeServeBench(
  o: ServeBenchOptions, command: string,
): Promise<{ summary: Record<string, unknown>; results: RunResult[]; machine: MachineInfo }> {
  mkdirSync(join(o.outDir, "logs"), { recursive: true });
  const systems = selectSystems(o.systems);
  const assets = prepareAssets(o);
  // Measured here, before any server runs, with the servers' thread count.
  const machine = describeMachine(native.memoryBandwidth(o.threads), o.threads);
  const points = sweepPoints(o);
  const results: RunResult[] = [];
  const broken = new Map<string, string>();
  const startedOnce = new Set<string>();
  const total = o.repeats * points.length * systems.length;
  log(`serving benchmark (${o.mode}): ${systems.map((s) => s.name).join(", ")} × ${points.map(pointLabel).join("; ")} × ${o.repeats} repeat(s), ${o.threads} threads; output in ${o.outDir}`);
  let k = 0;
  for (let repeat = 0; repeat < o.repeats; repeat++) {
    for (const point of points) {
      for (const spec of systems) {
        k++;
        const label = `[${k}/${total}] ${spec.name} ${pointLabel(point)}`;
        if (broken.has(spec.name)) {
          results.push({ system: spec.name, point, repeat, error: broken.get(spec.name)!, records: [] });
          continue;
        }
        try {
          const r = await runOne(spec, point, repeat, o, assets);
          startedOnce.add(spec.name);
          results.push(r);
          const m = r.metrics!;
          log(`${label}: ${m.outputTokPerS.toFixed(1)} tok/s, ${m.requestsPerS.toFixed(2)} req/s, TTFT p50 ${m.ttftMs.p50.toFixed(0)} p99 ${m.ttftMs.p99.toFixed(0)} ms, `
            + `SLO ${(100 * m.sloAttainment).toFixed(0)}%, failed ${m.failed}, short ${m.short}`
            + `${r.peakRssBytes ? `, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB` : ""}${r.adapterCounters ? `, loads ${r.adapterCounters.loads}` : ""}`
            + `${r.foreignCpu !== undefined ? `, other processes ${(100 * r.foreignCpu).toFixed(0)}% CPU` : ""}`);
        } catch (e) {
          const msg = (e as Error)?.message ?? String(e);
          log(`${label}: FAILED: ${msg}`);
          // A server that has never started (e.g. a command it lacks) is not tried again; one that
          // started before may have failed by chance, so the next point tries it afresh.
          if (!startedOnce.has(spec.name) && /exited|could not start|no 200/.test(msg)) broken.set(spec.name, msg);
          results.push({ system: spec.name, point, repeat, error: msg, records: [] });
        }
      }
    }
  }
  const aggs = aggregate(results);
  const summary = jsonSummary(aggs, o, machine);
  writeFileSync(join(o.outDir, "requests.json"), JSON.stringify(results.map((r) => ({
    system: r.system, point: r.point, repeat: r.repeat, base_model: r.baseModelId, command: r.commandLine, error: r.error, requests: r.records,
  }))));
  writeFileSync(join(o.outDir, "results.json"), `${JSON.stringify({ ...summary, runs: results.map(({ records: _r, ...rest }) => rest) }, null, 2)}\n`);
  writeFileSync(join(o.outDir, "summary.md"), markdownReport(aggs, results, o, command, machine));
  for (const [name, svg] of Object.entries(plots(aggs, o))) writeFileSync(join(o.outDir, name), svg);
  log(`wrote ${join(o.outDir, "summary.md")}, results.json, requests.json and plots`);
  return { summary, results, machine };
}

/** Entry point: parses argv, runs, prints the JSON summary (--json) or the markdown report. Exit code 1 if any run failed. */
export async function runServeBench(argv: string[]): Promise<number> {
  const o = parseServeBenchArgs(argv);
  const command = `openlora bench serve ${argv.join(" ")}`.trim();
  const { summary, results, machine } = await executeServeBench(o, command);
  if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(markdownReport(aggregate(results), results, o, command, machine));
  return results.every((r) => !r.error) ? 0 : 1;
}


if (isEntryPoint(import.meta.url)) {
  runServeBench(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e: unknown) => { process.stderr.write(`error: ${(e as Error)?.stack ?? String(e)}\n`); process.exitCode = 1; },
  );
}
