/**
 * Grammar-constrained decoding cost (src/engine/grammar), on the Llama 3 (128,256 ids) and Qwen3
 * (151,669 ids) vocabularies, for the json_schema fixture (test/engine/grammar/fixtures.ts:
 * nested object, required fields, enum, array, integer, string, number) and json_object:
 *
 *   create   ConstraintCompiler.create (WASM instance + TokenizerInfo), once per tokenizer;
 *   cold     compile() of a spec not in the cache (a distinct "title" per run; xgrammar ignores it);
 *   cached   compile() of a cached spec;
 *   matcher  compiled.matcher();
 *   step     one decoding step as the engine runs it: isTerminated() + fillMask() (the mask is
 *            computed once per state and shared by both), over seeded random walks
 *            (test/engine/grammar/walk.ts) — "all" steps, and split into "open" steps (more than
 *            1000 tokens allowed: inside strings) and "narrow" ones (structure, numbers, keys);
 *   apply    applyMask() on a logits row of the vocabulary's length.
 * Each figure: median [min..max] over its samples, in ms or µs as labelled.
 *
 *   flock /tmp/openlora-cpu.lock npx tsx bench/grammar-mask.ts [--runs 5] [--walks 8]
 */
import { parseArgs } from "node:util";
import { ConstraintCompiler, allowedIds, applyMask, type ConstraintSpec } from "../src/engine/grammar/index.js";
import { mulberry32 } from "../src/synth/random.js";
import { PERSON_SCHEMA } from "../test/engine/grammar/fixtures.js";
import { loadTokenizer, pickToken, tokenClasses, type TokenizerName } from "../test/engine/grammar/walk.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, walks: { type: "string", default: "8" } } });
const runs = Number(values.runs);
const walks = Number(values.walks);

function stats(xs: number[]): { med: number; min: number; max: number; n: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { med: s[Math.floor(s.length / 2)] ?? NaN, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, n: s.length };
}
function fmt(xs: number[], digits = 1): string {
  const s = stats(xs);
  return `${s.med.toFixed(digits)} [${s.min.toFixed(digits)}..${s.max.toFixed(digits)}] (n=${s.n})`;
}

const specs: Record<string, (run: number) => ConstraintSpec> = {
  json_schema: (run) => ({ kind: "json_schema", schema: { title: `run ${run}`, ...PERSON_SCHEMA } }),
  json_object: () => ({ kind: "json_object" }),
};

async function bench(name: TokenizerName): Promise<void> {
  const tok = loadTokenizer(name);
  const classes = tokenClasses(tok);
  const stops = new Set(tok.eosIds);
  const create: number[] = [];
  let cc: ConstraintCompiler | undefined;
  for (let r = 0; r < runs; r++) {
    cc?.dispose();
    const t = performance.now();
    cc = await ConstraintCompiler.create(tok);
    create.push(performance.now() - t);
  }
  console.log(`${name}: vocabulary ${tok.vocabSize} ids, mask ${cc!.maskWords} words; create ms ${fmt(create)}`);
  const logits = new Float32Array(cc!.vocabSize);
  for (const [kind, make] of Object.entries(specs)) {
    const cold: number[] = [];
    const cached: number[] = [];
    const matcherUs: number[] = [];
    const all: number[] = [];
    const open: number[] = [];
    const narrow: number[] = [];
    const apply: number[] = [];
    // json_object has a single key: its cold compiles each need a fresh compiler.
    for (let r = 0; r < runs; r++) {
      const c = kind === "json_object" ? await ConstraintCompiler.create(tok) : cc!;
      let t = performance.now();
      await c.compile(make(r));
      cold.push(performance.now() - t);
      t = performance.now();
      await c.compile(make(r));
      cached.push((performance.now() - t) * 1000);
      if (c !== cc) c.dispose();
    }
    const compiled = await cc!.compile(make(0));
    const mask = new Int32Array(cc!.maskWords);
    for (let w = 0; w < walks; w++) {
      let t = performance.now();
      const m = compiled.matcher();
      matcherUs.push((performance.now() - t) * 1000);
      const rng = mulberry32(1000 + w);
      for (let step = 0; step < 3000; step++) {
        t = performance.now();
        const done = m.isTerminated();
        if (!done) m.fillMask(mask);
        const us = (performance.now() - t) * 1000;
        if (done) break;
        const allowed = allowedIds(mask);
        all.push(us);
        (allowed.length > 1000 ? open : narrow).push(us);
        if (step < 20) {
          logits.fill(0);
          t = performance.now();
          applyMask(logits, mask);
          apply.push((performance.now() - t) * 1000);
        }
        const id = pickToken(allowed, classes, stops, rng);
        if (!m.accept(id)) throw new Error(`token ${id} refused`);
      }
      m.dispose();
    }
    console.log(`  ${kind.padEnd(11)} compile cold ms ${fmt(cold)}; cached µs ${fmt(cached, 2)}; matcher µs ${fmt(matcherUs)}`);
    console.log(`  ${"".padEnd(11)} step µs all ${fmt(all)}; open ${fmt(open)}; narrow ${fmt(narrow)}`);
    console.log(`  ${"".padEnd(11)} applyMask µs ${fmt(apply)}`);
  }
  cc!.dispose();
}

for (const name of ["llama3", "qwen3"] as const) await bench(name);
