/** Seeded random values for synthetic models and adapters: the same seed, the same bits, everywhere. */

/** FNV-1a of a name mixed with the seed: each tensor gets its own stream. */
export function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h || 1;
}

/** Uniform values with mean `mean` and standard deviation `std` (xorshift32 stream; seed 0 acts as 1). */
export function randomUniform(n: number, seed: number, std: number, mean = 0): Float32Array {
  const out = new Float32Array(n);
  const a = std * Math.sqrt(3) * 2;
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = mean + (x / 4294967296 - 0.5) * a;
  }
  return out;
}

/** mulberry32: a small seeded PRNG in [0, 1), so randomized tests replay exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
