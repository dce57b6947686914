import { describe, expect, it } from "vitest";
import { pruneFairness, schedule } from "../../src/scheduler/scheduler.js";
import { vtcOrder } from "../../src/scheduler/fairness.js";
import { blocksFor, type ScheduleInput, type SchedulerConfig, type SeqState, type StepPlan } from "../../src/scheduler/types.js";

const BS = 16;
const config = (over: Partial<SchedulerConfig> = {}): SchedulerConfig => ({
  blockSize: BS, totalBlocks: 1000, tokenBudget: 256, maxRunning: 8, prefillChunk: 64, prefetchDepth: 4, ...over,
});

interface SeqOpts { arrival?: number; key?: string; adapters?: string[]; remaining?: number; blocks?: number }

/** A running sequence with `computed` of `total` tokens in its cache (blocks sized to `computed` unless given). */
function run(id: number, total: number, computed: number, o: SeqOpts = {}): SeqState {
  return {
    id, arrival: o.arrival ?? id, fairKey: o.key ?? "k", adapters: o.adapters ?? [], totalTokens: total, computed,
    blocks: o.blocks ?? blocksFor(computed, BS), remaining: o.remaining ?? 10, status: "running",
  };
}
/** A decoding sequence: everything but the last sampled token is computed. */
const decode = (id: number, total: number, o: SeqOpts = {}) => run(id, total, total - 1, o);
function wait(id: number, total: number, o: SeqOpts = {}): SeqState {
  return {
    id, arrival: o.arrival ?? id, fairKey: o.key ?? "k", adapters: o.adapters ?? [], totalTokens: total, computed: 0,
    blocks: 0, remaining: o.remaining ?? 10, status: "waiting",
  };
}

function plan(seqs: SeqState[], o: { config?: Partial<SchedulerConfig>; free?: number; ready?: string[]; fairness?: Record<string, number> } = {}): StepPlan {
  return schedule({
    config: config(o.config), seqs, freeBlocks: o.free ?? 1000,
    readyAdapters: new Set(o.ready ?? []), fairness: new Map(Object.entries(o.fairness ?? {})),
  });
}
const ids = (p: StepPlan) => p.batch.map((c) => c.id);
const chunkOf = (p: StepPlan, id: number) => p.batch.find((c) => c.id === id);

describe("running sequences", () => {
  it("decodes go before prefill chunks, earlier arrival first in each group", () => {
    const p = plan([run(1, 200, 64, { arrival: 0 }), decode(2, 30, { arrival: 3 }), run(3, 100, 16, { arrival: 1 }), decode(4, 40, { arrival: 2 })]);
    expect(ids(p)).toEqual([4, 2, 1, 3]);
    expect(p.admitted).toEqual([]);
    expect(p.preempted).toEqual([]);
  });

  it("a prefill gets min(need, prefillChunk, budget left) tokens, a decode one", () => {
    const p = plan([decode(1, 30), decode(2, 30), run(3, 200, 64), run(4, 120, 100), run(5, 500, 0, { blocks: 0 })], { config: { tokenBudget: 100 } });
    expect(p.batch.map((c) => [c.id, c.tokens])).toEqual([[1, 1], [2, 1], [3, 64], [4, 20], [5, 14]]);
  });

  it("never exceeds the token budget nor maxRunning", () => {
    const decodes = Array.from({ length: 8 }, (_, i) => decode(i + 1, 20));
    expect(ids(plan(decodes, { config: { tokenBudget: 5 } }))).toEqual([1, 2, 3, 4, 5]);
    expect(ids(plan(decodes, { config: { maxRunning: 3 } }))).toEqual([1, 2, 3]);
    const withWaiting = [decode(1, 20), decode(2, 20), decode(3, 20), wait(4, 10), wait(5, 10), wait(6, 10)];
    const p = plan(withWaiting, { config: { maxRunning: 4 } });
    expect(p.admitted).toEqual([4]);
    expect(ids(p)).toEqual([1, 2, 3, 4]);
    const tight = plan(withWaiting, { config: { tokenBudget: 12, maxRunning: 8 } });
    expect(tight.batch.reduce((n, c) => n + c.tokens, 0)).toBe(12);
    expect(tight.admitted).toEqual([4]);
    expect(chunkOf(tight, 4)!.tokens).toBe(9);
  });

  it("grows blocks exactly when a chunk crosses a block boundary", () => {
    // computed 15: the 16th token still fits block 1; computed 16: the 17th needs block 2.
    const p = plan([decode(1, 16), decode(2, 17), run(3, 200, 10)]);
    expect(chunkOf(p, 1)).toEqual({ id: 1, tokens: 1, blocks: 1 });
    expect(chunkOf(p, 2)).toEqual({ id: 2, tokens: 1, blocks: 2 });
    expect(chunkOf(p, 3)).toEqual({ id: 3, tokens: 64, blocks: blocksFor(74, BS) });
    // Holding more blocks than needed never shrinks the table.
    expect(chunkOf(plan([decode(1, 16, { blocks: 3 })]), 1)!.blocks).toBe(3);
  });
});

