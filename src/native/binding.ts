/**
 * Types of the native addon. The one source of truth is native/openlora_native.d.ts (next to the
 * C++); this file re-exports it and lists the exported function names at run time, checked
 * against the interface at compile time (and against the built addon by
 * test/native/binding-drift.test.ts).
 */
import type { OpenLoraNative } from "../../native/openlora_native.js";

export type { KernelImpl, LoraPath, LoraTerms, OpenLoraNative } from "../../native/openlora_native.js";

/** Every function of OpenLoraNative, in declaration order. */
export const NATIVE_FUNCTIONS = [
  "cpuFeatures",
  "getKernelImpl",
  "setKernelImpl",
  "setThreads",
  "getThreads",
  "mapFile",
  "matmul",
  "matmulMulti",
  "loraRegister",
  "loraRelease",
  "loraApply",
  "setLoraPath",
  "getLoraPath",
  "getRows",
  "quantize",
  "dequantize",
  "rmsNorm",
  "rope",
  "kvStore",
  "attention",
  "siluMul",
  "argmax",
  "firstOutOfRange",
  "add",
  "addBias",
  "measureReadBandwidth",
  "memoryBandwidth",
] as const satisfies readonly (keyof OpenLoraNative)[];

// Compile-time check that the list is exhaustive: fails to type-check when the interface gains
// a name the list lacks.
type Missing = Exclude<keyof OpenLoraNative, (typeof NATIVE_FUNCTIONS)[number]>;
const exhaustive: [Missing] extends [never] ? true : Missing = true;
void exhaustive;
