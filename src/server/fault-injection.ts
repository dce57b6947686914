/**
 * FOR TESTS ONLY: a switch that makes this node lie about its output, so an end-to-end test can
 * run a dishonest node and show that replay (`openlora verify`, `openlora validate`) catches it.
 * Never enable it on a node that serves anyone.
 *
 * It is on only when the environment has BOTH `NODE_ENV=test` and
 * `OPENLORA_FAULT_INJECTION=alter-output-token[:K]`:
 * - `alter-output-token`: every completed request (finished by eos, a stop string or its length,
 *   with at least one token) is altered;
 * - `alter-output-token:K` (K ≥ 1): only the K-th completed request of this server (this process,
 *   for `openlora serve`), counted from 1 in the order requests finish.
 * For an altered request the middle generated token, output[floor(n/2)], becomes (t + 1) mod the
 * vocabulary size after generation and before the request is settled, so the receipt's outputHash,
 * the token ids the ledger keeps (and an epoch batch publishes), the span evidence and the signature
 * all describe the altered output: the receipt is internally consistent and validly signed, but
 * the model did not produce it — what a lying node would sign. The text the client received is the
 * engine's own (the server side holds no detokenizer, and a stream's text is sent before the
 * request ends); what is checked, and what lies, is what the node signs.
 *
 * `OPENLORA_FAULT_INJECTION` set (non-empty) while NODE_ENV is not "test": the server refuses to
 * start (FAULT_INJECTION_REFUSED). A value other than the forms above: INVALID_ARGUMENT.
 */
import { oerr, quoted } from "../errors.js";

export const FAULT_INJECTION_ENV = "OPENLORA_FAULT_INJECTION";

/** Alters the output of the requests it is told of; counts completed requests. */
export class OutputTokenFault {
  private completed = 0;

  /** `only`: the 1-based number of the one completed request to alter; undefined = every one. */
  constructor(readonly only: number | undefined) {}

  /**
   * Called once per completed request, with its output tokens (at least one), before its receipt
   * is made: the tokens the node will sign (a copy with one token changed, or the same array).
   */
  completedOutput(tokens: readonly number[], vocabSize: number): readonly number[] {
    this.completed += 1;
    if (tokens.length === 0 || (this.only !== undefined && this.completed !== this.only)) return tokens;
    const out = [...tokens];
    const i = Math.floor(out.length / 2);
    out[i] = (out[i]! + 1) % vocabSize;
    return out;
  }

  describe(): string {
    return this.only === undefined ? "every completed request" : `completed request ${this.only} only`;
  }
}

/** The switch from the environment: undefined when off; throws when set outside tests or malformed. */
export function faultInjectionFromEnv(env: NodeJS.ProcessEnv = process.env): OutputTokenFault | undefined {
  const spec = env[FAULT_INJECTION_ENV];
  if (spec === undefined || spec === "") return undefined;
  if (env.NODE_ENV !== "test") {
    throw oerr("FAULT_INJECTION_REFUSED", `${FAULT_INJECTION_ENV} is set but NODE_ENV is ${env.NODE_ENV === undefined ? "not set" : quoted(env.NODE_ENV)}, not "test": fault injection (a node that signs altered outputs) exists for tests only; unset ${FAULT_INJECTION_ENV} to serve`);
  }
  const m = /^alter-output-token(?::([1-9][0-9]{0,14}))?$/.exec(spec);
  if (!m) throw oerr("INVALID_ARGUMENT", `${FAULT_INJECTION_ENV} must be "alter-output-token" or "alter-output-token:K" (K a positive integer)`);
  return new OutputTokenFault(m[1] === undefined ? undefined : Number(m[1]));
}