describe("preemption", () => {
  it("preempts the running sequence of the most-served key, latest arrival, and frees its blocks", () => {
    const seqs = [
      decode(1, 17, { key: "a", arrival: 0 }), // needs a second block
      decode(2, 40, { key: "b", arrival: 1 }),
      decode(3, 40, { key: "b", arrival: 2, blocks: 3 }),
      decode(4, 40, { key: "c", arrival: 3 }),
    ];
    const p = plan(seqs, { free: 0, fairness: { a: 10, b: 50, c: 20 } });
    expect(p.preempted).toEqual([3]);
    expect(ids(p)).toEqual([1, 2, 4]);
    expect(chunkOf(p, 1)!.blocks).toBe(2);
  });

  it("drops an already planned victim from the batch and gives its blocks and tokens back", () => {
    // Seq 1 (a decode, planned first) is preempted for seq 2's 4 new blocks; its row goes to seq 5.
    const seqs = [
      decode(1, 40, { key: "hi", arrival: 0, blocks: 4 }),
      run(2, 300, 32, { key: "lo", arrival: 1 }),
      decode(3, 20, { key: "lo", arrival: 2 }),
      run(5, 60, 10, { key: "lo", arrival: 3 }),
    ];
    const p = plan(seqs, { free: 0, fairness: { hi: 100, lo: 0 }, config: { tokenBudget: 66 } });
    expect(p.preempted).toEqual([1]);
    expect(p.batch).toEqual([
      { id: 3, tokens: 1, blocks: 2 },
      { id: 2, tokens: 64, blocks: 6 },
      { id: 5, tokens: 1, blocks: 1 },
    ]);
  });

  it("a sequence that is itself the lowest priority preempts itself, not a more deserving one", () => {
    const seqs = [decode(1, 17, { key: "greedy", arrival: 0 }), decode(2, 40, { key: "modest", arrival: 1 })];
    const p = plan(seqs, { free: 0, fairness: { greedy: 99, modest: 1 } });
    expect(p.preempted).toEqual([1]);
    expect(ids(p)).toEqual([2]);
    const lone = plan([decode(1, 17)], { free: 0 });
    expect(lone.preempted).toEqual([1]);
    expect(lone.batch).toEqual([]);
  });

  it("never preempts to admit, and admits nothing in a step that preempted", () => {
    const noRoom = plan([decode(1, 40, { key: "rich" }), wait(2, 10, { key: "poor" })], { free: 0, fairness: { rich: 1000, poor: 0 } });
    expect(noRoom.preempted).toEqual([]);
    expect(noRoom.admitted).toEqual([]);
    expect(ids(noRoom)).toEqual([1]);
    // Seq 3's preemption frees 5 blocks, 4 more than seq 1 needs; the waiting seq 4 would fit in them.
    const seqs = [decode(1, 17, { key: "a" }), decode(3, 40, { key: "b", blocks: 5 }), wait(4, 10, { key: "a" })];
    const p = plan(seqs, { free: 0, fairness: { a: 0, b: 9 } });
    expect(p.preempted).toEqual([3]);
    expect(p.admitted).toEqual([]);
  });
});

