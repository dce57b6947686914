// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {BatchInbox} from "./BatchInbox.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";

/// @notice ISettlement. The deployer calls `setCourt` and `setDisputes` once each. Rules beyond the interface (docs/chain.md):
/// deposits and bonds only to registered operators; epochs may be empty (lastReceipt == firstReceipt - 1), the first
/// epoch of an operator may start at any receipt >= 1; bonds leave through requestUnbond/withdrawBond; the token must
/// move exact amounts (no fee-on-transfer tokens). The disputes contract (ValidatorCourt) freezes an operator's epochs
/// from a disputed one on while a dispute is open (their claimableAt is type(uint64).max, so a claim still reads one
/// slot), releases them when its disputes close, and on a fault it upholds jails the operator: the frozen epochs from
/// the faulty one on never finalise, the operator posts no more epochs, and its agents withdraw against the last
/// epoch before the faulty one.
contract Settlement is ISettlement, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using Checkpoints for Checkpoints.Trace208;

    error NotDeployer(address caller);
    error CourtAlreadySet(address court);
    error ZeroAddress();
    error InvalidParameters();
    error InvalidReceiptRange(uint64 firstReceipt, uint64 lastReceipt);
    error NothingUnbonding();
    error PayoutRootNotTruncated(bytes32 payoutRoot);
    error DisputesAlreadySet(address disputes);
    error NotDisputes(address caller);
    /// A dispute against the operator is open: it posts again once its disputes close.
    error OperatorDisputed(address operator, uint64 frozenFrom);
    /// A dispute upheld a fault in epoch `fromEpoch`: that epoch and those after it never finalise.
    error OperatorJailed(address operator, uint64 fromEpoch);
    error EpochDisputed(address operator, uint64 epoch);

    event CourtSet(address court);
    event DisputesSet(address disputes);
    /// Epochs `fromEpoch`..`toEpoch` no longer finalise until released.
    event EpochsFrozen(address indexed operator, uint64 fromEpoch, uint64 toEpoch);
    event EpochsReleased(address indexed operator, uint64 fromEpoch, uint64 toEpoch);
    event OperatorJailedFrom(address indexed operator, uint64 fromEpoch);
    event UnbondRequested(address indexed operator, uint256 amount, uint64 unlockAt);
    event BondWithdrawn(address indexed operator, uint256 amount);

    /// Laid out so a claim reads one slot: a payout root is 192 bits (its low 64 are zero, see postEpoch), packed
    /// with the time claims open.
    struct StoredEpoch {
        bytes24 payoutRoot;
        uint64 claimableAt;
        uint64 firstReceipt;
        uint64 lastReceipt;
        uint64 postedAt;
        /// Whether BatchInbox held the whole batch when the epoch was posted (calldata data availability).
        bool batchOnChain;
        bytes32 receiptsRoot;
        bytes32 lastReceiptHash;
        bytes32 batchCommitment;
    }

    /// Per operator, one slot: what its agents funded (deposits - withdrawals) and what claims paid.
    struct Book {
        uint128 funded;
        uint128 paidOut;
    }

    struct OperatorChain {
        uint64 lastEpoch;
        uint64 lastReceipt;
        uint64 lastClaimableAt;
        /// The first epoch frozen by an open dispute; 0 when none is.
        uint64 frozenFrom;
    }

    struct WithdrawalRequest {
        uint128 amount;
        uint64 readyAt;
        uint64 requestedAt;
        uint64 epochAtRequest;
    }

    struct Unbonding {
        uint128 amount;
        uint64 readyAt;
    }

    struct BondState {
        uint128 active;
        uint128 unbonding;
        uint64 unlockAt;
    }

    address public immutable override token;
    address public immutable override registry;
    address public immutable treasury;
    address public immutable inbox;
    address public immutable deployer;
    uint64 public immutable override challengeWindow;
    uint64 public immutable override withdrawDelay;
    uint64 public immutable override unbondingDelay;
    uint16 public immutable slashRewardBps;
    uint64 public immutable override termsDelay;
    address public override court;
    /// ValidatorCourt: may freeze, release and jail, and slash through slashFor.
    address public disputes;
    /// The first epoch of the operator's that a dispute found faulty; 0 when none.
    mapping(address => uint64) public jailedFrom;

    mapping(address => mapping(address => uint256)) public override deposited;
    mapping(address => mapping(address => uint256)) public withdrawn;
    mapping(address => mapping(address => WithdrawalRequest)) private _withdrawals;
    mapping(address => Book) private _books;
    mapping(address => OperatorChain) private _chains;
    mapping(address => mapping(uint64 => StoredEpoch)) private _epochs;
    mapping(address => mapping(address => uint256)) public override claimed;

    mapping(address => uint256) public override agentStake;
    mapping(address => Unbonding) private _agentUnbonding;
    /// Stakes on models as histories keyed by the time they count from (block time + termsDelay), so a
    /// receipt's stakers are provable at its time (ReceiptCourt.proveBadStakers).
    mapping(bytes32 => mapping(address => Checkpoints.Trace208)) private _stakes;
    mapping(bytes32 => Checkpoints.Trace208) private _modelStakes;
    mapping(bytes32 => mapping(address => Unbonding)) private _modelUnbonding;
    mapping(address => BondState) private _bonds;

    constructor(
        address token_,
        address registry_,
        address inbox_,
        address treasury_,
        uint64 challengeWindow_,
        uint64 withdrawDelay_,
        uint64 unbondingDelay_,
        uint16 slashRewardBps_
    ) {
        if (token_ == address(0) || registry_ == address(0) || inbox_ == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (slashRewardBps_ > 10000) revert InvalidParameters();
        token = token_;
        registry = registry_;
        inbox = inbox_;
        treasury = treasury_;
        deployer = msg.sender;
        challengeWindow = challengeWindow_;
        withdrawDelay = withdrawDelay_;
        unbondingDelay = unbondingDelay_;
        slashRewardBps = slashRewardBps_;
        termsDelay = IRegistry(registry_).termsDelay();
    }

    function setCourt(address court_) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (court != address(0)) revert CourtAlreadySet(court);
        if (court_ == address(0)) revert ZeroAddress();
        court = court_;
        emit CourtSet(court_);
    }

    function setDisputes(address disputes_) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (disputes != address(0)) revert DisputesAlreadySet(disputes);
        if (disputes_ == address(0)) revert ZeroAddress();
        disputes = disputes_;
        emit DisputesSet(disputes_);
    }

    // ---- deposits and withdrawals

    function deposit(address operator, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _requireOperator(operator);
        if (jailedFrom[operator] != 0) revert OperatorJailed(operator, jailedFrom[operator]);
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        deposited[operator][msg.sender] += amount;
        _books[operator].funded += amount.toUint128();
        emit Deposited(operator, msg.sender, amount);
    }

    /// A new request replaces the pending one (and restarts its delay).
    function requestWithdrawal(address operator, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 unspent = deposited[operator][msg.sender] - withdrawn[operator][msg.sender];
        if (amount > unspent) revert WithdrawalExceedsUnspent(amount, unspent);
        uint64 readyAt = uint64(block.timestamp) + withdrawDelay;
        _withdrawals[operator][msg.sender] = WithdrawalRequest({
            amount: amount.toUint128(),
            readyAt: readyAt,
            requestedAt: uint64(block.timestamp),
            epochAtRequest: _chains[operator].lastEpoch
        });
        emit WithdrawalRequested(operator, msg.sender, amount, readyAt);
    }

    function withdraw(address operator, uint256 committed, bytes32[] calldata proof) external nonReentrant {
        WithdrawalRequest memory r = _withdrawals[operator][msg.sender];
        if (r.amount == 0) revert NoWithdrawalRequested(msg.sender);
        if (block.timestamp < r.readyAt) revert WithdrawalNotReady(r.readyAt);
        uint64 jailed = jailedFrom[operator];
        if (jailed == 0) {
            uint64 latest = _chains[operator].lastEpoch;
            if (latest == r.epochAtRequest) revert NoEpochSinceRequest(r.requestedAt);
            if (!_proves(proof, _epochs[operator][latest].payoutRoot, 1, msg.sender, committed)) revert InvalidProof();
        } else if (jailed > 1) {
            // A jailed operator posts no more: what counts is the last epoch before the faulty one.
            if (!_proves(proof, _epochs[operator][jailed - 1].payoutRoot, 1, msg.sender, committed)) revert InvalidProof();
        } else if (committed != 0) {
            revert InvalidProof();
        }
        uint256 unspent = _sub0(deposited[operator][msg.sender] - withdrawn[operator][msg.sender], committed);
        Book storage b = _books[operator];
        // Never below what claims already paid from this operator's pool.
        uint256 free = uint256(b.funded) - b.paidOut;
        if (free < unspent) unspent = free;
        if (r.amount > unspent) revert WithdrawalExceedsUnspent(r.amount, unspent);
        delete _withdrawals[operator][msg.sender];
        withdrawn[operator][msg.sender] += r.amount;
        b.funded -= r.amount;
        IERC20(token).safeTransfer(msg.sender, r.amount);
        emit Withdrawn(operator, msg.sender, r.amount);
    }

    function withdrawalOf(address operator, address agent) external view returns (WithdrawalRequest memory) {
        return _withdrawals[operator][agent];
    }

    // ---- agent stakes

    function stakeAgent(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 total = agentStake[msg.sender] + amount;
        agentStake[msg.sender] = total;
        emit AgentStakeChanged(msg.sender, total);
    }

    /// Stops counting at once; adds to the pending unbonding (whose delay restarts).
    function requestAgentUnstake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 have = agentStake[msg.sender];
        if (amount > have) revert InsufficientStake(have, amount);
        agentStake[msg.sender] = have - amount;
        Unbonding storage u = _agentUnbonding[msg.sender];
        u.amount += amount.toUint128();
        u.readyAt = uint64(block.timestamp) + unbondingDelay;
        emit AgentStakeChanged(msg.sender, have - amount);
        emit AgentUnstakeRequested(msg.sender, amount, u.readyAt);
    }

    function completeAgentUnstake() external nonReentrant {
        uint256 amount = _release(_agentUnbonding[msg.sender]);
        IERC20(token).safeTransfer(msg.sender, amount);
        emit AgentUnstaked(msg.sender, amount);
    }

    function agentUnbonding(address agent) external view returns (Unbonding memory) {
        return _agentUnbonding[agent];
    }

    // ---- stakes on models

    function stake(bytes32 model, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        IRegistry(registry).modelOwner(model); // reverts UnknownModel
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        _setStake(model, msg.sender, stakeOf(model, msg.sender) + amount, modelStake(model) + amount);
    }

    function requestUnstake(bytes32 model, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 have = stakeOf(model, msg.sender);
        if (amount > have) revert InsufficientStake(have, amount);
        _setStake(model, msg.sender, have - amount, modelStake(model) - amount);
        Unbonding storage u = _modelUnbonding[model][msg.sender];
        u.amount += amount.toUint128();
        u.readyAt = uint64(block.timestamp) + unbondingDelay;
        emit UnstakeRequested(model, msg.sender, amount, u.readyAt);
    }

    function stakeOf(bytes32 model, address staker) public view override returns (uint256) {
        return _stakes[model][staker].latest();
    }

    /// The latest total counting stake on the model (possibly not in force yet).
    function modelStake(bytes32 model) public view returns (uint256) {
        return _modelStakes[model].latest();
    }

    function stakeAt(bytes32 model, address staker, uint64 time) external view override returns (uint256) {
        return _stakes[model][staker].upperLookupRecent(SafeCast.toUint48(time));
    }

    function modelStakeAt(bytes32 model, uint64 time) external view override returns (uint256) {
        return _modelStakes[model].upperLookupRecent(SafeCast.toUint48(time));
    }

    function _setStake(bytes32 model, address staker, uint256 total, uint256 modelTotal) private {
        uint64 from = uint64(block.timestamp) + termsDelay;
        _stakes[model][staker].push(SafeCast.toUint48(from), total.toUint208());
        _modelStakes[model].push(SafeCast.toUint48(from), modelTotal.toUint208());
        emit StakeChanged(model, staker, total, from);
    }

    function completeUnstake(bytes32 model) external nonReentrant {
        uint256 amount = _release(_modelUnbonding[model][msg.sender]);
        IERC20(token).safeTransfer(msg.sender, amount);
        emit Unstaked(model, msg.sender, amount);
    }

    function modelUnbonding(bytes32 model, address staker) external view returns (Unbonding memory) {
        return _modelUnbonding[model][staker];
    }

    // ---- operators' bonds

    function bond(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _requireOperator(msg.sender);
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        BondState storage s = _bonds[msg.sender];
        s.active += amount.toUint128();
        emit Bonded(msg.sender, uint256(s.active) + s.unbonding);
    }

    /// Unbonding stays slashable: it leaves after max(challengeWindow, unbondingDelay) and only once every epoch the
    /// operator posted is past its challenge window.
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        BondState storage s = _bonds[msg.sender];
        if (amount > s.active) revert InsufficientStake(s.active, amount);
        s.active -= amount.toUint128();
        s.unbonding += amount.toUint128();
        uint64 delay = challengeWindow > unbondingDelay ? challengeWindow : unbondingDelay;
        s.unlockAt = uint64(block.timestamp) + delay;
        emit UnbondRequested(msg.sender, amount, s.unlockAt);
    }

    function withdrawBond() external nonReentrant {
        BondState storage s = _bonds[msg.sender];
        uint256 amount = s.unbonding;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < s.unlockAt) revert BondLocked(s.unlockAt);
        OperatorChain storage c = _chains[msg.sender];
        if (c.frozenFrom != 0) revert BondLocked(type(uint64).max);
        uint64 lastOpen = c.lastClaimableAt;
        if (block.timestamp < lastOpen) revert BondLocked(lastOpen);
        s.unbonding = 0;
        IERC20(token).safeTransfer(msg.sender, amount);
        emit BondWithdrawn(msg.sender, amount);
        emit Bonded(msg.sender, s.active);
    }

    /// Active + unbonding: all of it is slashable.
    function bondOf(address operator) external view returns (uint256) {
        BondState storage s = _bonds[operator];
        return uint256(s.active) + s.unbonding;
    }

    function bondState(address operator) external view returns (BondState memory) {
        return _bonds[operator];
    }

    /// An operator without a bond is slashed for 0 (no revert, so the court's verdict still lands).
    function slash(address operator, address challenger) external nonReentrant returns (uint256 slashed) {
        if (msg.sender != court) revert NotCourt(msg.sender);
        return _slash(operator, challenger, address(0), 0);
    }

    /// The disputes contract's slash: the whole bond; first up to `refund` of it to `refundTo` (the agent a faulty
    /// answer was sold to), then slashRewardBps of the rest to the challenger, the remainder to the treasury.
    function slashFor(address operator, address challenger, address refundTo, uint256 refund)
        external
        nonReentrant
        returns (uint256 slashed)
    {
        if (msg.sender != disputes) revert NotDisputes(msg.sender);
        return _slash(operator, challenger, refundTo, refund);
    }

    function _slash(address operator, address challenger, address refundTo, uint256 refund) private returns (uint256 slashed) {
        BondState storage s = _bonds[operator];
        slashed = uint256(s.active) + s.unbonding;
        s.active = 0;
        s.unbonding = 0;
        if (refundTo == address(0)) refund = 0;
        else if (refund > slashed) refund = slashed;
        if (refund > 0) IERC20(token).safeTransfer(refundTo, refund);
        uint256 reward = ((slashed - refund) * slashRewardBps) / 10000;
        if (reward > 0) IERC20(token).safeTransfer(challenger, reward);
        if (slashed > refund + reward) IERC20(token).safeTransfer(treasury, slashed - refund - reward);
        emit Slashed(operator, challenger, slashed, reward);
        emit Bonded(operator, 0);
    }

    // ---- disputes (ValidatorCourt)

    /// Freezes `epoch` and every later epoch of the operator (each is younger, so still in its window).
    function freeze(address operator, uint64 epoch) external {
        if (msg.sender != disputes) revert NotDisputes(msg.sender);
        OperatorChain storage c = _chains[operator];
        if (epoch == 0 || epoch > c.lastEpoch) revert NoEpoch(operator);
        if (c.frozenFrom != 0 && c.frozenFrom <= epoch) return;
        uint64 to = c.frozenFrom == 0 ? c.lastEpoch : c.frozenFrom - 1;
        for (uint64 n = epoch; n <= to; n++) _epochs[operator][n].claimableAt = type(uint64).max;
        c.frozenFrom = epoch;
        emit EpochsFrozen(operator, epoch, to);
    }

    /// Ends the freeze: the frozen epochs before the jailed one (all of them when not jailed) open for claims at the
    /// end of their own window, or now when it has passed.
    function release(address operator) external {
        if (msg.sender != disputes) revert NotDisputes(msg.sender);
        OperatorChain storage c = _chains[operator];
        uint64 from = c.frozenFrom;
        if (from == 0) return;
        uint64 jailed = jailedFrom[operator];
        uint64 to = jailed == 0 ? c.lastEpoch : jailed - 1;
        uint64 latestOpen = c.lastClaimableAt;
        for (uint64 n = from; n <= to; n++) {
            StoredEpoch storage e = _epochs[operator][n];
            uint64 at = e.postedAt + challengeWindow;
            if (at < block.timestamp) at = uint64(block.timestamp);
            e.claimableAt = at;
            if (at > latestOpen) latestOpen = at;
        }
        c.lastClaimableAt = latestOpen;
        c.frozenFrom = 0;
        if (from <= to) emit EpochsReleased(operator, from, to);
    }

    function jail(address operator, uint64 epoch) external {
        if (msg.sender != disputes) revert NotDisputes(msg.sender);
        uint64 j = jailedFrom[operator];
        if (j != 0 && j <= epoch) return;
        jailedFrom[operator] = epoch;
        emit OperatorJailedFrom(operator, epoch);
    }

    function frozenFrom(address operator) external view returns (uint64) {
        return _chains[operator].frozenFrom;
    }

    // ---- epochs and claims

    function postEpoch(
        uint64 epoch,
        bytes32 receiptsRoot,
        uint64 firstReceipt,
        uint64 lastReceipt,
        bytes32 lastReceiptHash,
        bytes32 payoutRoot,
        bytes32 batchCommitment
    ) external {
        _requireOperator(msg.sender);
        OperatorChain storage c = _chains[msg.sender];
        if (c.frozenFrom != 0) revert OperatorDisputed(msg.sender, c.frozenFrom);
        if (jailedFrom[msg.sender] != 0) revert OperatorJailed(msg.sender, jailedFrom[msg.sender]);
        uint64 expected = c.lastEpoch + 1;
        if (epoch < expected) revert EpochAlreadyPosted(msg.sender, epoch);
        if (epoch > expected) revert EpochOutOfOrder(msg.sender, expected, epoch);
        if (c.lastEpoch == 0) {
            if (firstReceipt == 0) revert ReceiptsOutOfOrder(1, firstReceipt);
        } else if (firstReceipt != c.lastReceipt + 1) {
            revert ReceiptsOutOfOrder(c.lastReceipt + 1, firstReceipt);
        }
        if (lastReceipt < firstReceipt - 1) revert InvalidReceiptRange(firstReceipt, lastReceipt);
        if (bytes32(bytes24(payoutRoot)) != payoutRoot) revert PayoutRootNotTruncated(payoutRoot);
        uint64 claimableAt = uint64(block.timestamp) + challengeWindow;
        _epochs[msg.sender][epoch] = StoredEpoch({
            payoutRoot: bytes24(payoutRoot),
            claimableAt: claimableAt,
            firstReceipt: firstReceipt,
            lastReceipt: lastReceipt,
            postedAt: uint64(block.timestamp),
            batchOnChain: BatchInbox(inbox).available(msg.sender, batchCommitment),
            receiptsRoot: receiptsRoot,
            lastReceiptHash: lastReceiptHash,
            batchCommitment: batchCommitment
        });
        c.lastEpoch = epoch;
        c.lastReceipt = lastReceipt;
        c.lastClaimableAt = claimableAt;
        emit EpochPosted(msg.sender, epoch, receiptsRoot, firstReceipt, lastReceipt, lastReceiptHash, payoutRoot, claimableAt, batchCommitment);
    }

    function lastEpoch(address operator) external view returns (uint64) {
        return _chains[operator].lastEpoch;
    }

    /// The last receipt of the operator's latest epoch (0 before its first).
    function lastReceiptOf(address operator) external view returns (uint64) {
        return _chains[operator].lastReceipt;
    }

    function epochOf(address operator, uint64 epoch) external view returns (Epoch memory) {
        StoredEpoch storage e = _epochs[operator][epoch];
        if (e.postedAt == 0) revert NoEpoch(operator);
        return Epoch({
            receiptsRoot: e.receiptsRoot,
            firstReceipt: e.firstReceipt,
            lastReceipt: e.lastReceipt,
            lastReceiptHash: e.lastReceiptHash,
            payoutRoot: bytes32(e.payoutRoot),
            postedAt: e.postedAt,
            claimableAt: e.claimableAt,
            batchCommitment: e.batchCommitment,
            batchOnChain: e.batchOnChain
        });
    }

    function claim(address operator, uint64 epoch, address account, uint256 cumulative, bytes32[] calldata proof)
        external
        nonReentrant
    {
        {
            StoredEpoch storage e = _epochs[operator][epoch];
            (bytes24 root, uint64 claimableAt) = (e.payoutRoot, e.claimableAt);
            // claimableAt = postedAt + challengeWindow > 0 for every posted epoch.
            if (claimableAt == 0) revert NoEpoch(operator);
            if (block.timestamp < claimableAt) {
                if (claimableAt == type(uint64).max) revert EpochDisputed(operator, epoch);
                revert ChallengeWindowOpen(claimableAt);
            }
            if (!_proves(proof, root, 0, account, cumulative)) revert InvalidProof();
        }
        uint256 before = claimed[operator][account];
        if (cumulative <= before) revert NothingToClaim(account, cumulative, before);
        uint256 amount = cumulative - before;
        Book storage b = _books[operator];
        (uint256 funded, uint256 paid) = (b.funded, b.paidOut);
        if (paid + amount > funded) revert ExceedsDeposits(paid, amount, funded);
        claimed[operator][account] = cumulative;
        b.paidOut = (paid + amount).toUint128();
        IERC20(token).safeTransfer(account, amount);
        emit Claimed(operator, account, amount, cumulative);
    }

    function paidOut(address operator) external view returns (uint256) {
        return _books[operator].paidOut;
    }

    /// Deposits - withdrawals of all the operator's agents: what its claims may pay out in total.
    function funded(address operator) external view returns (uint256) {
        return _books[operator].funded;
    }

    // ---- internals

    /// Whether `proof` leads from the leaf keccak256(keccak256(abi.encode(kind, account, amount))) to a node whose high
    /// 192 bits are `root`, pairs hashed in sorted order: OpenZeppelin's MerkleProof.verifyCalldata and the tree of
    /// src/chain/payout-tree.ts, written out because a claim pays for every step of it (~1.3k less for 14 hashes).
    function _proves(bytes32[] calldata proof, bytes24 root, uint8 kind, address account, uint256 amount)
        private
        pure
        returns (bool ok)
    {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, kind)
            mstore(add(m, 0x20), account)
            mstore(add(m, 0x40), amount)
            mstore(0x00, keccak256(m, 0x60))
            let h := keccak256(0x00, 0x20)
            for {
                let p := proof.offset
                let end := add(p, shl(5, proof.length))
            } lt(p, end) {
                p := add(p, 0x20)
            } {
                let s := calldataload(p)
                switch lt(h, s)
                case 1 {
                    mstore(0x00, h)
                    mstore(0x20, s)
                }
                default {
                    mstore(0x00, s)
                    mstore(0x20, h)
                }
                h := keccak256(0x00, 0x40)
            }
            ok := eq(and(h, not(0xffffffffffffffff)), root)
        }
    }

    function _requireOperator(address operator) private view {
        if (!IRegistry(registry).isOperator(operator)) revert NotOperator(operator);
    }

    function _release(Unbonding storage u) private returns (uint256 amount) {
        amount = u.amount;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < u.readyAt) revert UnbondingNotDone(u.readyAt);
        delete u.amount;
        delete u.readyAt;
    }

    function _sub0(uint256 a, uint256 b) private pure returns (uint256) {
        return a > b ? a - b : 0;
    }
}
