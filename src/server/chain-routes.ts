/**
 * A node on a chain, over HTTP: its chain status, and any party's claim proof — what the party
 * sends to Settlement.claim (or an agent to Settlement.withdraw) itself; the node sends nothing.
 */
import type { FastifyInstance } from "fastify";
import { getAddress, isAddress, type Address } from "viem";
import { COMMITTED, EARNINGS } from "../chain/payout-tree.js";
import { OpenLoraError, isOpenLoraError, quoted } from "../errors.js";
import type { EngineSlot } from "./context.js";
import { invalidArgument } from "./http-errors.js";
import { wire } from "./ledger-routes-parse.js";

export function registerChainRoutes(app: FastifyInstance, slot: EngineSlot): void {
  const node = () => {
    if (!slot.chain) throw new OpenLoraError("NOT_READY", slot.state === "ready" ? "This node is not on a chain (start it with --chain or --dev-chain)." : "The chain connection is not up yet.");
    return slot.chain;
  };

  app.get("/v1/chain", async () => wire(node().status()));

  app.get<{ Params: { account: string } }>("/v1/chain/claims/:account", async (request) => {
    const chain = node();
    const raw = request.params.account;
    if (!isAddress(raw, { strict: false })) throw invalidArgument("account", `account must be a 0x address, got ${quoted(raw)}.`);
    const account: Address = getAddress(raw);
    const ledger = slot.attribution!.ledger;
    const proof = (kind: typeof EARNINGS | typeof COMMITTED) => {
      try {
        return wire(ledger.chain.claimProof(account, kind));
      } catch (e) {
        if (isOpenLoraError(e, "CLAIM_NOT_FOUND")) return null;
        throw e;
      }
    };
    const earned = proof(EARNINGS);
    const committed = proof(COMMITTED);
    if (earned === null && committed === null) throw new OpenLoraError("CLAIM_NOT_FOUND", `${account} has nothing in a posted payout root of this node yet.`);
    const s = chain.status();
    return { chainId: s.chainId, settlement: s.contracts.settlement, operator: s.operator, account, earned, committed };
  });
}
