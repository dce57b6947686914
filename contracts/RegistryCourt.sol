// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {Inputs, ModelUse, Policy} from "./FeeSplit.sol";
import {MergeCheck} from "./MergeCheck.sol";
import {ReceiptCourt} from "./ReceiptCourt.sol";
import {Receipt, ReceiptLib} from "./ReceiptLib.sol";

/// @notice ReceiptCourt's deputy (ReceiptCourt is at EIP-170's size limit): fraud proofs of single receipts
/// against what the registry declares, slashing through ReceiptCourt.slashFor, so a receipt is still slashed
/// once whichever court proves it. Receipts are ReceiptCourt's (its EIP-712 domain, its digest).
/// proveBadPolicy: the inputs' policy, treasury or operator are not the node's declared policy of the receipt's
/// time, Settlement's treasury and the node. proveBadMergedLineage: a merged model's lineage weights are not
/// those of its parents' terms in force at its own terms' time (MergeCheck's rule).
contract RegistryCourt {
    ReceiptCourt public immutable court;
    IRegistry public immutable registry;
    ISettlement public immutable settlement;

    error AlreadyProven(bytes32 receiptDigest);
    error BadSignature();
    error SignerNotNode(address signer, address node);
    error NotOperator(address node);
    error PartMismatch(ReceiptCourt.Part part);
    error ModelIndexOutOfRange(uint256 index, uint256 count);
    /// The node had declared no policy at `time`.
    error NoPolicyAtTime(address node, uint64 time);
    error PolicyConsistent();
    error NoTermsAtTime(bytes32 model, uint64 time);
    error NotRegistryTerms(bytes32 model, bytes32 registryHash);
    /// The model's terms in force have no parents.
    error NotMerged(bytes32 model);
    /// `parents` must hold one Terms per parent of the merged terms, in their order.
    error ParentsCount(uint256 given, uint256 want);
    /// A parent is itself merged: its lineage comes from its own parents (not judged here).
    error NestedMerge(bytes32 parent);
    error MergedLineageConsistent();

    constructor(ReceiptCourt court_) {
        court = court_;
        registry = court_.registry();
        settlement = court_.settlement();
    }

    function proveBadPolicy(Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature) external returns (ReceiptCourt.Reason) {
        (bytes32 digest, address signer) = signedBy(receipt, signature);
        Inputs memory inp = inputs;
        if (ReceiptLib.inputsHash(inp) != receipt.inputsHash) revert PartMismatch(ReceiptCourt.Part.Inputs);
        uint64 time = receipt.time / 1000;
        (IRegistry.FeePolicy memory d, uint32 version) = registry.policyAt(receipt.node, time);
        if (version == 0) revert NoPolicyAtTime(receipt.node, time);
        Policy memory p = inp.policy;
        bool same = p.protocolBps == d.protocolBps && p.operatorBps == d.operatorBps && p.developerBps == d.developerBps
            && p.stakerBps == d.stakerBps && p.dataBps == d.dataBps && p.lambdaBps == d.lambdaBps
            && keccak256(bytes(inp.operator)) == keccak256(bytes(Strings.toHexString(receipt.node)))
            && keccak256(bytes(inp.treasury)) == keccak256(bytes(Strings.toHexString(settlement.treasury())));
        if (same) revert PolicyConsistent();
        court.slashFor(digest, signer, ReceiptCourt.Reason.PolicyMismatch, msg.sender);
        return ReceiptCourt.Reason.PolicyMismatch;
    }

    /// `merged`: the registry's terms of model `modelIndex` in force at the receipt's time (they have parents);
    /// `parents[j]`: the terms of `merged.parents[j]` in force at the time those merged terms apply from
    /// (registry.termsFrom); a parent without terms then is skipped (pass any Terms in its place).
    function proveBadMergedLineage(
        Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex,
        IRegistry.Terms calldata merged, IRegistry.Terms[] calldata parents
    ) external returns (ReceiptCourt.Reason) {
        (bytes32 digest, address signer, ModelUse memory m) = signedModel(receipt, inputs, signature, modelIndex);
        bool[] memory counted = countedParents(keccak256(bytes(m.model)), receipt.time / 1000, merged, parents);
        if (MergeCheck.matches(m.lineage, merged, parents, counted)) revert MergedLineageConsistent();
        court.slashFor(digest, signer, ReceiptCourt.Reason.MergedLineageMismatch, msg.sender);
        return ReceiptCourt.Reason.MergedLineageMismatch;
    }

    /// signedBy, and model `modelIndex` of `inputs`, which must be the receipt's.
    function signedModel(Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex)
        private view returns (bytes32 digest, address signer, ModelUse memory m)
    {
        (digest, signer) = signedBy(receipt, signature);
        Inputs memory inp = inputs;
        if (ReceiptLib.inputsHash(inp) != receipt.inputsHash) revert PartMismatch(ReceiptCourt.Part.Inputs);
        if (modelIndex >= inp.models.length) revert ModelIndexOutOfRange(modelIndex, inp.models.length);
        m = inp.models[modelIndex];
    }

    /// Checks `merged` against the registry at `time` and each parent's terms at the time `merged` applies from;
    /// which parents had terms then.
    function countedParents(bytes32 id, uint64 time, IRegistry.Terms calldata merged, IRegistry.Terms[] calldata parents)
        private view returns (bool[] memory counted)
    {
        (bytes32 h, uint32 version) = termsAt(id, time);
        if (keccak256(abi.encode(merged)) != h) revert NotRegistryTerms(id, h);
        if (merged.parents.length == 0) revert NotMerged(id);
        if (parents.length != merged.parents.length) revert ParentsCount(parents.length, merged.parents.length);
        uint64 from = registry.termsFrom(id, version);
        counted = new bool[](parents.length);
        for (uint256 j = 0; j < parents.length; j++) {
            bytes32 pid = merged.parents[j].model;
            (bytes32 ph, uint32 pv) = registry.termsAt(pid, from);
            if (pv == 0) continue;
            if (keccak256(abi.encode(parents[j])) != ph) revert NotRegistryTerms(pid, ph);
            if (parents[j].parents.length != 0) revert NestedMerge(pid);
            counted[j] = true;
        }
    }

    /// The receipt's digest (ReceiptCourt's) and signer: a registered operator, the receipt's node, not yet proven.
    function signedBy(Receipt calldata receipt, bytes calldata signature) private view returns (bytes32 digest, address signer) {
        digest = court.receiptDigest(receipt);
        if (court.proven(digest)) revert AlreadyProven(digest);
        ECDSA.RecoverError err;
        (signer, err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert BadSignature();
        if (signer != receipt.node) revert SignerNotNode(signer, receipt.node);
        if (!registry.isOperator(signer)) revert NotOperator(signer);
    }

    function termsAt(bytes32 id, uint64 time) private view returns (bytes32 h, uint32 version) {
        try registry.termsAt(id, time) returns (bytes32 h_, uint32 v) {
            if (v == 0) revert NoTermsAtTime(id, time);
            return (h_, v);
        } catch {
            revert NoTermsAtTime(id, time);
        }
    }
}
