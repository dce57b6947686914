// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IRegistry} from "./interfaces/IRegistry.sol";

/// @notice One ERC-1155 licence per model or adapter, token id uint256(modelId). The model's owner (per Registry,
/// read at each call, so an owner change would follow) mints licences and sets a price in the settlement token;
/// anyone buys at that price, paid straight to the owner. Price 0 = not for sale.
contract Licence is ERC1155, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    error NotModelOwner(bytes32 id, address caller);
    error NotForSale(bytes32 id);
    error ZeroAmount();

    event PriceSet(bytes32 indexed id, uint256 price);
    event Bought(bytes32 indexed id, address indexed buyer, uint256 amount, uint256 paid);

    IRegistry public immutable registry;
    IERC20 public immutable token;
    mapping(bytes32 => uint256) public priceOf;

    constructor(address registry_, address token_) ERC1155("") {
        registry = IRegistry(registry_);
        token = IERC20(token_);
    }

    function mint(bytes32 id, address to, uint256 amount) external {
        _onlyOwner(id);
        if (amount == 0) revert ZeroAmount();
        _mint(to, uint256(id), amount, "");
    }

    function setPrice(bytes32 id, uint256 price) external {
        _onlyOwner(id);
        priceOf[id] = price;
        emit PriceSet(id, price);
    }

    function buy(bytes32 id, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 price = priceOf[id];
        if (price == 0) revert NotForSale(id);
        uint256 cost = price * amount;
        token.safeTransferFrom(msg.sender, registry.modelOwner(id), cost);
        emit Bought(id, msg.sender, amount, cost);
        _mint(msg.sender, uint256(id), amount, "");
    }

    function _onlyOwner(bytes32 id) private view {
        if (registry.modelOwner(id) != msg.sender) revert NotModelOwner(id, msg.sender);
    }
}
