export * from "./types.js";
export { schedule } from "./scheduler.js";
export { byArrival, chunkCharge, pruneFairness, startingCounters, vtcOrder } from "./fairness.js";
