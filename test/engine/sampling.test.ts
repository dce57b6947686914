import { describe, expect, it } from "vitest";
import { isOpenLoraError } from "../../src/errors.js";
import { argmax, Rng, sampleToken, validateSampling } from "../../src/engine/sampling.js";
import { StopMatcher } from "../../src/engine/stop.js";

const logits = Float32Array.from([1, 3, 2.5, -1, 0, 2.9]);

describe("sampling", () => {
  it("greedy picks the argmax, lowest id on ties", () => {
    expect(sampleToken(logits, [], {}, new Rng(1))).toBe(1);
    expect(argmax(Float32Array.from([2, 5, 5, 1]))).toBe(1);
  });

  it("is reproducible for a seed and varies across seeds", () => {
    const p = { temperature: 1.5, seed: 7 };
    const draw = (seed: number) => Array.from({ length: 50 }, ((rng) => () => sampleToken(logits, [], p, rng))(new Rng(seed)));
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  it("top-k 1, tiny top-p and min-p 1 all reduce to greedy", () => {
    for (let s = 0; s < 20; s++) {
      expect(sampleToken(logits, [], { temperature: 2, topK: 1 }, new Rng(s))).toBe(1);
      expect(sampleToken(logits, [], { temperature: 2, topP: 0.01 }, new Rng(s))).toBe(1);
      expect(sampleToken(logits, [], { temperature: 2, minP: 1 }, new Rng(s))).toBe(1);
    }
  });

  it("top-k restricts draws to the k best tokens", () => {
    const seen = new Set<number>();
    const rng = new Rng(3);
    for (let i = 0; i < 500; i++) seen.add(sampleToken(logits, [], { temperature: 5, topK: 3 }, rng));
    expect([...seen].sort()).toEqual([1, 2, 5]);
  });

  it("draw frequencies follow softmax(logits / T)", () => {
    const l = Float32Array.from([0, Math.log(3)]); // p = 0.25, 0.75 at T = 1
    const rng = new Rng(11);
    let ones = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) ones += sampleToken(l, [], { temperature: 1 }, rng);
    expect(ones / n).toBeGreaterThan(0.73);
    expect(ones / n).toBeLessThan(0.77);
  });

  it("applies repetition, presence and frequency penalties to seen tokens", () => {
    // token 1 (logit 3) seen twice: 3 / 2 = 1.5 < 2.9 → token 5 wins
    expect(sampleToken(logits, [1, 1], { repetitionPenalty: 2 }, new Rng(0))).toBe(5);
    // presence 0.2 on tokens 1 and 5 → 2.8, 2.7 → token 1 still wins
    expect(sampleToken(logits, [1, 5], { presencePenalty: 0.2 }, new Rng(0))).toBe(1);
    // frequency 0.3 per occurrence: token 1 → 3 − 0.6 = 2.4, token 5 → 2.9 − 0.3 = 2.6 > token 2's 2.5
    expect(sampleToken(logits, [1, 1, 5], { frequencyPenalty: 0.3 }, new Rng(0))).toBe(5);
    expect(sampleToken(logits, [1, 1, 5, 5], { frequencyPenalty: 0.3 }, new Rng(0))).toBe(2);
    // window 1 only sees the last token
    expect(sampleToken(logits, [1, 1, 5], { repetitionPenalty: 10, penaltyWindow: 1 }, new Rng(0))).toBe(1);
  });

  it("rejects out-of-range parameters with INVALID_ARGUMENT", () => {
    for (const bad of [{ temperature: -1 }, { topP: 0 }, { topP: 1.5 }, { topK: 1.5 }, { minP: 2 }, { repetitionPenalty: 0 }, { presencePenalty: 3 }, { seed: 0.5 }]) {
      let err: unknown;
      try { validateSampling(bad); } catch (e) { err = e; }
      expect(isOpenLoraError(err, "INVALID_ARGUMENT"), JSON.stringify(bad)).toBe(true);
    }
  });
});

describe("stop strings", () => {
  it("holds back a possible stop prefix and cuts at the match", () => {
    const m = new StopMatcher(["</end>"]);
    expect(m.push("hello </")).toEqual({ emit: "hello ", stopped: false });
    expect(m.push("en")).toEqual({ emit: "", stopped: false });
    expect(m.push("d> more")).toEqual({ emit: "", stopped: true });
  });

  it("releases held text when the prefix does not complete", () => {
    const m = new StopMatcher(["STOP"]);
    expect(m.push("a ST")).toEqual({ emit: "a ", stopped: false });
    expect(m.push("x")).toEqual({ emit: "STx", stopped: false });
    expect(m.flush("ST")).toBe("ST");
  });

  it("stops at the earliest of several stop strings within one chunk", () => {
    const m = new StopMatcher(["b", "cd"]);
    expect(m.push("acdb")).toEqual({ emit: "a", stopped: true });
  });
});
