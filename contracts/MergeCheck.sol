// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IRegistry} from "./interfaces/IRegistry.sol";
import {Lineage} from "./FeeSplit.sol";
import {TermsCheck} from "./TermsCheck.sol";

/// @notice A merged model's lineage as the node computes it from its parents' (src/ledger/models.ts mergedLineage):
/// Σ_p (w_p / Σw) · (l_pd / Σ_d l_pd) per Datanet version over the parents with terms (a parent without terms
/// then, or without lineage, adds nothing), exact, then the smallest integers with the same ratios; a merged
/// parent's lineage is its own merge, normalised the same way (RegistryCourt recurses). Compared with a receipt's
/// as multisets of (Datanet, version, weight), an inputs key parsed as TermsCheck.parseKey does. The arithmetic is
/// checked: weights so large that a product overflows revert (not provable here).
library MergeCheck {
    /// A lineage: weight n/d per Datanet version (ids[i], versions[i]); d is 1 once normalised; `len` in use.
    struct Acc { bytes32[] ids; uint256[] versions; uint256[] n; uint256[] d; uint256 len; }

    /// A plain model's lineage as its registry terms list it.
    function ofEntries(IRegistry.LineageEntry[] calldata lin) internal pure returns (Acc memory a) {
        a = Acc(new bytes32[](lin.length), new uint256[](lin.length), new uint256[](lin.length), new uint256[](lin.length), lin.length);
        for (uint256 k = 0; k < lin.length; k++) (a.ids[k], a.versions[k], a.n[k], a.d[k]) = (lin[k].datanet, lin[k].version, lin[k].weight, 1);
    }

    /// The merged lineage of `parents` (weights w_p), parent j's lineage `lins[j]` (integer weights) when
    /// `counted[j]`: Σ_p (w_p / Σw) · (l_pd / Σ_d l_pd), as the smallest integers with the same ratios.
    function merge(IRegistry.Parent[] calldata parents, Acc[] memory lins, bool[] memory counted) internal pure returns (Acc memory a) {
        uint256 cap;
        for (uint256 j = 0; j < parents.length; j++) if (counted[j]) cap += lins[j].len;
        a = Acc(new bytes32[](cap), new uint256[](cap), new uint256[](cap), new uint256[](cap), 0);
        uint256 totalW;
        for (uint256 j = 0; j < parents.length; j++) totalW += parents[j].weight;
        for (uint256 j = 0; j < parents.length; j++) if (counted[j]) addParent(a, parents[j].weight, totalW, lins[j]);
        normalise(a);
    }

    /// Whether the receipt's lineage `ls` is `a` as a multiset of (Datanet, version, weight).
    function matches(Lineage[] memory ls, Acc memory a) internal pure returns (bool) {
        if (ls.length != a.len) return false;
        bool[] memory used = new bool[](a.len);
        for (uint256 i = 0; i < ls.length; i++) {
            (bytes32 id, uint256 version) = TermsCheck.parseKey(ls[i].datanet);
            bool found;
            for (uint256 j = 0; j < a.len && !found; j++) {
                if (!used[j] && a.ids[j] == id && a.versions[j] == version && a.n[j] == ls[i].weight) (used[j], found) = (true, true);
            }
            if (!found) return false;
        }
        return true;
    }

    /// Adds (w / totalW) · (l_d / Σ_d l_d) for each entry of one parent's lineage (nothing when Σ_d l_d is 0).
    function addParent(Acc memory a, uint256 w, uint256 totalW, Acc memory lin) private pure {
        uint256 totalL;
        for (uint256 k = 0; k < lin.len; k++) totalL += lin.n[k];
        if (totalL == 0) return;
        for (uint256 k = 0; k < lin.len; k++) add(a, lin.ids[k], lin.versions[k], w * lin.n[k], totalW * totalL);
    }

    function normalise(Acc memory a) private pure {
        // Drop zero weights, then scale every n/d to integers with the same ratios and divide by their gcd.
        uint256 m;
        uint256 lcm = 1;
        for (uint256 i = 0; i < a.len; i++) {
            if (a.n[i] == 0) continue;
            (a.ids[m], a.versions[m], a.n[m], a.d[m]) = (a.ids[i], a.versions[i], a.n[i], a.d[i]);
            lcm = (lcm / gcd(lcm, a.d[m])) * a.d[m];
            m++;
        }
        a.len = m;
        uint256 g;
        for (uint256 i = 0; i < m; i++) {
            a.n[i] = a.n[i] * (lcm / a.d[i]);
            a.d[i] = 1;
            g = gcd(g, a.n[i]);
        }
        for (uint256 i = 0; i < m; i++) a.n[i] /= g;
    }

    function add(Acc memory a, bytes32 id, uint256 version, uint256 n, uint256 d) private pure {
        for (uint256 i = 0; i < a.len; i++) {
            if (a.ids[i] == id && a.versions[i] == version) {
                (uint256 n2, uint256 d2) = (a.n[i] * d + n * a.d[i], a.d[i] * d);
                uint256 g = gcd(n2, d2);
                (a.n[i], a.d[i]) = (n2 / g, d2 / g);
                return;
            }
        }
        uint256 g0 = gcd(n, d);
        (a.ids[a.len], a.versions[a.len], a.n[a.len], a.d[a.len]) = (id, version, n / g0, d / g0);
        a.len++;
    }

    function gcd(uint256 x, uint256 y) private pure returns (uint256) {
        while (y != 0) (x, y) = (y, x % y);
        return x;
    }
}
