/**
 * Canonical JSON: RFC 8785 (JCS) — object keys sorted by UTF-16 code units, no whitespace,
 * strings and numbers as ECMAScript's JSON.stringify writes them — plus one rule of ours:
 * a bigint is written as a JSON string of its decimal digits. Undefined object members are
 * dropped. Anything else (NaN, Infinity, functions, typed arrays, symbols) is refused.
 */
import { keccak256, stringToHex, type Hex } from "viem";
import { oerr } from "../errors.js";

export function canonicalJson(value: unknown): string {
  return write(value, "$");
}

/** keccak256 of the UTF-8 bytes of canonicalJson(value). */
export function canonicalHash(value: unknown): Hex {
  return keccak256(stringToHex(canonicalJson(value)));
}

function write(v: unknown, path: string): string {
  if (v === null) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "string":
      return JSON.stringify(v);
    case "bigint":
      return `"${v.toString(10)}"`;
    case "number":
      if (!Number.isFinite(v)) throw oerr("INVALID_ARGUMENT", `canonical JSON: ${path} is not a finite number`);
      return JSON.stringify(v);
    case "object": {
      if (Array.isArray(v)) return `[${v.map((x, i) => write(x, `${path}[${i}]`)).join(",")}]`;
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw oerr("INVALID_ARGUMENT", `canonical JSON: ${path} is not a plain object`);
      }
      const members: string[] = [];
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (x === undefined) continue;
        members.push(`${JSON.stringify(k)}:${write(x, `${path}.${k}`)}`);
      }
      return `{${members.join(",")}}`;
    }
    default:
      throw oerr("INVALID_ARGUMENT", `canonical JSON: ${path} has unsupported type ${typeof v}`);
  }
}
