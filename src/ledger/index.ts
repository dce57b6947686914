export { Ledger, type LedgerOptions, type SettleInput, type StoredReceipt, type EpochInfo, type ReceiptWithProof } from "./ledger.js";
export type { ChainReport, BalanceAudit, BalanceMismatch } from "./audit.js";
export type { AgentAccount } from "./accounts.js";
export { recordHash, type ContributionInput, type DatanetRecord, type DatanetVersion, type RecordStatus, type VersionRecord } from "./datanets.js";
export type { LineageRef, ModelInfo, ModelKind, RegisterModelInput } from "./models.js";
export { MIGRATIONS } from "./schema.js";
