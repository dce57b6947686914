/**
 * Kernel benchmark: Qwen3-0.6B-shaped matmuls. M = 1 reports GB/s of weights read (vs the
 * machine's measured read bandwidth); M = 32 reports GFLOP/s. Run: npx tsx bench/kernels.ts
 * Options: --quick (fewer runs), --types Q8_0,Q4_0,Q4_K,Q6_K, --impl amx|avx512|avx2|reference|all.
 * --compare OTHER.node: M = 32 only, this build vs another build of the addon (e.g. the previous
 * commit's), samples interleaved (this, other, this, other …), ratio per pair.
 * --versus IMPL: M = 32 only, this build's default kernels vs its IMPL kernels, interleaved the same way.
 */
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { GGML_TYPE, type KernelImpl, native, type OpenLoraNative, rowBytes } from "../src/native/index.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    types: { type: "string", default: "Q8_0,Q4_0,Q4_K,Q6_K,F16,F32" },
    impl: { type: "string", default: "all" },
    threads: { type: "string", default: "1,2" },
    compare: { type: "string" },
    versus: { type: "string" },
  },
});

const SHAPES = [
  { name: "K1024xN3072", K: 1024, N: 3072 },
  { name: "K1024xN1024", K: 1024, N: 1024 },
  { name: "K3072xN1024", K: 3072, N: 1024 },
];

function stats(xs: number[]): { med: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { med: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

function randomF32(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 4294967296 - 0.5) * 0.2;
  }
  return out;
}

/** K-quants have no native quantizer: random blocks with small finite fp16 scales (speed only). */
function randomKQuant(w: Uint8Array, type: number, seed: number): void {
  let a = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < w.length; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    w[i] = a >>> 24;
  }
  const bb = type === GGML_TYPE.Q4_K ? 144 : 210;
  for (let o = 0; o < w.length; o += bb) {
    if (type === GGML_TYPE.Q4_K) { w[o + 1] = 0x1c; w[o + 3] = 0x1c; } else { w[o + 209] = 0x1c; }
  }
}

/** Several copies of the weights so M = 1 runs read from memory, not from the 32 MiB L3. */
function makeWeights(type: number, N: number, K: number): Uint8Array[] {
  const rb = rowBytes(type, K);
  const copies = Math.max(2, Math.ceil((96 << 20) / (N * rb)));
  const f = randomF32(N * K, 7);
  const ws: Uint8Array[] = [];
  for (let c = 0; c < copies; c++) {
    const w = new Uint8Array(N * rb);
    if (type === GGML_TYPE.Q4_K || type === GGML_TYPE.Q6_K) randomKQuant(w, type, c);
    else native.quantize(w, f, type);
    ws.push(w);
  }
  return ws;
}

function timeIt(fn: () => void, minMs: number, runs: number): number[] {
  // Warm-up, then `runs` samples, each repeating fn until minMs passed.
  fn();
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    let iters = 0;
    const t0 = performance.now();
    let t = t0;
    do {
      fn();
      iters++;
      t = performance.now();
    } while (t - t0 < minMs);
    out.push((t - t0) / 1000 / iters);
  }
  return out;
}

/** A build (or kernel table) under test: matmul runs under `enter()`. */
interface Contender { label: string; lib: OpenLoraNative; enter(): void }

/** M = 32 GFLOP/s of `a` vs `b`, interleaved sample by sample. */
function compare(a0: Contender, b0: Contender, runs: number, minMs: number): void {
  const native = a0.lib, other = b0.lib;
  const threadList = values.threads!.split(",").map(Number);
  const med = (xs: number[]) => stats(xs).med;
  const fmt = (xs: number[], d = 1) => `${med(xs).toFixed(d)} [${stats(xs).min.toFixed(d)}..${stats(xs).max.toFixed(d)}]`;
  console.log(`M = 32 GFLOP/s, ${a0.label} vs ${b0.label}, ${runs} interleaved samples of >= ${minMs} ms each`);
  console.log("type  shape         thr  this med [min..max]     other med [min..max]    this/other med [min..max]");
  for (const typeName of values.types!.split(",")) {
    const type = (GGML_TYPE as Record<string, number>)[typeName]!;
    for (const sh of SHAPES) {
      const w = makeWeights(type, sh.N, sh.K)[0]!;
      const x = randomF32(32 * sh.K, 2);
      const out = new Float32Array(32 * sh.N);
      for (const t of threadList) {
        native.setThreads(t);
        other.setThreads(t);
        const gf = (s: number) => (2 * 32 * sh.N * sh.K) / s / 1e9;
        const a: number[] = [], b: number[] = [];
        for (let r = 0; r < runs; r++) {
          a0.enter();
          a.push(gf(timeIt(() => native.matmul(out, x, w, type, 32, sh.N, sh.K), minMs, 1)[0]!));
          b0.enter();
          b.push(gf(timeIt(() => other.matmul(out, x, w, type, 32, sh.N, sh.K), minMs, 1)[0]!));
        }
        console.log(`${typeName.padEnd(5)} ${sh.name.padEnd(13)} ${String(t).padStart(3)}  ${fmt(a).padEnd(23)} ${fmt(b).padEnd(23)} ${fmt(a.map((v, i) => v / b[i]!), 2)}`);
      }
      native.setThreads(1);
      other.setThreads(1);
    }
  }
}

