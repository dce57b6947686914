// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {FeeSplit, Line} from "./FeeSplit.sol";
import {Receipt, ReceiptLib, SplitParts} from "./ReceiptLib.sol";

/// @notice Fraud proofs of single receipts. A receipt signed by a registered operator whose fee or split
/// lines do not follow from its own inputs (FeeSplit, the on-chain port of splitFee) slashes the operator's
/// bond through Settlement. Whether the inputs are the registry's terms and stakes is not judged here.
contract ReceiptCourt is EIP712 {
    enum Part { Lines, Inputs, Spans }
    /// FeeMismatch: fee ≠ Σ F_m; LinesMismatch: the lines are not the split; InvalidInputs: splitFee refuses them.
    enum Reason { FeeMismatch, LinesMismatch, InvalidInputs }

    IRegistry public immutable registry;
    ISettlement public immutable settlement;
    mapping(bytes32 => bool) public proven;

    event FraudProven(address indexed node, bytes32 indexed receiptDigest, address indexed challenger, Reason reason);

    error AlreadyProven(bytes32 receiptDigest);
    error BadSignature();
    error SignerNotNode(address signer, address node);
    error NotOperator(address node);
    error PartMismatch(Part part);
    error ReceiptConsistent();

    constructor(IRegistry registry_, ISettlement settlement_) EIP712("openlora", "2") {
        registry = registry_;
        settlement = settlement_;
    }

    /// The receipt's hash: what the node signed (TypeScript receiptDigest with this chain and contract).
    function receiptDigest(Receipt calldata receipt) public view returns (bytes32) {
        return _hashTypedDataV4(ReceiptLib.structHash(receipt));
    }

    function proveBadSplit(Receipt calldata receipt, SplitParts calldata parts, bytes calldata signature) external returns (Reason reason) {
        bytes32 digest = receiptDigest(receipt);
        if (proven[digest]) revert AlreadyProven(digest);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert BadSignature();
        if (signer != receipt.node) revert SignerNotNode(signer, receipt.node);
        if (!registry.isOperator(signer)) revert NotOperator(signer);

        SplitParts memory p = parts;
        if (ReceiptLib.linesHash(p.lines) != receipt.splitHash) revert PartMismatch(Part.Lines);
        if (ReceiptLib.inputsHash(p.inputs) != receipt.inputsHash) revert PartMismatch(Part.Inputs);
        if (ReceiptLib.spansHash(p.credits, p.spans) != receipt.spansHash) revert PartMismatch(Part.Spans);

        reason = judge(receipt, p);
        proven[digest] = true;
        emit FraudProven(signer, digest, msg.sender, reason);
        settlement.slash(signer, msg.sender);
    }

    function judge(Receipt calldata receipt, SplitParts memory p) private pure returns (Reason) {
        if (!FeeSplit.valid(p.inputs)) return Reason.InvalidInputs;
        if (FeeSplit.totalFee(p.inputs, receipt.tokensIn, receipt.tokensOut) != receipt.fee) return Reason.FeeMismatch;
        (, Line[] memory lines) = FeeSplit.split(p.inputs, receipt.tokensIn, receipt.tokensOut, p.credits);
        if (ReceiptLib.linesHash(lines) != receipt.splitHash) return Reason.LinesMismatch;
        revert ReceiptConsistent();
    }
}
