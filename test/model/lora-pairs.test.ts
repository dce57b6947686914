/**
 * Registered LoRA pairs are released once their pair objects are garbage-collected (the registry's
 * strong references would otherwise keep every adapter ever served in memory), and ids in use are
 * kept. Runs in a child process with --expose-gc so the collection can be forced.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..", "..");

const script = `
import { loraPairId } from "./src/model/lora-pairs.ts";
const K = 64, N = 32, rank = 4;
const pair = (v) => ({ rank, inDim: K, outDim: N, a: new Float32Array(rank * K).fill(v), b: new Float32Array(N * rank), dtype: "f32", scale: 1 });
const kept = pair(1);
const keptId = loraPairId(kept);
const same = loraPairId(kept);
let dropped = Array.from({ length: 50 }, (_, i) => pair(i));
const droppedIds = new Set(dropped.map(loraPairId));
dropped = null;
for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
const fresh = loraPairId(pair(2));
console.log(JSON.stringify({ keptId, same, reused: droppedIds.has(fresh), keptStillRegistered: loraPairId(kept) === keptId }));
`;

describe("LoRA pair ids", () => {
  it("are stable per pair, released after the pair is collected, and reused", async () => {
    const { stdout } = await run(process.execPath, ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", script], { cwd: root });
    const out = JSON.parse(stdout.trim().split("\n").at(-1)!) as { keptId: number; same: number; reused: boolean; keptStillRegistered: boolean };
    expect(out.same).toBe(out.keptId);
    expect(out.reused).toBe(true);
    expect(out.keptStillRegistered).toBe(true);
  });
});
