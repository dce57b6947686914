import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { keccak256, stringToHex, type Hex } from "viem";
import { describe, expect, it } from "vitest";
import type { FeePolicy } from "../../src/attribution/types.js";
import { Ledger } from "../../src/ledger/index.js";
import { tempDir } from "../helpers/tmp.js";

const KEY: Hex = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const POLICY: FeePolicy = { protocolBps: 500, operatorBps: 2500, developerBps: 5000, stakerBps: 2000, dataBps: 3000, lambdaBps: 4000 };
const ROOT = resolve(import.meta.dirname, "../..");
const dir = tempDir("openlora-crash-");
const h = (s: string): Hex => keccak256(stringToHex(s));

/** Settles receipts forever, printing each id once its transaction has returned. */
const CHILD = `
import { Ledger } from ${JSON.stringify(pathToFileURL(join(ROOT, "src/ledger/index.ts")).href)};
const [path] = process.argv.slice(2);
const l = new Ledger({ path, nodeKey: ${JSON.stringify(KEY)}, policy: ${JSON.stringify(POLICY)}, treasury: "treasury", operator: "op" });
for (let i = 0; ; i++) {
  const id = l.reserve("agent", 100000n);
  const { receipt } = await l.settle(id, {
    baseModel: "base", adapters: [{ id: "lora", weightPpm: 500000 }],
    promptTokens: [1, 2, 3, i % 1000], outputTokens: Array.from({ length: 1 + (i % 17) }, (_, k) => k),
    sampling: { temperature: 0.8, seed: i }, finish: "length",
    spans: [{ datanet: "data@1", recordId: 1 + (i % 3), contributor: "c" + (i % 3), start: 0, end: 1 }],
  });
  process.stdout.write("settled " + receipt.id + "\\n");
}
`;

function setup(path: string): void {
  const l = new Ledger({ path, nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op" });
  l.createDatanet("data", "owner");
  for (let i = 0; i < 3; i++) l.approveRecord("data", l.contribute("data", { contributor: `c${i}`, content: `record ${i}`, tokenIds: [i, i + 1, i + 2] }).id, "owner");
  l.publishVersion("data", "owner");
  l.registerModel({ id: "base", kind: "base", owner: "m", priceIn: 3n, priceOut: 7n, contentHash: h("base"), developers: [{ party: "m", share: 1n }] });
  l.registerModel({
    id: "lora", kind: "adapter", owner: "d", baseModel: "base", priceIn: 11n, priceOut: 13n, contentHash: h("lora"),
    developers: [{ party: "d1", share: 2n }, { party: "d2", share: 1n }], lineage: [{ datanet: "data", version: 1, weight: 1n }],
  });
  for (const [staker, amount] of [["s1", 3n], ["s2", 4n]] as const) {
    l.createAgent(staker);
    l.deposit(staker, amount);
    l.stake(staker, "lora", amount);
  }
  l.createAgent("agent");
  l.deposit("agent", 10n ** 30n);
  l.close();
}

/** Runs the child until it has printed `atLeast` settled receipts, then SIGKILLs it after a random delay. */
function runAndKill(path: string, atLeast: number): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(dir, "child.mts"), path], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let printed = 0;
    let killing = false;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.stdout.on("data", (d: Buffer) => {
      printed += (d.toString().match(/settled/g) ?? []).length;
      if (printed >= atLeast && !killing) {
        killing = true;
        setTimeout(() => child.kill("SIGKILL"), Math.floor(Math.random() * 25));
      }
    });
    child.on("exit", (code, signal) => {
      if (signal === "SIGKILL") done(printed);
      else fail(new Error(`child exited with ${code}: ${stderr}`));
    });
  });
}

describe("ledger: crash safety", () => {
  it("survives SIGKILL mid-settle: chain intact, no half-written receipt, balances audited", async () => {
    const path = join(dir, "crash.sqlite");
    writeFileSync(join(dir, "child.mts"), CHILD);
    setup(path);
    let printedTotal = 0;
    for (let round = 0; round < 3; round++) {
      printedTotal += await runAndKill(path, 20);
      const l = new Ledger({ path, nodeKey: KEY, policy: POLICY, treasury: "treasury", operator: "op" });
      const head = l.head().id;
      expect(head).toBeGreaterThanOrEqual(printedTotal);
      expect(await l.verifyChain()).toMatchObject({ ok: true, receipts: head });
      expect(l.auditBalances()).toMatchObject({ ok: true, mismatches: [] });
      const bare = l.db.prepare("SELECT COUNT(*) AS n FROM receipts r WHERE NOT EXISTS (SELECT 1 FROM receipt_lines x WHERE x.receipt_id = r.id)").get() as { n: number };
      expect(bare.n).toBe(0);
      expect(l.activeReservations().length).toBeLessThanOrEqual(1);
      l.releaseAllActive();
      expect(l.auditBalances().ok).toBe(true);
      printedTotal = head;
      l.close();
    }
  });
});
