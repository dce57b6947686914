/**
 * Request validation and response encoding for the ledger routes (ledger-routes.ts).
 *
 * Money, stakes, shares and weights travel as JSON strings of decimal digits in both directions:
 * a JSON number loses precision above 2^53, so one is refused with a message saying so.
 * Every failure is INVALID_ARGUMENT naming the offending field in `param` (e.g. "developers[1].share").
 */
import type { Hex } from "viem";
import { quoted } from "../errors.js";
import { invalidArgument } from "./http-errors.js";

export type Obj = Record<string, unknown>;

/** The largest amount the ledger accepts: receipts carry fees as uint256. */
const UINT256_LIMIT = 1n << 256n;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Joins a parent param path and a key: ("", "id") → "id", ("developers[0]", "share") → "developers[0].share". */
function at(prefix: string, key: string): string {
  return prefix === "" ? key : `${prefix}.${key}`;
}

/**
 * The body (or a nested object) as an object with only the allowed keys. An absent body is {}
 * (so a POST without one reports its missing fields, not a parse error).
 */
export function objectOf(v: unknown, allowed: readonly string[], param = ""): Obj {
  if (v === undefined && param === "") v = {};
  if (!isObj(v)) throw invalidArgument(param === "" ? null : param, `${param === "" ? "The request body" : param} must be a JSON object.`);
  const unknown = Object.keys(v).find((k) => !allowed.includes(k));
  if (unknown !== undefined) {
    const p = at(param, unknown);
    throw invalidArgument(p, `Unknown field ${p}; expected ${allowed.length > 0 ? allowed.join(", ") : "no fields"}.`);
  }
  return v;
}

/** True when the key is absent or null (optional fields accept both). */
export function absent(o: Obj, key: string): boolean {
  return o[key] === undefined || o[key] === null;
}

/** A party, model, agent or Datanet name: a non-empty string of at most 256 characters, no control characters. */
export function nameField(o: Obj, key: string, prefix = ""): string {
  const p = at(prefix, key);
  const v = o[key];
  if (v === undefined || v === null) throw invalidArgument(p, `${p} is required.`);
  return checkNameValue(v, p);
}

export function optionalName(o: Obj, key: string, prefix = ""): string | undefined {
  return absent(o, key) ? undefined : nameField(o, key, prefix);
}

export function checkNameValue(v: unknown, p: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > 256 || /[\u0000-\u001f\u007f]/.test(v)) {
    throw invalidArgument(p, `${p} must be a non-empty string of at most 256 characters without control characters.`);
  }
  return v;
}

/** A non-empty string (Datanet content). */
export function textField(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== "string" || v.length === 0) throw invalidArgument(key, `${key} must be a non-empty string.`);
  return v;
}

/**
 * An integer amount as a decimal string ("0", "1000", no sign, no leading zeros), below 2^256.
 * `positive`: zero is refused too.
 */
export function amountField(o: Obj, key: string, opts: { positive?: boolean; prefix?: string } = {}): bigint {
  const p = at(opts.prefix ?? "", key);
  const v = o[key];
  if (v === undefined || v === null) throw invalidArgument(p, `${p} is required: a decimal string such as "1000".`);
  return amountValue(v, p, opts.positive === true);
}

export function amountValue(v: unknown, p: string, positive: boolean): bigint {
  if (typeof v === "number" || typeof v === "bigint") {
    throw invalidArgument(p, `${p} must be a decimal string such as "1000", not a JSON number (numbers lose precision above 2^53).`);
  }
  if (typeof v !== "string" || !/^(0|[1-9][0-9]*)$/.test(v)) {
    throw invalidArgument(p, `${p} must be a string of decimal digits without sign, spaces or leading zeros, got ${quoted(v)}.`);
  }
  const n = BigInt(v);
  if (n >= UINT256_LIMIT) throw invalidArgument(p, `${p} must be below 2^256.`);
  if (positive && n === 0n) throw invalidArgument(p, `${p} must be positive.`);
  return n;
}

/** A JSON integer in [min, max] (versions, basis points). */
export function intField(o: Obj, key: string, min: number, max: number, prefix = ""): number {
  const p = at(prefix, key);
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw invalidArgument(p, `${p} must be an integer in [${min}, ${max}], got ${v === undefined ? "nothing" : quoted(v)}.`);
  }
  return v;
}

export function hex32Field(o: Obj, key: string): Hex {
  const v = o[key];
  if (typeof v !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(v)) {
    throw invalidArgument(key, `${key} must be 32 bytes of 0x-prefixed hex (0x + 64 hex digits).`);
  }
  return v as Hex;
}

export function oneOf<T extends string>(o: Obj, key: string, choices: readonly T[]): T {
  const v = o[key];
  if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
    throw invalidArgument(key, `${key} must be one of ${choices.map((c) => JSON.stringify(c)).join(", ")}.`);
  }
  return v as T;
}

/** An array of objects, each checked by `each` (absent or null → []; `required` refuses that). */
export function arrayField<T>(o: Obj, key: string, each: (item: Obj, param: string) => T, opts: { required?: boolean; allowed: readonly string[] }): T[] {
  if (absent(o, key)) {
    if (opts.required) throw invalidArgument(key, `${key} is required: a non-empty array.`);
    return [];
  }
  const v = o[key];
  if (!Array.isArray(v)) throw invalidArgument(key, `${key} must be an array.`);
  if (v.length > 1024) throw invalidArgument(key, `${key} has ${v.length} entries; at most 1024 are accepted.`);
  if (opts.required && v.length === 0) throw invalidArgument(key, `${key} must not be empty.`);
  return v.map((item: unknown, i) => {
    const p = `${key}[${i}]`;
    return each(objectOf(item, opts.allowed, p), p);
  });
}

/** A required array of at most `max` names (account ids), each checked as nameField does; param "key[i]". */
export function nameArrayField(o: Obj, key: string, max: number): string[] {
  const v = o[key];
  if (!Array.isArray(v)) throw invalidArgument(key, `${key} is required: an array of account ids.`);
  if (v.length > max) throw invalidArgument(key, `${key} has ${v.length} entries; at most ${max} are accepted.`);
  return v.map((x: unknown, i) => checkNameValue(x, `${key}[${i}]`));
}

/** A path segment that must be a positive integer id (records, receipts). */
export function pathId(v: string, param: string): number {
  const n = /^[1-9][0-9]{0,15}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw invalidArgument(param, `${param} must be a positive integer, got ${quoted(v)}.`);
  return n;
}

/** A path segment naming a party, model, agent or Datanet. */
export function pathName(v: string, param: string): string {
  return checkNameValue(v, param);
}

/**
 * A value made JSON-safe: bigints as decimal strings, typed arrays as arrays, undefined members
 * dropped. Everything the ledger returns goes through this before fastify serialises it.
 */
export function wire(v: unknown): unknown {
  if (typeof v === "bigint") return v.toString(10);
  if (Array.isArray(v)) return v.map(wire);
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>, (x) => wire(x));
  if (isObj(v)) {
    const out: Obj = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = wire(x);
    return out;
  }
  return v;
}

/** A list in the shape /v1/models uses. */
export function list(data: readonly unknown[]): { object: "list"; data: unknown[] } {
  return { object: "list", data: data.map(wire) };
}
