/**
 * ggml tensor types: ids as stored in GGUF files, block sizes and bytes per block.
 * A row of K elements of type t takes (K / blockSize(t)) · blockBytes(t) bytes; K must be a
 * multiple of the block size.
 */
export const GGML_TYPE = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  BF16: 30,
} as const;

export type GgmlTypeName = keyof typeof GGML_TYPE;
export type GgmlType = (typeof GGML_TYPE)[GgmlTypeName];

const LAYOUT: Record<number, { name: GgmlTypeName; block: number; bytes: number }> = {};
for (const [name, id, block, bytes] of [
  ["F32", 0, 1, 4], ["F16", 1, 1, 2], ["Q4_0", 2, 32, 18], ["Q4_1", 3, 32, 20],
  ["Q5_0", 6, 32, 22], ["Q5_1", 7, 32, 24], ["Q8_0", 8, 32, 34], ["Q8_1", 9, 32, 36],
  ["Q2_K", 10, 256, 84], ["Q3_K", 11, 256, 110], ["Q4_K", 12, 256, 144], ["Q5_K", 13, 256, 176],
  ["Q6_K", 14, 256, 210], ["Q8_K", 15, 256, 292], ["I8", 24, 1, 1], ["I16", 25, 1, 2],
  ["I32", 26, 1, 4], ["I64", 27, 1, 8], ["F64", 28, 1, 8], ["BF16", 30, 1, 2],
] as const) {
  LAYOUT[id] = { name, block, bytes };
}

/** Types the compute kernels can use as weights. Others parse but are rejected at load. */
export const COMPUTE_TYPES: ReadonlySet<number> = new Set([
  GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.Q8_0, GGML_TYPE.Q4_0, GGML_TYPE.Q4_K, GGML_TYPE.Q6_K,
]);

export function isKnownType(type: number): boolean {
  return LAYOUT[type] !== undefined;
}

export function typeName(type: number): string {
  return LAYOUT[type]?.name ?? `unknown(${type})`;
}

export function typeFromName(name: string): GgmlType | undefined {
  return (GGML_TYPE as Record<string, GgmlType>)[name.toUpperCase()];
}

export function blockSize(type: number): number {
  const l = LAYOUT[type];
  if (!l) throw new RangeError(`unknown ggml type ${type}`);
  return l.block;
}

export function blockBytes(type: number): number {
  const l = LAYOUT[type];
  if (!l) throw new RangeError(`unknown ggml type ${type}`);
  return l.bytes;
}

/** Bytes taken by `nElements` values of `type`, or undefined if nElements is not a whole number of blocks. */
export function byteSize(type: number, nElements: number): number | undefined {
  const l = LAYOUT[type];
  if (!l || nElements % l.block !== 0) return undefined;
  return (nElements / l.block) * l.bytes;
}

/** Bytes of one row of K elements. */
export function rowBytes(type: number, K: number): number {
  const n = byteSize(type, K);
  if (n === undefined) throw new RangeError(`row of ${K} elements is not a whole number of ${typeName(type)} blocks`);
  return n;
}
