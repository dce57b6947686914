/**
 * The engine runs in a worker_threads Worker: xgrammar's WASM build loads and constrains there too,
 * and gives the very masks (and tokens) the main thread gets.
 */
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { runWalk, type WalkJob } from "./worker-walk.js";
import type { WalkResult } from "./walk.js";

function inWorker(job: WalkJob): Promise<WalkResult> {
  const worker = new Worker(new URL("./worker-entry.mjs", import.meta.url), { workerData: job });
  return new Promise((resolve, reject) => {
    worker.once("message", (m: { ok: boolean; result?: WalkResult; error?: string }) => {
      void worker.terminate();
      if (m.ok) resolve(m.result!);
      else reject(new Error(m.error));
    });
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`worker exited with code ${code}`)));
  });
}

describe("in a worker_threads Worker", () => {
  it("walks a JSON schema with the same masks and tokens as the main thread", async () => {
    const job: WalkJob = { tokenizer: "llama3", kind: "json_schema", seed: 21 };
    const [there, here] = [await inWorker(job), await runWalk(job)];
    expect(there.tokens.length).toBeGreaterThan(5);
    expect(there).toEqual(here);
  });
});
