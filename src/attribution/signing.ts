/**
 * The node's signatures: secp256k1 over an EIP-712 digest, low-s, RFC 6979 deterministic, serialised
 * r ‖ s ‖ v (v = 27 + recovery) — byte for byte what viem's `signTypedData` produces, but
 * synchronous, so the ledger signs an entry inside the same SQLite transaction that stores it (no
 * window in which another writer can take its place in the chain).
 */
import { bytesToHex, hexToBytes, recoverAddress, isAddressEqual, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { secp256k1 } from "../crypto/secp256k1.js";
import { oerr } from "../errors.js";

export interface NodeSigner {
  readonly address: Address;
  /** The signature of a 32-byte digest. */
  sign(digest: Hex): Hex;
}

export function nodeSigner(privateKey: Hex): NodeSigner {
  if (!/^0x[0-9a-fA-F]{64}$/.test(privateKey)) throw oerr("INVALID_ARGUMENT", "the node key must be 32 bytes of 0x-prefixed hex");
  const address = privateKeyToAccount(privateKey).address;
  const key = hexToBytes(privateKey);
  return {
    address,
    sign(digest: Hex): Hex {
      const { signature, recovery } = secp256k1.sign(hexToBytes(digest), key);
      return `${bytesToHex(signature)}${recovery ? "1c" : "1b"}`;
    },
  };
}

/** True when `signature` over `digest` recovers to `signer`. */
export async function signedBy(digest: Hex, signature: Hex, signer: Address): Promise<boolean> {
  try {
    return isAddressEqual(await recoverAddress({ hash: digest, signature }), signer);
  } catch {
    return false;
  }
}
