/**
 * `serve --dev-chain`'s chain across restarts (prepareChain): the state persists, so a second start
 * reuses the deployment; a contracts file naming code that is not this build's is deployed afresh.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANVIL_KEYS, freePort } from "../../src/chain/anvil.js";
import { prepareChain } from "../../src/cli/serve-chain.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir("openlora-dev-chain-");
let saved: string | undefined;
beforeAll(() => { saved = process.env.OPENLORA_CACHE; process.env.OPENLORA_CACHE = dir; });
afterAll(() => { if (saved === undefined) delete process.env.OPENLORA_CACHE; else process.env.OPENLORA_CACHE = saved; });

describe("the dev chain across restarts", () => {
  it("reuses this build's deployment and deploys afresh over another build's", async () => {
    const port = await freePort();
    const logs: string[] = [];
    const start = () => prepareChain({ chain: undefined, contracts: undefined, devChain: true, devChainPort: port }, ANVIL_KEYS[1]!, (m) => logs.push(m));
    const first = (await start())!;
    await first.stop!();
    expect(logs.filter((l) => l.includes("deployed the contracts"))).toHaveLength(1);
    const second = (await start())!;
    await second.stop!();
    expect(second.deployment.settlement).toBe(first.deployment.settlement);
    expect(logs.filter((l) => l.includes("deployed the contracts"))).toHaveLength(1);
    // The file now names a court that is not ReceiptCourt (as after an upgrade of the contracts).
    const file = join(dir, "dev-chain", "contracts.json");
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), court: first.deployment.token }));
    const third = (await start())!;
    await third.stop!();
    expect(logs.filter((l) => l.includes("deployed the contracts"))).toHaveLength(2);
    expect(third.deployment.settlement).not.toBe(first.deployment.settlement);
  }, 120_000);
});
