/** Opening the ledger's SQLite file, and the conversions every ledger module shares. */
import { chmodSync, closeSync, existsSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import { oerr } from "../errors.js";
import { migrate } from "./schema.js";

export type Db = Database.Database;

/**
 * Opens (creating if absent) a ledger file readable by its owner only: the file is created 0600
 * before SQLite opens it (SQLite gives the -wal and -shm files the database file's mode), and an
 * existing file and its companions are set to 0600.
 */
export function openDb(path: string, now: number): Db {
  if (!existsSync(path)) closeSync(openSync(path, "a", 0o600));
  for (const p of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(p)) chmodSync(p, 0o600);
  const db = new Database(path);
  try {
    db.pragma("journal_mode = WAL");
    // FULL: a transaction that returned is on disk even if the machine loses power, not only the process.
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    migrate(db, now);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Money and weights are stored as decimal TEXT (see schema.ts). */
export function money(v: bigint): string {
  return v.toString(10);
}

export function big(v: unknown): bigint {
  if (typeof v !== "string" || !/^-?[0-9]+$/.test(v)) throw oerr("INTERNAL", `ledger holds a non-integer amount: ${String(v)}`);
  return BigInt(v);
}

export function positive(name: string, v: bigint): void {
  if (typeof v !== "bigint" || v <= 0n) throw oerr("INVALID_ARGUMENT", `${name} must be a positive integer amount, got ${String(v)}`);
}

export function nonNegative(name: string, v: bigint): void {
  if (typeof v !== "bigint" || v < 0n) throw oerr("INVALID_ARGUMENT", `${name} must be a non-negative integer amount, got ${String(v)}`);
}

/** Names of parties, models and agents: non-empty, at most 256 characters, no control characters. */
export function checkName(kind: string, v: unknown): asserts v is string {
  if (typeof v !== "string" || v.length === 0 || v.length > 256 || /[\u0000-\u001f\u007f]/.test(v)) {
    throw oerr("INVALID_ARGUMENT", `${kind} must be a non-empty name of at most 256 characters without control characters`);
  }
}

/** Datanet ids also exclude "@", which separates id and version in a version key. */
export function checkDatanetId(v: unknown): asserts v is string {
  checkName("Datanet id", v);
  if ((v as string).includes("@")) throw oerr("INVALID_ARGUMENT", `Datanet id must not contain "@": ${v as string}`);
}

export function versionKey(datanet: string, version: number): string {
  return `${datanet}@${version}`;
}

export function notFound(entity: string, id: string | number): never {
  throw oerr("LEDGER_NOT_FOUND", `no such ${entity}: ${id}`, { entity, id });
}

export function conflict(message: string, details?: Record<string, unknown>): never {
  throw oerr("LEDGER_CONFLICT", message, details);
}

/** uint32 token ids as little-endian bytes (what a Uint32Array view reads on every current CPU). */
export function tokensToBlob(ids: readonly number[]): Buffer {
  const buf = Buffer.alloc(ids.length * 4);
  ids.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) throw oerr("INVALID_ARGUMENT", `token id ${t} is not a uint32`);
    buf.writeUInt32LE(t, i * 4);
  });
  return buf;
}

export function blobToTokens(blob: Buffer): Uint32Array {
  const out = new Uint32Array(blob.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = blob.readUInt32LE(i * 4);
  return out;
}
