/**
 * Paged KV cache: per layer, one pool of fixed-size blocks of f16 keys and values
 * ([numBlocks · blockSize, kvDim] each). A sequence owns a list of blocks (its block table);
 * position p of a sequence lives in slot table[p / blockSize] · blockSize + p % blockSize.
 * Blocks return to the free list when a sequence finishes, is cancelled or fails.
 */
import { oerr } from "../errors.js";

export interface KvCacheOptions {
  nLayers: number;
  kvDim: number;
  numBlocks: number;
  /** Tokens per block. Default 16. */
  blockSize?: number;
}

export class PagedKvCache {
  readonly nLayers: number;
  readonly kvDim: number;
  readonly numBlocks: number;
  readonly blockSize: number;
  /** Per layer: keys, [numBlocks · blockSize, kvDim] f16 bits. */
  readonly keys: Uint16Array[];
  /** Per layer: values, same layout as keys. */
  readonly values: Uint16Array[];
  private readonly freeList: number[];

  constructor(o: KvCacheOptions) {
    this.nLayers = o.nLayers;
    this.kvDim = o.kvDim;
    this.numBlocks = o.numBlocks;
    this.blockSize = o.blockSize ?? 16;
    const slots = this.numBlocks * this.blockSize;
    this.keys = Array.from({ length: o.nLayers }, () => new Uint16Array(slots * o.kvDim));
    this.values = Array.from({ length: o.nLayers }, () => new Uint16Array(slots * o.kvDim));
    // Lowest ids first: pop() from the end hands out block 0 first.
    this.freeList = Array.from({ length: this.numBlocks }, (_, i) => this.numBlocks - 1 - i);
  }

  /** Bytes of keys and values for one token across all layers. */
  static bytesPerToken(nLayers: number, kvDim: number): number {
    return nLayers * kvDim * 2 * 2;
  }

  get freeBlocks(): number {
    return this.freeList.length;
  }

  get usedBlocks(): number {
    return this.numBlocks - this.freeList.length;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** Grows `table` so it holds `tokens` positions; throws KV_CACHE_FULL (and takes nothing) if blocks run out. */
  ensureCapacity(table: number[], tokens: number): void {
    const need = this.blocksFor(tokens) - table.length;
    if (need <= 0) return;
    if (need > this.freeList.length) {
      throw oerr("KV_CACHE_FULL", `KV cache full: ${need} more blocks needed, ${this.freeList.length} free`, { need, free: this.freeList.length });
    }
    for (let i = 0; i < need; i++) table.push(this.freeList.pop()!);
  }

  /** Returns a sequence's blocks to the pool; the table is emptied. */
  release(table: number[]): void {
    for (const b of table) this.freeList.push(b);
    table.length = 0;
  }

  slotOf(table: readonly number[], position: number): number {
    return table[Math.floor(position / this.blockSize)]! * this.blockSize + (position % this.blockSize);
  }
}
