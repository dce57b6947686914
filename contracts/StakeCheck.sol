// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ISettlement} from "./interfaces/ISettlement.sol";
import {Staker} from "./FeeSplit.sol";

/// @notice Whether a model's stakers in a receipt's inputs are exactly Settlement's at the receipt's time: each
/// party an address as the node names chain parties (0x + 40 lowercase hex digits), in strictly ascending
/// order, each with its positive stakeAt, and together the model's whole modelStakeAt (so nobody left out).
library StakeCheck {
    function matches(Staker[] memory stakers, ISettlement settlement, bytes32 model, uint64 time) internal view returns (bool) {
        uint256 sum;
        address prev;
        for (uint256 i = 0; i < stakers.length; i++) {
            (bool ok, address a) = partyAddress(stakers[i].party);
            if (!ok || (i > 0 && a <= prev)) return false;
            uint256 st = stakers[i].stake;
            if (st == 0 || st != settlement.stakeAt(model, a, time)) return false;
            sum += st;
            prev = a;
        }
        return sum == settlement.modelStakeAt(model, time);
    }

    /// The address a party string names: "0x" and 40 lowercase hex digits, nothing else.
    function partyAddress(string memory party) internal pure returns (bool ok, address a) {
        bytes memory b = bytes(party);
        if (b.length != 42 || b[0] != "0" || b[1] != "x") return (false, address(0));
        uint160 v;
        for (uint256 i = 2; i < 42; i++) {
            uint8 c = uint8(b[i]);
            uint8 d;
            if (c >= 48 && c <= 57) d = c - 48;
            else if (c >= 97 && c <= 102) d = c - 87;
            else return (false, address(0));
            v = (v << 4) | d;
        }
        return (true, address(v));
    }
}
