export * from "./types.js";
export { baseShapeOf } from "./base-shape.js";
export * from "./registry.js";
export * from "./cache.js";
