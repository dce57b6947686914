/** Rewrites a GGUF file with edited metadata or tensors, to build broken-but-parseable inputs. */
import { readFileSync } from "node:fs";
import { GGUF_VALUE, parseGguf, tensorData } from "../../src/formats/gguf.js";
import { type GgufEntry, type GgufTensorSpec, writeGguf } from "../../src/formats/gguf-writer.js";

const SCALAR_NAME: Record<number, string> = {
  [GGUF_VALUE.UINT8]: "u8", [GGUF_VALUE.INT8]: "i8", [GGUF_VALUE.UINT16]: "u16", [GGUF_VALUE.INT16]: "i16",
  [GGUF_VALUE.UINT32]: "u32", [GGUF_VALUE.INT32]: "i32", [GGUF_VALUE.FLOAT32]: "f32", [GGUF_VALUE.BOOL]: "bool",
  [GGUF_VALUE.STRING]: "string", [GGUF_VALUE.UINT64]: "u64", [GGUF_VALUE.INT64]: "i64", [GGUF_VALUE.FLOAT64]: "f64",
};

export function rewriteGguf(
  src: string,
  dst: string,
  edit: { meta?: (m: Record<string, GgufEntry>) => void; tensors?: (t: GgufTensorSpec[]) => GgufTensorSpec[] },
): void {
  const f = parseGguf(readFileSync(src), src);
  const meta: Record<string, GgufEntry> = {};
  for (const [key, value] of f.metadata) {
    const t = f.metadataTypes.get(key)!;
    const name = t.type === GGUF_VALUE.ARRAY ? `${SCALAR_NAME[t.elemType!]}[]` : SCALAR_NAME[t.type]!;
    meta[key] = { type: name, value: value instanceof Object && !Array.isArray(value) ? Array.from(value as unknown as ArrayLike<number>) : value } as GgufEntry;
  }
  let tensors: GgufTensorSpec[] = f.tensors.map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: tensorData(f, t).slice() }));
  edit.meta?.(meta);
  if (edit.tensors) tensors = edit.tensors(tensors);
  writeGguf(dst, meta, tensors);
}
