/** Small helpers to turn parsed CLI strings into checked numbers. */
import { oerr } from "../errors.js";

export function intArg(v: string | undefined, name: string, min: number, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw oerr("INVALID_ARGUMENT", `--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export function numArg(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw oerr("INVALID_ARGUMENT", `--${name} must be a number, got "${v}"`);
  return n;
}

export function choiceArg<T extends string>(v: string | undefined, name: string, choices: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) throw oerr("INVALID_ARGUMENT", `--${name} must be one of ${choices.join(", ")}, got "${v}"`);
  return v as T;
}

/** A one-line progress indicator on stderr (only when stderr is a terminal or forced). */
export function progressLine(label: string): (fraction: number, message: string) => void {
  let last = -1;
  return (fraction, message) => {
    const pct = Math.floor(fraction * 100);
    if (pct === last) return;
    last = pct;
    process.stderr.write(`\r${label}: ${message} ${pct}%   ${pct === 100 ? "\n" : ""}`);
  };
}
