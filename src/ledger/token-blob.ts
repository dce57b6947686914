/** Token ids as the ledger stores them (receipt_tokens): uint32 little-endian, back to back. */
export function tokenBlob(ids: readonly number[]): Buffer {
  const b = Buffer.alloc(ids.length * 4);
  ids.forEach((t, i) => b.writeUInt32LE(t, i * 4));
  return b;
}

export function fromTokenBlob(b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= b.length; i += 4) out.push(b.readUInt32LE(i));
  return out;
}
