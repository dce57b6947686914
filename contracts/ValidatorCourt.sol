// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {BatchInbox} from "./BatchInbox.sol";
import {ISettlement} from "./interfaces/ISettlement.sol";
import {ReceiptCourt} from "./ReceiptCourt.sol";
import {Receipt} from "./ReceiptLib.sol";
import {Settlement} from "./Settlement.sol";

/// @notice The validator set and the disputes no contract can compute (docs/validators.md, docs/economics.md).
/// Validators stake the settlement token; a stake of at least minStake makes them eligible to attest epochs and to vote.
/// A replay dispute names one receipt of a posted epoch, signed by the operator and under the epoch's receiptsRoot,
/// whose output the challenger says the declared model does not produce; the validators vote with their stake as it
/// was one block before the dispute opened. A quorum (quorumBps of that block's total stake) for the fault, more than
/// against, upholds it: the operator's whole bond is slashed (the receipt's fee back to its agent, slashRewardBps of the
/// rest to the challenger, the remainder to the treasury), the challenger's bond comes back, and the operator is jailed
/// from that epoch (Settlement: those epochs never finalise, no more posts). A quorum against, at least as much as for,
/// rejects it: the challenger's bond goes to the treasury. Otherwise, at the vote's end, it lapses: the bond comes back.
/// A withheld dispute names an epoch whose batch BatchInbox did not hold at the post (kept on EigenDA, or nowhere); the
/// operator answers by publishing the whole batch to BatchInbox within answerWindow (the challenger's bond then pays
/// the operator for it), else the dispute is upheld as above, with no refund. While any dispute against an operator
/// is open, its epochs from the disputed one on are frozen (Settlement.freeze) and it posts no new epoch.
/// Disputes open only inside the epoch's challenge window.
contract ValidatorCourt is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using Checkpoints for Checkpoints.Trace208;

    enum Kind { Replay, Withheld }
    /// Answered: the withheld batch was published on chain.
    enum Outcome { None, Open, Upheld, Rejected, Lapsed, Answered }
    /// Disputed: frozen by an open dispute; Voided: a fault was upheld in it or an epoch before it (never finalises).
    enum EpochStatus { Pending, Disputed, Final, Voided }

    struct Params {
        /// The least stake that makes a validator eligible.
        uint128 minStake;
        /// What a challenger deposits with a dispute.
        uint128 challengeBond;
        /// Seconds a replay dispute's vote lasts.
        uint64 voteWindow;
        /// Seconds an operator has to publish a withheld batch.
        uint64 answerWindow;
        /// Seconds a validator's unstake waits.
        uint64 unbondingDelay;
        /// Of the total validator stake, the part a verdict needs (1..10000).
        uint16 quorumBps;
    }

    struct Dispute {
        address operator;
        uint64 epoch;
        Kind kind;
        Outcome outcome;
        address challenger;
        /// Votes count stake at block openedBlock - 1.
        uint64 openedBlock;
        uint64 deadline;
        uint128 bond;
        uint128 totalStake;
        uint128 yes;
        uint128 no;
        /// Replay: the receipt's EIP-712 digest, its id, its agent (0 when the agent is not an address) and fee.
        bytes32 receiptDigest;
        uint64 receiptId;
        address agent;
        uint256 fee;
    }

    struct Unbonding {
        uint128 amount;
        uint64 readyAt;
    }

    Settlement public immutable settlement;
    ReceiptCourt public immutable court;
    BatchInbox public immutable inbox;
    IERC20 public immutable token;
    uint128 public immutable minStake;
    uint128 public immutable challengeBond;
    uint64 public immutable voteWindow;
    uint64 public immutable answerWindow;
    uint64 public immutable unbondingDelay;
    uint16 public immutable quorumBps;

    /// Stakes by block number, so a vote counts the stake of the block before its dispute opened.
    mapping(address => Checkpoints.Trace208) private _stakes;
    Checkpoints.Trace208 private _totalStake;
    mapping(address => Unbonding) private _unbonding;

    Dispute[] private _disputes;
    mapping(uint256 => mapping(address => bool)) public voted;
    mapping(bytes32 => bool) public disputedReceipt;
    mapping(address => mapping(uint64 => bool)) public withheldDisputed;
    /// Open disputes per operator: its epochs stay frozen until none is left.
    mapping(address => uint256) public openDisputes;
    mapping(address => mapping(uint64 => mapping(address => bool))) public attested;
    mapping(address => mapping(uint64 => uint256)) public attestedStake;
    mapping(address => mapping(uint64 => uint256)) public attestations;

    event ValidatorStakeChanged(address indexed validator, uint256 total);
    event ValidatorUnstakeRequested(address indexed validator, uint256 amount, uint64 readyAt);
    event ValidatorUnstaked(address indexed validator, uint256 amount);
    event Attested(address indexed operator, uint64 indexed epoch, address indexed validator, uint256 stake);
    event DisputeOpened(
        uint256 indexed id, address indexed operator, uint64 indexed epoch, Kind kind, address challenger, bytes32 receiptDigest,
        uint64 receiptId, uint64 deadline
    );
    event Voted(uint256 indexed id, address indexed validator, bool fault, uint256 weight);
    event DisputeResolved(uint256 indexed id, address indexed operator, uint64 indexed epoch, Outcome outcome, uint256 yes, uint256 no);

    error InvalidParameters();
    error ZeroAmount();
    error InsufficientStake(uint256 have, uint256 want);
    error NothingUnbonding();
    error UnbondingNotDone(uint64 readyAt);
    error NotEligible(address validator, uint256 stake);
    error AlreadyAttested(address operator, uint64 epoch);
    /// The epoch's challenge window closed at `closedAt` (attestations and disputes are taken before).
    error WindowClosed(uint64 closedAt);
    error OperatorJailed(address operator, uint64 fromEpoch);
    error ReceiptNotInEpoch(uint64 id, uint64 firstReceipt, uint64 lastReceipt);
    error BadSignature();
    error SignerNotOperator(address signer, address operator);
    error NotInReceiptsRoot();
    error AlreadyDisputed(bytes32 key);
    error NoValidators();
    error BatchOnChain(address operator, uint64 epoch);
    error UnknownDispute(uint256 id);
    error DisputeClosed(uint256 id, Outcome outcome);
    error VoteClosed(uint64 deadline);
    error AlreadyVoted(uint256 id, address validator);
    error OperatorCannotVote(address operator);
    error NotReplayDispute(uint256 id);
    /// No verdict yet: the vote (or the answer window) runs until `deadline`.
    error Undecided(uint64 deadline);

    constructor(Settlement settlement_, ReceiptCourt court_, Params memory p) {
        if (p.quorumBps == 0 || p.quorumBps > 10000 || p.minStake == 0 || p.voteWindow == 0 || p.answerWindow == 0) revert InvalidParameters();
        settlement = settlement_;
        court = court_;
        inbox = BatchInbox(settlement_.inbox());
        token = IERC20(settlement_.token());
        minStake = p.minStake;
        challengeBond = p.challengeBond;
        voteWindow = p.voteWindow;
        answerWindow = p.answerWindow;
        unbondingDelay = p.unbondingDelay;
        quorumBps = p.quorumBps;
    }

    // ---- the validator set

    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        _setStake(msg.sender, stakeOf(msg.sender) + amount, totalStake() + amount);
    }

    /// Stops counting at once (votes of disputes opened later, attestations); leaves after unbondingDelay.
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 have = stakeOf(msg.sender);
        if (amount > have) revert InsufficientStake(have, amount);
        _setStake(msg.sender, have - amount, totalStake() - amount);
        Unbonding storage u = _unbonding[msg.sender];
        u.amount += amount.toUint128();
        u.readyAt = uint64(block.timestamp) + unbondingDelay;
        emit ValidatorUnstakeRequested(msg.sender, amount, u.readyAt);
    }

    function completeUnstake() external nonReentrant {
        Unbonding storage u = _unbonding[msg.sender];
        uint256 amount = u.amount;
        if (amount == 0) revert NothingUnbonding();
        if (block.timestamp < u.readyAt) revert UnbondingNotDone(u.readyAt);
        delete _unbonding[msg.sender];
        token.safeTransfer(msg.sender, amount);
        emit ValidatorUnstaked(msg.sender, amount);
    }

    function stakeOf(address validator) public view returns (uint256) {
        return _stakes[validator].latest();
    }

    function totalStake() public view returns (uint256) {
        return _totalStake.latest();
    }

    function stakeAtBlock(address validator, uint256 blockNumber) public view returns (uint256) {
        return _stakes[validator].upperLookupRecent(SafeCast.toUint48(blockNumber));
    }

    function totalStakeAtBlock(uint256 blockNumber) public view returns (uint256) {
        return _totalStake.upperLookupRecent(SafeCast.toUint48(blockNumber));
    }

    function unbondingOf(address validator) external view returns (Unbonding memory) {
        return _unbonding[validator];
    }

    function _setStake(address validator, uint256 total, uint256 all) private {
        uint48 at = SafeCast.toUint48(block.number);
        _stakes[validator].push(at, total.toUint208());
        _totalStake.push(at, all.toUint208());
        emit ValidatorStakeChanged(validator, total);
    }

    // ---- attestations

    /// The validator checked the epoch (every receipt, its replay sample) and found nothing wrong.
    function attest(address operator, uint64 epoch) external {
        uint256 s = stakeOf(msg.sender);
        if (s < minStake) revert NotEligible(msg.sender, s);
        _openWindow(operator, epoch);
        if (attested[operator][epoch][msg.sender]) revert AlreadyAttested(operator, epoch);
        attested[operator][epoch][msg.sender] = true;
        attestedStake[operator][epoch] += s;
        attestations[operator][epoch] += 1;
        emit Attested(operator, epoch, msg.sender, s);
    }

    function epochStatus(address operator, uint64 epoch) external view returns (EpochStatus) {
        uint64 jailed = settlement.jailedFrom(operator);
        if (jailed != 0 && epoch >= jailed) return EpochStatus.Voided;
        ISettlement.Epoch memory e = settlement.epochOf(operator, epoch);
        if (e.claimableAt == type(uint64).max) return EpochStatus.Disputed;
        return block.timestamp >= e.claimableAt ? EpochStatus.Final : EpochStatus.Pending;
    }

    // ---- disputes

    function challengeReplay(address operator, uint64 epoch, Receipt calldata receipt, bytes calldata signature, bytes32[] calldata proof)
        external
        nonReentrant
        returns (uint256 id)
    {
        bytes32 digest = _signedInEpoch(operator, epoch, receipt, signature, proof);
        if (disputedReceipt[digest]) revert AlreadyDisputed(digest);
        disputedReceipt[digest] = true;
        id = _open(operator, epoch, Kind.Replay, voteWindow, digest, receipt.id);
        (bool isAddress, address agent) = Strings.tryParseAddress(receipt.agent);
        Dispute storage d = _disputes[id];
        d.agent = isAddress ? agent : address(0);
        d.fee = receipt.fee;
    }

    /// The epoch's batch is not in BatchInbox (and was not at the post).
    function challengeWithheld(address operator, uint64 epoch) external nonReentrant returns (uint256 id) {
        ISettlement.Epoch memory e = _openWindow(operator, epoch);
        if (e.batchOnChain || inbox.available(operator, e.batchCommitment)) revert BatchOnChain(operator, epoch);
        if (withheldDisputed[operator][epoch]) revert AlreadyDisputed(bytes32(uint256(epoch)));
        withheldDisputed[operator][epoch] = true;
        id = _open(operator, epoch, Kind.Withheld, answerWindow, bytes32(0), 0);
    }

    function vote(uint256 id, bool fault) external {
        Dispute storage d = _dispute(id);
        if (d.outcome != Outcome.Open) revert DisputeClosed(id, d.outcome);
        if (d.kind != Kind.Replay) revert NotReplayDispute(id);
        if (block.timestamp >= d.deadline) revert VoteClosed(d.deadline);
        if (msg.sender == d.operator) revert OperatorCannotVote(msg.sender);
        if (voted[id][msg.sender]) revert AlreadyVoted(id, msg.sender);
        uint256 w = stakeAtBlock(msg.sender, d.openedBlock - 1);
        if (w < minStake) revert NotEligible(msg.sender, w);
        voted[id][msg.sender] = true;
        if (fault) d.yes += w.toUint128();
        else d.no += w.toUint128();
        emit Voted(id, msg.sender, fault, w);
    }

    /// Anyone may call it once the verdict is decided: a majority of all the stake (that meets the quorum) decides
    /// before the deadline; otherwise the deadline ends the vote.
    function resolve(uint256 id) external nonReentrant returns (Outcome outcome) {
        Dispute storage d = _dispute(id);
        if (d.outcome != Outcome.Open) revert DisputeClosed(id, d.outcome);
        outcome = d.kind == Kind.Replay ? _verdict(d) : _answer(d);
        if (outcome == Outcome.Open) revert Undecided(d.deadline);
        d.outcome = outcome;
        address operator = d.operator;
        if (outcome == Outcome.Upheld) {
            settlement.jail(operator, d.epoch);
            settlement.slashFor(operator, d.challenger, d.agent, d.fee);
            token.safeTransfer(d.challenger, d.bond);
        } else if (outcome == Outcome.Rejected) {
            token.safeTransfer(settlement.treasury(), d.bond);
        } else if (outcome == Outcome.Answered) {
            token.safeTransfer(operator, d.bond);
        } else {
            token.safeTransfer(d.challenger, d.bond);
        }
        if (--openDisputes[operator] == 0) settlement.release(operator);
        emit DisputeResolved(id, operator, d.epoch, outcome, d.yes, d.no);
    }

    function disputeCount() external view returns (uint256) {
        return _disputes.length;
    }

    function disputeOf(uint256 id) external view returns (Dispute memory) {
        return _dispute(id);
    }

    // ---- internals

    function _verdict(Dispute storage d) private view returns (Outcome) {
        uint256 total = d.totalStake;
        uint256 q = (total * quorumBps + 9999) / 10000;
        (uint256 yes, uint256 no) = (d.yes, d.no);
        if (yes >= q && 2 * yes > total) return Outcome.Upheld;
        if (no >= q && 2 * no >= total) return Outcome.Rejected;
        if (block.timestamp < d.deadline) return Outcome.Open;
        if (yes >= q && yes > no) return Outcome.Upheld;
        if (no >= q && no >= yes) return Outcome.Rejected;
        return Outcome.Lapsed;
    }

    function _answer(Dispute storage d) private view returns (Outcome) {
        ISettlement.Epoch memory e = settlement.epochOf(d.operator, d.epoch);
        if (inbox.available(d.operator, e.batchCommitment)) return Outcome.Answered;
        return block.timestamp < d.deadline ? Outcome.Open : Outcome.Upheld;
    }

    /// The receipt's digest, when it is in the epoch's range, signed by the operator, and under its receiptsRoot.
    function _signedInEpoch(address operator, uint64 epoch, Receipt calldata receipt, bytes calldata signature, bytes32[] calldata proof)
        private
        view
        returns (bytes32 digest)
    {
        ISettlement.Epoch memory e = _openWindow(operator, epoch);
        if (receipt.id < e.firstReceipt || receipt.id > e.lastReceipt) revert ReceiptNotInEpoch(receipt.id, e.firstReceipt, e.lastReceipt);
        digest = court.receiptDigest(receipt);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert BadSignature();
        if (signer != operator || receipt.node != operator) revert SignerNotOperator(signer, operator);
        if (!MerkleProof.verifyCalldata(proof, e.receiptsRoot, digest)) revert NotInReceiptsRoot();
    }

    function _open(address operator, uint64 epoch, Kind kind, uint64 window, bytes32 digest, uint64 receiptId) private returns (uint256 id) {
        uint256 total = totalStakeAtBlock(block.number - 1);
        if (kind == Kind.Replay && total == 0) revert NoValidators();
        if (challengeBond > 0) token.safeTransferFrom(msg.sender, address(this), challengeBond);
        id = _disputes.length;
        _disputes.push();
        Dispute storage d = _disputes[id];
        d.operator = operator;
        d.epoch = epoch;
        d.kind = kind;
        d.outcome = Outcome.Open;
        d.challenger = msg.sender;
        d.openedBlock = uint64(block.number);
        d.deadline = uint64(block.timestamp) + window;
        d.bond = challengeBond;
        d.totalStake = total.toUint128();
        d.receiptDigest = digest;
        d.receiptId = receiptId;
        openDisputes[operator] += 1;
        settlement.freeze(operator, epoch);
        emit DisputeOpened(id, operator, epoch, kind, msg.sender, digest, receiptId, d.deadline);
    }

    /// The epoch, when it is posted, its operator not jailed for it, and its challenge window open.
    function _openWindow(address operator, uint64 epoch) private view returns (ISettlement.Epoch memory e) {
        e = settlement.epochOf(operator, epoch);
        uint64 jailed = settlement.jailedFrom(operator);
        if (jailed != 0 && epoch >= jailed) revert OperatorJailed(operator, jailed);
        uint64 closes = e.postedAt + settlement.challengeWindow();
        if (block.timestamp >= closes) revert WindowClosed(closes);
    }

    function _dispute(uint256 id) private view returns (Dispute storage) {
        if (id >= _disputes.length) revert UnknownDispute(id);
        return _disputes[id];
    }
}
