/**
 * The Llama q/k row permutation between Hugging Face's rotary layout (each head rotates its two
 * halves) and GGUF's (each head rotates adjacent pairs), as llama.cpp's converter applies it:
 * within each head, destination row 2i ← source row i and 2i + 1 ← source row half + i.
 * One implementation for the base weights, synthetic models and LoRA B matrices.
 */

/** For each destination row, the source row it takes (HF → GGUF layout). */
function rotaryOrder(rows: number, nHeads: number): Int32Array {
  const order = new Int32Array(rows);
  const headRows = rows / nHeads;
  const half = headRows / 2;
  for (let h = 0; h < nHeads; h++) {
    const b = h * headRows;
    for (let i = 0; i < half; i++) {
      order[b + 2 * i] = b + i;
      order[b + 2 * i + 1] = b + half + i;
    }
  }
  return order;
}

function gatherRows<T extends Uint8Array | Float32Array>(src: T, rowSize: number, order: Int32Array, inverse: boolean): T {
  const out = new (src.constructor as { new (n: number): T })(src.length);
  for (let d = 0; d < order.length; d++) {
    const s = order[d]!;
    const [to, from] = inverse ? [s, d] : [d, s];
    out.set(src.subarray(from * rowSize, (from + 1) * rowSize), to * rowSize);
  }
  return out;
}

/**
 * HF → GGUF rotary layout of a matrix with `rows` rows of `rowSize` elements (bytes for raw
 * quantized rows), nHeads heads. A copy; rows move whole, so any row encoding works.
 */
export function toGgufRotaryLayout<T extends Uint8Array | Float32Array>(m: T, rows: number, rowSize: number, nHeads: number): T {
  return gatherRows(m, rowSize, rotaryOrder(rows, nHeads), false);
}

/** GGUF → HF rotary layout: the inverse of toGgufRotaryLayout. */
export function toHfRotaryLayout<T extends Uint8Array | Float32Array>(m: T, rows: number, rowSize: number, nHeads: number): T {
  return gatherRows(m, rowSize, rotaryOrder(rows, nHeads), true);
}
