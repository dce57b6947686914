// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Stands in for Registry in the court's tests and bench: isOperator and one terms hash per model, set by anyone.
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

    function setOperator(address operator, bool yes) external {
        isOperator[operator] = yes;
    }
}