describe("admission", () => {
  it("admits only sequences whose adapters are all ready, skipping (not blocking on) the others", () => {
    const seqs = [wait(1, 10, { adapters: ["x"] }), wait(2, 10, { adapters: ["y", "z"] }), wait(3, 10, { adapters: ["y"] }), wait(4, 10)];
    const p = plan(seqs, { ready: ["y"] });
    expect(p.admitted).toEqual([3, 4]);
    expect(ids(p)).toEqual([3, 4]);
    expect(p.prefetch).toEqual(["x", "z"]);
  });

  it("a first chunk is min(totalTokens, prefillChunk, budget left), with its blocks", () => {
    const p = plan([decode(1, 20), wait(2, 300), wait(3, 40), wait(4, 100)], { config: { tokenBudget: 120 } });
    expect(p.batch.map((c) => [c.id, c.tokens, c.blocks])).toEqual([[1, 1, 2], [2, 64, 4], [3, 40, 3], [4, 15, 1]]);
  });

  it("admits only when the whole prompt (and its first fed-back token) can get blocks, not just the first chunk", () => {
    // 200 tokens + 1 need 13 blocks; the first 64-token chunk takes 4 of them now.
    const p = plan([wait(1, 200)], { free: 12 });
    expect(p.admitted).toEqual([]);
    expect(p.batch).toEqual([]);
    expect(plan([wait(1, 200)], { free: 13 }).batch).toEqual([{ id: 1, tokens: 64, blocks: 4 }]);
    expect(plan([wait(1, 200, { remaining: 1 })], { free: 13 }).admitted).toEqual([1]);
  });

  it("stops at the first candidate that does not fit: a big request is not overtaken by small ones", () => {
    expect(plan([wait(1, 200), wait(2, 10)], { free: 12 }).admitted).toEqual([]);
    // Once seq 1 is in, the 9 blocks left are its own to finish its prompt: seq 2 waits.
    expect(plan([wait(1, 200), wait(2, 10)], { free: 13 }).admitted).toEqual([1]);
    expect(plan([wait(1, 200), wait(2, 10)], { free: 14 }).admitted).toEqual([1, 2]);
  });

  it("keeps as many blocks free as decodes will need next step (watermark)", () => {
    // Seq 1 feeds its 16th token now and its 17th next step, which needs a second block.
    const atBoundary = [decode(1, 16, { remaining: 5 }), wait(2, 10)];
    expect(plan(atBoundary, { free: 1 }).admitted).toEqual([]);
    expect(plan(atBoundary, { free: 2 }).admitted).toEqual([2]);
    // One that is about to finish, or not at a boundary, reserves nothing.
    expect(plan([decode(1, 16, { remaining: 1 }), wait(2, 10)], { free: 1 }).admitted).toEqual([2]);
    expect(plan([decode(1, 12), wait(2, 10)], { free: 1 }).admitted).toEqual([2]);
    // The admitted sequence counts too when its whole prompt fits one chunk that ends on a boundary.
    expect(plan([wait(1, 16)], { free: 1 }).admitted).toEqual([]);
    expect(plan([wait(1, 16)], { free: 2 }).admitted).toEqual([1]);
  });

  it("keeps the blocks a running prefill still needs for the rest of its prompt", () => {
    // Seq 1 grows from 4 to 8 blocks now and needs 5 more (201 tokens = 13 blocks) to finish.
    const seqs = [run(1, 200, 64), wait(2, 10)];
    expect(plan(seqs, { free: 9 }).admitted).toEqual([]);
    expect(plan(seqs, { free: 10 }).admitted).toEqual([2]);
  });
});

