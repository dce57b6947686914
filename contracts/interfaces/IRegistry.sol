// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Operators, models and adapters with their terms and access policies, Datanets and their versions.
/// Ids: a model's and a Datanet's id is keccak256(bytes(name)) of its name. Every write is by the entry's owner
/// (msg.sender at creation); terms changes are kept as a history so a receipt is judged by the terms of its time.
interface IRegistry {
    enum Kind { Base, Adapter, Merged }
    /// Public: anyone; Allowlist: agents the owner allowed; Licence: holders of the model's ERC-1155 licence
    /// (Licence contract, token id uint256(modelId)); MinStake: agents whose Settlement agent stake >= minStake.
    enum AccessKind { Public, Allowlist, Licence, MinStake }

    struct Developer { address party; uint256 share; }
    struct LineageEntry { bytes32 datanet; uint32 version; uint256 weight; }
    struct Parent { bytes32 model; uint256 weight; }
    /// What a receipt's split of this model must follow. Shares (bps, summing to 10000) apply when hasShares,
    /// else the node's policy does.
    struct Terms {
        bytes32 contentHash;
        uint256 priceIn;
        uint256 priceOut;
        Developer[] developers;
        bool hasShares;
        uint16 developerBps;
        uint16 stakerBps;
        uint16 dataBps;
        LineageEntry[] lineage;
        Parent[] parents;
    }

    /// An operator's fee policy, as a receipt's inputs carry it (FeeSplit's Policy): protocolBps + operatorBps <= 10000,
    /// developerBps + stakerBps + dataBps = 10000 (the defaults for models without shares), lambdaBps <= 10000.
    struct FeePolicy { uint16 protocolBps; uint16 operatorBps; uint16 developerBps; uint16 stakerBps; uint16 dataBps; uint16 lambdaBps; }

    event OperatorRegistered(address indexed operator, string url);
    /// Version 1 applies from its block's time; every later version from its block's time + termsDelay.
    event OperatorPolicySet(address indexed operator, uint32 version, uint64 from, FeePolicy policy);
    event ModelRegistered(bytes32 indexed id, string name, Kind kind, bytes32 baseModel, address owner);
    /// Emitted at registration (version 1) and at every change; `from` (block seconds) is when it applies:
    /// the block's time + termsDelay.
    event TermsSet(bytes32 indexed id, uint32 version, uint64 from, Terms terms);
    event AccessSet(bytes32 indexed id, AccessKind kind, uint256 minStake);
    event AllowlistSet(bytes32 indexed id, address indexed agent, bool allowed);
    event DatanetCreated(bytes32 indexed id, string name, address owner);
    event DatanetVersionPublished(bytes32 indexed id, uint32 version, bytes32 root, address[] contributors, uint256[] approvedTokens);

    error NotOwner(bytes32 id, address caller);
    error AlreadyRegistered(bytes32 id);
    error UnknownModel(bytes32 id);
    error UnknownDatanet(bytes32 id);
    error UnknownDatanetVersion(bytes32 id, uint32 version);
    error UnknownOperator(address operator);
    error InvalidTerms(string reason);
    error InvalidName();
    error InvalidPolicy(string reason);
    error UnknownTermsVersion(bytes32 id, uint32 version);

    /// The caller becomes an operator: its address signs receipts and posts epochs.
    function registerOperator(string calldata url) external;
    function isOperator(address operator) external view returns (bool);
    /// The caller (an operator) declares the fee policy its receipts split by (InvalidPolicy otherwise).
    function setOperatorPolicy(FeePolicy calldata policy) external;
    /// The operator's policy in force at `time` (block seconds) and its version; version 0 (all zero) before the first.
    function policyAt(address operator, uint64 time) external view returns (FeePolicy memory policy, uint32 version);

    /// Registers a model (kind Base: baseModel must be 0; Adapter/Merged: baseModel a registered Base).
    function registerModel(string calldata name, Kind kind, bytes32 baseModel, Terms calldata terms) external returns (bytes32 id);
    function setTerms(bytes32 id, Terms calldata terms) external;
    function setAccess(bytes32 id, AccessKind kind, uint256 minStake) external;
    function setAllowed(bytes32 id, address agent, bool allowed) external;

    /// Seconds from the block that sets terms (or registers a model) until they are in force; fixed at deploy.
    function termsDelay() external view returns (uint64);
    function modelOwner(bytes32 id) external view returns (address);
    /// keccak256(abi.encode(terms)) of the terms in force at `time` (block seconds), and their version.
    function termsAt(bytes32 id, uint64 time) external view returns (bytes32 termsHash, uint32 version);
    /// When version `version` (1, 2, …) of the model's terms applies from (block seconds).
    function termsFrom(bytes32 id, uint32 version) external view returns (uint64);
    /// True when the model's access policy admits `agent` now.
    function canAccess(bytes32 id, address agent) external view returns (bool);

    function createDatanet(string calldata name) external returns (bytes32 id);
    /// The Datanet's owner publishes the next version: the Merkle root of its approved records and each
    /// contributor's approved token count (contributors strictly ascending).
    function publishVersion(bytes32 id, bytes32 root, address[] calldata contributors, uint256[] calldata approvedTokens) external returns (uint32 version);
    /// keccak256(abi.encode(root, contributors, approvedTokens)) of a published version.
    function datanetVersionHash(bytes32 id, uint32 version) external view returns (bytes32);
}
