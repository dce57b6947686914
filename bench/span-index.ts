/**
 * Span evidence index (issue #6): build time and memory for a synthetic Datanet, then request-path
 * query time for 500-token outputs.
 *
 * Corpus: records of 50–2000 tokens (log-uniform), sentences of geometric length (mean 18) ending
 * in one of 4 delimiter ids, words Zipf(1.05) over a `--vocab` vocabulary; one sentence in ten is a
 * phrase from a pool of 5000 (pool popularity Zipf too), so spans recur with varied counts.
 * Outputs: half fresh random text, half random text with 1–3 copied corpus passages of 30–150
 * tokens; plus 10 worst-case "verbatim" outputs: 500 consecutive corpus tokens searched with no
 * delimiter rule (one 500-token piece, every start extends to its end). Query = findSpanEvidence (maximal spans + ranking + sources + credit), minLength 8,
 * timed on a second pass over the outputs (the first warms the JIT; the very first query is
 * reported on its own).
 *
 *   npx tsx bench/span-index.ts [--tokens 20000000] [--queries 60] [--vocab 128000] [--seed 1] [--no-file]
 */
import { rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findSpanEvidence } from "../src/attribution/spans/evidence.js";
import { readSpanIndexFile, writeSpanIndexFile } from "../src/attribution/spans/index-file.js";
import { SpanIndex, type CorpusRecord } from "../src/attribution/spans/span-index.js";

const { values } = parseArgs({
  options: {
    tokens: { type: "string", default: "20000000" }, queries: { type: "string", default: "60" },
    vocab: { type: "string", default: "128000" }, seed: { type: "string", default: "1" },
    "no-file": { type: "boolean", default: false },
  },
});
const TOKENS = Number(values.tokens), QUERIES = Number(values.queries), VOCAB = Number(values.vocab);
const OUTPUT_LENGTH = 500;
const DELIMITERS = [0, 1, 2, 3];
const isDelimiter = (t: number) => t < 4;
const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

let state = Number(values.seed) >>> 0 || 1;
function random(): number {
  // xorshift32: fast, seeded, good enough for a workload.
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 4294967296;
}
const randInt = (n: number) => Math.floor(random() * n);

function zipfSampler(n: number, exponent: number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < n; r++) cdf[r] = sum += 1 / Math.pow(r + 1, exponent);
  return () => {
    const u = random() * sum;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
const word = ((z) => () => DELIMITERS.length + z())(zipfSampler(VOCAB - DELIMITERS.length, 1.05));

function sentence(into: number[]): void {
  const len = 1 + Math.floor(Math.log(1 - random()) / Math.log(1 - 1 / 18));
  for (let i = 0; i < len; i++) into.push(word());
  into.push(DELIMITERS[randInt(DELIMITERS.length)]!);
}
const phrases = Array.from({ length: 5000 }, () => Array.from({ length: 12 + randInt(49) }, word));
const phrase = zipfSampler(phrases.length, 1.0);

function buildCorpus(total: number): CorpusRecord[] {
  const tokens = new Uint32Array(total);
  const records: CorpusRecord[] = [];
  let pos = 0;
  const buf: number[] = [];
  while (pos < total) {
    const len = Math.min(total - pos, Math.round(50 * Math.pow(40, random())));
    buf.length = 0;
    while (buf.length < len) {
      if (random() < 0.1) buf.push(...phrases[phrase()]!, DELIMITERS[0]!);
      else sentence(buf);
    }
    tokens.set(buf.slice(0, len), pos);
    records.push({ recordId: `rec-${records.length}`, contributor: `0x${(records.length % 500).toString(16).padStart(40, "0")}`, tokens: tokens.subarray(pos, pos + len) });
    pos += len;
  }
  return records;
}

function makeOutput(records: readonly CorpusRecord[], copied: boolean): number[] {
  const out: number[] = [];
  const passages = copied ? 1 + randInt(3) : 0;
  const slots = new Set(Array.from({ length: passages }, () => randInt(6)));
  for (let slot = 0; out.length < OUTPUT_LENGTH; slot++) {
    if (slots.has(slot)) {
      const rec = records[randInt(records.length)]!.tokens;
      const len = Math.min(rec.length, 30 + randInt(121));
      const at = randInt(rec.length - len + 1);
      out.push(...Array.from(rec).slice(at, at + len));
    } else {
      sentence(out);
    }
  }
  return out.slice(0, OUTPUT_LENGTH);
}

function stats(ms: number[]): { median: number; min: number; max: number; p90: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]!, p90: s[Math.floor(s.length * 0.9)]! };
}

const t0 = performance.now();
const records = buildCorpus(TOKENS);
const genSeconds = (performance.now() - t0) / 1000;
const rssBefore = process.memoryUsage().rss;

