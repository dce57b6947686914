import type { ModelConfig } from "../model/config.js";
import type { BaseModelShape } from "./types.js";

/** The module shapes an adapter must match, from the base model's configuration. */
export function baseShapeOf(c: ModelConfig): BaseModelShape {
  const H = c.hiddenSize;
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const F = c.intermediateSize;
  return {
    architecture: c.architecture,
    nLayers: c.nLayers,
    modules: {
      q: { inDim: H, outDim: q },
      k: { inDim: H, outDim: kv },
      v: { inDim: H, outDim: kv },
      o: { inDim: q, outDim: H },
      gate: { inDim: H, outDim: F },
      up: { inDim: H, outDim: F },
      down: { inDim: F, outDim: H },
    },
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    permuteQk: c.architecture === "llama",
  };
}
