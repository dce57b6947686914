// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {FeeSplit, Inputs, Credit, Line} from "../FeeSplit.sol";

/// Exposes FeeSplit to eth_call (test/chain/fee-split.test.ts).
contract FeeSplitHarness {
    function split(Inputs calldata inputs, uint32 tokensIn, uint32 tokensOut, Credit[] calldata credits)
        external pure returns (uint256 total, Line[] memory lines)
    {
        return FeeSplit.split(inputs, tokensIn, tokensOut, credits);
    }

    function valid(Inputs calldata inputs) external pure returns (bool) {
        return FeeSplit.valid(inputs);
    }
}
