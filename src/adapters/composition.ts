/**
 * The one rule for an adapter's composition weight (a request's `adapters: [{id, weight}]`, the
 * CLI's `--adapter x=0.7`, the engine's per-row terms, and the receipt's `weightPpm`):
 *
 *   a finite number w with 0 ≤ w ≤ MAX_COMPOSITION_WEIGHT, kept to parts per million:
 *   weightPpm = round(w · 10⁶), and the engine computes with exactly weightPpm / 10⁶.
 *
 * Checked once where a weight enters (request parsing, CLI flags); the engine and the receipt
 * check the same rule again as guards, so nothing the engine runs can fail to be receipted.
 */
import { oerr } from "../errors.js";

/** The largest composition weight accepted (a weighted sum of updates, not an amplifier). */
export const MAX_COMPOSITION_WEIGHT = 10;
export const PPM = 1_000_000;
export const MAX_WEIGHT_PPM = MAX_COMPOSITION_WEIGHT * PPM;

/** Whether `w` satisfies the rule (before rounding to ppm). */
export function isCompositionWeight(w: unknown): w is number {
  return typeof w === "number" && Number.isFinite(w) && w >= 0 && w <= MAX_COMPOSITION_WEIGHT;
}

/** The weight in parts per million; INVALID_ARGUMENT (with `param`) when it breaks the rule. */
export function compositionWeightPpm(w: unknown, param = "weight"): number {
  if (!isCompositionWeight(w)) {
    const shown = typeof w === "number" ? String(w) : typeof w;
    throw oerr("INVALID_ARGUMENT", `${param} must be a finite number in [0, ${MAX_COMPOSITION_WEIGHT}], got ${shown.slice(0, 32)}`, { param });
  }
  return Math.round(w * PPM);
}

/** The weight the engine computes with: exactly the receipt's parts per million. */
export function compositionWeight(w: unknown, param = "weight"): number {
  return compositionWeightPpm(w, param) / PPM;
}

/** True for an integer ppm value the rule can produce. */
export function isWeightPpm(ppm: unknown): ppm is number {
  return typeof ppm === "number" && Number.isSafeInteger(ppm) && ppm >= 0 && ppm <= MAX_WEIGHT_PPM;
}
