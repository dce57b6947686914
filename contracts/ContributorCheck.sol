// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Contributor} from "./FeeSplit.sol";
import {StakeCheck} from "./StakeCheck.sol";

/// @notice Whether a lineage entry's contributors in a receipt's inputs are exactly the Datanet version's as
/// Registry.publishVersion took them: as many, in the same (strictly ascending address) order, each party the
/// address as the node names chain parties (0x + 40 lowercase hex digits) with the published approvedTokens.
/// The ledger lists a version's contributors by party, which for such parties is ascending address order.
library ContributorCheck {
    function matches(Contributor[] memory cs, address[] calldata contributors, uint256[] calldata approvedTokens) internal pure returns (bool) {
        if (cs.length != contributors.length) return false;
        for (uint256 i = 0; i < cs.length; i++) {
            (bool ok, address a) = StakeCheck.partyAddress(cs[i].party);
            if (!ok || a != contributors[i] || cs[i].approvedTokens != approvedTokens[i]) return false;
        }
        return true;
    }
}
