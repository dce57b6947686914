/**
 * Pure TypeScript helpers over token bitmasks (bit (id & 31) of word (id >> 5) set = allowed),
 * the layout xgrammar fills and the engine applies to a logits row.
 */

/**
 * Sets logits[id] = -Infinity for every id whose bit is clear, in place. Ids past the mask's
 * words (mask.length * 32 < logits.length) are disallowed too. Exact: allowed logits are untouched.
 */
export function applyMask(logits: Float32Array, mask: Int32Array): void {
  const n = logits.length;
  const words = Math.min(mask.length, Math.ceil(n / 32));
  let zeroFrom = -1; // first word of the current run of all-disallowed words
  for (let w = 0; w < words; w++) {
    const m = mask[w]!;
    if (m === 0) {
      if (zeroFrom < 0) zeroFrom = w;
      continue;
    }
    if (zeroFrom >= 0) {
      logits.fill(-Infinity, zeroFrom << 5, w << 5);
      zeroFrom = -1;
    }
    if (m === -1) continue; // all 32 allowed
    // Visit only the clear bits.
    const base = w << 5;
    let z = ~m;
    while (z !== 0) {
      const low = z & -z;
      const id = base + 31 - Math.clz32(low);
      if (id < n) logits[id] = -Infinity;
      z ^= low;
    }
  }
  // Trailing disallowed words, and ids past the mask's words.
  logits.fill(-Infinity, zeroFrom >= 0 ? zeroFrom << 5 : words << 5, n);
}

/** The allowed ids of a mask, ascending (tests, debugging, sparse sampling). */
export function allowedIds(mask: Int32Array, vocabSize = mask.length * 32): number[] {
  const out: number[] = [];
  for (let w = 0; w < mask.length; w++) {
    let m = mask[w]! >>> 0;
    while (m !== 0) {
      const low = m & -m;
      const id = (w << 5) + 31 - Math.clz32(low);
      if (id < vocabSize) out.push(id);
      m = (m ^ low) >>> 0;
    }
  }
  return out;
}

/** Whether `id` is allowed by the mask. */
export function isAllowed(mask: Int32Array, id: number): boolean {
  return ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
}
