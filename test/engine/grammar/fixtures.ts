/** Constraint specs and output checkers shared by the grammar tests and bench/grammar-mask.ts. */
import type { ConstraintSpec } from "../../../src/engine/grammar/index.js";

/** Nested object, required fields, enum, array with items, integer, string, number. */
export const PERSON_SCHEMA = {
  type: "object",
  properties: {
    id: { type: "integer" },
    name: { type: "string" },
    status: { enum: ["active", "inactive", "banned"] },
    tags: { type: "array", items: { type: "string" }, maxItems: 3 },
    owner: {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" } },
      required: ["name"],
      additionalProperties: false,
    },
    score: { type: "number" },
  },
  required: ["id", "name", "status", "tags", "owner"],
  additionalProperties: false,
} as const;

export const EMAIL_REGEX = "[a-z]{2,6}(-[0-9]{1,3})?@(example|test)\\.(com|org)";

export const CHOICES = ["yes", "no", "not sure", "Très bien!"];

/** Arithmetic over non-negative integers, in xgrammar's EBNF. */
export const ARITH_GRAMMAR = [
  "root ::= expr",
  'expr ::= term (("+" | "-") term)*',
  'term ::= factor (("*" | "/") factor)*',
  'factor ::= [0-9]+ | "(" expr ")"',
].join("\n");

export const SPECS: Record<ConstraintSpec["kind"], ConstraintSpec> = {
  json_object: { kind: "json_object" },
  json_schema: { kind: "json_schema", schema: structuredClone(PERSON_SCHEMA) as unknown as Record<string, unknown> },
  regex: { kind: "regex", pattern: EMAIL_REGEX },
  choice: { kind: "choice", choices: CHOICES },
  grammar: { kind: "grammar", grammar: ARITH_GRAMMAR },
};

/** A recursive-descent check of ARITH_GRAMMAR: true iff the whole text is one expression. */
export function isArithmetic(text: string): boolean {
  let i = 0;
  const num = (): boolean => {
    const start = i;
    while (i < text.length && text[i]! >= "0" && text[i]! <= "9") i++;
    return i > start;
  };
  const factor = (): boolean => {
    if (text[i] === "(") {
      i++;
      if (!expr() || text[i] !== ")") return false;
      i++;
      return true;
    }
    return num();
  };
  const term = (): boolean => {
    if (!factor()) return false;
    while (text[i] === "*" || text[i] === "/") {
      i++;
      if (!factor()) return false;
    }
    return true;
  };
  const expr = (): boolean => {
    if (!term()) return false;
    while (text[i] === "+" || text[i] === "-") {
      i++;
      if (!term()) return false;
    }
    return true;
  };
  return expr() && i === text.length;
}
