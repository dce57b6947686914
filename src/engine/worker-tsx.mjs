// The engine worker's entry when openlora runs from its TypeScript sources (tsx, vitest): Node 20
// does not apply a worker's `--import tsx` execArgv to the worker's own entry module, so the tsx
// hooks are registered here, in the worker thread, before worker.ts is imported.
import { register } from "tsx/esm/api";

register();
await import(new URL("./worker.ts", import.meta.url).href);
