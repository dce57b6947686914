// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {FeeSplit, Line} from "./FeeSplit.sol";
import {Inputs, Lineage, ModelUse} from "./FeeSplit.sol";
import {ContributorCheck} from "./ContributorCheck.sol";
import {Receipt, ReceiptLib, SplitParts} from "./ReceiptLib.sol";
import {StakeCheck} from "./StakeCheck.sol";
import {TermsCheck} from "./TermsCheck.sol";

/// @notice Fraud proofs of single receipts. A receipt signed by a registered operator whose fee or split
/// lines do not follow from its own inputs (FeeSplit, the on-chain port of splitFee) slashes the operator's
/// bond through Settlement (proveBadSplit); so does a receipt whose inputs split a registered model by other
/// terms than the registry's in force at the receipt's time (proveBadTerms, TermsCheck's rule); so do two
/// receipt chains signed by one operator (proveEquivocation) and a posted epoch that does not end with the
/// receipt the operator signed as its last (proveNotPosted); so does a receipt whose stakers of a model are not
/// Settlement's at the receipt's time (proveBadStakers, StakeCheck's rule); so does a receipt whose contributors of
/// a lineage entry are not the named Datanet version's as published (proveBadContributors, ContributorCheck's
/// rule). Its deputy (RegistryCourt, set once by the deployer) judges the rest against the registry and slashes
/// through slashFor. One slash per receipt, whichever proof of either court lands first.
contract ReceiptCourt is EIP712 {
    enum Part { Lines, Inputs, Spans }
    /// FeeMismatch: fee ≠ Σ F_m; LinesMismatch: the lines are not the split; InvalidInputs: splitFee refuses them;
    /// TermsMismatch: a model of the inputs is not split by the registry's terms of the receipt's time;
    /// Equivocation: the operator signed two receipt chains (two receipts with one id, or a successor that does
    /// not link to its predecessor); NotPosted: a posted epoch's last receipt is not the receipt it signed with that id;
    /// StakersMismatch: a model's stakers in the inputs are not Settlement's at the receipt's time;
    /// ContributorsMismatch: a lineage entry's contributors are not its Datanet version's as published;
    /// PolicyMismatch (RegistryCourt): the inputs' policy, treasury or operator are not the node's declared policy of
    /// the receipt's time, Settlement's treasury and the node; MergedLineageMismatch (RegistryCourt): a merged
    /// model's lineage weights are not those of its parents' terms at its own terms' time.
    enum Reason {
        FeeMismatch, LinesMismatch, InvalidInputs, TermsMismatch, Equivocation, NotPosted, StakersMismatch, ContributorsMismatch,
        PolicyMismatch, MergedLineageMismatch
    }

    /// A Datanet version as Registry.publishVersion took it: keccak256(abi.encode(root, contributors,
    /// approvedTokens)) is the registry's datanetVersionHash (the DatanetVersionPublished event carries all three).
    struct PublishedVersion { bytes32 root; address[] contributors; uint256[] approvedTokens; }

    IRegistry public immutable registry;
    ISettlement public immutable settlement;
    address public immutable deployer;
    /// The second court whose verdicts slash through this one (slashFor); 0 until the deployer sets it.
    address public deputy;
    mapping(bytes32 => bool) public proven;

    /// `receiptDigest`: the receipt proven wrong; for Equivocation, keccak256 of the pair's digests in ascending order.
    event FraudProven(address indexed node, bytes32 indexed receiptDigest, address indexed challenger, Reason reason);

    error AlreadyProven(bytes32 receiptDigest);
    error BadSignature();
    error SignerNotNode(address signer, address node);
    error NotOperator(address node);
    error PartMismatch(Part part);
    error ReceiptConsistent();
    error ModelIndexOutOfRange(uint256 index, uint256 count);
    /// The model had no terms at `time` (registered later, or not at all: a model the node listed itself).
    error NoTermsAtTime(bytes32 model, uint64 time);
    /// keccak256(abi.encode(terms)) is not the registry's `registryHash` of the receipt's time.
    error NotRegistryTerms(bytes32 model, bytes32 registryHash);
    error TermsConsistent();
    error StakersConsistent();
    error LineageIndexOutOfRange(uint256 index, uint256 count);
    /// The entry's key names no published Datanet version (unparsable, or not published), or the version supplied
    /// is not the published one.
    error NotPublishedVersion(string datanet);
    error ContributorsConsistent();
    error NotDeployer(address caller);
    error DeputyAlreadySet(address deputy);
    error NotDeputy(address caller);
    /// The two receipts are one chain: different ids that are not consecutive, or a successor that links.
    error NoEquivocation();
    /// The receipt is not the last of that epoch, or it is exactly the one posted.
    error ReceiptPosted(uint64 lastReceipt, bytes32 lastReceiptHash);

    constructor(IRegistry registry_, ISettlement settlement_) EIP712("openlora", "2") {
        registry = registry_;
        settlement = settlement_;
        deployer = msg.sender;
    }

    function setDeputy(address deputy_) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (deputy != address(0)) revert DeputyAlreadySet(deputy);
        deputy = deputy_;
    }

    /// The deputy's verdict on a receipt it checked was signed by `signer`: the same one-per-receipt slash.
    function slashFor(bytes32 digest, address signer, Reason reason, address challenger) external {
        if (msg.sender != deputy) revert NotDeputy(msg.sender);
        if (proven[digest]) revert AlreadyProven(digest);
        slash(digest, signer, reason, challenger);
    }

    /// The receipt's hash: what the node signed (TypeScript receiptDigest with this chain and contract).
    function receiptDigest(Receipt calldata receipt) public view returns (bytes32) {
        return _hashTypedDataV4(ReceiptLib.structHash(receipt));
    }

    function proveBadSplit(Receipt calldata receipt, SplitParts calldata parts, bytes calldata signature) external returns (Reason reason) {
        (bytes32 digest, address signer) = signedBy(receipt, signature);
        SplitParts memory p = parts;
        if (ReceiptLib.linesHash(p.lines) != receipt.splitHash) revert PartMismatch(Part.Lines);
        if (ReceiptLib.inputsHash(p.inputs) != receipt.inputsHash) revert PartMismatch(Part.Inputs);
        if (ReceiptLib.spansHash(p.credits, p.spans) != receipt.spansHash) revert PartMismatch(Part.Spans);

        reason = judge(receipt, p);
        slash(digest, signer, reason, msg.sender);
    }

    /// Proves that model `modelIndex` of the receipt's inputs was split by other terms than the registry's
    /// in force at the receipt's time (receipt.time is Unix ms; the registry's history is in block seconds,
    /// so time / 1000): `terms` must be the registry's (their keccak256(abi.encode) is termsAt's hash).
    function proveBadTerms(
        Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex, IRegistry.Terms calldata terms
    ) external returns (Reason) {
        (bytes32 digest, address signer, ModelUse memory m) = signedModel(receipt, inputs, signature, modelIndex);
        bytes32 id = keccak256(bytes(m.model));
        uint64 time = receipt.time / 1000;
        bytes32 registryHash = termsAt(id, time);
        if (keccak256(abi.encode(terms)) != registryHash) revert NotRegistryTerms(id, registryHash);
        if (TermsCheck.matches(m, terms)) revert TermsConsistent();
        slash(digest, signer, Reason.TermsMismatch, msg.sender);
        return Reason.TermsMismatch;
    }

    /// Proves that model `modelIndex` of the receipt's inputs lists other stakers than Settlement's in force at the
    /// receipt's time (time / 1000, block seconds): a staker that is not one, a wrong stake, a staker left out, or
    /// not in ascending address order. A model never registered has no stakers on chain.
    function proveBadStakers(Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex) external returns (Reason) {
        (bytes32 digest, address signer, ModelUse memory m) = signedModel(receipt, inputs, signature, modelIndex);
        if (StakeCheck.matches(m.stakers, settlement, keccak256(bytes(m.model)), receipt.time / 1000)) revert StakersConsistent();
        slash(digest, signer, Reason.StakersMismatch, msg.sender);
        return Reason.StakersMismatch;
    }

    /// Proves that lineage entry `lineageIndex` of model `modelIndex` of the receipt's inputs lists other contributors
    /// or approved tokens than the Datanet version its key names (name, at sign, version: Datanet keccak256(bytes(name)),
    /// TermsCheck.parseKey), as published: `version` must be the published one. A version never published on chain (a Datanet the node
    /// keeps itself) is not provable here. Versions never change, so the receipt's time plays no part.
    function proveBadContributors(
        Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex, uint256 lineageIndex,
        PublishedVersion calldata version
    ) external returns (Reason) {
        (bytes32 digest, address signer, ModelUse memory m) = signedModel(receipt, inputs, signature, modelIndex);
        if (lineageIndex >= m.lineage.length) revert LineageIndexOutOfRange(lineageIndex, m.lineage.length);
        Lineage memory e = m.lineage[lineageIndex];
        bytes32 published = keccak256(abi.encode(version.root, version.contributors, version.approvedTokens));
        if (publishedHash(e.datanet) != published) revert NotPublishedVersion(e.datanet);
        if (ContributorCheck.matches(e.contributors, version.contributors, version.approvedTokens)) revert ContributorsConsistent();
        slash(digest, signer, Reason.ContributorsMismatch, msg.sender);
        return Reason.ContributorsMismatch;
    }

    /// Proves the operator signed two receipt chains: `a` and `b` carry one id with different digests, or `b`
    /// is `a`'s successor (id + 1) whose prevHash is not `a`'s digest. Receipts are public (GET /v1/receipts/:id),
    /// so a receipt left out of the chain a node posts is proven this way against the one it put in its place.
    /// One slash per pair (either receipt may be honest: the pair is the proof, and it is keyed by both digests).
    function proveEquivocation(Receipt calldata a, bytes calldata sigA, Receipt calldata b, bytes calldata sigB) external returns (Reason) {
        bytes32 da = receiptDigest(a);
        bytes32 db = receiptDigest(b);
        address signer = operatorOf(a, da, sigA);
        if (operatorOf(b, db, sigB) != signer) revert SignerNotNode(b.node, signer);
        bool fork = (a.id == b.id && da != db) || (b.id == a.id + 1 && b.prevHash != da);
        if (!fork) revert NoEquivocation();
        bytes32 key = da < db ? keccak256(abi.encode(da, db)) : keccak256(abi.encode(db, da));
        if (proven[key]) revert AlreadyProven(key);
        slash(key, signer, Reason.Equivocation, msg.sender);
        return Reason.Equivocation;
    }

    /// Proves that the operator's posted `epoch` does not end with the receipt it signed as that epoch's last:
    /// its lastReceiptHash (the head of the chain the epoch's root is built from) is another receipt's.
    function proveNotPosted(Receipt calldata receipt, bytes calldata signature, uint64 epoch) external returns (Reason) {
        (bytes32 digest, address signer) = signedBy(receipt, signature);
        ISettlement.Epoch memory e = settlement.epochOf(signer, epoch);
        if (receipt.id != e.lastReceipt || digest == e.lastReceiptHash) revert ReceiptPosted(e.lastReceipt, e.lastReceiptHash);
        slash(digest, signer, Reason.NotPosted, msg.sender);
        return Reason.NotPosted;
    }

    /// The receipt's digest and signer: a registered operator, the receipt's node, not yet proven.
    function signedBy(Receipt calldata receipt, bytes calldata signature) private view returns (bytes32 digest, address signer) {
        digest = receiptDigest(receipt);
        if (proven[digest]) revert AlreadyProven(digest);
        signer = operatorOf(receipt, digest, signature);
    }

    /// signedBy, and model `modelIndex` of `inputs`, which must be the receipt's.
    function signedModel(Receipt calldata receipt, Inputs calldata inputs, bytes calldata signature, uint256 modelIndex)
        private view returns (bytes32 digest, address signer, ModelUse memory m)
    {
        (digest, signer) = signedBy(receipt, signature);
        Inputs memory inp = inputs;
        if (ReceiptLib.inputsHash(inp) != receipt.inputsHash) revert PartMismatch(Part.Inputs);
        if (modelIndex >= inp.models.length) revert ModelIndexOutOfRange(modelIndex, inp.models.length);
        m = inp.models[modelIndex];
    }

    /// The registry's datanetVersionHash of a lineage key's Datanet version; 0 when the key names none.
    function publishedHash(string memory key) private view returns (bytes32) {
        (bytes32 id, uint256 v) = TermsCheck.parseKey(key);
        if (v > type(uint32).max) return bytes32(0);
        try registry.datanetVersionHash(id, uint32(v)) returns (bytes32 h) {
            return h;
        } catch {
            return bytes32(0);
        }
    }

    /// The signer of `digest`: a registered operator, the receipt's node.
    function operatorOf(Receipt calldata receipt, bytes32 digest, bytes calldata signature) private view returns (address signer) {
        ECDSA.RecoverError err;
        (signer, err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert BadSignature();
        if (signer != receipt.node) revert SignerNotNode(signer, receipt.node);
        if (!registry.isOperator(signer)) revert NotOperator(signer);
    }

    function slash(bytes32 digest, address signer, Reason reason, address challenger) private {
        proven[digest] = true;
        emit FraudProven(signer, digest, challenger, reason);
        settlement.slash(signer, challenger);
    }

    /// The registry's terms hash of `time`; an unknown model (termsAt reverts) or one not yet registered then
    /// (version 0) has none.
    function termsAt(bytes32 id, uint64 time) private view returns (bytes32) {
        try registry.termsAt(id, time) returns (bytes32 h, uint32 version) {
            if (version == 0) revert NoTermsAtTime(id, time);
            return h;
        } catch {
            revert NoTermsAtTime(id, time);
        }
    }

    function judge(Receipt calldata receipt, SplitParts memory p) private pure returns (Reason) {
        if (!FeeSplit.valid(p.inputs)) return Reason.InvalidInputs;
        if (FeeSplit.totalFee(p.inputs, receipt.tokensIn, receipt.tokensOut) != receipt.fee) return Reason.FeeMismatch;
        (, Line[] memory lines) = FeeSplit.split(p.inputs, receipt.tokensIn, receipt.tokensOut, p.credits);
        if (ReceiptLib.linesHash(lines) != receipt.splitHash) return Reason.LinesMismatch;
        revert ReceiptConsistent();
    }
}
