// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Line, Inputs, Credit} from "./FeeSplit.sol";

/// The signed struct of a version 2 receipt (src/attribution/receipts.ts RECEIPT_V2_TYPES): its large parts
/// enter as keccak256 of their ABI encoding (src/attribution/receipt-abi.ts).
struct Receipt {
    uint64 id;
    uint64 time;
    address node;
    string agent;
    bytes32 promptHash;
    bytes32 outputHash;
    bytes32 modelsHash;
    bytes32 samplingHash;
    uint32 tokensIn;
    uint32 tokensOut;
    string finish;
    uint256 fee;
    bytes32 splitHash;
    bytes32 attributionHash;
    bytes32 spansHash;
    bytes32 inputsHash;
    bytes32 prevHash;
}

struct Span { string datanet; uint64 recordId; string contributor; uint32 start; uint32 end; }

/// The parts a split is judged by: its lines, its inputs, and the span part (credits with their spans).
struct SplitParts { Line[] lines; Inputs inputs; Credit[] credits; Span[] spans; }

library ReceiptLib {
    bytes32 internal constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(uint64 id,uint64 time,address node,string agent,bytes32 promptHash,bytes32 outputHash,bytes32 modelsHash,"
        "bytes32 samplingHash,uint32 tokensIn,uint32 tokensOut,string finish,uint256 fee,bytes32 splitHash,bytes32 attributionHash,"
        "bytes32 spansHash,bytes32 inputsHash,bytes32 prevHash)"
    );

    /// EIP-712 hashStruct; two encodes concatenated (static words only) to stay within the stack.
    function structHash(Receipt calldata r) internal pure returns (bytes32) {
        return keccak256(bytes.concat(
            abi.encode(RECEIPT_TYPEHASH, r.id, r.time, r.node, keccak256(bytes(r.agent)), r.promptHash, r.outputHash, r.modelsHash, r.samplingHash),
            abi.encode(r.tokensIn, r.tokensOut, keccak256(bytes(r.finish)), r.fee, r.splitHash, r.attributionHash, r.spansHash, r.inputsHash, r.prevHash)
        ));
    }

    function linesHash(Line[] memory lines) internal pure returns (bytes32) {
        return keccak256(abi.encode(lines));
    }

    function inputsHash(Inputs memory inputs) internal pure returns (bytes32) {
        return keccak256(abi.encode(inputs));
    }

    function spansHash(Credit[] memory credits, Span[] memory spans) internal pure returns (bytes32) {
        return keccak256(abi.encode(credits, spans));
    }
}
