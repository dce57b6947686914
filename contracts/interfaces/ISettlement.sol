// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Holds the token: agents' deposits (per operator), agents' stakes, stakes on models, operators' bonds;
/// takes operators' epoch posts and pays cumulative claims against them. See docs/chain.md.
interface ISettlement {
    struct Epoch {
        bytes32 receiptsRoot;
        uint64 firstReceipt;
        uint64 lastReceipt;
        bytes32 lastReceiptHash;
        bytes32 payoutRoot;
        uint64 postedAt;
        uint64 claimableAt;
        /// The epoch's batch (receipt bodies, signatures, token ids): BatchInbox's commitment of its bytes.
        bytes32 batchCommitment;
        /// Whether BatchInbox held all of it at the post (else it is announced as kept elsewhere, or withheld).
        bool batchOnChain;
    }

    event Deposited(address indexed operator, address indexed agent, uint256 amount);
    event WithdrawalRequested(address indexed operator, address indexed agent, uint256 amount, uint64 readyAt);
    event Withdrawn(address indexed operator, address indexed agent, uint256 amount);
    /// `total` is the agent's stake after the change.
    event AgentStakeChanged(address indexed agent, uint256 total);
    event AgentUnstakeRequested(address indexed agent, uint256 amount, uint64 readyAt);
    event AgentUnstaked(address indexed agent, uint256 amount);
    /// `total` is the staker's counting stake on the model after the change (an unstake request stops it counting);
    /// receipts split it from `from` (block time + the registry's termsDelay, like terms), `stakeAt` before.
    event StakeChanged(bytes32 indexed model, address indexed staker, uint256 total, uint64 from);
    event UnstakeRequested(bytes32 indexed model, address indexed staker, uint256 amount, uint64 readyAt);
    event Unstaked(bytes32 indexed model, address indexed staker, uint256 amount);
    event Bonded(address indexed operator, uint256 total);
    event EpochPosted(address indexed operator, uint64 indexed epoch, bytes32 receiptsRoot, uint64 firstReceipt, uint64 lastReceipt, bytes32 lastReceiptHash, bytes32 payoutRoot, uint64 claimableAt, bytes32 batchCommitment);
    event Claimed(address indexed operator, address indexed account, uint256 amount, uint256 cumulative);
    event Slashed(address indexed operator, address indexed challenger, uint256 slashed, uint256 reward);

    error NotOperator(address caller);
    error NotCourt(address caller);
    error ZeroAmount();
    error EpochAlreadyPosted(address operator, uint64 epoch);
    error EpochOutOfOrder(address operator, uint64 expected, uint64 got);
    error ReceiptsOutOfOrder(uint64 expectedFirst, uint64 got);
    error NoEpoch(address operator);
    error ChallengeWindowOpen(uint64 claimableAt);
    error InvalidProof();
    error NothingToClaim(address account, uint256 cumulative, uint256 claimed);
    error ExceedsDeposits(uint256 paidOut, uint256 amount, uint256 funded);
    error NoWithdrawalRequested(address agent);
    error WithdrawalNotReady(uint64 readyAt);
    error NoEpochSinceRequest(uint64 requestedAt);
    error WithdrawalExceedsUnspent(uint256 amount, uint256 unspent);
    error InsufficientStake(uint256 have, uint256 want);
    error UnbondingNotDone(uint64 readyAt);
    error BondLocked(uint64 unlockAt);

    function token() external view returns (address);
    function registry() external view returns (address);
    function court() external view returns (address);
    function challengeWindow() external view returns (uint64);
    function withdrawDelay() external view returns (uint64);
    function unbondingDelay() external view returns (uint64);

    function deposit(address operator, uint256 amount) external;
    function requestWithdrawal(address operator, uint256 amount) external;
    /// `committed`: the agent's cumulative spend + open reservations in the operator's latest payout root (leaf
    /// keccak256(bytes.concat(keccak256(abi.encode(uint8(1), agent, committed)))); that epoch must be posted after the
    /// request and the request older than withdrawDelay. Pays the requested amount if it is <= deposited - withdrawn
    /// - committed, else reverts WithdrawalExceedsUnspent.
    function withdraw(address operator, uint256 committed, bytes32[] calldata proof) external;

    function stakeAgent(uint256 amount) external;
    function requestAgentUnstake(uint256 amount) external;
    function completeAgentUnstake() external;
    function agentStake(address agent) external view returns (uint256);

    function stake(bytes32 model, uint256 amount) external;
    function requestUnstake(bytes32 model, uint256 amount) external;
    function completeUnstake(bytes32 model) external;
    /// The latest counting stake (possibly not in force yet: see stakeAt).
    function stakeOf(bytes32 model, address staker) external view returns (uint256);
    /// The counting stake a receipt of `time` (block seconds) splits by: the last change whose `from` ≤ time.
    function stakeAt(bytes32 model, address staker, uint64 time) external view returns (uint256);
    /// Σ stakeAt over every staker of the model.
    function modelStakeAt(bytes32 model, uint64 time) external view returns (uint256);
    /// The registry's termsDelay, read at construction.
    function termsDelay() external view returns (uint64);

    /// Where slashed bonds (less the challenger's reward) go; a receipt's inputs name it as the protocol's party.
    function treasury() external view returns (address);

    function bond(uint256 amount) external;
    function bondOf(address operator) external view returns (uint256);
    /// Only the ReceiptCourt: takes the operator's whole bond, pays `rewardBps` of it to the challenger, the rest
    /// to the treasury.
    function slash(address operator, address challenger) external returns (uint256 slashed);

    function postEpoch(uint64 epoch, bytes32 receiptsRoot, uint64 firstReceipt, uint64 lastReceipt, bytes32 lastReceiptHash, bytes32 payoutRoot, bytes32 batchCommitment) external;
    function lastEpoch(address operator) external view returns (uint64);
    function epochOf(address operator, uint64 epoch) external view returns (Epoch memory);

    /// Pays `cumulative - claimed(operator, account)` to `account` (anyone may send it); the proof is against the
    /// payout root of `epoch`, whose challenge window must have passed. Cumulative: one claim on the latest epoch
    /// covers all earlier ones. Leaf: keccak256(bytes.concat(keccak256(abi.encode(uint8(0), account, cumulative)))).
    function claim(address operator, uint64 epoch, address account, uint256 cumulative, bytes32[] calldata proof) external;
    function claimed(address operator, address account) external view returns (uint256);
    function deposited(address operator, address agent) external view returns (uint256);
    function paidOut(address operator) external view returns (uint256);
}
