/**
 * The adapter cache under load (issue #3):
 *
 *   (a) just-in-time load latency: `--jit` PEFT rank-16 q/k/v/o adapters for qwen3-0.6b (written
 *       once into cacheDir()/bench/adapters-peft), each acquired cold through AdapterCache;
 *       p50/p99/max load ms from cache.stats(). "Cold" = not resident in the adapter cache; the
 *       files were written earlier and are most likely in the OS page cache.
 *   (b) many registered adapters, small budget: `--registered` tiny-qwen3 PEFT adapters (a few
 *       distinct folders, the rest symlinks to them inside the scanned root, so each id still loads
 *       its own copy), registry.scanDirectory, budget = `--budget-adapters` adapters' bytes;
 *       `--requests` acquire/release in a seeded power-law order (adapter = floor(n·U^(1/α)),
 *       α = `--alpha`, the S-LoRA workload's popularity); after every request resident + reserved
 *       bytes ≤ budget is asserted; process RSS sampled every 100 requests.
 *
 *   npx tsx bench/adapter-cache.ts [--jit 200] [--registered 10000] [--distinct 64] [--requests 3000]
 *                                  [--budget-adapters 20] [--alpha 0.1] [--seed 1] [--dtype F32]
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AdapterCache } from "../src/adapters/cache.js";
import { createAdapterLoader } from "../src/adapters/loader.js";
import { AdapterRegistry } from "../src/adapters/registry.js";
import type { BaseModelShape, LoraModule } from "../src/adapters/types.js";
import { writePeftAdapter } from "../src/synth/adapters.js";
import { cacheDir } from "../src/synth/default-model.js";
import { getPreset } from "../src/synth/synthesize.js";

const { values } = parseArgs({
  options: {
    jit: { type: "string", default: "200" }, registered: { type: "string", default: "10000" },
    distinct: { type: "string", default: "64" }, requests: { type: "string", default: "3000" },
    "budget-adapters": { type: "string", default: "20" }, alpha: { type: "string", default: "0.1" },
    seed: { type: "string", default: "1" }, dtype: { type: "string", default: "F32" },
  },
});
const TARGETS: LoraModule[] = ["q", "k", "v", "o"];
const mb = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/** The base shape straight from a preset (no model file needed to check adapters against). */
function shapeOfPreset(name: string): BaseModelShape {
  const p = getPreset(name);
  const H = p.hiddenSize, q = p.nHeads * p.headDim, kv = p.nKvHeads * p.headDim, F = p.intermediateSize;
  const architecture = p.modelType === "mistral" ? "llama" : p.modelType;
  return {
    architecture, nLayers: p.nLayers, nHeads: p.nHeads, nKvHeads: p.nKvHeads, permuteQk: architecture === "llama",
    modules: {
      q: { inDim: H, outDim: q }, k: { inDim: H, outDim: kv }, v: { inDim: H, outDim: kv }, o: { inDim: q, outDim: H },
      gate: { inDim: H, outDim: F }, up: { inDim: H, outDim: F }, down: { inDim: F, outDim: H },
    },
  };
}

function writeAdapters(root: string, preset: string, n: number, dtype: "F32" | "F16" | "BF16", seed0: number): void {
  mkdirSync(root, { recursive: true });
  for (let i = 0; i < n; i++) {
    const dir = join(root, `a${String(i).padStart(5, "0")}`);
    if (existsSync(join(dir, "adapter_config.json"))) continue;
    const tmp = join(root, `.tmp-${process.pid}-${i}`);
    writePeftAdapter(tmp, preset, { seed: seed0 + i, rank: 16, alpha: 32, targets: TARGETS, dtype });
    renameSync(tmp, dir);
  }
}

