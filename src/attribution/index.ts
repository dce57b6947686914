export * from "./types.js";
export { distribute, matchedTokens, modelFee, splitFee, validatePolicy, validateShares, worstCaseFee } from "./fees.js";
export { hashPair, merkleProof, merkleRoot, verifyMerkleProof, ZERO_HASH } from "./merkle.js";
export { canonicalHash, canonicalJson } from "./canonical.js";
export {
  buildReceipt, hashTokenIds, receiptDigest, receiptDomain, receiptFromJSON, receiptMessage, receiptPartHashes, receiptToJSON,
  receiptCourtArgs, receiptSplitProblem, receiptTypedData, receiptVersion, RECEIPT_TYPES, RECEIPT_V2_TYPES, signReceipt, validateReceipt, verifyReceiptSignature, weightToPpm,
  type BuildReceiptInput, type Receipt, type ReceiptDomainOptions, type ReceiptFinish,
  type ReceiptInputs, type ReceiptVersion,
} from "./receipts.js";
