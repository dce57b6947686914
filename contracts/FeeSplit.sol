// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// The structs of a version 2 receipt's split (src/attribution/receipt-abi.ts encodes the same).
/// role: 0 protocol, 1 operator, 2 developer, 3 staker, 4 data; datanet is "" except on data lines.
struct Line { string party; uint8 role; string model; string datanet; uint256 amount; }
struct Policy { uint16 protocolBps; uint16 operatorBps; uint16 developerBps; uint16 stakerBps; uint16 dataBps; uint16 lambdaBps; }
struct Developer { string party; uint256 share; }
struct Staker { string party; uint256 stake; }
struct Contributor { string party; uint64 approvedTokens; }
struct Lineage { string datanet; uint256 weight; Contributor[] contributors; }
struct ModelUse {
    string model;
    uint256 priceIn;
    uint256 priceOut;
    Developer[] developers;
    Staker[] stakers;
    Lineage[] lineage;
    bool hasShares;
    uint16 developerBps;
    uint16 stakerBps;
    uint16 dataBps;
}
struct Inputs { Policy policy; string treasury; string operator; ModelUse[] models; }
struct Credit { string datanet; string contributor; uint32 matchedTokens; }

/// @notice An exact port of splitFee (src/attribution/fees.ts): every recipient's share of F_m as a
/// reduced rational, F_m handed out by largest remainder (ties to the lower index), recipients in the
/// order role, Datanet, party. Strings compare bytewise, which is the TypeScript UTF-16 order for ASCII
/// and for any text without characters outside the BMP (surrogate pairs sort differently).
/// Bound: every share's reduced numerator and denominator, and the products taken to add and multiply
/// them, must be below 2^256, else SplitOverflow. The denominator of a share divides about
/// 10^12 · Σstake · Σlineage weight · Σmatched · Σdeveloper share · Π_d(Σapproved_d · matched_d) of its
/// model; the largest remainder step itself never overflows (512-bit products).
library FeeSplit {
    error SplitOverflow();
    error InvalidSplitInput();

    uint256 private constant BPS = 10_000;
    uint256 private constant MAX_COUNT = 2 ** 53 - 1; // the TypeScript side's safe integers

    struct Q { uint256 n; uint256 d; }
    struct Recipient { uint8 role; string party; string datanet; bytes32 key; Q share; }
    struct Acc { Recipient[] items; uint256 len; }

    /// Whether splitFee accepts these inputs (it throws otherwise: no honest node signs them).
    function valid(Inputs memory inp) internal pure returns (bool) {
        Policy memory p = inp.policy;
        if (p.protocolBps > BPS || p.operatorBps > BPS || p.lambdaBps > BPS || uint256(p.protocolBps) + p.operatorBps > BPS) return false;
        if (!sharesOk(p.developerBps, p.stakerBps, p.dataBps)) return false;
        for (uint256 i = 0; i < inp.models.length; i++) {
            ModelUse memory m = inp.models[i];
            if (m.hasShares && !sharesOk(m.developerBps, m.stakerBps, m.dataBps)) return false;
            bool dev;
            for (uint256 j = 0; j < m.developers.length; j++) if (m.developers[j].share > 0) dev = true;
            if (!dev) return false;
            for (uint256 j = 0; j < m.lineage.length; j++) {
                Contributor[] memory cs = m.lineage[j].contributors;
                for (uint256 k = 0; k < cs.length; k++) if (cs[k].approvedTokens > MAX_COUNT) return false;
            }
        }
        return true;
    }

    /// F = Σ_m F_m and the lines, per model in input order, zero amounts left out.
    function split(Inputs memory inp, uint256 tokensIn, uint256 tokensOut, Credit[] memory credits)
        internal pure returns (uint256 total, Line[] memory lines)
    {
        if (!valid(inp)) revert InvalidSplitInput();
        uint256 cap;
        for (uint256 i = 0; i < inp.models.length; i++) cap += capacity(inp.models[i], credits.length);
        lines = new Line[](cap);
        uint256 n;
        for (uint256 i = 0; i < inp.models.length; i++) {
            ModelUse memory m = inp.models[i];
            uint256 fee = addc(mulc(tokensIn, m.priceIn), mulc(tokensOut, m.priceOut));
            total = addc(total, fee);
            Recipient[] memory rs = modelShares(m, inp, credits);
            n = payOut(m.model, fee, rs, lines, n);
        }
        assembly { mstore(lines, n) }
    }

    /// F = Σ_m tokensIn·priceIn_m + tokensOut·priceOut_m.
    function totalFee(Inputs memory inp, uint256 tokensIn, uint256 tokensOut) internal pure returns (uint256 total) {
        for (uint256 i = 0; i < inp.models.length; i++) {
            total = addc(total, addc(mulc(tokensIn, inp.models[i].priceIn), mulc(tokensOut, inp.models[i].priceOut)));
        }
    }

    function sharesOk(uint16 a, uint16 b, uint16 c) private pure returns (bool) {
        return uint256(a) + b + c == BPS;
    }

    function capacity(ModelUse memory m, uint256 credits) private pure returns (uint256 c) {
        c = 2 + m.developers.length + m.stakers.length + credits;
        for (uint256 j = 0; j < m.lineage.length; j++) c += m.lineage[j].contributors.length;
    }

    // ---- one model's shares ----------------------------------------------------------------------

    function modelShares(ModelUse memory m, Inputs memory inp, Credit[] memory credits) private pure returns (Recipient[] memory rs) {
        Policy memory p = inp.policy;
        Acc memory acc = Acc(new Recipient[](capacity(m, credits.length)), 0);
        put(acc, 0, inp.treasury, "", q(p.protocolBps, BPS));
        put(acc, 1, inp.operator, "", q(p.operatorBps, BPS));
        Q memory net = q(BPS - p.protocolBps - p.operatorBps, BPS);
        (uint256 devBps, uint256 stkBps, uint256 dataBps) = (p.developerBps, p.stakerBps, p.dataBps);
        if (m.hasShares) (devBps, stkBps, dataBps) = (m.developerBps, m.stakerBps, m.dataBps);
        Q memory developerMass = mul(net, q(devBps, BPS));
        developerMass = add(developerMass, stakerShares(m, mul(net, q(stkBps, BPS)), acc));
        developerMass = add(developerMass, dataShares(m, mul(net, q(dataBps, BPS)), p.lambdaBps, credits, acc));
        developerShares(m, developerMass, acc);
        rs = acc.items;
        uint256 len = acc.len;
        assembly { mstore(rs, len) }
        sort(rs);
    }

    /// The stakers' shares; with no stake the whole mass is returned (it goes to the developers).
    function stakerShares(ModelUse memory m, Q memory stakeMass, Acc memory acc) private pure returns (Q memory unpaid) {
        uint256 totalStake;
        for (uint256 j = 0; j < m.stakers.length; j++) totalStake = addc(totalStake, m.stakers[j].stake);
        if (totalStake == 0) return stakeMass;
        for (uint256 j = 0; j < m.stakers.length; j++) put(acc, 3, m.stakers[j].party, "", mul(stakeMass, q(m.stakers[j].stake, totalStake)));
        return q(0, 1);
    }

    function developerShares(ModelUse memory m, Q memory developerMass, Acc memory acc) private pure {
        uint256 totalDev;
        for (uint256 j = 0; j < m.developers.length; j++) totalDev = addc(totalDev, m.developers[j].share);
        for (uint256 j = 0; j < m.developers.length; j++) put(acc, 2, m.developers[j].party, "", mul(developerMass, q(m.developers[j].share, totalDev)));
    }

    struct DataCtx { Q dataMass; Q lambda; Q lambdaM; uint256 totalLineage; uint256 totalSpan; }

    /// The data contributors' shares; returns the mass that found no recipient (it goes to the developers).
    function dataShares(ModelUse memory m, Q memory dataMass, uint256 lambdaBps, Credit[] memory credits, Acc memory acc) private pure returns (Q memory leftover) {
        DataCtx memory x = DataCtx(dataMass, q(lambdaBps, BPS), q(0, 1), 0, 0);
        for (uint256 j = 0; j < m.lineage.length; j++) {
            x.totalLineage = addc(x.totalLineage, m.lineage[j].weight);
            if (firstOf(m.lineage, j)) x.totalSpan = addc(x.totalSpan, spanOf(credits, m.lineage[j].datanet));
        }
        if (x.totalSpan > 0) x.lambdaM = x.lambda;
        leftover = q(0, 1);
        if (x.totalLineage == 0) leftover = mul(dataMass, oneMinus(x.lambdaM));
        for (uint256 j = 0; j < m.lineage.length; j++) {
            if (firstOf(m.lineage, j)) leftover = add(leftover, datanetShares(m.lineage, j, x, credits, acc));
        }
    }

    /// Datanet lineage[j] (merged with its later duplicates): its contributors' shares; returns its unpaid approved mass.
    function datanetShares(Lineage[] memory lin, uint256 j, DataCtx memory x, Credit[] memory credits, Acc memory acc) private pure returns (Q memory leftover) {
        string memory d = lin[j].datanet;
        (uint256 weight, uint256 totalApproved) = datanetTotals(lin, j);
        uint256 spanD = spanOf(credits, d);
        Q memory w = q(0, 1);
        if (x.totalLineage > 0) w = add(w, mul(oneMinus(x.lambdaM), q(weight, x.totalLineage)));
        if (x.totalSpan > 0) w = add(w, mul(x.lambdaM, q(spanD, x.totalSpan)));
        leftover = q(0, 1);
        if (w.n == 0) return leftover;
        Q memory massD = mul(x.dataMass, w);
        Q memory lambdaD = spanD > 0 ? x.lambda : q(0, 1);
        Q memory approvedMass = mul(massD, oneMinus(lambdaD));
        if (totalApproved == 0) leftover = approvedMass;
        else payApproved(lin, j, approvedMass, totalApproved, acc);
        if (spanD > 0) payMatched(credits, d, mul(massD, lambdaD), spanD, acc);
    }

    function datanetTotals(Lineage[] memory lin, uint256 j) private pure returns (uint256 weight, uint256 totalApproved) {
        bytes32 dk = keccak256(bytes(lin[j].datanet));
        for (uint256 k = j; k < lin.length; k++) {
            if (keccak256(bytes(lin[k].datanet)) != dk) continue;
            weight = addc(weight, lin[k].weight);
            for (uint256 c = 0; c < lin[k].contributors.length; c++) totalApproved = addc(totalApproved, lin[k].contributors[c].approvedTokens);
        }
    }

    function payApproved(Lineage[] memory lin, uint256 j, Q memory approvedMass, uint256 totalApproved, Acc memory acc) private pure {
        string memory d = lin[j].datanet;
        bytes32 dk = keccak256(bytes(d));
        for (uint256 k = j; k < lin.length; k++) {
            if (keccak256(bytes(lin[k].datanet)) != dk) continue;
            Contributor[] memory cs = lin[k].contributors;
            for (uint256 c = 0; c < cs.length; c++) put(acc, 4, cs[c].party, d, mul(approvedMass, q(cs[c].approvedTokens, totalApproved)));
        }
    }

    function payMatched(Credit[] memory credits, string memory d, Q memory matchedMass, uint256 spanD, Acc memory acc) private pure {
        bytes32 dk = keccak256(bytes(d));
        for (uint256 c = 0; c < credits.length; c++) {
            if (keccak256(bytes(credits[c].datanet)) == dk) put(acc, 4, credits[c].contributor, d, mul(matchedMass, q(credits[c].matchedTokens, spanD)));
        }
    }

    function firstOf(Lineage[] memory l, uint256 j) private pure returns (bool) {
        bytes32 k = keccak256(bytes(l[j].datanet));
        for (uint256 i = 0; i < j; i++) if (keccak256(bytes(l[i].datanet)) == k) return false;
        return true;
    }

    function spanOf(Credit[] memory credits, string memory d) private pure returns (uint256 s) {
        bytes32 k = keccak256(bytes(d));
        for (uint256 c = 0; c < credits.length; c++) if (keccak256(bytes(credits[c].datanet)) == k) s += credits[c].matchedTokens;
    }

    /// Adds `share` to the recipient (role, datanet, party), creating it; zero shares are left out.
    function put(Acc memory acc, uint8 role, string memory party, string memory datanet, Q memory share) private pure {
        if (share.n == 0) return;
        bytes32 key = keccak256(abi.encode(role, datanet, party));
        for (uint256 i = 0; i < acc.len; i++) {
            if (acc.items[i].key == key) {
                acc.items[i].share = add(acc.items[i].share, share);
                return;
            }
        }
        acc.items[acc.len++] = Recipient(role, party, datanet, key, share);
    }

    function sort(Recipient[] memory rs) private pure {
        for (uint256 i = 1; i < rs.length; i++) {
            Recipient memory x = rs[i];
            uint256 j = i;
            while (j > 0 && before(x, rs[j - 1])) {
                rs[j] = rs[j - 1];
                j--;
            }
            rs[j] = x;
        }
    }

    function before(Recipient memory a, Recipient memory b) private pure returns (bool) {
        if (a.role != b.role) return a.role < b.role;
        int256 c = cmp(bytes(a.datanet), bytes(b.datanet));
        if (c != 0) return c < 0;
        return cmp(bytes(a.party), bytes(b.party)) < 0;
    }

    function cmp(bytes memory a, bytes memory b) private pure returns (int256) {
        uint256 n = a.length < b.length ? a.length : b.length;
        for (uint256 i = 0; i < n; i++) if (a[i] != b[i]) return uint8(a[i]) < uint8(b[i]) ? int256(-1) : int256(1);
        return a.length < b.length ? int256(-1) : a.length > b.length ? int256(1) : int256(0);
    }

    // ---- largest remainder -----------------------------------------------------------------------

    /// floor(fee·n_i/d_i) each, then one unit to each of the largest remainders (r_i/d_i compared
    /// exactly), ties to the lower index: the TypeScript distribute over the shares brought to their
    /// common denominator, without forming that denominator.
    function payOut(string memory model, uint256 fee_, Recipient[] memory rs, Line[] memory lines, uint256 n) private pure returns (uint256) {
        uint256[] memory amounts = new uint256[](rs.length);
        uint256[] memory rems = new uint256[](rs.length);
        uint256 given;
        for (uint256 i = 0; i < rs.length; i++) {
            amounts[i] = Math.mulDiv(fee_, rs[i].share.n, rs[i].share.d);
            rems[i] = mulmod(fee_, rs[i].share.n, rs[i].share.d);
            given += amounts[i];
        }
        bool[] memory got = new bool[](rs.length);
        for (uint256 left = fee_ - given; left > 0; left--) {
            uint256 best = type(uint256).max;
            for (uint256 i = 0; i < rs.length; i++) {
                if (got[i]) continue;
                if (best == type(uint256).max || greater(rems[i], rs[i].share.d, rems[best], rs[best].share.d)) best = i;
            }
            got[best] = true;
            amounts[best] += 1;
        }
        for (uint256 i = 0; i < rs.length; i++) {
            if (amounts[i] == 0) continue;
            lines[n++] = Line(rs[i].party, rs[i].role, model, rs[i].datanet, amounts[i]);
        }
        return n;
    }

    /// a/b > c/d, by 512-bit products a·d and c·b.
    function greater(uint256 a, uint256 b, uint256 c, uint256 d) private pure returns (bool) {
        (uint256 h1, uint256 l1) = mul512(a, d);
        (uint256 h2, uint256 l2) = mul512(c, b);
        return h1 > h2 || (h1 == h2 && l1 > l2);
    }

    function mul512(uint256 a, uint256 b) private pure returns (uint256 hi, uint256 lo) {
        assembly {
            let mm := mulmod(a, b, not(0))
            lo := mul(a, b)
            hi := sub(sub(mm, lo), lt(mm, lo))
        }
    }

    // ---- exact rationals, reduced ----------------------------------------------------------------

    function gcd(uint256 a, uint256 b) private pure returns (uint256) {
        while (b != 0) (a, b) = (b, a % b);
        return a;
    }

    function q(uint256 n, uint256 d) private pure returns (Q memory) {
        if (n == 0) return Q(0, 1);
        uint256 g = gcd(n, d);
        return Q(n / g, d / g);
    }

    function mul(Q memory a, Q memory b) private pure returns (Q memory) {
        if (a.n == 0 || b.n == 0) return Q(0, 1);
        uint256 g1 = gcd(a.n, b.d);
        uint256 g2 = gcd(b.n, a.d);
        return Q(mulc(a.n / g1, b.n / g2), mulc(a.d / g2, b.d / g1));
    }

    function add(Q memory a, Q memory b) private pure returns (Q memory) {
        if (a.n == 0) return b;
        if (b.n == 0) return a;
        uint256 g = gcd(a.d, b.d);
        return q(addc(mulc(a.n, b.d / g), mulc(b.n, a.d / g)), mulc(a.d, b.d / g));
    }

    /// 1 − a, for 0 ≤ a ≤ 1.
    function oneMinus(Q memory a) private pure returns (Q memory) {
        return q(a.d - a.n, a.d);
    }

    function mulc(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            if (a == 0) return 0;
            uint256 c = a * b;
            if (c / a != b) revert SplitOverflow();
            return c;
        }
    }

    function addc(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            uint256 c = a + b;
            if (c < a) revert SplitOverflow();
            return c;
        }
    }
}
