/**
 * The ledger's SQLite schema as numbered migrations, applied in order at open, each in its own
 * transaction and recorded in `schema_migrations`. Never edit a shipped migration: append one.
 *
 * Money (prices, balances, stakes, shares, weights, fees, amounts) is TEXT holding a decimal
 * integer: atomic units of an 18-decimals token overflow SQLite's 64-bit INTEGER at ~9.2 tokens.
 * All arithmetic on it happens in JavaScript BigInt. Ids, counts and times are INTEGER.
 */
import type Database from "better-sqlite3";
import { oerr } from "../errors.js";

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "economics core",
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

      CREATE TABLE datanets (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created INTEGER NOT NULL);
      CREATE TABLE datanet_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        datanet_id TEXT NOT NULL REFERENCES datanets(id),
        contributor TEXT NOT NULL,
        content BLOB NOT NULL,
        content_hash TEXT NOT NULL,
        token_count INTEGER NOT NULL CHECK (token_count >= 0),
        token_ids BLOB,
        record_hash TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        decided_by TEXT,
        decided_at INTEGER,
        created INTEGER NOT NULL
      );
      CREATE INDEX datanet_records_by_status ON datanet_records(datanet_id, status, id);
      CREATE TABLE datanet_versions (
        datanet_id TEXT NOT NULL REFERENCES datanets(id),
        version INTEGER NOT NULL CHECK (version >= 1),
        root TEXT NOT NULL,
        record_count INTEGER NOT NULL,
        token_count INTEGER NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (datanet_id, version)
      );
      CREATE TABLE datanet_version_records (
        datanet_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        record_id INTEGER NOT NULL REFERENCES datanet_records(id),
        PRIMARY KEY (datanet_id, version, record_id),
        FOREIGN KEY (datanet_id, version) REFERENCES datanet_versions(datanet_id, version)
      );

      CREATE TABLE models (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('base', 'adapter', 'merged')),
        owner TEXT NOT NULL,
        base_model TEXT REFERENCES models(id),
        price_in TEXT NOT NULL,
        price_out TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        developer_bps INTEGER,
        staker_bps INTEGER,
        data_bps INTEGER,
        created INTEGER NOT NULL
      );
      CREATE TABLE model_developers (
        model_id TEXT NOT NULL REFERENCES models(id),
        party TEXT NOT NULL,
        share TEXT NOT NULL,
        PRIMARY KEY (model_id, party)
      );
      CREATE TABLE model_parents (
        model_id TEXT NOT NULL REFERENCES models(id),
        parent_id TEXT NOT NULL REFERENCES models(id),
        weight TEXT NOT NULL,
        PRIMARY KEY (model_id, parent_id)
      );
      CREATE TABLE model_lineage (
        model_id TEXT NOT NULL REFERENCES models(id),
        datanet_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        weight TEXT NOT NULL,
        PRIMARY KEY (model_id, datanet_id, version),
        FOREIGN KEY (datanet_id, version) REFERENCES datanet_versions(datanet_id, version)
      );

      CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        stake TEXT NOT NULL,
        balance TEXT NOT NULL,
        reserved TEXT NOT NULL,
        created INTEGER NOT NULL
      );
      CREATE TABLE deposits (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL REFERENCES agents(id),
        amount TEXT NOT NULL,
        time INTEGER NOT NULL
      );
      CREATE TABLE stakes (
        staker TEXT NOT NULL,
        model_id TEXT NOT NULL REFERENCES models(id),
        amount TEXT NOT NULL,
        PRIMARY KEY (staker, model_id)
      );
      CREATE INDEX stakes_by_model ON stakes(model_id);
      CREATE TABLE balances (party TEXT PRIMARY KEY, amount TEXT NOT NULL);

      CREATE TABLE epochs (
        id INTEGER PRIMARY KEY,
        first_receipt INTEGER NOT NULL,
        last_receipt INTEGER NOT NULL,
        count INTEGER NOT NULL,
        root TEXT NOT NULL,
        closed_at INTEGER NOT NULL
      );
      CREATE TABLE receipts (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        agent TEXT NOT NULL,
        fee TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        prev_hash TEXT NOT NULL,
        signer TEXT NOT NULL,
        signature TEXT NOT NULL,
        body TEXT NOT NULL,
        epoch INTEGER REFERENCES epochs(id)
      );
      CREATE INDEX receipts_by_epoch ON receipts(epoch, id);
      CREATE TABLE receipt_lines (
        receipt_id INTEGER NOT NULL REFERENCES receipts(id),
        idx INTEGER NOT NULL,
        party TEXT NOT NULL,
        role TEXT NOT NULL,
        model TEXT NOT NULL,
        datanet TEXT,
        amount TEXT NOT NULL,
        PRIMARY KEY (receipt_id, idx)
      );
      CREATE INDEX receipt_lines_by_party ON receipt_lines(party);
      CREATE TABLE reservations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL REFERENCES agents(id),
        amount TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'settled', 'released')),
        created INTEGER NOT NULL,
        receipt_id INTEGER UNIQUE REFERENCES receipts(id)
      );
      CREATE INDEX reservations_active ON reservations(status, agent);
    `,
  },
  {
    version: 2,
    name: "receipt token payloads for replay",
    // The receipt signs only hashes of the prompt and output tokens; a validator replaying it needs
    // the tokens themselves. uint32 little-endian, as Datanet token ids.
    sql: `
      CREATE TABLE receipt_tokens (
        receipt_id INTEGER PRIMARY KEY REFERENCES receipts(id),
        prompt BLOB NOT NULL,
        output BLOB NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: "credentials, signed account events, signed epochs",
    // Agents authenticate with API keys (only their SHA-256 is kept). Every money movement that is
    // not a receipt is a signed event (src/attribution/ledger-events.ts); deposits written before
    // this migration are signed into events when the node next opens the file (deposits.event_id).
    // Stakes written before it moved no funds (they were set by anyone's word) and are voided:
    // stakers stake again from a funded balance. A reservation whose settlement failed after its
    // output was sent is 'forfeited' (charged whole through a forfeit event).
    sql: `
      CREATE TABLE api_keys (
        hash TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES agents(id),
        created INTEGER NOT NULL,
        revoked INTEGER
      );
      CREATE INDEX api_keys_by_account ON api_keys(account);
      CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        kind TEXT NOT NULL,
        account TEXT NOT NULL,
        subject TEXT NOT NULL,
        amount TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        prev_hash TEXT NOT NULL,
        signer TEXT NOT NULL,
        signature TEXT NOT NULL,
        body TEXT NOT NULL
      );
      CREATE INDEX events_by_account ON events(account, kind);
      ALTER TABLE epochs ADD COLUMN checkpoint TEXT;
      ALTER TABLE epochs ADD COLUMN signature TEXT;
      ALTER TABLE deposits ADD COLUMN event_id INTEGER REFERENCES events(id);
      UPDATE agents SET stake = '0';
      DELETE FROM stakes;
      CREATE TABLE reservations_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent TEXT NOT NULL REFERENCES agents(id),
        amount TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'settled', 'released', 'forfeited')),
        created INTEGER NOT NULL,
        receipt_id INTEGER UNIQUE REFERENCES receipts(id),
        event_id INTEGER UNIQUE REFERENCES events(id)
      );
      INSERT INTO reservations_v3 (id, agent, amount, status, created, receipt_id) SELECT id, agent, amount, status, created, receipt_id FROM reservations;
      DROP TABLE reservations;
      ALTER TABLE reservations_v3 RENAME TO reservations;
      CREATE INDEX reservations_active ON reservations(status, agent);
    `,
  },
  {
    version: 4,
    name: "signed requests",
    // Agents sign requests as chain addresses (src/auth/signed-request.ts). A nonce is kept until
    // its signature's expiry (unix seconds) has passed, after which the signature is refused as
    // expired anyway and the row may go. Session keys act for an agent until expiry or revocation.
    sql: `
      CREATE TABLE request_nonces (
        address TEXT NOT NULL,
        nonce TEXT NOT NULL,
        expiry INTEGER NOT NULL,
        PRIMARY KEY (address, nonce)
      );
      CREATE INDEX request_nonces_by_expiry ON request_nonces(expiry);
      CREATE TABLE session_keys (
        agent TEXT NOT NULL,
        key TEXT NOT NULL,
        expiry INTEGER NOT NULL,
        signature TEXT NOT NULL,
        created INTEGER NOT NULL,
        revoked INTEGER,
        PRIMARY KEY (agent, key)
      );
    `,
  },
  {
    version: 5,
    name: "the node on a chain",
    // The chain book (src/ledger/chain-book.ts): how far the node followed the chain, which logs it
    // applied (each exactly once, in the transaction that applies it), the on-chain names of models
    // and Datanets, access policies and licences, and each epoch's payout tree with its post status.
    sql: `
      CREATE TABLE chain_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), block INTEGER NOT NULL, hash TEXT NOT NULL);
      CREATE TABLE chain_applied (tx_hash TEXT NOT NULL, log_index INTEGER NOT NULL, block INTEGER NOT NULL, PRIMARY KEY (tx_hash, log_index));
      CREATE TABLE chain_names (id_hash TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('model', 'datanet')), name TEXT NOT NULL, info TEXT);
      CREATE TABLE chain_access (model TEXT PRIMARY KEY, kind INTEGER NOT NULL, min_stake TEXT NOT NULL);
      CREATE TABLE chain_allowlist (model TEXT NOT NULL, agent TEXT NOT NULL, PRIMARY KEY (model, agent));
      CREATE TABLE chain_licences (model TEXT NOT NULL, holder TEXT NOT NULL, amount TEXT NOT NULL, PRIMARY KEY (model, holder));
      CREATE TABLE chain_datanet_versions (datanet TEXT NOT NULL, version INTEGER NOT NULL, root TEXT NOT NULL, matches INTEGER NOT NULL, PRIMARY KEY (datanet, version));
      CREATE TABLE chain_epochs (
        epoch INTEGER PRIMARY KEY REFERENCES epochs(id),
        payout_root TEXT NOT NULL,
        entries TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'posted')),
        tx_hash TEXT,
        posted_at INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
      );
    `,
  },
  {
    version: 6,
    name: "chain terms in force after a delay",
    // A model's terms from a TermsSet log wait here until their time (the Registry's `from`, in ms),
    // then are listed (or, when the node cannot list them, the model is marked unservable).
    sql: `
      CREATE TABLE chain_pending_terms (
        model TEXT NOT NULL,
        version INTEGER NOT NULL,
        from_ms INTEGER NOT NULL,
        input TEXT,
        problem TEXT,
        PRIMARY KEY (model, version)
      );
      CREATE INDEX chain_pending_terms_from ON chain_pending_terms (from_ms);
      CREATE TABLE chain_unservable (model TEXT PRIMARY KEY, reason TEXT NOT NULL);
    `,
  },
  {
    version: 7,
    name: "chain stakes in force after a delay",
    // A StakeChanged log's new total waits here until its `from` (ms), like terms: receipts split the
    // stakes Settlement.stakeAt answers for their time. Applied in log order (seq) within a time.
    sql: `
      CREATE TABLE chain_pending_stakes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        staker TEXT NOT NULL,
        model TEXT NOT NULL,
        total TEXT NOT NULL,
        from_ms INTEGER NOT NULL,
        memo TEXT NOT NULL
      );
      CREATE INDEX chain_pending_stakes_from ON chain_pending_stakes (from_ms, seq);
    `,
  },
  {
    version: 8,
    name: "the node's fee policy as declared on chain",
    // Every OperatorPolicySet of this node (Registry.setOperatorPolicy): a receipt splits by the version in
    // force at its time (from_ms <= time), as RegistryCourt.proveBadPolicy judges it. policy: canonical JSON.
    sql: `
      CREATE TABLE chain_policies (
        version INTEGER PRIMARY KEY,
        from_ms INTEGER NOT NULL,
        policy TEXT NOT NULL
      );
    `,
  },
  {
    version: 9,
    name: "Datanet approval committees and verbatim duplicates",
    // A Datanet's owner may name up to 32 approvers and a threshold k (src/ledger/datanet-committee.ts):
    // threshold 0 means no committee. Each approver's vote on a record is one row (who, which, when).
    // tokens_hash (hashTokenIds of the record's token ids) finds a verbatim duplicate of an approved
    // record by one index lookup; rows written before this migration get it when the node next opens
    // the file (src/ledger/datanet-duplicates.ts).
    sql: `
      ALTER TABLE datanets ADD COLUMN approval_threshold INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE datanets ADD COLUMN approvers_updated INTEGER;
      CREATE TABLE datanet_approvers (
        datanet_id TEXT NOT NULL REFERENCES datanets(id),
        account TEXT NOT NULL,
        PRIMARY KEY (datanet_id, account)
      );
      CREATE TABLE datanet_votes (
        record_id INTEGER NOT NULL REFERENCES datanet_records(id),
        account TEXT NOT NULL,
        vote TEXT NOT NULL CHECK (vote IN ('approve', 'reject')),
        at INTEGER NOT NULL,
        PRIMARY KEY (record_id, account)
      );
      ALTER TABLE datanet_records ADD COLUMN tokens_hash TEXT;
      CREATE INDEX datanet_records_by_tokens ON datanet_records(datanet_id, tokens_hash, status) WHERE tokens_hash IS NOT NULL;
    `,
  },
];

/** Applies the migrations this file lacks. Refuses a file that knows migrations we don't. */
export function migrate(db: Database.Database, now: number): void {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
  const row = db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null };
  const current = row.v ?? 0;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (current > latest) {
    throw oerr("LEDGER_SCHEMA_TOO_NEW", `ledger schema version ${current} is newer than this openlora's ${latest}`, { current, latest });
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(m.version, m.name, now);
    }).immediate();
  }
}
