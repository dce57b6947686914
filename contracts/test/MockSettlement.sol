// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Stands in for Settlement in the court's tests: bonds set by anyone, slash only by the court, every call recorded.
contract MockSettlement {
    struct Slash { address operator; address challenger; uint256 amount; }

    address public court;
    mapping(address => uint256) public bondOf;
    Slash[] public slashes;

    error NotCourt(address caller);

    function setCourt(address court_) external {
        court = court_;
    }

    function setBond(address operator, uint256 amount) external {
        bondOf[operator] = amount;
    }

    function slash(address operator, address challenger) external returns (uint256 slashed) {
        if (msg.sender != court) revert NotCourt(msg.sender);
        slashed = bondOf[operator];
        bondOf[operator] = 0;
        slashes.push(Slash(operator, challenger, slashed));
    }

    function slashCount() external view returns (uint256) {
        return slashes.length;
    }
}
