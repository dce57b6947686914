// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";

/// @notice IRegistry. After deploy the deployer calls `wire(settlement, licence)` once: canAccess reads the
/// Licence balances and the Settlement agent stakes through those addresses. Terms take effect `termsDelay`
/// seconds after the block that sets them, so a node that follows the chain with some lag learns of a change
/// before it applies and never signs a receipt under terms that are no longer in force.
contract Registry is IRegistry {
    struct Model {
        address owner;
        Kind kind;
        AccessKind access;
        bytes32 baseModel;
        uint256 minStake;
    }

    struct TermsVersion {
        bytes32 hash;
        uint64 from;
    }

    struct PolicyVersion {
        FeePolicy policy;
        uint64 from;
    }

    struct Datanet {
        address owner;
        uint32 versions;
    }

    error NotDeployer(address caller);
    error AlreadyWired();
    error InvalidVersion(string reason);

    event Wired(address settlement, address licence);

    address public immutable deployer;
    uint64 public immutable override termsDelay;
    address public settlement;
    address public licence;

    mapping(address => string) private _operatorUrl;
    mapping(address => bool) public override isOperator;
    mapping(address => PolicyVersion[]) private _policies;
    mapping(bytes32 => Model) private _models;
    mapping(bytes32 => TermsVersion[]) private _terms;
    mapping(bytes32 => mapping(address => bool)) public allowed;
    mapping(bytes32 => Datanet) private _datanets;
    mapping(bytes32 => mapping(uint32 => bytes32)) private _versionHash;

    constructor(uint64 termsDelay_) {
        deployer = msg.sender;
        termsDelay = termsDelay_;
    }

    function wire(address settlement_, address licence_) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (settlement != address(0)) revert AlreadyWired();
        settlement = settlement_;
        licence = licence_;
        emit Wired(settlement_, licence_);
    }

    // ---- operators

    /// A second call updates the operator's URL.
    function registerOperator(string calldata url) external {
        isOperator[msg.sender] = true;
        _operatorUrl[msg.sender] = url;
        emit OperatorRegistered(msg.sender, url);
    }

    /// Version 1 applies at once (no receipt before it is judged by a policy: the node sets it before it
    /// serves); a change applies termsDelay later, like terms, so a node that follows with some lag never signs
    /// under a policy no longer in force, and its agents see a change coming.
    function setOperatorPolicy(FeePolicy calldata p) external {
        if (!isOperator[msg.sender]) revert UnknownOperator(msg.sender);
        if (p.protocolBps > 10_000 || p.operatorBps > 10_000 || uint256(p.protocolBps) + p.operatorBps > 10_000) revert InvalidPolicy("protocolBps + operatorBps above 10000");
        if (uint256(p.developerBps) + p.stakerBps + p.dataBps != 10_000) revert InvalidPolicy("developerBps + stakerBps + dataBps is not 10000");
        if (p.lambdaBps > 10_000) revert InvalidPolicy("lambdaBps above 10000");
        PolicyVersion[] storage h = _policies[msg.sender];
        uint64 from = h.length == 0 ? uint64(block.timestamp) : uint64(block.timestamp) + termsDelay;
        h.push(PolicyVersion(p, from));
        emit OperatorPolicySet(msg.sender, uint32(h.length), from, p);
    }

    function policyAt(address operator, uint64 time) external view returns (FeePolicy memory policy, uint32 version) {
        PolicyVersion[] storage h = _policies[operator];
        uint256 lo = 0;
        uint256 hi = h.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (h[mid].from <= time) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) return (policy, 0);
        return (h[lo - 1].policy, uint32(lo));
    }

    function operatorUrl(address operator) external view returns (string memory) {
        if (!isOperator[operator]) revert UnknownOperator(operator);
        return _operatorUrl[operator];
    }

    // ---- models

    function registerModel(string calldata name, Kind kind, bytes32 baseModel, Terms calldata terms) external returns (bytes32 id) {
        if (bytes(name).length == 0) revert InvalidName();
        id = keccak256(bytes(name));
        if (_models[id].owner != address(0)) revert AlreadyRegistered(id);
        if (kind == Kind.Base) {
            if (baseModel != bytes32(0)) revert InvalidTerms("a base model has no base model");
        } else if (_models[baseModel].owner == address(0) || _models[baseModel].kind != Kind.Base) {
            revert InvalidTerms("baseModel is not a registered base model");
        }
        _models[id] = Model({owner: msg.sender, kind: kind, access: AccessKind.Public, baseModel: baseModel, minStake: 0});
        emit ModelRegistered(id, name, kind, baseModel, msg.sender);
        _setTerms(id, terms);
    }

    function setTerms(bytes32 id, Terms calldata terms) external {
        _onlyModelOwner(id);
        _setTerms(id, terms);
    }

    function setAccess(bytes32 id, AccessKind kind, uint256 minStake) external {
        Model storage m = _onlyModelOwner(id);
        m.access = kind;
        m.minStake = minStake;
        emit AccessSet(id, kind, minStake);
    }

    function setAllowed(bytes32 id, address agent, bool allowed_) external {
        _onlyModelOwner(id);
        allowed[id][agent] = allowed_;
        emit AllowlistSet(id, agent, allowed_);
    }

    function modelOwner(bytes32 id) external view returns (address) {
        return _model(id).owner;
    }

    function modelInfo(bytes32 id) external view returns (Model memory) {
        return _model(id);
    }

    /// (0, 0) when `time` is before the model's registration.
    function termsAt(bytes32 id, uint64 time) external view returns (bytes32 termsHash, uint32 version) {
        _model(id);
        TermsVersion[] storage h = _terms[id];
        // Binary search for the last version with from <= time; versions of one block: the last one wins.
        uint256 lo = 0;
        uint256 hi = h.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (h[mid].from <= time) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) return (bytes32(0), 0);
        return (h[lo - 1].hash, uint32(lo));
    }

    function termsFrom(bytes32 id, uint32 version) external view returns (uint64) {
        _model(id);
        TermsVersion[] storage h = _terms[id];
        if (version == 0 || version > h.length) revert UnknownTermsVersion(id, version);
        return h[version - 1].from;
    }

    function termsVersions(bytes32 id) external view returns (TermsVersion[] memory) {
        _model(id);
        return _terms[id];
    }

    function canAccess(bytes32 id, address agent) external view returns (bool) {
        Model storage m = _model(id);
        if (m.access == AccessKind.Public) return true;
        if (m.access == AccessKind.Allowlist) return allowed[id][agent];
        if (m.access == AccessKind.Licence) return licence != address(0) && IERC1155(licence).balanceOf(agent, uint256(id)) > 0;
        return settlement != address(0) && ISettlement(settlement).agentStake(agent) >= m.minStake;
    }

    // ---- Datanets

    function createDatanet(string calldata name) external returns (bytes32 id) {
        if (bytes(name).length == 0) revert InvalidName();
        id = keccak256(bytes(name));
        if (_datanets[id].owner != address(0)) revert AlreadyRegistered(id);
        _datanets[id].owner = msg.sender;
        emit DatanetCreated(id, name, msg.sender);
    }

    function publishVersion(bytes32 id, bytes32 root, address[] calldata contributors, uint256[] calldata approvedTokens)
        external
        returns (uint32 version)
    {
        Datanet storage d = _datanets[id];
        if (d.owner == address(0)) revert UnknownDatanet(id);
        if (d.owner != msg.sender) revert NotOwner(id, msg.sender);
        if (contributors.length != approvedTokens.length) revert InvalidVersion("contributors and approvedTokens differ in length");
        address prev = address(0);
        for (uint256 i = 0; i < contributors.length; i++) {
            // Strictly ascending from 0: sorted, unique and never the zero address.
            if (contributors[i] <= prev) revert InvalidVersion("contributors not strictly ascending");
            prev = contributors[i];
        }
        version = ++d.versions;
        _versionHash[id][version] = keccak256(abi.encode(root, contributors, approvedTokens));
        emit DatanetVersionPublished(id, version, root, contributors, approvedTokens);
    }

    function datanetVersionHash(bytes32 id, uint32 version) external view returns (bytes32) {
        if (_datanets[id].owner == address(0)) revert UnknownDatanet(id);
        bytes32 h = _versionHash[id][version];
        if (h == bytes32(0)) revert UnknownDatanetVersion(id, version);
        return h;
    }

    function datanetOwner(bytes32 id) external view returns (address) {
        address o = _datanets[id].owner;
        if (o == address(0)) revert UnknownDatanet(id);
        return o;
    }

    function datanetVersions(bytes32 id) external view returns (uint32) {
        if (_datanets[id].owner == address(0)) revert UnknownDatanet(id);
        return _datanets[id].versions;
    }

    // ---- internals

    function _model(bytes32 id) private view returns (Model storage m) {
        m = _models[id];
        if (m.owner == address(0)) revert UnknownModel(id);
    }

    function _onlyModelOwner(bytes32 id) private view returns (Model storage m) {
        m = _model(id);
        if (m.owner != msg.sender) revert NotOwner(id, msg.sender);
    }

    function _setTerms(bytes32 id, Terms calldata t) private {
        _validate(_models[id], t);
        TermsVersion[] storage h = _terms[id];
        uint64 from = uint64(block.timestamp) + termsDelay;
        h.push(TermsVersion({hash: keccak256(abi.encode(t)), from: from}));
        emit TermsSet(id, uint32(h.length), from, t);
    }

    function _validate(Model storage m, Terms calldata t) private view {
        if (t.developers.length == 0) revert InvalidTerms("no developers");
        uint256 total = 0;
        for (uint256 i = 0; i < t.developers.length; i++) {
            if (t.developers[i].party == address(0)) revert InvalidTerms("developer is the zero address");
            total += t.developers[i].share;
        }
        if (total == 0) revert InvalidTerms("developer shares sum to zero");
        if (t.hasShares && uint256(t.developerBps) + t.stakerBps + t.dataBps != 10000) {
            revert InvalidTerms("developerBps + stakerBps + dataBps must be 10000");
        }
        if (m.kind == Kind.Merged) {
            if (t.parents.length == 0) revert InvalidTerms("a merged adapter needs parents");
            if (t.lineage.length != 0) revert InvalidTerms("a merged adapter's lineage comes from its parents");
        } else if (t.parents.length != 0) {
            revert InvalidTerms("only a merged adapter has parents");
        }
        for (uint256 i = 0; i < t.parents.length; i++) {
            Model storage p = _models[t.parents[i].model];
            if (p.owner == address(0) || p.kind == Kind.Base || p.baseModel != m.baseModel) {
                revert InvalidTerms("a parent is not a registered adapter of the same base model");
            }
            if (t.parents[i].weight == 0) revert InvalidTerms("zero parent weight");
        }
        for (uint256 i = 0; i < t.lineage.length; i++) {
            LineageEntry calldata l = t.lineage[i];
            if (_versionHash[l.datanet][l.version] == bytes32(0)) revert InvalidTerms("unknown Datanet version in lineage");
            if (l.weight == 0) revert InvalidTerms("zero lineage weight");
        }
    }
}
