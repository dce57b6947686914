// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice Data availability in the chain's own calldata. A publisher sends a batch as chunks, in order; the
/// bytes stay in the transactions' calldata (found through ChunkPublished), the contract keeps only a running
/// hash, so once the last chunk lands `available(publisher, commitment)` says on chain that the whole batch was
/// published. commitment = h_n where h_0 = 0 and h_i = keccak256(abi.encode(h_{i-1}, keccak256(chunk_i))), over
/// chunks of MAX_CHUNK bytes but the last (src/da/commitment.ts). A batch kept elsewhere (an EigenDA blob) is
/// announced with its certificate instead (BatchStored); the commitment is the same function of its bytes.
contract BatchInbox {
    uint256 public constant MAX_CHUNK = 96_000;

    struct Progress {
        bytes32 running;
        uint32 next;
    }

    mapping(address => mapping(bytes32 => Progress)) private _progress;
    mapping(address => mapping(bytes32 => bool)) public available;

    event ChunkPublished(address indexed publisher, bytes32 indexed commitment, uint32 index, uint32 count);
    event BatchStored(address indexed publisher, bytes32 indexed commitment, bytes certificate);

    error AlreadyAvailable(bytes32 commitment);
    error BadChunkIndex(uint32 index, uint32 count);
    error ChunkOutOfOrder(uint32 expected, uint32 got);
    /// Every chunk but the last is MAX_CHUNK bytes; none is empty or longer.
    error BadChunkLength(uint256 length);
    error CommitmentMismatch(bytes32 published, bytes32 commitment);

    /// Chunk `index` of `count` of the batch committed to by `commitment`.
    function publish(bytes32 commitment, uint32 index, uint32 count, bytes calldata chunk) external {
        if (available[msg.sender][commitment]) revert AlreadyAvailable(commitment);
        if (index >= count) revert BadChunkIndex(index, count);
        bool last = index + 1 == count;
        if (chunk.length == 0 || chunk.length > MAX_CHUNK || (!last && chunk.length != MAX_CHUNK)) revert BadChunkLength(chunk.length);
        Progress storage p = _progress[msg.sender][commitment];
        if (index != p.next) revert ChunkOutOfOrder(p.next, index);
        bytes32 running = keccak256(abi.encode(p.running, keccak256(chunk)));
        emit ChunkPublished(msg.sender, commitment, index, count);
        if (last) {
            if (running != commitment) revert CommitmentMismatch(running, commitment);
            delete _progress[msg.sender][commitment];
            available[msg.sender][commitment] = true;
        } else {
            (p.running, p.next) = (running, index + 1);
        }
    }

    /// The next chunk index a publication of `commitment` by `publisher` expects (0 before its first).
    function progressOf(address publisher, bytes32 commitment) external view returns (uint32) {
        return _progress[publisher][commitment].next;
    }

    /// Says where a batch kept off this chain is (for EigenDA: the certificate its proxy's /put answered).
    function announce(bytes32 commitment, bytes calldata certificate) external {
        emit BatchStored(msg.sender, commitment, certificate);
    }
}
