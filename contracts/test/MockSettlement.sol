// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Stands in for Settlement in the court's tests: bonds and stakes set by anyone (stakes in force at every time),
/// slash only by the court, every call recorded.
contract MockSettlement {
    struct Slash { address operator; address challenger; uint256 amount; }

    address public court;
    mapping(address => uint256) public bondOf;
    Slash[] public slashes;

    mapping(bytes32 => mapping(address => uint256)) private _stakes;
    mapping(bytes32 => uint256) private _modelStakes;

    error NotCourt(address caller);

    function setStake(bytes32 model, address staker, uint256 stake, uint256 modelTotal) external {
        _stakes[model][staker] = stake;
        _modelStakes[model] = modelTotal;
    }

    function stakeAt(bytes32 model, address staker, uint64) external view returns (uint256) {
        return _stakes[model][staker];
    }

    function modelStakeAt(bytes32 model, uint64) external view returns (uint256) {
        return _modelStakes[model];
    }

    address public treasury;

    function setTreasury(address treasury_) external {
        treasury = treasury_;
    }

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
