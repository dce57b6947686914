// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {Developer, Lineage, ModelUse} from "./FeeSplit.sol";

// Whether a receipt's ModelUse is the registry's Terms, the way a node's ledger lists them
// (src/chain/follower.ts): prices equal; hasShares equal and, when set, the three bps equal; the
// developers equal as multisets of (party, share), a party being the lowercase 0x hex of the terms'
// address (Strings.toHexString), duplicates not merged (the ledger refuses a party listed twice);
// for a model without parents, the lineage equal as multisets of (Datanet, version, weight), an
// inputs key "name@version" naming Datanet keccak256(bytes(name)) and version the canonical decimal
// after the last "@" (an unparsable key matches nothing). A merged model's lineage (computed from its
// parents) is not compared; neither are stakers nor a lineage's contributors.
library TermsCheck {
    function matches(ModelUse memory m, IRegistry.Terms calldata t) internal pure returns (bool) {
        if (m.priceIn != t.priceIn || m.priceOut != t.priceOut || m.hasShares != t.hasShares) return false;
        if (t.hasShares && (m.developerBps != t.developerBps || m.stakerBps != t.stakerBps || m.dataBps != t.dataBps)) return false;
        if (!developersMatch(m.developers, t.developers)) return false;
        if (t.parents.length == 0 && !lineageMatch(m.lineage, t.lineage)) return false;
        return true;
    }

    function developersMatch(Developer[] memory ds, IRegistry.Developer[] calldata td) internal pure returns (bool) {
        uint256 n = td.length;
        if (ds.length != n) return false;
        bytes32[] memory parties = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) parties[i] = keccak256(bytes(ds[i].party));
        bool[] memory used = new bool[](n);
        for (uint256 j = 0; j < n; j++) {
            bytes32 p = keccak256(bytes(Strings.toHexString(td[j].party)));
            bool found;
            for (uint256 i = 0; i < n && !found; i++) {
                if (!used[i] && parties[i] == p && ds[i].share == td[j].share) (used[i], found) = (true, true);
            }
            if (!found) return false;
        }
        return true;
    }

    function lineageMatch(Lineage[] memory ls, IRegistry.LineageEntry[] calldata tl) internal pure returns (bool) {
        uint256 n = tl.length;
        if (ls.length != n) return false;
        bytes32[] memory ids = new bytes32[](n);
        uint256[] memory versions = new uint256[](n);
        for (uint256 i = 0; i < n; i++) (ids[i], versions[i]) = parseKey(ls[i].datanet);
        bool[] memory used = new bool[](n);
        for (uint256 j = 0; j < n; j++) {
            bool found;
            for (uint256 i = 0; i < n && !found; i++) {
                if (!used[i] && ids[i] == tl[j].datanet && versions[i] == tl[j].version && ls[i].weight == tl[j].weight) (used[i], found) = (true, true);
            }
            if (!found) return false;
        }
        return true;
    }

    // "name@version" → (keccak256(bytes(name)), version); version type(uint256).max (no uint32 equals it)
    // when there is no "@", no digits, a non-digit, a leading zero or more than 10 digits.
    function parseKey(string memory key) internal pure returns (bytes32 id, uint256 version) {
        bytes memory b = bytes(key);
        uint256 at = b.length;
        while (at > 0 && b[at - 1] != "@") at--;
        uint256 digits = b.length - at;
        if (at == 0 || digits == 0 || digits > 10 || (digits > 1 && b[at] == "0")) return (bytes32(0), type(uint256).max);
        for (uint256 k = at; k < b.length; k++) {
            uint8 c = uint8(b[k]);
            if (c < 48 || c > 57) return (bytes32(0), type(uint256).max);
            version = version * 10 + (c - 48);
        }
        uint256 len = at - 1;
        assembly { id := keccak256(add(b, 32), len) }
    }
}
