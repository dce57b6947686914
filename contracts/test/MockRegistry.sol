// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Stands in for Registry in the court's tests: only isOperator, set by anyone.
contract MockRegistry {
    mapping(address => bool) public isOperator;

    function setOperator(address operator, bool yes) external {
        isOperator[operator] = yes;
    }
}
