// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice The ERC-20 of tests and of `serve --dev-chain`: anyone may mint. Production deploys name a real token.
contract TestToken is ERC20 {
    constructor() ERC20("openlora test token", "OLT") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
