/**
 * A simple encoder for the K-quant block layouts (Q4_K, Q6_K), written from ggml's layout
 * definition: per-sub-block scales from the min/max, not ggml's error-minimising search. Used to
 * write synthetic K-quant models and test blocks; real K-quant files come from llama.cpp.
 */
import { f16ToF32, f32ToF16 } from "../native/index.js";
import { GGML_TYPE, rowBytes } from "./ggml-types.js";

const Q4_K = GGML_TYPE.Q4_K;

export interface Q4KBlock { d: number; dmin: number; sc: number[]; mn: number[]; q: number[] } // d, dmin: fp16 bits; q: 256 × 0..15
export interface Q6KBlock { d: number; sc: number[]; q: number[] } // d: fp16 bits; sc: 16 × int8; q: 256 × 0..63

export function packQ4K(b: Q4KBlock, out: Uint8Array, o: number): void {
  out[o] = b.d & 0xff; out[o + 1] = b.d >> 8;
  out[o + 2] = b.dmin & 0xff; out[o + 3] = b.dmin >> 8;
  const s = out.subarray(o + 4, o + 16);
  for (let j = 0; j < 4; j++) {
    s[j] = b.sc[j]! | ((b.sc[j + 4]! >> 4) << 6);
    s[j + 4] = b.mn[j]! | ((b.mn[j + 4]! >> 4) << 6);
    s[j + 8] = (b.sc[j + 4]! & 0xf) | ((b.mn[j + 4]! & 0xf) << 4);
  }
  // bytes 32c..32c+31: low nibble = element 64c + l, high nibble = element 64c + 32 + l
  for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) out[o + 16 + 32 * c + l] = b.q[64 * c + l]! | (b.q[64 * c + 32 + l]! << 4);
}

export function packQ6K(b: Q6KBlock, out: Uint8Array, o: number): void {
  for (let n = 0; n < 2; n++) {
    for (let l = 0; l < 32; l++) {
      const q = (i: number) => b.q[128 * n + i]!;
      out[o + 64 * n + l] = (q(l) & 0xf) | ((q(l + 64) & 0xf) << 4);
      out[o + 64 * n + l + 32] = (q(l + 32) & 0xf) | ((q(l + 96) & 0xf) << 4);
      out[o + 128 + 32 * n + l] = (q(l) >> 4) | ((q(l + 32) >> 4) << 2) | ((q(l + 64) >> 4) << 4) | ((q(l + 96) >> 4) << 6);
    }
  }
  for (let i = 0; i < 16; i++) out[o + 192 + i] = b.sc[i]! & 0xff;
  out[o + 208] = b.d & 0xff; out[o + 209] = b.d >> 8;
}

export function encodeQ4K(x: Float32Array): Q4KBlock {
  const subScale: number[] = [], subMin: number[] = [];
  for (let s = 0; s < 8; s++) {
    let lo = Infinity, hi = -Infinity;
    for (let l = 0; l < 32; l++) { lo = Math.min(lo, x[32 * s + l]!); hi = Math.max(hi, x[32 * s + l]!); }
    const mn = Math.max(0, -lo);
    subMin.push(mn);
    subScale.push((hi + mn) / 15);
  }
  const d = f16ToF32(f32ToF16(Math.max(...subScale) / 63));
  const dmin = f16ToF32(f32ToF16(Math.max(...subMin) / 63));
  const sc = subScale.map((v) => (d > 0 ? Math.min(63, Math.round(v / d)) : 0));
  const mn = subMin.map((v) => (dmin > 0 ? Math.min(63, Math.round(v / dmin)) : 0));
  const q: number[] = [];
  for (let e = 0; e < 256; e++) {
    const s = e >> 5, step = d * sc[s]!;
    q.push(step > 0 ? Math.max(0, Math.min(15, Math.round((x[e]! + dmin * mn[s]!) / step))) : 0);
  }
  return { d: f32ToF16(d), dmin: f32ToF16(dmin), sc, mn, q };
}

export function encodeQ6K(x: Float32Array): Q6KBlock {
  const subScale: number[] = [];
  for (let s = 0; s < 16; s++) {
    let amax = 0, max = 0;
    for (let l = 0; l < 16; l++) if (Math.abs(x[16 * s + l]!) > amax) { amax = Math.abs(x[16 * s + l]!); max = x[16 * s + l]!; }
    subScale.push(max / -32);
  }
  let amax = 0, max = 0;
  for (const v of subScale) if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
  const d = f16ToF32(f32ToF16(max / -128));
  const sc = subScale.map((v) => (d !== 0 ? Math.max(-128, Math.min(127, Math.round(v / d))) : 0));
  const q: number[] = [];
  for (let e = 0; e < 256; e++) {
    const step = d * sc[e >> 4]!;
    q.push(step !== 0 ? Math.max(0, Math.min(63, Math.round(x[e]! / step) + 32)) : 32);
  }
  return { d: f32ToF16(d), sc, q };
}

export type Block = Q4KBlock | Q6KBlock;

/** Encodes rows x [N, K] (K a multiple of 256); returns the bytes and the decoded-block descriptions. */
export function encodeRows(type: number, x: Float32Array, N: number, K: number): { bytes: Uint8Array; blocks: Block[] } {
  const bytes = new Uint8Array(N * rowBytes(type, K));
  const blocks: Block[] = [];
  const bb = type === Q4_K ? 144 : 210;
  for (let i = 0; i < (N * K) / 256; i++) {
    const xs = x.subarray(256 * i, 256 * i + 256);
    if (type === Q4_K) { const b = encodeQ4K(xs); packQ4K(b, bytes, i * bb); blocks.push(b); }
    else { const b = encodeQ6K(xs); packQ6K(b, bytes, i * bb); blocks.push(b); }
  }
  return { bytes, blocks };
}
