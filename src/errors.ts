/**
 * The one registry of typed errors. Every failure a user can cause (a bad file, a bad request)
 * is an OpenLoraError with a stable `code` from this table; tests assert codes, never messages.
 * `httpStatus` is what the server answers with when the error reaches a client.
 */
export const ERROR_TABLE = {
  // Model files (GGUF, safetensors, Hugging Face folders)
  MODEL_NOT_FOUND: { status: 404, summary: "The model path does not exist." },
  MODEL_FILE_TRUNCATED: { status: 400, summary: "The file ends before the data its header declares." },
  MODEL_FILE_TOO_LARGE: { status: 400, summary: "The file is larger than this machine's memory, or than a buffer it could allocate." },
  MODEL_BAD_MAGIC: { status: 400, summary: "The file does not start with the magic of its format." },
  MODEL_UNSUPPORTED_VERSION: { status: 400, summary: "The file format version is not supported." },
  MODEL_METADATA_INVALID: { status: 400, summary: "A metadata entry is malformed or has the wrong type." },
  MODEL_TENSOR_OUT_OF_BOUNDS: { status: 400, summary: "A tensor's data lies (partly) outside the file." },
  MODEL_TENSOR_OVERLAP: { status: 400, summary: "Two tensors claim overlapping byte ranges." },
  MODEL_UNSUPPORTED_TENSOR_TYPE: { status: 400, summary: "A tensor uses a data type openlora cannot read." },
  MODEL_UNSUPPORTED_ARCHITECTURE: { status: 400, summary: "The model architecture is not supported." },
  MODEL_MISSING_TENSOR: { status: 400, summary: "A tensor the architecture needs is absent." },
  MODEL_TENSOR_SHAPE_MISMATCH: { status: 400, summary: "A tensor's shape disagrees with the model configuration." },
  MODEL_CONFIG_INVALID: { status: 400, summary: "The model configuration is missing or inconsistent." },
  SAFETENSORS_HEADER_INVALID: { status: 400, summary: "The safetensors header is malformed or lies about its length." },
  SAFETENSORS_OFFSETS_INVALID: { status: 400, summary: "A safetensors tensor's offsets disagree with its shape or the file." },
  TOKENIZER_MISSING: { status: 400, summary: "No tokenizer was found for the model." },
  TOKENIZER_INVALID: { status: 400, summary: "The tokenizer definition is malformed or unsupported." },
  // LoRA adapters
  ADAPTER_NOT_FOUND: { status: 404, summary: "No adapter is registered under that id." },
  ADAPTER_ID_INVALID: { status: 400, summary: "The adapter id is not a plain name (no paths, no traversal)." },
  ADAPTER_ALREADY_EXISTS: { status: 409, summary: "An adapter is already registered under that id." },
  ADAPTER_INVALID: { status: 400, summary: "The adapter files are malformed or incomplete." },
  ADAPTER_BASE_MISMATCH: { status: 400, summary: "The adapter was made for a different base model or architecture." },
  ADAPTER_SHAPE_MISMATCH: { status: 400, summary: "An adapter matrix's shape disagrees with the base model's module." },
  ADAPTER_NO_TARGETS: { status: 400, summary: "The adapter's target modules match nothing in the base model." },
  ADAPTER_UNSUPPORTED_MODULE: { status: 400, summary: "The adapter targets a module openlora cannot apply (e.g. embeddings)." },
  ADAPTER_RANK_TOO_LARGE: { status: 400, summary: "The adapter's rank exceeds the configured maximum." },
  ADAPTER_NONFINITE: { status: 400, summary: "The adapter contains NaN or infinite weights." },
  ADAPTER_VALUE_OUT_OF_RANGE: { status: 400, summary: "An adapter weight or scale exceeds the largest magnitude accepted (src/adapters/validate.ts)." },
  ADAPTER_PATH_OUTSIDE_ROOT: { status: 400, summary: "An adapter path, or a file of the adapter, resolves outside the adapters folder." },
  ADAPTER_CONTENT_CHANGED: { status: 409, summary: "An adapter's files changed while a request using it was preempted; it was stopped rather than mix two models." },
  ADAPTER_LOAD_FAILED: { status: 500, summary: "Loading the adapter failed; requests waiting on it were failed too." },
  ADAPTER_POOL_EXHAUSTED: { status: 503, summary: "The adapter memory pool cannot fit the adapter: everything resident is in use or pinned." },
  // Requests and arguments
  INVALID_ARGUMENT: { status: 400, summary: "An argument is missing or out of range." },
  CONTEXT_OVERFLOW: { status: 413, summary: "The prompt and requested tokens exceed the context length." },
  KV_CACHE_FULL: { status: 503, summary: "No free KV cache blocks are left for the sequence." },
  PROMPT_TOO_LONG: { status: 413, summary: "The prompt alone needs more KV cache blocks than the server has." },
  MODEL_NOT_SERVED: { status: 404, summary: "The requested model is neither the base model nor a registered adapter." },
  REQUEST_TOO_LARGE: { status: 413, summary: "The request body or a field in it is larger than the server accepts." },
  // Serving
  QUEUE_FULL: { status: 429, summary: "The request queue is full; retry after the advertised delay." },
  NOT_READY: { status: 503, summary: "The server cannot serve yet: the model is loading or the engine is restarting." },
  SHUTTING_DOWN: { status: 503, summary: "The server is draining and accepts no new requests." },
  REQUEST_CANCELLED: { status: 499, summary: "The client went away or cancelled; the sequence was stopped and its blocks freed." },
  ROUTE_NOT_FOUND: { status: 404, summary: "No such HTTP route." },
  ENGINE_FAILED: { status: 500, summary: "The engine thread failed; requests in flight were failed." },
  LOGITS_NONFINITE: { status: 422, summary: "The sequence's logits turned NaN or infinite; it was stopped alone, the batch went on." },
  FAULT_INJECTION_REFUSED: { status: 500, summary: "OPENLORA_FAULT_INJECTION (a node that signs altered outputs, for tests) is set but NODE_ENV is not \"test\": the server refuses to start." },
  // Access (src/server/access.ts)
  UNAUTHENTICATED: { status: 401, summary: "The endpoint needs a credential (the operator's token or an account's API key), or the one sent is not valid." },
  PERMISSION_DENIED: { status: 403, summary: "The credential sent is valid but does not allow this action." },
  // Attribution and economics
  PAYMENT_REQUIRED: { status: 402, summary: "The caller has no prepaid agent account on this node." },
  STAKE_REQUIRED: { status: 403, summary: "The agent's stake is below the minimum needed to call paid models." },
  INSUFFICIENT_BALANCE: { status: 402, summary: "The account's available balance (or stake) is below what the request or operation needs." },
  LEDGER_NOT_FOUND: { status: 404, summary: "No such model, Datanet, record, agent, reservation, receipt or epoch in the ledger." },
  LEDGER_CONFLICT: { status: 409, summary: "The ledger entry already exists or is not in a state that allows the operation." },
  MODEL_CONTENT_MISMATCH: { status: 409, summary: "The files served are not the ones the model or adapter was listed with (content hashes differ)." },
  LEDGER_FORBIDDEN: { status: 403, summary: "Only the Datanet's owner may publish or set its approvers; only the owner or one of its approvers may approve or reject a record." },
  DATANET_DUPLICATE_RECORD: { status: 409, summary: "The record repeats an approved record of the Datanet verbatim (identical token ids, or wholly contained in it); the message names that record." },
  LEDGER_FEE_EXCEEDS_RESERVATION: { status: 500, summary: "A request's actual fee exceeds the worst case reserved at admission." },
  LEDGER_SCHEMA_TOO_NEW: { status: 500, summary: "The ledger file was written by a newer openlora (unknown schema migrations)." },
  RECEIPT_INVALID: { status: 400, summary: "A receipt is malformed: a field is missing, mistyped or out of range." },
  // Chain (src/chain)
  CHAIN_UNAVAILABLE: { status: 503, summary: "The chain's RPC endpoint cannot be reached (or the local chain could not start)." },
  CHAIN_ID_MISMATCH: { status: 400, summary: "The RPC endpoint serves a different chain than the contracts file names." },
  CHAIN_CONTRACT_MISSING: { status: 400, summary: "No openlora contract (or the wrong one) is deployed at an address of the contracts file." },
  CHAIN_TX_FAILED: { status: 502, summary: "A transaction was reverted by a contract, or never mined; the error names the contract's reason." },
  CHAIN_REORG_TOO_DEEP: { status: 500, summary: "A block the node had applied left the chain: a reorg deeper than the confirmation depth; following stopped." },
  CHAIN_VIEW_STALE: { status: 503, summary: "The node's view of the chain is older than half the Registry's terms delay (following stalled): it admits no request until following catches up, so it never signs under superseded terms." },
  OPERATOR_JAILED: { status: 503, summary: "A validator dispute upheld a fault in one of this node's epochs: its epochs from that one on never pay out and it posts no more, so it admits no request on this chain." },
  CHAIN_TERMS_UNSUPPORTED: { status: 503, summary: "The model's terms in force on chain name something this node cannot list (a Datanet version it does not hold as published): it does not serve the model." },
  CLAIM_NOT_FOUND: { status: 404, summary: "The party has nothing in a posted payout root yet (or its epoch's challenge window is still open)." },
  ACCESS_DENIED: { status: 403, summary: "The model's on-chain access policy does not admit the caller (allowlist, licence or minimum stake)." },
  // Data availability (epoch batches) and validators
  DA_UNAVAILABLE: { status: 503, summary: "An epoch's batch cannot be retrieved from its data availability layer (not published, or the service does not answer)." },
  DA_COMMITMENT_MISMATCH: { status: 502, summary: "Bytes retrieved for an epoch's batch do not hash to the commitment its post names." },
  DA_BATCH_INVALID: { status: 400, summary: "An epoch batch is malformed, too large, or does not match its epoch (node, epoch, receipt range)." },
  // Signed requests (agents as chain addresses)
  SIGNATURE_INVALID: { status: 401, summary: "A request signature is malformed, or does not recover to the address it claims." },
  SIGNATURE_EXPIRED: { status: 401, summary: "A signed request's expiry has passed, or lies further ahead than the server accepts." },
  SIGNATURE_REPLAYED: { status: 401, summary: "A signed request's nonce was already used by that address." },
  // Native layer
  NATIVE_UNAVAILABLE: { status: 500, summary: "The native addon is not built or failed to load." },
  INTERNAL: { status: 500, summary: "An internal invariant was violated." },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export class OpenLoraError extends Error {
  readonly code: ErrorCode;
  readonly httpStatus: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "OpenLoraError";
    this.code = code;
    this.httpStatus = ERROR_TABLE[code].status;
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

/** Shorthand: `throw oerr("MODEL_BAD_MAGIC", "...")`. */
export function oerr(code: ErrorCode, message: string, details?: Record<string, unknown>): OpenLoraError {
  return new OpenLoraError(code, message, details);
}

export function isOpenLoraError(e: unknown, code?: ErrorCode): e is OpenLoraError {
  return e instanceof OpenLoraError && (code === undefined || e.code === code);
}

/** Longest quote of outside input (request fields, file contents) that an error message may carry. */
export const MAX_QUOTED_CHARS = 64;

/**
 * A value from outside (a request field, a string read from a file) as an error message may quote
 * it: JSON, cut to MAX_QUOTED_CHARS with "…" — so no error body echoes a large input or a file's
 * contents. Non-serialisable values are named by their type.
 */
export function quoted(v: unknown, max = MAX_QUOTED_CHARS): string {
  let s: string | undefined;
  try {
    s = typeof v === "bigint" ? `${v}n` : JSON.stringify(v);
  } catch {
    s = undefined;
  }
  if (s === undefined) s = typeof v;
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
