/**
 * What a request may constrain its output to, the validator for specs arriving as JSON, and the
 * cache key of a spec.
 *
 * Mapping from the API fields (done by the server, not here):
 *   response_format {type:"json_object"}                      → { kind: "json_object" }
 *   response_format {type:"json_schema", json_schema:{schema}} → { kind: "json_schema", schema }
 *   guided_json (object or JSON string)                        → { kind: "json_schema", schema }
 *   guided_regex / guided_choice / guided_grammar              → regex / choice / grammar
 * JSON Schema semantics are xgrammar's strict mode whatever `strict` says: properties and items
 * not named by the schema are not generated (as unevaluatedProperties/Items: false).
 */
import { oerr, quoted } from "../../errors.js";

export type ConstraintSpec =
  | { kind: "json_object" } // any JSON object
  | { kind: "json_schema"; schema: Record<string, unknown> } // JSON Schema (xgrammar strict mode)
  | { kind: "regex"; pattern: string } // the whole output matches the pattern
  | { kind: "choice"; choices: string[] } // output is exactly one of these strings
  | { kind: "grammar"; grammar: string }; // EBNF in xgrammar's (GBNF-like) syntax, root rule `root`

export type ConstraintKind = ConstraintSpec["kind"];

/** Largest schema (as JSON), pattern, grammar or total of choices accepted, in UTF-16 units. */
export const MAX_CONSTRAINT_CHARS = 64 * 1024;
/** Most choices accepted. */
export const MAX_CHOICES = 1024;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function bad(message: string): never {
  throw oerr("INVALID_ARGUMENT", message);
}

function checkText(what: string, v: unknown): string {
  if (typeof v !== "string") bad(`${what} must be a string, got ${quoted(v)}`);
  if (v.length === 0) bad(`${what} must not be empty`);
  if (v.length > MAX_CONSTRAINT_CHARS) bad(`${what} is longer than ${MAX_CONSTRAINT_CHARS} characters`);
  if (LONE_SURROGATE.test(v)) bad(`${what} contains a lone UTF-16 surrogate`);
  return v;
}

/** JSON.stringify that rejects what JSON cannot carry (so the key is the spec's exact content). */
function schemaJson(schema: Record<string, unknown>): string {
  let s: string;
  try {
    s = JSON.stringify(schema);
  } catch (e) {
    bad(`json_schema.schema is not serialisable as JSON: ${(e as Error).message}`);
  }
  if (s.length > MAX_CONSTRAINT_CHARS) bad(`json_schema.schema is larger than ${MAX_CONSTRAINT_CHARS} characters as JSON`);
  return s;
}

/**
 * Checks a spec that came from JSON (a request body, a replay record) and returns it as a typed,
 * fresh ConstraintSpec; throws INVALID_ARGUMENT naming the first problem. Semantic checks (is the
 * schema/regex/grammar well-formed for xgrammar?) happen in ConstraintCompiler.compile.
 */
export function validateConstraintSpec(x: unknown): ConstraintSpec {
  if (!isObj(x)) bad(`a constraint must be an object, got ${quoted(x)}`);
  const allowed = (keys: string[]): void => {
    for (const k of Object.keys(x)) if (!keys.includes(k)) bad(`unknown field ${quoted(k)} in a ${String(x["kind"])} constraint`);
  };
  switch (x["kind"]) {
    case "json_object":
      allowed(["kind"]);
      return { kind: "json_object" };
    case "json_schema": {
      allowed(["kind", "schema"]);
      const schema = x["schema"];
      if (!isObj(schema)) bad(`json_schema.schema must be a JSON object, got ${quoted(schema)}`);
      // A deep copy through JSON: what is compiled, cached and replayed is exactly this JSON.
      return { kind: "json_schema", schema: JSON.parse(schemaJson(schema)) as Record<string, unknown> };
    }
    case "regex":
      allowed(["kind", "pattern"]);
      return { kind: "regex", pattern: checkText("regex.pattern", x["pattern"]) };
    case "choice": {
      allowed(["kind", "choices"]);
      const choices = x["choices"];
      if (!Array.isArray(choices) || choices.length === 0) bad(`choice.choices must be a non-empty array of strings, got ${quoted(choices)}`);
      if (choices.length > MAX_CHOICES) bad(`choice.choices has more than ${MAX_CHOICES} entries`);
      let total = 0;
      for (const [i, c] of choices.entries()) {
        checkText(`choice.choices[${i}]`, c);
        total += (c as string).length;
      }
      if (total > MAX_CONSTRAINT_CHARS) bad(`choice.choices total more than ${MAX_CONSTRAINT_CHARS} characters`);
      return { kind: "choice", choices: [...(choices as string[])] };
    }
    case "grammar":
      allowed(["kind", "grammar"]);
      return { kind: "grammar", grammar: checkText("grammar.grammar", x["grammar"]) };
    default:
      bad(`unknown constraint kind ${quoted(x["kind"])} (expected json_object, json_schema, regex, choice or grammar)`);
  }
}

/**
 * The cache key: the spec's fields in a fixed order, values as JSON. Object key order inside a
 * schema is kept, not sorted: xgrammar emits properties in schema order, so two schemas differing
 * only in key order constrain differently and must not share a compiled grammar.
 */
export function constraintKey(spec: ConstraintSpec): string {
  switch (spec.kind) {
    case "json_object": return JSON.stringify(["json_object"]);
    case "json_schema": return JSON.stringify(["json_schema", JSON.parse(schemaJson(spec.schema))]);
    case "regex": return JSON.stringify(["regex", spec.pattern]);
    case "choice": return JSON.stringify(["choice", spec.choices]);
    case "grammar": return JSON.stringify(["grammar", spec.grammar]);
    default: return spec satisfies never;
  }
}
