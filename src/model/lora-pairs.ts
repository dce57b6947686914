/**
 * Native ids of LoRA pairs (native.loraRegister), made on a pair's first use in a forward step and
 * released when the pair is garbage-collected. An id is released only once its pair is unreachable,
 * so no term list can name freed or reused matrices; the registry's reference keeps the pair's
 * arrays alive until then (they are freed by the garbage collection after the release).
 */
import { ggmlTypeOf } from "../adapters/pair-storage.js";
import type { LoraPair } from "../adapters/types.js";
import { native } from "../native/index.js";

const ids = new WeakMap<LoraPair, number>();
const released = new FinalizationRegistry<number>((id) => native.loraRelease(id));

export function loraPairId(pair: LoraPair): number {
  let id = ids.get(pair);
  if (id === undefined) {
    id = native.loraRegister(pair.a, pair.b, ggmlTypeOf(pair.dtype), pair.inDim, pair.outDim);
    ids.set(pair, id);
    released.register(pair, id);
  }
  return id;
}
