// The worker thread of worker.test.ts: registers tsx in this thread (Node 20 does not apply a
// worker's --import to its entry, see src/engine/worker-tsx.mjs), then runs a walk in it.
import { register } from "tsx/esm/api";
import { parentPort, workerData } from "node:worker_threads";

register();
const { runWalk } = await import(new URL("./worker-walk.ts", import.meta.url).href);
try {
  parentPort.postMessage({ ok: true, result: await runWalk(workerData) });
} catch (e) {
  parentPort.postMessage({ ok: false, error: String(e?.stack ?? e) });
}
