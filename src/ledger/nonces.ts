/**
 * What the server remembers of signed requests (schema migration 4): every nonce an address used,
 * until its signature's expiry, so a request is accepted once; and the session keys agents
 * registered. Times here are unix seconds, as signed.
 */
import { OpenLoraError } from "../errors.js";
import type { Db } from "./db.js";

export type SessionState = "live" | "expired" | "none";

export class SignedRequestStore {
  constructor(private readonly db: Db) {}

  /**
   * Records (address, nonce) until `expiry`; SIGNATURE_REPLAYED when it is already recorded.
   * Rows whose expiry passed are dropped here: their signatures are refused as expired anyway.
   */
  claimNonce(address: string, nonce: string, expiry: bigint, nowS: number): void {
    this.db.transaction(() => {
      const used = this.db.prepare("SELECT 1 FROM request_nonces WHERE address = ? AND nonce = ?").get(address, nonce);
      if (used) throw new OpenLoraError("SIGNATURE_REPLAYED", `The nonce ${nonce} was already used by ${address}: sign each request with a new one.`, { address, nonce });
      this.db.prepare("DELETE FROM request_nonces WHERE expiry < ?").run(Math.floor(nowS));
      this.db.prepare("INSERT INTO request_nonces (address, nonce, expiry) VALUES (?, ?, ?)").run(address, nonce, expiry);
    }).immediate();
  }

  /** Registers (or renews) `key` as a session key of `agent` until `expiry`. */
  addSession(agent: string, key: string, expiry: bigint, signature: string, nowS: number): void {
    this.db.transaction(() => {
      this.db.prepare("DELETE FROM session_keys WHERE expiry < ?").run(Math.floor(nowS));
      this.db.prepare(`INSERT INTO session_keys (agent, key, expiry, signature, created) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (agent, key) DO UPDATE SET expiry = excluded.expiry, signature = excluded.signature, created = excluded.created, revoked = NULL`)
        .run(agent, key, expiry, signature, Math.floor(nowS));
    }).immediate();
  }

  session(agent: string, key: string, nowS: number): SessionState {
    const row = this.db.prepare("SELECT expiry FROM session_keys WHERE agent = ? AND key = ? AND revoked IS NULL").get(agent, key) as { expiry: number } | undefined;
    if (!row) return "none";
    return row.expiry < Math.floor(nowS) ? "expired" : "live";
  }

  /** Ends `key`'s session for `agent`; false when it had none live or expired. */
  revokeSession(agent: string, key: string, nowS: number): boolean {
    return this.db.prepare("UPDATE session_keys SET revoked = ? WHERE agent = ? AND key = ? AND revoked IS NULL").run(Math.floor(nowS), agent, key).changes > 0;
  }
}
