/**
 * keccak256 for the hot paths that hash whole receipts: each receipt's part hashes (its ABI-encoded lines,
 * inputs, credits and spans, kilobytes each) when a node signs it and when a validator judges thousands of
 * them, token-id hashes, Merkle levels, batch commitments. Two implementations of one function:
 *
 *   native    the `keccak` npm package's N-API binding (XKCP's C, prebuilt for linux-x64): ~27 µs for 5 kB;
 *   reference viem's keccak256 (@noble/hashes, plain TypeScript): ~400 µs for 5 kB, the same bytes.
 *
 * `keccak256` is the native one when its binding loads and the reference otherwise (never the package's
 * own JS fallback); test/crypto/keccak.test.ts holds them to the same digests.
 */
import { createRequire } from "node:module";
import { bytesToHex, hexToBytes, keccak256 as viemKeccak, type Hex } from "viem";

type Hasher = (data: Uint8Array) => Hex;

export const reference: Hasher = (data) => viemKeccak(data);

function loadNative(): Hasher | undefined {
  let create: (algorithm: "keccak256") => { update(b: Buffer): { digest(): Buffer } };
  try {
    create = createRequire(import.meta.url)("keccak/bindings") as typeof create;
    create("keccak256").update(Buffer.alloc(0)).digest();
  } catch {
    return undefined;
  }
  // The binding takes Buffers only: a view of the same bytes, not a copy.
  return (data) => bytesToHex(create("keccak256").update(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).digest());
}

export const native: Hasher | undefined = loadNative();

const impl: Hasher = native ?? reference;

/** keccak256 of bytes, or of a 0x-hex string's bytes (as viem's keccak256 of a Hex). */
export function keccak256(data: Uint8Array | Hex): Hex {
  return impl(typeof data === "string" ? hexToBytes(data) : data);
}