/** Seeded xorshift32 in [0, 1). */
function rng(seed: number): () => number {
  let x = (seed >>> 0) || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

async function jitLatency(): Promise<void> {
  const n = Number(values.jit);
  const preset = "qwen3-0.6b";
  const dtype = values.dtype as "F32" | "F16" | "BF16";
  const root = join(cacheDir(), "bench", "adapters-peft", `${preset}-r16-qkvo-${dtype}`);
  let t = performance.now();
  writeAdapters(root, preset, n, dtype, 5000);
  console.log(`(a) ${n} PEFT adapters (${preset}, rank 16, q/k/v/o, ${dtype}) ready in ${((performance.now() - t) / 1000).toFixed(1)} s under ${root}`);
  const registry = new AdapterRegistry();
  const scan = await registry.scanDirectory(root);
  const ids = registry.list().map((e) => e.id).slice(0, n);
  const loader = createAdapterLoader(shapeOfPreset(preset));
  // budget: a few adapters, so the run also evicts as it goes (each acquire below is a miss)
  const cache = new AdapterCache({ registry, loader, budgetBytes: 8 * 19 * 1048576, latencySamples: 4096 });
  t = performance.now();
  let bytes = 0;
  for (const id of ids) {
    const lease = await cache.acquire(id);
    bytes = lease.adapter.weights.bytes;
    lease.release();
  }
  const s = cache.stats();
  console.log(`    registered ${scan.added}, acquired ${ids.length} cold in ${((performance.now() - t) / 1000).toFixed(1)} s; adapter ${mb(bytes)} in host memory`);
  console.log(`    load latency ms: p50 ${s.loadLatencyMs.p50.toFixed(1)}  p99 ${s.loadLatencyMs.p99.toFixed(1)}  max ${s.loadLatencyMs.max.toFixed(1)}  (${s.loadLatencyMs.samples} samples; misses ${s.misses}, hits ${s.hits}, evictions ${s.evictions})`);
  console.log(`\n| adapters | format | adapter size | load p50 ms | load p99 ms | load max ms |\n|---|---|---|---|---|---|`);
  console.log(`| ${ids.length} | PEFT safetensors ${dtype}, rank 16 q/k/v/o, ${preset} | ${mb(bytes)} | ${s.loadLatencyMs.p50.toFixed(1)} | ${s.loadLatencyMs.p99.toFixed(1)} | ${s.loadLatencyMs.max.toFixed(1)} |\n`);
}

async function manyAdapters(): Promise<void> {
  const n = Number(values.registered);
  const distinct = Math.min(n, Number(values.distinct));
  const preset = "tiny-qwen3";
  const root = join(cacheDir(), "bench", "adapters-many", `${preset}-${n}`);
  let t = performance.now();
  writeAdapters(root, preset, distinct, "F32", 1);
  const have = new Set(readdirSync(root));
  for (let i = distinct; i < n; i++) {
    const name = `a${String(i).padStart(5, "0")}`;
    if (!have.has(name)) symlinkSync(`a${String(i % distinct).padStart(5, "0")}`, join(root, name));
  }
  for (const stale of readdirSync(root)) if (stale.startsWith(".tmp-")) rmSync(join(root, stale), { recursive: true, force: true });
  const setupS = (performance.now() - t) / 1000;
  const registry = new AdapterRegistry();
  t = performance.now();
  const scan = await registry.scanDirectory(root);
  const scanMs = performance.now() - t;
  const ids = registry.list().map((e) => e.id);
  if (ids.length !== n) throw new Error(`expected ${n} registered adapters, got ${ids.length} (skipped ${scan.skipped.length})`);
  const loader = createAdapterLoader(shapeOfPreset(preset));
  const one = await loader(registry.get(ids[0]!)!, new AbortController().signal);
  const size = one.weights.bytes;
  const budget = Number(values["budget-adapters"]) * size;
  const cache = new AdapterCache({ registry, loader, budgetBytes: budget, estimateBytes: () => size });
  console.log(`(b) ${n} ${preset} PEFT adapters registered (${distinct} distinct folders, ${n - distinct} symlinks; set up in ${setupS.toFixed(1)} s, scan ${scanMs.toFixed(0)} ms), adapter ${(size / 1024).toFixed(1)} KiB, budget ${values["budget-adapters"]} adapters = ${(budget / 1024).toFixed(1)} KiB`);

  const requests = Number(values.requests);
  const alpha = Number(values.alpha);
  const rand = rng(Number(values.seed));
  const rss: number[] = [];
  let maxUsed = 0;
  const distinctSeen = new Set<number>();
  global.gc?.();
  t = performance.now();
  for (let r = 0; r < requests; r++) {
    const k = Math.min(n - 1, Math.floor(n * rand() ** (1 / alpha)));
    distinctSeen.add(k);
    const lease = await cache.acquire(ids[k]!);
    let sum = 0; // touch the weights, as a forward pass would
    for (const layer of lease.adapter.weights.layers) sum += layer.q?.a[0] ?? 0;
    if (!Number.isFinite(sum)) throw new Error("non-finite adapter weights");
    lease.release();
    const s = cache.stats();
    const used = s.bytesResident + s.bytesReserved;
    maxUsed = Math.max(maxUsed, used);
    if (used > budget) throw new Error(`request ${r}: ${used} bytes resident/reserved > budget ${budget}`);
    if (r % 100 === 0 || r === requests - 1) rss.push(process.memoryUsage().rss);
  }
  const ms = performance.now() - t;
  const s = cache.stats();
  console.log(`    ${requests} requests (power-law α=${alpha}, seed ${values.seed}, ${distinctSeen.size} distinct adapters asked for) in ${(ms / 1000).toFixed(2)} s (${(ms / requests).toFixed(3)} ms/request)`);
  console.log(`    resident+reserved ≤ budget after every request: yes (max ${(maxUsed / 1024).toFixed(1)} KiB of ${(budget / 1024).toFixed(1)} KiB); resident now ${s.adaptersResident} adapters`);
  console.log(`    hits ${s.hits}, misses ${s.misses}, loads ${s.loads}, evictions ${s.evictions}, hit rate ${(100 * s.hits / (s.hits + s.misses)).toFixed(1)}%, load p50 ${s.loadLatencyMs.p50.toFixed(2)} ms p99 ${s.loadLatencyMs.p99.toFixed(2)} ms`);
  console.log(`    RSS (every 100 requests, ${rss.length} samples): first ${mb(rss[0]!)}, last ${mb(rss[rss.length - 1]!)}, max ${mb(Math.max(...rss))}, min ${mb(Math.min(...rss))}`);
  console.log(`\n| registered | budget | requests | distinct asked | hits | misses | evictions | hit rate | max resident | RSS first / last / max |\n|---|---|---|---|---|---|---|---|---|---|`);
  console.log(`| ${n} | ${values["budget-adapters"]} adapters (${(budget / 1024).toFixed(0)} KiB) | ${requests} | ${distinctSeen.size} | ${s.hits} | ${s.misses} | ${s.evictions} | ${(100 * s.hits / (s.hits + s.misses)).toFixed(1)}% | ${(maxUsed / 1024).toFixed(0)} KiB | ${mb(rss[0]!)} / ${mb(rss[rss.length - 1]!)} / ${mb(Math.max(...rss))} |`);
}

async function main(): Promise<void> {
  if (Number(values.jit) > 0) await jitLatency();
  if (Number(values.registered) > 0) await manyAdapters();
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