function main(): void {
  const runs = values.quick ? 5 : 11;
  const minMs = values.quick ? 20 : 50;
  const threadList = values.threads!.split(",").map(Number);
  const impls: KernelImpl[] = values.impl === "all" ? ["amx", "avx512", "avx2", "reference"] : [values.impl as KernelImpl];
  // Many short interleaved samples: on a shared machine the per-pair ratios of undisturbed pairs
  // cluster, so their median is stable where long samples each catch some interference.
  const cmpRuns = values.quick ? 11 : 41;
  const def = native.getKernelImpl();
  const self: Contender = { label: `this build (${def})`, lib: native, enter: () => native.setKernelImpl(def) };
  if (values.compare) {
    const lib = createRequire(import.meta.url)(values.compare) as OpenLoraNative;
    return compare(self, { label: values.compare, lib, enter: () => {} }, cmpRuns, 10);
  }
  if (values.versus) {
    const impl = values.versus as KernelImpl;
    return compare(self, { label: `this build (${impl})`, lib: native, enter: () => native.setKernelImpl(impl) }, cmpRuns, 10);
  }
  const f = native.cpuFeatures();
  console.log(`cpu: avx2=${f.avx2} fma=${f.fma} f16c=${f.f16c} avx512=${f.avx512} avx512vnni=${f.avx512vnni}; default kernels ${def}`);
  const bw: Record<number, number> = {};
  for (const t of threadList) {
    native.setThreads(t);
    const s = stats(Array.from(native.measureReadBandwidth(512 << 20, 7)));
    bw[t] = s.med;
    console.log(`read bandwidth ${t} thread(s): median ${s.med.toFixed(1)} GB/s (min ${s.min.toFixed(1)}, max ${s.max.toFixed(1)})`);
  }
  interface Row { impl: string; type: string; shape: string; t: number; gb: ReturnType<typeof stats>; us: number; gf: ReturnType<typeof stats> }
  const rows: Row[] = [];
  for (const impl of impls) {
    if (impl === "avx2" && !(f.avx2 && f.fma && f.f16c)) continue;
    if (impl === "avx512" && !(f.avx2 && f.fma && f.f16c && f.avx512 && f.avx512vnni)) continue;
    if (impl === "amx" && !f.amx) continue;
    native.setKernelImpl(impl);
    for (const typeName of values.types!.split(",")) {
      const type = (GGML_TYPE as Record<string, number>)[typeName]!;
      for (const sh of SHAPES) {
        const ws = makeWeights(type, sh.N, sh.K);
        const bytes = ws[0]!.length;
        const x1 = randomF32(sh.K, 1);
        const x32 = randomF32(32 * sh.K, 2);
        const o1 = new Float32Array(sh.N);
        const o32 = new Float32Array(32 * sh.N);
        for (const t of threadList) {
          native.setThreads(t);
          let i = 0;
          const tM1 = timeIt(() => native.matmul(o1, x1, ws[i++ % ws.length]!, type, 1, sh.N, sh.K), minMs, runs);
          const gb = stats(tM1.map((s) => bytes / s / 1e9));
          const refRuns = impl === "reference" ? Math.max(3, Math.floor(runs / 3)) : runs;
          const tM32 = timeIt(() => native.matmul(o32, x32, ws[0]!, type, 32, sh.N, sh.K), minMs, refRuns);
          const gf = stats(tM32.map((s) => (2 * 32 * sh.N * sh.K) / s / 1e9));
          rows.push({ impl, type: typeName, shape: sh.name, t, gb, us: stats(tM1).med * 1e6, gf });
          process.stderr.write(".");
        }
      }
    }
  }
  process.stderr.write("\n");
  // The read probe is a lower bound of what the memory system delivers (a streaming kernel can
  // beat it), so fractions are also given against the best M = 1 rate observed at that thread
  // count ("eff"), whichever is higher.
  const eff: Record<number, number> = {};
  for (const t of threadList) eff[t] = Math.max(bw[t]!, ...rows.filter((r) => r.t === t).map((r) => r.gb.med));
  for (const t of threadList) console.log(`effective bandwidth ${t} thread(s): ${eff[t]!.toFixed(1)} GB/s (max of the probe and the best M=1 kernel rate)`);
  console.log("");
  console.log("impl       type  shape         thr  M=1 GB/s med [min..max]  %probe %eff  M=1 us    M=32 GFLOP/s med [min..max]");
  for (const r of rows) {
    console.log(
      `${r.impl.padEnd(10)} ${r.type.padEnd(5)} ${r.shape.padEnd(13)} ${String(r.t).padStart(3)}  ` +
        `${r.gb.med.toFixed(1).padStart(6)} [${r.gb.min.toFixed(1)}..${r.gb.max.toFixed(1)}]`.padEnd(25) +
        `${((100 * r.gb.med) / bw[r.t]!).toFixed(0).padStart(5)}% ${((100 * r.gb.med) / eff[r.t]!).toFixed(0).padStart(4)}%` +
        `${r.us.toFixed(1).padStart(8)}   ${r.gf.med.toFixed(1).padStart(6)} [${r.gf.min.toFixed(1)}..${r.gf.max.toFixed(1)}]`,
    );
  }
  native.setThreads(1);
}

main();
