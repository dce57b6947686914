// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IRegistry} from "../interfaces/IRegistry.sol";

/// Stands in for Registry in the court's tests and bench: isOperator, one terms hash per model and Datanet version hashes, set by anyone.
contract MockRegistry {
    mapping(address => bool) public isOperator;

    mapping(bytes32 => bytes32) public termsHash;

    /// One version of terms per model, in force at every time (enough for the court's tests and bench).
    function setTermsHash(bytes32 id, bytes32 hash) external {
        termsHash[id] = hash;
    }

    function termsAt(bytes32 id, uint64) external view returns (bytes32, uint32) {
        bytes32 h = termsHash[id];
        return (h, h == bytes32(0) ? 0 : 1);
    }

    mapping(address => IRegistry.FeePolicy) private _policy;

    /// One policy per operator, in force at every time; an operator never set has none (version 0).
    function setPolicy(address operator, IRegistry.FeePolicy calldata p) external {
        _policy[operator] = p;
    }

    function policyAt(address operator, uint64) external view returns (IRegistry.FeePolicy memory, uint32) {
        IRegistry.FeePolicy memory p = _policy[operator];
        return (p, p.developerBps + p.stakerBps + p.dataBps == 0 ? 0 : 1);
    }

    mapping(bytes32 => mapping(uint32 => bytes32)) private _versionHash;

    /// A published Datanet version's hash (Registry's keccak256(abi.encode(root, contributors, approvedTokens))).
    function setDatanetVersionHash(bytes32 id, uint32 version, bytes32 hash) external {
        _versionHash[id][version] = hash;
    }

    /// Reverts for a version never set, as Registry does.
    function datanetVersionHash(bytes32 id, uint32 version) external view returns (bytes32) {
        bytes32 h = _versionHash[id][version];
        require(h != bytes32(0), "unknown version");
        return h;
    }

    /// Every version applies from time 0 here.
    function termsFrom(bytes32, uint32) external pure returns (uint64) {
        return 0;
    }

    function setOperator(address operator, bool yes) external {
        isOperator[operator] = yes;
    }
}
