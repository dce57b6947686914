/** Random in-memory LoRA adapters for a model configuration (no files), for engine tests. */
import type { LoraAdapterWeights, LoraModule, LoraPair } from "../../src/adapters/types.js";
import { baseShapeOf } from "../../src/adapters/base-shape.js";
import type { ModelConfig } from "../../src/model/config.js";
import { randomUniform } from "../../src/synth/random.js";


export function randomAdapter(c: ModelConfig, rank: number, seed: number, modules: LoraModule[] = ["q", "k", "v", "o"], alpha = rank): LoraAdapterWeights {
  const shape = baseShapeOf(c);
  let bytes = 0;
  const layers = Array.from({ length: c.nLayers }, (_, l) => {
    const out: Partial<Record<LoraModule, LoraPair>> = {};
    modules.forEach((m, mi) => {
      const { inDim, outDim } = shape.modules[m];
      const s = seed * 7919 + l * 101 + mi * 13;
      const pair: LoraPair = { rank, inDim, outDim, a: randomUniform(rank * inDim, s + 1, 1 / Math.sqrt(inDim)), b: randomUniform(outDim * rank, s + 2, 2 / Math.sqrt(rank)), dtype: "f32", scale: alpha / rank };
      bytes += (pair.a.byteLength + pair.b.byteLength);
      out[m] = pair;
    });
    return out;
  });
  return { layers, maxRank: rank, bytes };
}