describe("prefetch", () => {
  const seqs = [wait(1, 10, { key: "k1", adapters: ["a", "b"] }), wait(2, 10, { key: "k1", adapters: ["b", "c"] }), wait(3, 10, { key: "k2", adapters: ["d"] })];
  const prefetch = (depth: number, ready: string[] = []) => plan(seqs, { config: { prefetchDepth: depth }, ready, fairness: { k1: 0, k2: 5 } }).prefetch;

  it("follows admission order (fairness, then arrival), deduplicated, over the first prefetchDepth sequences", () => {
    // k1 is served least, but after seq 1 (12 units) k2 is: seq 3 comes before seq 2.
    expect(prefetch(0)).toEqual([]);
    expect(prefetch(1)).toEqual(["a", "b"]);
    expect(prefetch(2)).toEqual(["a", "b", "d"]);
    expect(prefetch(3)).toEqual(["a", "b", "d", "c"]);
    expect(prefetch(3, ["b"])).toEqual(["a", "d", "c"]);
  });

  it("counts waiting sequences whose adapters are ready, but not those admitted now", () => {
    const blocked = [wait(1, 10), wait(2, 10, { adapters: ["x"] })];
    expect(plan(blocked, { free: 0, config: { prefetchDepth: 1 } }).prefetch).toEqual([]);
    expect(plan(blocked, { free: 0, config: { prefetchDepth: 2 } }).prefetch).toEqual(["x"]);
    const admitted = plan(blocked, { config: { prefetchDepth: 1 } });
    expect(admitted.admitted).toEqual([1]);
    expect(admitted.prefetch).toEqual(["x"]);
  });
});

