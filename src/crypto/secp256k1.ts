/**
 * secp256k1 for the node's hot paths: recovering who signed a request (every signed request) and
 * signing a receipt (every paid completion). Two implementations of the same two functions:
 *
 *   native    libsecp256k1 (Bitcoin Core's library) through the `secp256k1` npm package's N-API
 *             binding (prebuilt for linux-x64, else built from its bundled C source): ~0.05 ms per
 *             recovery on this machine;
 *   reference @noble/curves, plain audited TypeScript: ~1.5 ms per recovery, the same bytes.
 *
 * `secp256k1` is the native one when its binding loads and the reference otherwise (never the
 * package's elliptic fallback). test/crypto/secp256k1.test.ts holds them to the same bytes: same
 * RFC 6979 signatures, same recovered keys, the same refusals.
 *
 * Shapes: digest 32 bytes; signature 64 bytes r ‖ s (big-endian) plus a recovery id 0 or 1;
 * private key 32 bytes; public key 65 bytes uncompressed (0x04 ‖ x ‖ y).
 */
import { createRequire } from "node:module";
import { secp256k1 as noble } from "@noble/curves/secp256k1";

export interface Secp256k1 {
  readonly name: "libsecp256k1" | "noble";
  /** Low-s, RFC 6979 deterministic. */
  sign(digest: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recovery: 0 | 1 };
  /** The signer's public key, or undefined when r or s is out of range or no point recovers. */
  recover(digest: Uint8Array, signature: Uint8Array, recovery: 0 | 1): Uint8Array | undefined;
}

/** n / 2: a signature whose s is above it is the malleable twin of a low-s one. */
const HALF_N = noble.CURVE.n >> 1n;

export function isHighS(signature: Uint8Array): boolean {
  let s = 0n;
  for (let i = 32; i < 64; i++) s = (s << 8n) | BigInt(signature[i]!);
  return s > HALF_N;
}

export const reference: Secp256k1 = {
  name: "noble",
  sign(digest, privateKey) {
    const sig = noble.sign(digest, privateKey, { lowS: true });
    return { signature: sig.toCompactRawBytes(), recovery: sig.recovery as 0 | 1 };
  },
  recover(digest, signature, recovery) {
    try {
      return noble.Signature.fromCompact(signature).addRecoveryBit(recovery).recoverPublicKey(digest).toRawBytes(false);
    } catch {
      return undefined;
    }
  },
};

interface Binding {
  ecdsaSign(msg32: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number };
  ecdsaRecover(sig: Uint8Array, recid: number, msg32: Uint8Array, compressed: boolean): Uint8Array;
}

function loadNative(): Secp256k1 | undefined {
  let lib: Binding;
  try {
    // The binding alone: the package's index falls back to elliptic, which we do not want.
    lib = createRequire(import.meta.url)("secp256k1/bindings") as Binding;
  } catch {
    return undefined;
  }
  return {
    name: "libsecp256k1",
    sign(digest, privateKey) {
      const { signature, recid } = lib.ecdsaSign(digest, privateKey);
      return { signature, recovery: recid as 0 | 1 };
    },
    recover(digest, signature, recovery) {
      try {
        return lib.ecdsaRecover(signature, recovery, digest, false);
      } catch {
        return undefined;
      }
    },
  };
}

export const native: Secp256k1 | undefined = loadNative();

export const secp256k1: Secp256k1 = native ?? reference;
