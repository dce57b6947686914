/**
 * API keys of accounts: 32 random bytes, shown once as "olk_" + base64url, stored only as their
 * SHA-256 (a key has 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force).
 * A key is a credential, never an identity: receipts, URLs and logs carry the account's public id.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Db } from "./db.js";

export const API_KEY_PREFIX = "olk_";

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith(API_KEY_PREFIX);
}

export class ApiKeys {
  constructor(private readonly db: Db, private readonly now: () => number) {}

  /** A new key for `account`; every earlier key of the account is revoked. */
  issue(account: string): string {
    const key = `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
    const t = this.now();
    this.db.transaction(() => {
      this.db.prepare("UPDATE api_keys SET revoked = ? WHERE account = ? AND revoked IS NULL").run(t, account);
      this.db.prepare("INSERT INTO api_keys (hash, account, created) VALUES (?, ?, ?)").run(hashApiKey(key), account, t);
    }).immediate();
    return key;
  }

  /** The account a live key belongs to, or undefined. */
  resolve(key: string): string | undefined {
    if (!looksLikeApiKey(key) || key.length > 128) return undefined;
    const row = this.db.prepare("SELECT account FROM api_keys WHERE hash = ? AND revoked IS NULL").get(hashApiKey(key)) as { account: string } | undefined;
    return row?.account;
  }
}
