/**
 * Every constraint kind on real vocabularies — Llama 3 and Qwen3 (byte-level BPE, tokenizer.json)
 * and Llama 2 (SentencePiece with byte fallback, through a GGUF vocabulary) — by seeded random
 * walks: whatever allowed tokens are picked, the decoded text satisfies the constraint.
 */
import { Ajv } from "ajv";
import { beforeAll, describe, expect, it } from "vitest";
import { ConstraintCompiler, type ConstraintSpec } from "../../../src/engine/grammar/index.js";
import type { Tokenizer } from "../../../src/tokenizer/tokenizer.js";
import { CHOICES, EMAIL_REGEX, PERSON_SCHEMA, SPECS, isArithmetic } from "./fixtures.js";
import { loadTokenizer, randomWalk, type TokenizerName } from "./walk.js";

const SEEDS = [1, 2, 3, 4, 5];
const validatePerson = new Ajv({ strict: true }).compile(PERSON_SCHEMA);

function checkOutput(spec: ConstraintSpec, text: string): void {
  switch (spec.kind) {
    case "json_object": {
      const v: unknown = JSON.parse(text);
      expect(typeof v === "object" && v !== null && !Array.isArray(v), text).toBe(true);
      break;
    }
    case "json_schema": {
      const v: unknown = JSON.parse(text);
      expect(validatePerson(v), `${text}\n${JSON.stringify(validatePerson.errors)}`).toBe(true);
      break;
    }
    case "regex":
      expect(text).toMatch(new RegExp(`^(?:${EMAIL_REGEX})$`));
      break;
    case "choice":
      expect(CHOICES).toContain(text);
      break;
    case "grammar":
      expect(isArithmetic(text), text).toBe(true);
      break;
    default:
      spec satisfies never;
  }
}

describe.each<TokenizerName>(["llama3", "llama2-gguf", "qwen3"])("random walks on %s", (name) => {
  let tok: Tokenizer;
  let cc: ConstraintCompiler;
  const padding = 77; // the model's logits row is longer than the tokenizer's vocabulary

  beforeAll(async () => {
    tok = loadTokenizer(name);
    cc = await ConstraintCompiler.create(tok, { vocabSize: tok.vocabSize + padding });
  });

  it.each(Object.keys(SPECS) as ConstraintSpec["kind"][])("%s: every walk satisfies the constraint", async (kind) => {
    const spec = SPECS[kind];
    const compiled = await cc.compile(spec);
    const outputs = new Set<string>();
    for (const seed of SEEDS) {
      const m = compiled.matcher();
      const r = randomWalk(tok, m, cc.maskWords, seed);
      m.dispose();
      checkOutput(spec, r.text);
      outputs.add(r.text);
    }
    // The walks explore: not all seeds give the same text (choice has 4 outcomes, the rest many).
    expect(outputs.size).toBeGreaterThan(1);
  });

  it("no mask of a walk allows a special, padding or (mid-constraint) stop token", async () => {
    const never = new Set<number>();
    for (let id = 0; id < tok.vocabSize; id++) if (tok.isSpecial(id) && !tok.eosIds.includes(id)) never.add(id);
    expect(never.size).toBeGreaterThan(0);
    for (let id = tok.vocabSize; id < tok.vocabSize + padding; id++) never.add(id);
    const compiled = await cc.compile(SPECS.json_schema);
    let masks = 0;
    let inString = 0;
    const violations: string[] = [];
    for (const seed of [1, 2]) {
      const m = compiled.matcher();
      randomWalk(tok, m, cc.maskWords, seed, 3000, (allowed, step) => {
        masks++;
        if (allowed.length > 1000) inString++; // inside a string nearly every token is allowed
        for (const id of allowed) if (never.has(id)) violations.push(`id ${id} allowed at step ${step}`);
        if (step === 0) for (const id of tok.eosIds) if (allowed.includes(id)) violations.push(`stop ${id} allowed at the start`);
      });
      m.dispose();
    }
    expect(violations.slice(0, 5)).toEqual([]);
    expect(masks).toBeGreaterThan(20);
    expect(inString).toBeGreaterThan(0);
  });
});
