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
    /// `tree` holds `given` Terms; the merge's ancestry reads `want` (at least `want` when it ran out).
    error ParentsCount(uint256 given, uint256 want);
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
    /// `tree`: in depth-first pre-order, for each parent of `merged` in their order, its terms in force at the time
    /// `merged` applies from (registry.termsFrom; any Terms for a parent without terms then: it adds nothing), each
    /// merged parent's followed at once by its own parents' the same way, at the time its terms apply from. A
    /// merge of plain adapters takes exactly its parents' terms.
    function proveBadMergedLineage(
        Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex,
        IRegistry.Terms calldata merged, IRegistry.Terms[] calldata tree
    ) external returns (ReceiptCourt.Reason) {
        (bytes32 digest, address signer, ModelUse memory m) = signedModel(receipt, inputs, signature, modelIndex);
        MergeCheck.Acc memory lineage = lineageAt(keccak256(bytes(m.model)), receipt.time / 1000, merged, tree);
        if (MergeCheck.matches(m.lineage, lineage)) revert MergedLineageConsistent();
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

    /// The lineage of merged model `id` at `time`, `merged` its terms then, its ancestry's terms all of `tree`.
    function lineageAt(bytes32 id, uint64 time, IRegistry.Terms calldata merged, IRegistry.Terms[] calldata tree)
        private view returns (MergeCheck.Acc memory lineage)
    {
        (bytes32 h, uint32 version) = termsAt(id, time);
        if (keccak256(abi.encode(merged)) != h) revert NotRegistryTerms(id, h);
        if (merged.parents.length == 0) revert NotMerged(id);
        uint256 used;
        (lineage, used) = mergedLineage(id, version, merged, tree, 0);
        if (used != tree.length) revert ParentsCount(tree.length, used);
    }

    /// The lineage of `t`, version `version` of merged model `id`'s terms, from its parents' terms read from
    /// `tree[at..]` (each checked against the registry at the time `t` applies from); the index after them. Every
    /// level reads entries of `tree`, so a cycle of merges runs out of them (ParentsCount) rather than looping.
    function mergedLineage(bytes32 id, uint32 version, IRegistry.Terms calldata t, IRegistry.Terms[] calldata tree, uint256 at)
        private view returns (MergeCheck.Acc memory lineage, uint256 next)
    {
        uint64 from = registry.termsFrom(id, version);
        MergeCheck.Acc[] memory lins = new MergeCheck.Acc[](t.parents.length);
        bool[] memory counted = new bool[](t.parents.length);
        next = at;
        for (uint256 j = 0; j < t.parents.length; j++) (lins[j], counted[j], next) = parentLineage(t.parents[j].model, from, tree, next);
        lineage = MergeCheck.merge(t.parents, lins, counted);
    }

    /// Parent `pid`'s lineage at `from`, its terms `tree[at]` (and its own ancestry's after them when merged);
    /// whether it had terms then; the index after what it read.
    function parentLineage(bytes32 pid, uint64 from, IRegistry.Terms[] calldata tree, uint256 at)
        private view returns (MergeCheck.Acc memory lineage, bool counted, uint256 next)
    {
        if (at >= tree.length) revert ParentsCount(tree.length, at + 1);
        IRegistry.Terms calldata p = tree[at];
        next = at + 1;
        (bytes32 h, uint32 version) = registry.termsAt(pid, from);
        if (version == 0) return (lineage, false, next);
        if (keccak256(abi.encode(p)) != h) revert NotRegistryTerms(pid, h);
        if (p.parents.length == 0) return (MergeCheck.ofEntries(p.lineage), true, next);
        (lineage, next) = mergedLineage(pid, version, p, tree, next);
        counted = true;
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