describe("fairness (VTC)", () => {
  const heavyRunning = [1, 2, 3, 4].map((i) => decode(i, 20, { key: "heavy", arrival: i - 1 }));
  const heavyQueue = Array.from({ length: 46 }, (_, i) => wait(5 + i, 50, { key: "heavy", arrival: 4 + i }));
  const light = wait(100, 50, { key: "light", arrival: 100 });

  it("a key with 50 queued requests does not starve a later single request: it takes the next free slot", () => {
    const first = plan([...heavyRunning, ...heavyQueue, light], { config: { maxRunning: 4 }, fairness: { heavy: 1000 } });
    expect(first.admitted).toEqual([]);
    expect(first.fairness.get("light")).toBe(1000);
    // Seq 4 finished; the freed slot goes to the light key although 46 heavy requests arrived earlier.
    const next = schedule({
      config: config({ maxRunning: 4 }), seqs: [...heavyRunning.slice(0, 3), ...heavyQueue, light], freeBlocks: 1000,
      readyAdapters: new Set(), fairness: first.fairness,
    });
    expect(next.admitted).toEqual([100]);
    // A slot free when the light request first shows up goes to it as well.
    expect(plan([...heavyRunning.slice(0, 3), ...heavyQueue, light], { config: { maxRunning: 4 }, fairness: { heavy: 1000 } }).admitted).toEqual([100]);
    // Without it the slot would have gone to the heavy queue's head: the slot really is free.
    expect(plan([...heavyRunning.slice(0, 3), ...heavyQueue], { config: { maxRunning: 4 }, fairness: { heavy: 1000 } }).admitted).toEqual([5]);
  });

  it("admits from the least-served key first and alternates keys as they are charged", () => {
    expect(plan([wait(1, 10, { key: "a" }), wait(2, 10, { key: "b" })], { config: { maxRunning: 1 }, fairness: { a: 100, b: 0 } }).admitted).toEqual([2]);
    const seqs = [1, 2, 3].map((i) => wait(i, 10, { key: "a" })).concat([4, 5, 6].map((i) => wait(i, 10, { key: "b" })));
    expect(plan(seqs, { fairness: { a: 0, b: 0 } }).admitted).toEqual([1, 4, 2, 5, 3, 6]);
    expect([...vtcOrder(seqs, new Map([["a", 0], ["b", 100]]), () => 10)].map((s) => s.id)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("starts a new key level with the least-served running key, or 0 when nothing runs", () => {
    const seqs = [decode(1, 20, { key: "a" }), decode(2, 20, { key: "b" }), wait(3, 10, { key: "c", adapters: ["x"] }), wait(4, 10, { key: "d", adapters: ["x"] })];
    const p = plan(seqs, { fairness: { a: 30, b: 20, d: 5 } });
    expect(Object.fromEntries(p.fairness)).toEqual({ a: 33, b: 23, c: 20, d: 5 });
    expect(Object.fromEntries(plan([wait(1, 10, { key: "new" })], { fairness: { old: 40 } }).fairness)).toEqual({ old: 40, new: 12 });
  });

  it("charges each chunk's rows at the prompt weight, plus the output weight when it samples a token", () => {
    const input: ScheduleInput = {
      config: config(), seqs: [decode(1, 20, { key: "a" }), run(2, 200, 64, { key: "b" }), wait(3, 10, { key: "c" })],
      freeBlocks: 100, readyAdapters: new Set(), fairness: new Map([["a", 0], ["b", 0]]),
    };
    const p = schedule(input);
    expect(Object.fromEntries(p.fairness)).toEqual({ a: 3, b: 64, c: 12 });
    expect(p.fairness).not.toBe(input.fairness);
    expect(Object.fromEntries(input.fairness)).toEqual({ a: 0, b: 0 });
  });

  it("pruneFairness keeps only the keys of live sequences", () => {
    const fairness = new Map([["a", 1], ["b", 2], ["c", 3]]);
    expect(Object.fromEntries(pruneFairness(fairness, [wait(1, 5, { key: "c" }), decode(2, 5, { key: "a" })]))).toEqual({ a: 1, c: 3 });
    expect(fairness.size).toBe(3);
  });
});

describe("the plan as a whole", () => {
  it("is empty when nothing is runnable", () => {
    const p = plan([wait(1, 10, { adapters: ["x"] }), wait(2, 10, { adapters: ["y"] })]);
    expect(p).toMatchObject({ batch: [], admitted: [], preempted: [], prefetch: ["x", "y"] });
    expect(plan([])).toMatchObject({ batch: [], admitted: [], preempted: [], prefetch: [] });
  });

  it("does not modify its input and does not depend on the order of seqs", () => {
    const seqs = [
      decode(1, 17, { key: "a" }), decode(2, 40, { key: "b", blocks: 4 }), run(3, 300, 64, { key: "a" }),
      wait(4, 100, { key: "c", adapters: ["x"] }), wait(5, 30, { key: "d", adapters: ["y"] }), wait(6, 20, { key: "a" }),
    ];
    const deepFreeze = (s: SeqState) => Object.freeze({ ...s, adapters: Object.freeze([...s.adapters]) });
    const input: ScheduleInput = {
      config: Object.freeze(config({ prefetchDepth: 2 })), seqs: Object.freeze(seqs.map(deepFreeze)), freeBlocks: 3,
      readyAdapters: new Set(["y"]), fairness: new Map([["a", 5], ["b", 7]]),
    };
    const before = JSON.stringify({ ...input, readyAdapters: [...input.readyAdapters], fairness: [...input.fairness] });
    const p = schedule(input);
    expect(JSON.stringify({ ...input, readyAdapters: [...input.readyAdapters], fairness: [...input.fairness] })).toBe(before);
    expect(p.preempted).toEqual([2]);
    expect(schedule({ ...input, seqs: [...input.seqs].reverse() })).toEqual(p);
  });
});
