/**
 * `openlora serve --fee-policy`: every part named once, in bps, a policy splitFee accepts; anything
 * else is refused with INVALID_ARGUMENT before the model loads.
 */
import { describe, expect, it } from "vitest";
import { parseFeePolicy } from "../../src/cli/serve-attribution.js";
import { runCli } from "../helpers/cli.js";

const ALL = "protocol=100,operator=1500,developer=6000,staker=1000,data=3000,lambda=2500";

describe("--fee-policy", () => {
  it("reads every part in any order, spaces allowed", () => {
    expect(parseFeePolicy(ALL)).toEqual({ protocolBps: 100, operatorBps: 1500, developerBps: 6000, stakerBps: 1000, dataBps: 3000, lambdaBps: 2500 });
    expect(parseFeePolicy(" lambda = 0, data=0,staker=0,developer=10000,operator=0,protocol=0")).toEqual({ protocolBps: 0, operatorBps: 0, developerBps: 10000, stakerBps: 0, dataBps: 0, lambdaBps: 0 });
  });

  it("refuses a missing or repeated part, an unknown one, a non-integer, and policies splitFee refuses", () => {
    const bad: [string, RegExp][] = [
      ["protocol=100,operator=1500,developer=6000,staker=1000,data=3000", /missing lambda/],
      [`${ALL},lambda=1`, /lambda is given twice/],
      [`${ALL},tip=5`, /"tip=5" is not/],
      [ALL.replace("lambda=2500", "lambda=0.5"), /"lambda=0.5" is not/],
      [ALL.replace("lambda=2500", "lambda=-1"), /"lambda=-1" is not/],
      [ALL.replace("operator=1500", "operator=9950"), /protocolBps \+ operatorBps must be <= 10000/],
      [ALL.replace("data=3000", "data=2999"), /developerBps \+ stakerBps \+ dataBps must be 10000/],
      [ALL.replace("lambda=2500", "lambda=10001"), /lambdaBps/],
      ["", /"" is not/],
    ];
    for (const [text, why] of bad) expect(() => parseFeePolicy(text), text).toThrow(why);
    let err: unknown;
    try {
      parseFeePolicy("nope");
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string } | undefined)?.code).toBe("INVALID_ARGUMENT");
  });

  it("openlora serve refuses a bad one at start, before loading a model", async () => {
    const r = await runCli(["serve", "--fee-policy", "protocol=100", "--port", "0"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/INVALID_ARGUMENT.*--fee-policy: missing operator/);
  });
});