const tb = performance.now();
const index = SpanIndex.build(records);
const buildSeconds = (performance.now() - tb) / 1000;
const mem = process.memoryUsage();
const peakRss = process.resourceUsage().maxRSS * 1024;

let fileRow = "";
if (!values["no-file"]) {
  const path = join(tmpdir(), `span-index-bench-${process.pid}.spans`);
  const tw = performance.now();
  writeSpanIndexFile(index, path);
  const writeSeconds = (performance.now() - tw) / 1000;
  const tr = performance.now();
  readSpanIndexFile(path);
  const readSeconds = (performance.now() - tr) / 1000;
  fileRow = `| index file | ${mib(statSync(path).size)}; write ${writeSeconds.toFixed(1)} s, load + verify ${readSeconds.toFixed(1)} s |\n`;
  rmSync(path, { force: true });
}

type Kind = "random" | "copied" | "verbatim";
function verbatimOutput(): number[] {
  const long = records.filter((r) => r.tokens.length >= OUTPUT_LENGTH);
  const rec = long[randInt(long.length)]!.tokens;
  const at = randInt(rec.length - OUTPUT_LENGTH + 1);
  return Array.from(rec).slice(at, at + OUTPUT_LENGTH);
}
const outputs: { kind: Kind; tokens: number[] }[] = [
  ...Array.from({ length: QUERIES }, (_, i) => ({ kind: (i % 2 ? "copied" : "random") as Kind, tokens: makeOutput(records, i % 2 === 1) })),
  ...Array.from({ length: 10 }, () => ({ kind: "verbatim" as Kind, tokens: verbatimOutput() })),
];
const optsFor = (kind: Kind) => (kind === "verbatim" ? {} : { isDelimiter });
const tc = performance.now();
findSpanEvidence(index, outputs[1]!.tokens, optsFor("copied"));
const coldMs = performance.now() - tc;
for (const o of outputs) findSpanEvidence(index, o.tokens, optsFor(o.kind)); // JIT warm-up: one untimed pass
const times: Record<Kind, number[]> = { random: [], copied: [], verbatim: [] };
const spanCounts: Record<Kind, number> = { random: 0, copied: 0, verbatim: 0 };
const matched: Record<Kind, number> = { random: 0, copied: 0, verbatim: 0 };
for (const { kind, tokens } of outputs) {
  const tq = performance.now();
  const ev = findSpanEvidence(index, tokens, optsFor(kind));
  times[kind].push(performance.now() - tq);
  spanCounts[kind] += ev.spans.length;
  matched[kind] += ev.matchedTokens;
}

const n = index.tokenCount;
console.log(`\nSpan index benchmark — ${cpus()[0]?.model ?? "cpu"} ×${cpus().length}, Node ${process.version}\n`);
console.log(`| measure | value |\n|---|---|`);
console.log(`| corpus | ${n.toLocaleString("en")} tokens, ${index.recordCount.toLocaleString("en")} records, vocab ${VOCAB.toLocaleString("en")} (generated in ${genSeconds.toFixed(1)} s) |`);
console.log(`| build (concat + SA-IS) | ${buildSeconds.toFixed(1)} s (${((buildSeconds * 1e9) / n).toFixed(0)} ns/token) |`);
console.log(`| index arrays | ${mib(index.byteLength)} (${(index.byteLength / n).toFixed(2)} bytes/token) |`);
console.log(`| RSS before build / after / peak | ${mib(rssBefore)} / ${mib(mem.rss)} / ${mib(peakRss)} |`);
process.stdout.write(fileRow);
console.log(`| first query (cold JIT) | ${coldMs.toFixed(1)} ms |`);
console.log(`\n| outputs (${OUTPUT_LENGTH} tokens, minLength 8) | queries | median ms | p90 ms | min ms | max ms | kept spans / query | matched tokens / query |`);
console.log(`|---|---|---|---|---|---|---|---|`);
for (const kind of ["random", "copied", "verbatim"] as const) {
  const s = stats(times[kind]);
  const q = times[kind].length;
  console.log(`| ${kind} | ${q} | ${s.median.toFixed(2)} | ${s.p90.toFixed(2)} | ${s.min.toFixed(2)} | ${s.max.toFixed(2)} | ${(spanCounts[kind] / q).toFixed(1)} | ${(matched[kind] / q).toFixed(0)} |`);
}
const all = stats([...times.random, ...times.copied]);
console.log(`| random + copied | ${QUERIES} | ${all.median.toFixed(2)} | ${all.p90.toFixed(2)} | ${all.min.toFixed(2)} | ${all.max.toFixed(2)} | | |`);
